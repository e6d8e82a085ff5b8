"""Mel-consistent refinement (worker/refine.py) on the demo vocoder, as the worker loads and
runs it."""

from __future__ import annotations

from dataclasses import replace

import librosa
import numpy as np
import pytest
import torch
from pesq import pesq
from TTS.utils.audio import AudioProcessor

from common.config import REPO_ROOT
from common.normalize import Normalizer
from common.repository import scan
from voice_model.corpus import HELD_OUT
from voice_model.dataset import pronounced
from voice_model.demo import DEMO_REFINE, MEMBERS
from voice_model.vocoder import vocoder_config
from voice_model.yardstick import SR, resample
from worker.refine import MelRefinement
from worker.synthesis import vocode_mel
from worker.voices import LoadedVoice, load_voice

VOICE_DIR = REPO_ROOT / "voice_model"


@pytest.fixture(scope="module")
def voices() -> tuple[LoadedVoice, LoadedVoice]:
    """Demo member 1 as shipped (refined) and the same voice with its generator alone."""
    spec = scan(VOICE_DIR).voices[1]
    assert spec.vocoder == "hifigan" and spec.vocoder_refine == DEMO_REFINE
    return load_voice(spec, "cpu"), load_voice(replace(spec, vocoder_refine=0), "cpu")


def mel_of(voice: LoadedVoice, samples: np.ndarray) -> np.ndarray:
    return voice.synthesizer.tts_model.ap.melspectrogram(samples)


@pytest.mark.needs("espeak-ng")
def test_refined_audio_is_closer_to_its_mel_and_to_the_recording(
    voices: tuple[LoadedVoice, LoadedVoice],
) -> None:
    """Copy synthesis of a held-out espeak-ng sentence: the refined output's mel is nearer the
    mel it was made from than the generator's own output is, and PESQ against the recording
    is higher; same length, same samples every time."""
    refined_voice, raw_voice = voices
    sentence = pronounced(Normalizer(), HELD_OUT[0])
    samples, rate = MEMBERS[0].espeak.render(sentence)
    reference = resample(samples, rate)
    mel = mel_of(raw_voice, reference)
    raw, refined = vocode_mel(raw_voice, mel), vocode_mel(refined_voice, mel)
    assert (
        raw.shape == refined.shape == (mel.shape[1] * raw_voice.synthesizer.vocoder_ap.hop_length,)
    )
    assert np.array_equal(refined, vocode_mel(refined_voice, mel))

    def mel_error(wave: np.ndarray) -> float:
        return float(np.abs(mel_of(raw_voice, wave)[:, : mel.shape[1]] - mel).mean())

    assert mel_error(refined) < 0.7 * mel_error(raw)
    n = min(reference.size, raw.size)

    def wideband_pesq(wave: np.ndarray) -> float:
        pair = [librosa.resample(x[:n], orig_sr=SR, target_sr=16_000) for x in (reference, wave)]
        return pesq(16_000, pair[0], pair[1], "wb")

    assert wideband_pesq(refined) > wideband_pesq(raw) + 0.3


def test_refinement_keeps_shape_and_silence() -> None:
    """A batch keeps its shape and dtype; a silent generator output stays silent (the worker's
    check for audio that is no audio must still see it)."""
    ap = AudioProcessor(vocoder_config(channels=128).audio)
    refine = MelRefinement(ap, 4)
    mels = torch.full((2, ap.num_mels, 20), -4.0)
    waves = torch.zeros(2, 1, 20 * ap.hop_length)
    out = refine(waves, mels)
    assert out.shape == waves.shape and out.dtype == waves.dtype
    assert not out.any()
    with pytest.raises(ValueError):
        MelRefinement(ap, 0)
