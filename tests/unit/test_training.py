"""Demo-voice tooling: corpus, espeak-ng rendering, the training command and the yardstick."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from common.normalize import Normalizer, decompose
from common.repository import scan
from tests.support import REPO, base_env
from voice_model.corpus import HELD_OUT, build_corpus, dictionary_nouns, particle
from voice_model.dataset import EspeakVoice, render_dataset
from voice_model.yardstick import distance


@pytest.fixture(scope="module")
def nouns() -> list[str]:
    return dictionary_nouns()


def test_dictionary_nouns(nouns: list[str]) -> None:
    """Tens of thousands of common nouns come out of mecab-ko-dic, all Hangul."""
    assert len(nouns) > 20000
    assert "사과" in nouns and "학교" in nouns
    assert all(0xAC00 <= ord(ch) <= 0xD7A3 for word in nouns[:2000] for ch in word)


def test_particles_follow_the_last_syllable() -> None:
    assert particle("사과", "이", "가") == "사과가"
    assert particle("책", "이", "가") == "책이"
    assert particle("학교", "을", "를") == "학교를"


def test_corpus_is_distinct_covers_hangul_and_excludes_held_out(nouns: list[str]) -> None:
    corpus = build_corpus(400, nouns=nouns)
    assert len(corpus) == len(set(corpus)) == 400
    assert not set(HELD_OUT) & set(corpus)
    assert any(any(ch.isdigit() for ch in s) for s in corpus)  # numbers, dates, prices
    onsets, vowels = set(), set()
    for sentence in corpus:
        for ch in sentence:
            if 0xAC00 <= ord(ch) <= 0xD7A3:
                onset, vowel, _ = decompose(ch)
                onsets.add(onset)
                vowels.add(vowel)
    assert len(onsets) == 19 and len(vowels) == 21


@pytest.mark.needs("espeak-ng")
def test_yardstick_orders_renderings() -> None:
    """Same sentence is 0 from itself, near at another pitch, far from another sentence."""
    voice, other_pitch = EspeakVoice("ko", 50, 165), EspeakVoice("ko", 75, 165)
    ref, _ = voice.render(HELD_OUT[0])
    pitched, _ = other_pitch.render(HELD_OUT[0])
    different, _ = voice.render(HELD_OUT[1])
    assert distance(ref, ref) == pytest.approx(0.0, abs=1e-6)
    assert distance(ref, pitched) < 25 < distance(ref, different)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sentences = ["안녕하세요.", "사과 3개 주세요.", "학교에 갑니다!", "오늘은 맑아요?"]
    return render_dataset(
        tmp_path_factory.mktemp("data"), sentences, EspeakVoice("ko+f2", 70, 160), Normalizer()
    )


def train(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voice_model.train", *args],
        env=base_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.needs("espeak-ng")
def test_rendered_dataset(tiny_data: Path) -> None:
    lines = (tiny_data / "metadata.csv").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 4 and lines[1].endswith("|사과 3개 주세요.")
    with wave.open(str(tiny_data / "wavs" / "00000.wav")) as wav:
        assert wav.getframerate() == 22050 and wav.getnframes() > 5000


@pytest.mark.needs("espeak-ng")
def test_train_writes_a_loadable_voice_and_resumes(tiny_data: Path, tmp_path: Path) -> None:
    """A short run writes an inference-only voice the service loads; a second run resumes."""
    out = tmp_path / "voices" / "tiny"
    common = [
        "--data",
        str(tiny_data),
        "--out",
        str(out),
        "--member-id",
        "7",
        "--name",
        "Tiny",
        "--batch-size",
        "2",
        "--work-dir",
        str(tmp_path / "work"),
    ]
    first = train(*common, "--max-steps", "12")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "stopped at step 12" in first.stderr
    second = train(*common, "--max-steps", "14")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming from step 12" in second.stderr

    import torch

    checkpoint = torch.load(out / "glow.pth", weights_only=False)
    assert set(checkpoint) == {"model", "config", "step"} and checkpoint["step"] == 14
    spec = scan(tmp_path).voices[7]
    assert (spec.name, spec.version, spec.vocoder) == ("Tiny", "s14", "griffin-lim")

    from worker.synthesis import synthesize
    from worker.voices import load_voice

    voice = load_voice(spec, "cpu")
    samples = synthesize(voice, Normalizer().sentences("안녕하세요", spec.characters), 0.0)
    assert voice.sample_rate == 22050 and samples.size > 0 and np.isfinite(samples).all()

    # A broken corpus stops with one clear message and leaves the voice as it was.
    before = hashlib.sha256((out / "glow.pth").read_bytes()).hexdigest()
    empty = tmp_path / "empty"
    (empty / "wavs").mkdir(parents=True)
    (empty / "metadata.csv").write_text("missing.wav|안녕\n", encoding="utf-8")
    broken = train(
        "--data",
        str(empty),
        "--out",
        str(out),
        "--member-id",
        "7",
        "--work-dir",
        str(tmp_path / "work"),
    )
    assert broken.returncode == 2
    assert "cannot train" in broken.stderr and "no usable utterance" in broken.stderr
    assert "Traceback" not in broken.stderr
    assert hashlib.sha256((out / "glow.pth").read_bytes()).hexdigest() == before


def test_demo_without_espeak_is_one_clear_line(tmp_path: Path) -> None:
    """espeak-ng is only needed for training; without it the demo build says so and stops."""
    env = base_env()
    env["PATH"] = str(Path(sys.executable).parent)  # python, but no espeak-ng
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "voice_model.demo",
            "--corpus-size",
            "5",
            "--data-root",
            str(tmp_path),
            "--voice-dir",
            str(tmp_path / "voices"),
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert "espeak-ng is not installed" in result.stderr
    assert "Traceback" not in result.stderr
