"""Training data: a folder of WAVs plus ``metadata.csv`` (``file|transcript``), LJSpeech-style.

For the demo voices the audio is rendered by espeak-ng (Debian package ``espeak-ng``), one
variant, pitch and speed per member. For your own voice, record WAVs and write the same
``metadata.csv`` with the raw Korean text; :func:`load_dataset` normalizes it the way the
service will at inference time.
"""

from __future__ import annotations

import csv
import io
import logging
import shutil
import subprocess
import wave
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.normalize import HANGUL_SYLLABLES, Normalizer, join_sentences

_LOGGER = logging.getLogger(__name__)

METADATA = "metadata.csv"
SYLLABLE_SET = HANGUL_SYLLABLES + " .,!?"


class DatasetError(RuntimeError):
    """The training data is missing, empty or unreadable."""


@dataclass(frozen=True)
class EspeakVoice:
    """How espeak-ng speaks for one demo member."""

    variant: str
    """``-v`` argument, e.g. ``ko`` or ``ko+f2``."""
    pitch: int
    """``-p``, 0..99."""
    speed: int
    """``-s``, words per minute."""

    def render(self, text: str) -> tuple[np.ndarray, int]:
        """Speak ``text``; returns float samples in [-1, 1] and the sample rate."""
        if shutil.which("espeak-ng") is None:
            raise DatasetError("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
        result = subprocess.run(
            [
                "espeak-ng",
                "-v",
                self.variant,
                "-p",
                str(self.pitch),
                "-s",
                str(self.speed),
                "--stdout",
                text,
            ],
            capture_output=True,
            check=True,
            timeout=60,
        )
        with wave.open(io.BytesIO(result.stdout)) as wav:
            rate = wav.getframerate()
            frames = wav.readframes(wav.getnframes())
        return np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0, rate


def pronounced(normalizer: Normalizer, text: str) -> str:
    """``text`` as g2pK pronounces it, in Hangul syllables: what espeak is asked to read."""
    return " ".join(normalizer.sentences(text, SYLLABLE_SET))


def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    pcm = np.clip(samples * 32767, -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())


def render_dataset(
    out_dir: Path, sentences: list[str], voice: EspeakVoice, normalizer: Normalizer
) -> Path:
    """Render ``sentences`` with espeak-ng into ``out_dir`` (WAVs + metadata.csv); reuses files."""
    wav_dir = out_dir / "wavs"
    wav_dir.mkdir(parents=True, exist_ok=True)
    spoken = [pronounced(normalizer, s) for s in sentences]

    def one(index: int) -> tuple[str, str] | None:
        if not spoken[index]:
            return None
        name = f"{index:05d}.wav"
        path = wav_dir / name
        if not path.exists():
            samples, rate = voice.render(spoken[index])
            write_wav(path, samples, rate)
        return name, sentences[index]

    with ThreadPoolExecutor(2) as pool:
        rows = [row for row in pool.map(one, range(len(sentences))) if row]
    with (out_dir / METADATA).open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh, delimiter="|").writerows(rows)
    _LOGGER.info("rendered %d utterances into %s", len(rows), out_dir)
    return out_dir


@dataclass(frozen=True)
class Utterance:
    wav: Path
    transcript: str
    """Normalized text in the voice's own characters."""


def load_dataset(data_dir: Path, characters: str, normalizer: Normalizer) -> list[Utterance]:
    """Read ``metadata.csv``; every row's text is normalized for a voice with ``characters``."""
    metadata = data_dir / METADATA
    if not metadata.is_file():
        raise DatasetError(f"{metadata} is missing: write one 'file.wav|text' line per recording")
    utterances: list[Utterance] = []
    problems = 0
    with metadata.open(encoding="utf-8") as fh:
        for line_no, row in enumerate(csv.reader(fh, delimiter="|"), start=1):
            if len(row) < 2:
                problems += 1
                _LOGGER.warning("%s:%d: expected 'file|text'", metadata, line_no)
                continue
            wav = (data_dir / "wavs" / row[0]).resolve()
            if not wav.is_relative_to(data_dir.resolve()) or not wav.is_file():
                problems += 1
                _LOGGER.warning("%s:%d: %s is missing", metadata, line_no, row[0])
                continue
            transcript = join_sentences(normalizer.sentences(row[1], characters)).replace("\n", " ")
            if transcript:
                utterances.append(Utterance(wav, transcript))
    if not utterances:
        raise DatasetError(f"{metadata} has no usable utterance ({problems} broken lines)")
    return utterances
