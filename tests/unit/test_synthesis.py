"""Voice loading through Coqui's Synthesizer and the synthesis pipeline, in-process."""

from __future__ import annotations

import io
import json
import wave
from pathlib import Path

import numpy as np
import pytest

from common.encoding import encode_wav
from common.jobs import SynthesisError
from common.normalize import Normalizer
from common.repository import scan
from common.storage import LocalStorage
from harness import voice_factory
from tests.support import TEST_SECRET
from worker.synthesis import Pipeline, synthesize, synthesize_batch
from worker.voices import VoiceBank, load_bank, resolve_device


@pytest.fixture
def pipeline(bank: VoiceBank, tmp_path: Path) -> Pipeline:
    return Pipeline(
        bank=bank, storage=LocalStorage(tmp_path), normalizer=Normalizer(), secret=TEST_SECRET
    )


def test_every_layout_loads_and_broken_ones_are_reported(bank: VoiceBank) -> None:
    """Legacy + HiFi-GAN, manifest + Griffin-Lim and manifest + HiFi-GAN load; corrupt don't."""
    assert sorted(bank.voices) == [1, 2, 3]
    assert bank.voices[2].synthesizer.vocoder_model is None  # Griffin-Lim
    assert bank.voices[1].synthesizer.vocoder_model is not None
    # Coqui's unused discriminators (hundreds of MB for a full-size HiFi-GAN) are not kept.
    assert {bank.voices[m].synthesizer.vocoder_model.model_d for m in (1, 3)} == {None}
    assert "member 4" in bank.errors
    assert "voices/broken/voice.json" in bank.errors


@pytest.mark.parametrize("member_id", [1, 2, 3])
def test_pipeline_writes_a_wav(pipeline: Pipeline, tmp_path: Path, member_id: int) -> None:
    """Each voice (conjoining, compatibility jamo, syllables) yields a 16-bit PCM WAV in storage."""
    result = pipeline.run(member_id, "안녕하세요. 오늘은 2024년 3월 15일입니다!")
    path = tmp_path / result["key"]
    with wave.open(str(path)) as wav:
        assert wav.getsampwidth() == 2
        assert wav.getnchannels() == 1
        assert wav.getframerate() == 16000 == result["sample_rate"]
        assert wav.getnframes() / 16000 == pytest.approx(result["duration_s"], abs=0.001)
    # Two sentences plus a 0.25 s pause: longer than the pause, shorter than a minute.
    assert 0.3 < result["duration_s"] < 60
    assert result["key"].startswith(f"wav/{member_id}/")


def test_same_text_same_object_synthesized_once(pipeline: Pipeline) -> None:
    """The same text (up to spacing) maps to the same object key, and a key already stored is
    answered from storage without running the model again (a duplicate delivery costs a stat)."""
    a = pipeline.run(3, "사과 3개를 샀어요")
    b = pipeline.run(3, "  사과 3개를\n샀어요 ")
    assert a["key"] == b["key"]
    assert a["synthesis_s"] > 0
    assert b["synthesis_s"] == 0
    assert b["duration_s"] == pytest.approx(a["duration_s"], abs=0.001)
    assert pipeline.run(3, "사과 세개를 샀어요")["key"] != a["key"]


def test_unloaded_member_fails_with_a_reason(pipeline: Pipeline) -> None:
    """A member whose voice failed to load fails with the load error in the message."""
    with pytest.raises(SynthesisError, match=r"member 4 is loaded.*failed to load"):
        pipeline.run(4, "안녕")
    with pytest.raises(SynthesisError, match="No voice for member 42"):
        pipeline.run(42, "안녕")


def test_unspeakable_text_fails(pipeline: Pipeline) -> None:
    with pytest.raises(SynthesisError, match="nothing this voice can pronounce"):
        pipeline.run(1, "🙂")


def test_encode_wav_is_pcm16() -> None:
    """Samples are peak-normalised into 16-bit PCM."""
    data = encode_wav(np.array([0.0, 0.5, -0.5], dtype=np.float32), 22050)
    with wave.open(io.BytesIO(data)) as wav:
        frames = np.frombuffer(wav.readframes(3), dtype="<i2")
    assert list(frames) == [0, 32767, -32767]


def test_device_choice() -> None:
    """auto falls back to the CPU here; unknown devices are refused."""
    assert resolve_device("auto") in {"cpu", "cuda"}
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError):
        resolve_device("tpu")


