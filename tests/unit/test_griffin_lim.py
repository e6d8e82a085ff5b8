"""The fast Griffin-Lim that voices without a neural vocoder use: what it is installed on, and
that it inverts a mel spectrogram at least as faithfully as Coqui's own Griffin-Lim."""

from __future__ import annotations

import numpy as np
import pytest
from TTS.utils.audio.numpy_transforms import db_to_amp, griffin_lim, mel_to_spec

from worker.griffin_lim import FastGriffinLim
from worker.voices import VoiceBank


def _speechlike(seconds: float, rate: int) -> np.ndarray:
    """Voiced sound with a gliding pitch and moving formant-like emphasis, then a pause."""
    t = np.arange(int(seconds * rate)) / rate
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    wave = sum(np.sin(k * phase) / k * (1 + np.sin(2 * np.pi * 1.3 * t + k)) for k in range(1, 12))
    wave *= np.clip(np.sin(2 * np.pi * 0.5 * t) * 2, 0, 1)
    return (0.3 * wave / np.abs(wave).max()).astype(np.float32)


def _mel_error(ap: object, reference_mel: np.ndarray, samples: np.ndarray) -> float:
    """Mean absolute difference of normalized log-mels: how far a resynthesis is from its mel."""
    mel = ap.melspectrogram(samples)  # type: ignore[attr-defined]
    frames = min(mel.shape[1], reference_mel.shape[1])
    return float(np.abs(mel[:, :frames] - reference_mel[:, :frames]).mean())


def test_installed_only_where_there_is_no_vocoder(bank: VoiceBank) -> None:
    griffin = bank.voices[2].synthesizer
    assert isinstance(griffin.tts_model.ap.inv_melspectrogram, FastGriffinLim)
    hifigan = bank.voices[1].synthesizer
    assert not isinstance(hifigan.tts_model.ap.inv_melspectrogram, FastGriffinLim)


def test_as_faithful_as_coquis_and_repeatable(bank: VoiceBank) -> None:
    """Copy synthesis of a known sound: with half the voice's ``griffin_lim_iters``, the
    resynthesis's mel is at least as close to the input mel as Coqui's Griffin-Lim gets with
    all of them, and the same mel gives the same samples."""
    ap = bank.voices[2].synthesizer.tts_model.ap
    reference = _speechlike(2.0, ap.sample_rate)
    mel = ap.melspectrogram(reference)
    fast = ap.inv_melspectrogram(mel)
    assert ap.inv_melspectrogram.iterations == -(-ap.griffin_lim_iters // 2)
    assert fast.dtype == np.float32
    assert len(fast) == pytest.approx(len(reference), abs=ap.hop_length * 2)
    np.random.seed(0)
    decibels = ap.denormalize(mel)
    amplitude = db_to_amp(x=decibels, gain=ap.spec_gain, base=ap.base)
    linear = mel_to_spec(mel=amplitude, mel_basis=ap.mel_basis)
    coqui = griffin_lim(
        spec=linear**ap.power,
        num_iter=ap.griffin_lim_iters,
        hop_length=ap.hop_length,
        win_length=ap.win_length,
        fft_size=ap.fft_size,
        pad_mode=ap.stft_pad_mode,
    )
    assert _mel_error(ap, mel, fast) <= 1.1 * _mel_error(ap, mel, coqui)
    np.testing.assert_array_equal(ap.inv_melspectrogram(mel), fast)


@pytest.mark.parametrize("frames", [2, 3, 4, 5, 40])
def test_lengths_match_coquis_even_for_a_few_frames(bank: VoiceBank, frames: int) -> None:
    """A centered inverse STFT's length, (frames - 1) x hop, also for utterances shorter than
    the FFT (where torch's own padding would refuse them)."""
    ap = bank.voices[2].synthesizer.tts_model.ap
    mel = np.random.default_rng(frames).normal(size=(ap.num_mels, frames)).astype(np.float32)
    assert len(ap.inv_melspectrogram(mel)) == (frames - 1) * ap.hop_length
