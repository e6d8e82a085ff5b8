"""The vocoder training command: a few steps on tiny data, resume, export, and synthesis."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from common.normalize import Normalizer
from harness import voice_factory
from harness.processes import REPO
from voice_model.dataset import EspeakVoice, render_dataset
from voice_model.train import voice_config
from voice_model.vocoder import HELD_OUT_LIST, STATE, choose_held_out, main, vocoder_config

# A 16-channel generator on 2 x 2048-sample segments: a step takes a few milliseconds.
TINY = [
    "--channels",
    "16",
    "--batch-size",
    "2",
    "--segment-samples",
    "2048",
    "--threads",
    "1",
    "--eval-every",
    "2",
    "--log-every",
    "1",
]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three short espeak-ng utterances in one member folder, as ``render_all`` lays them out."""
    root = tmp_path_factory.mktemp("vocoder-data")
    sentences = ["안녕하세요.", "사과 세 개 주세요.", "학교에 갑니다!"]
    render_dataset(root / "member", sentences, EspeakVoice("ko", 50, 165), Normalizer())
    return root


def test_audio_settings_are_the_demo_voices() -> None:
    """The vocoder's mels are computed exactly as every demo voice's Glow-TTS mels are."""
    audio = vocoder_config().audio.to_dict()
    for glow in sorted((REPO / "voice_model" / "voices").glob("*/glow.json")):
        assert json.loads(glow.read_text(encoding="utf-8"))["audio"] == audio, glow
    assert audio["hop_length"] == int(np.prod([8, 8, 4]))


def test_held_out_sentences_are_the_same_in_every_voice_and_stable() -> None:
    """About 2 % of sentences, held out in all members, unchanged when more data arrives."""
    names = [f"{m}/wavs/{i:05d}.wav" for m in ("haneul", "minji", "jihun") for i in range(3000)]
    held = choose_held_out(names, 2.0)
    sentences = {Path(n).name for n in held}
    assert len(held) == 3 * len(sentences)
    assert 0.01 < len(held) / len(names) < 0.03
    more = names + [f"haneul/wavs/{i:05d}.wav" for i in range(3000, 3500)]
    assert set(held) <= set(choose_held_out(more, 2.0))


@pytest.mark.needs("espeak-ng")
def test_train_resume_export_and_synthesize(
    tiny_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A run checkpoints, a second run continues its step count, and the exported generator
    loads through Coqui's Synthesizer beside a Glow-TTS with the same audio settings."""
    run = tmp_path / "run"
    data = ["--data-root", str(tiny_data), "--output", str(run)]
    with caplog.at_level(logging.INFO):
        assert main([*data, "--steps", "3", *TINY]) == 0
    assert "stopped at step 3" in caplog.text
    assert "held-out mel L1" in caplog.text
    held = (run / HELD_OUT_LIST).read_text(encoding="utf-8").split()
    assert held and all(name.startswith("member/wavs/") for name in held)
    assert (run / "train.log").read_text(encoding="utf-8").count("stopped at step 3") == 1

    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert main([*data, "--steps", "5", *TINY]) == 0
    assert "resuming from step 3" in caplog.text and "stopped at step 5" in caplog.text
    assert (run / HELD_OUT_LIST).read_text(encoding="utf-8").split() == held

    import torch
    from TTS.utils.synthesizer import Synthesizer

    assert torch.load(run / STATE, weights_only=False)["step"] == 5
    voice = tmp_path / "voice"
    assert main(["--output", str(run), "--export", str(voice / "hifigan.pth")]) == 0
    checkpoint = torch.load(voice / "hifigan.pth", weights_only=False)
    assert set(checkpoint) == {"model", "model_disc", "config", "step"}
    assert checkpoint["step"] == 5 and checkpoint["model_disc"] == {}
    assert (voice / "hifigan.pth").stat().st_size < 200_000

    letters = voice_factory.CONJOINING
    voice_factory.glow_tts(
        voice / "glow.pth",
        voice / "glow.json",
        letters,
        frames_per_token=3,
        audio=voice_config().audio.to_dict(),
    )
    synthesizer = Synthesizer(
        tts_checkpoint=str(voice / "glow.pth"),
        tts_config_path=str(voice / "glow.json"),
        vocoder_checkpoint=str(voice / "hifigan.pth"),
        vocoder_config=str(voice / "hifigan.json"),
    )
    assert synthesizer.vocoder_model is not None and synthesizer.output_sample_rate == 22050
    wav = np.asarray(synthesizer.tts(letters[:8], split_sentences=False), dtype=np.float32)
    assert wav.size > 8 * 3 * 256 and np.isfinite(wav).all()

    # And the worker takes it as a manifest's vocoder, the way it takes a legacy hifigan-v2/.
    from common.repository import load_manifest
    from worker.voices import load_voice

    manifest = {
        "id": 5,
        "name": "Tiny",
        "tts": {"checkpoint": "glow.pth", "config": "glow.json"},
        "vocoder": {"checkpoint": "hifigan.pth", "config": "hifigan.json"},
    }
    (voice / "voice.json").write_text(json.dumps(manifest), encoding="utf-8")
    spec = load_manifest(voice / "voice.json")
    assert spec.vocoder == "hifigan"
    assert load_voice(spec, "cpu").sample_rate == 22050


@pytest.mark.needs("espeak-ng")
def test_adversarial_mode_runs_coquis_discriminators(tiny_data: Path, tmp_path: Path) -> None:
    """The CUDA recipe (generator warm-up, then MPD + MSD) also steps on CPU, and resumes."""
    run = tmp_path / "run"
    common = ["--data-root", str(tiny_data), "--output", str(run), "--mode", "adversarial"]
    assert main([*common, "--adversarial-after", "1", "--steps", "2", *TINY]) == 0
    import torch

    state = torch.load(run / STATE, weights_only=False)
    assert state["step"] == 2 and "discriminator" in state and "optimizer_d" in state


def test_export_without_training_is_one_clear_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert main(["--output", str(tmp_path), "--export", str(tmp_path / "h.pth")]) == 2
    assert "nothing trained yet" in caplog.text


@pytest.mark.needs("espeak-ng")
def test_a_new_run_starts_from_an_exported_generator(
    tiny_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``--init`` carries an export's weights and step into a new run folder (a shipped
    vocoder trained further without its state); a generator of another width is refused."""
    first, second = tmp_path / "first", tmp_path / "second"
    assert main(["--data-root", str(tiny_data), "--output", str(first), "--steps", "2", *TINY]) == 0
    export = tmp_path / "shipped" / "hifigan.pth"
    assert main(["--output", str(first), "--export", str(export)]) == 0
    data = ["--data-root", str(tiny_data), "--output", str(second), "--init", str(export)]
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert main([*data, "--steps", "4", *TINY]) == 0
    assert f"starting from step 2 of {export}" in caplog.text and "stopped at step 4" in caplog.text
    import torch

    exported = torch.load(export, weights_only=False)["model"]
    trained = torch.load(second / STATE, weights_only=False)["generator"]
    assert exported.keys() == trained.keys()
    assert any(not torch.equal(exported[k], trained[k]) for k in exported)  # it trained on

    caplog.clear()
    wider = [a if a != "16" else "32" for a in TINY]
    third = ["--data-root", str(tiny_data), "--output", str(tmp_path / "third")]
    assert main([*third, "--init", str(export), "--steps", "3", *wider]) == 2
    assert "is a 16-channel generator: pass --channels 16" in caplog.text