@pytest.mark.parametrize("member_id", [1, 2, 3])
def test_batched_call_matches_one_by_one(bank: VoiceBank, member_id: int) -> None:
    """One padded Glow-TTS (+ HiFi-GAN) call gives each sentence the length that sentence
    alone gets from Coqui's tts(), for both vocoders and all three character sets."""
    voice = bank.voices[member_id]
    normalizer = Normalizer()
    texts = ["안녕하세요.", "오늘은 날씨가 아주 맑고 바람이 시원합니다.", "네."]
    sentences = [normalizer.sentences(t, voice.spec.characters)[0] for t in texts]
    batched = synthesize_batch(voice, sentences)
    hop = voice.synthesizer.tts_model.ap.hop_length
    for sentence, wave_ in zip(sentences, batched, strict=True):
        alone = np.asarray(voice.synthesizer.tts(sentence, split_sentences=False))
        assert abs(wave_.size - alone.size) <= hop, sentence
        assert np.abs(wave_).max() > 0


def test_run_batch_reports_each_job_on_its_own(pipeline: Pipeline) -> None:
    """A batch mixing members, a repeat, an unknown member and unspeakable text: the good jobs
    get the same objects run() would make, the bad ones their own errors."""
    expected = pipeline.run(1, "미리 만들어 둔 문장입니다.")
    outcomes = pipeline.run_batch(
        [
            (1, "첫 번째 문장입니다."),
            (2, "두 번째 문장입니다. 그리고 하나 더."),
            (77, "없는 목소리"),
            (1, "미리 만들어 둔 문장입니다."),
            (1, "🙂"),
            (1, "세 번째 문장입니다."),
        ]
    )
    first, second, unknown, repeat, unspeakable, third = outcomes
    for result in (first, second, third):
        assert isinstance(result, dict) and result["synthesis_s"] > 0
        assert pipeline.storage.lookup(result["key"]).duration_s == result["duration_s"]
    assert second["member_id"] == 2 and second["duration_s"] > first["duration_s"]
    assert isinstance(unknown, SynthesisError) and "member 77" in str(unknown)
    assert repeat["key"] == expected["key"] and repeat["synthesis_s"] == 0
    assert isinstance(unspeakable, SynthesisError)
    assert pipeline.run(1, "세 번째 문장입니다.")["synthesis_s"] == 0  # stored under run()'s key


def test_silent_model_output_fails_the_job(tmp_path: Path) -> None:
    """A voice whose vocoder yields only zeros (Coqui still pads it with silence, so the array
    is not empty) fails every synthesis with a reason, alone or batched, and stores nothing."""
    root = tmp_path / "voices"
    voice = root / "voices" / "silent"
    voice_factory.glow_tts(voice / "glow.pth", voice / "glow.json", voice_factory.SYLLABLES)
    voice_factory.hifigan(voice / "hifigan.pth", voice / "hifigan.json", silent=True)
    manifest = {
        "id": 7,
        "name": "Silent",
        "version": "1",
        "tts": {"checkpoint": "glow.pth", "config": "glow.json"},
        "vocoder": {"checkpoint": "hifigan.pth", "config": "hifigan.json"},
    }
    (voice / "voice.json").write_text(json.dumps(manifest), encoding="utf-8")
    bank = load_bank(scan(root), "cpu")
    loaded = bank.voices[7]
    raw = loaded.synthesizer.tts("바다로 갑니다", split_sentences=False)
    assert len(raw) > 0 and not np.any(raw)  # the model "succeeds" with silence

    with pytest.raises(SynthesisError, match="no usable audio for sentence 1 of 1"):
        synthesize(loaded, ["바다로 갑니다"], 0.0)
    with pytest.raises(SynthesisError, match="no usable audio for sentence 1 of a batch of 2"):
        synthesize_batch(loaded, ["바다로 갑니다", "구름"])
    storage = tmp_path / "media"
    pipeline = Pipeline(
        bank=bank, storage=LocalStorage(storage), normalizer=Normalizer(), secret=TEST_SECRET
    )
    with pytest.raises(SynthesisError, match="no usable audio"):
        pipeline.run(7, "바다로 갑니다.")
    assert not any(p.is_file() for p in storage.rglob("*"))
