"""Tiny, random-initialised voices built with Coqui's own config and model classes.

They sound like noise but run through exactly the code real voices do: Coqui's checkpoint loading,
Glow-TTS inference, the HiFi-GAN generator or Griffin-Lim, and our repository layouts.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from common.normalize import CONJOINING_JAMO, HANGUL_SYLLABLES, decompose, to_compat
from voice_model.train import grapheme_characters

SAMPLE_RATE = 16000
HOP = 256

# Every conjoining jamo a modern syllable can contain, and the matching compatibility jamo.
CONJOINING = CONJOINING_JAMO
COMPAT = "".join(dict.fromkeys(to_compat(ch) for ch in CONJOINING))
SYLLABLES = HANGUL_SYLLABLES
PUNCTUATION = "!'(),-.:;? "

assert decompose("한") == ("\u1112", "\u1161", "\u11ab")


def _audio(griffin_lim_iters: int = 10) -> dict:
    return {
        "sample_rate": SAMPLE_RATE,
        "hop_length": HOP,
        "win_length": 1024,
        "fft_size": 1024,
        "num_mels": 80,
        "power": 1.0,
        "griffin_lim_iters": griffin_lim_iters,
        "do_trim_silence": False,
        "mel_fmax": 8000.0,
    }


def glow_tts(
    checkpoint: Path,
    config_path: Path,
    letters: str,
    step: int = 1,
    griffin_lim_iters: int = 10,
    nan_letters: str = "",
    frames_per_token: float = 0.0,
    audio: dict | None = None,
    punctuation: str = PUNCTUATION,
) -> None:
    """Write a ~0.5 M-parameter Glow-TTS checkpoint and its config, loadable by Synthesizer.

    ``griffin_lim_iters`` makes a Griffin-Lim voice as slow as needed; ``nan_letters`` get NaN
    embeddings, so the model fails on any text containing them (as a voice whose weights
    overflowed in half precision does) and works on the rest. ``frames_per_token`` > 0 makes
    the duration predictor give every token that many frames (times ``length_scale``), so the
    speaking rate visibly changes the length (a random one predicts ~0 frames, clamped to 1).
    ``audio`` replaces the tiny voices' 16 kHz audio settings (e.g. with the demo voices');
    ``punctuation`` is what the voice knows beside ``letters`` (without a space, the normalizer
    drops spaces for it). Inference draws no noise (``inference_noise_scale`` 0, stated rather
    than left to Coqui's default): the same text gives the same samples."""
    import torch
    from TTS.tts.configs.glow_tts_config import GlowTTSConfig
    from TTS.tts.configs.shared_configs import BaseAudioConfig
    from TTS.tts.models.glow_tts import GlowTTS

    torch.manual_seed(step)
    config = GlowTTSConfig(
        audio=BaseAudioConfig(**(audio or _audio(griffin_lim_iters))),
        characters=grapheme_characters(letters, punctuation),
        inference_noise_scale=0.0,
        text_cleaner=None,
        use_phonemes=False,
        add_blank=False,
        hidden_channels_enc=32,
        hidden_channels_dec=32,
        hidden_channels_dp=32,
        num_flow_blocks_dec=2,
        num_block_layers=2,
        encoder_params={
            "kernel_size": 3,
            "dropout_p": 0.1,
            "num_layers": 2,
            "num_heads": 2,
            "hidden_channels_ffn": 64,
            "input_length": None,
        },
    )
    model = GlowTTS(config)
    if frames_per_token > 0:
        with torch.no_grad():  # duration = exp(proj(x)) - 1, whatever x is
            model.encoder.duration_predictor.proj.weight.zero_()
            model.encoder.duration_predictor.proj.bias.fill_(math.log1p(frames_per_token))
    if nan_letters:
        from TTS.tts.utils.text.tokenizer import TTSTokenizer

        tokenizer, _ = TTSTokenizer.init_from_config(config)
        with torch.no_grad():
            for letter in nan_letters:
                model.encoder.emb.weight[tokenizer.characters.char_to_id(letter)] = float("nan")
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "config": config.to_dict(), "step": step}, checkpoint)
    config.save_json(str(config_path))


def hifigan(checkpoint: Path, config_path: Path, silent: bool = False) -> None:
    """Write a generator-only HiFi-GAN checkpoint (the shape Synthesizer loads for inference).

    ``silent`` zeroes the output layer, so the vocoder runs and returns nothing but zeros (as a
    vocoder trained into collapse does): a synthesis that "succeeds" without any sound."""
    import torch
    from TTS.tts.configs.shared_configs import BaseAudioConfig
    from TTS.vocoder.configs.hifigan_config import HifiganConfig
    from TTS.vocoder.models import setup_model

    torch.manual_seed(0)
    config = HifiganConfig(
        audio=BaseAudioConfig(**_audio()),
        generator_model_params={
            "upsample_factors": [8, 8, 4],
            "upsample_kernel_sizes": [16, 16, 8],
            "upsample_initial_channel": 32,
            "resblock_kernel_sizes": [3],
            "resblock_dilation_sizes": [[1, 3, 5]],
            "resblock_type": "1",
        },
    )
    gan = setup_model(config)
    if silent:
        with torch.no_grad():
            # The layer is weight-normed: a zero magnitude makes its weight zero.
            gan.model_g.conv_post.parametrizations.weight.original0.zero_()
            gan.model_g.conv_post.bias.zero_()
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"model": gan.model_g.state_dict(), "model_disc": {}, "config": config.to_dict()},
        checkpoint,
    )
    config.save_json(str(config_path))


def build_repository(root: Path) -> Path:
    """A voice directory with both layouts and all three Hangul scripts:

    * member 1, legacy layout, conjoining jamo, HiFi-GAN (two checkpoints: the higher step wins);
    * member 2, manifest, compatibility jamo, Griffin-Lim;
    * member 3, manifest, precomposed syllables, HiFi-GAN with mel-consistent refinement;
    * member 4, manifest, whose checkpoint is corrupt: listed, but no worker can load it;
    * a broken manifest (member 9) whose checkpoint is missing.
    """
    glow = root / "glow-tts" / "1"
    glow_tts(glow / "1g_checkpoint_100.pth.tar", glow / "1g_config.json", CONJOINING, step=100)
    glow_tts(glow / "1g_checkpoint_2500.pth.tar", glow / "1g_config.json", CONJOINING, step=2500)
    hifi = root / "hifigan-v2" / "1"
    hifigan(hifi / "1h_checkpoint_300.pth.tar", hifi / "1h_config.json")

    two = root / "voices" / "minji"
    glow_tts(two / "glow.pth", two / "glow.json", COMPAT)
    _manifest(
        two,
        {
            "id": 2,
            "name": "Minji",
            "version": "2026.11.1",
            "tts": {"checkpoint": "glow.pth", "config": "glow.json"},
        },
    )

    three = root / "voices" / "seojun"
    glow_tts(three / "glow.pth", three / "glow.json", SYLLABLES)
    hifigan(three / "hifigan.pth", three / "hifigan.json")
    _manifest(
        three,
        {
            "id": 3,
            "name": "Seojun",
            "version": "3",
            "tts": {"checkpoint": "glow.pth", "config": "glow.json"},
            "vocoder": {"checkpoint": "hifigan.pth", "config": "hifigan.json", "refine": 4},
        },
    )

    corrupt = root / "voices" / "corrupt"
    corrupt.mkdir(parents=True, exist_ok=True)
    (corrupt / "glow.pth").write_bytes(b"not a checkpoint")
    (corrupt / "glow.json").write_text(
        (two / "glow.json").read_text(encoding="utf-8"), encoding="utf-8"
    )
    _manifest(
        corrupt,
        {"id": 4, "name": "Corrupt", "tts": {"checkpoint": "glow.pth", "config": "glow.json"}},
    )

    broken = root / "voices" / "broken"
    broken.mkdir(parents=True, exist_ok=True)
    (broken / "glow.json").write_text(
        (two / "glow.json").read_text(encoding="utf-8"), encoding="utf-8"
    )
    _manifest(
        broken,
        {"id": 9, "name": "Broken", "tts": {"checkpoint": "missing.pth", "config": "glow.json"}},
    )
    return root


def _manifest(folder: Path, data: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "voice.json").write_text(
        json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8"
    )


# The syllables starting with ㅎ: the "fragile" voice's model fails on any text holding one.
HIEUH_SYLLABLES = "".join(chr(c) for c in range(0xD558, 0xD7A4))


SLOW_GRIFFIN_LIM: dict[str, Any] = {"griffin_lim_iters": 1000, "frames_per_token": 12}
"""A Griffin-Lim voice that takes about a second a sentence on this project's CPU: Coqui's
maximum of iterations (the worker's fast Griffin-Lim runs half of them) on long sentences (12
frames a token), so a test can act while a synthesis runs."""


def build_fault_repository(root: Path) -> Path:
    """Voices for the fault tests, all precomposed syllables:

    * member 1, HiFi-GAN: fast (~30 ms a sentence);
    * member 2, Griffin-Lim made :data:`SLOW_GRIFFIN_LIM` (about a second a sentence), so a test can
      act while a synthesis runs;
    * member 3, HiFi-GAN, fragile: NaN weights for every syllable starting with ㅎ, so "하늘"
      makes the model fail and "바다" works.
    """
    fast = root / "voices" / "fast"
    glow_tts(fast / "glow.pth", fast / "glow.json", SYLLABLES)
    hifigan(fast / "hifigan.pth", fast / "hifigan.json")
    slow = root / "voices" / "slow"
    glow_tts(slow / "glow.pth", slow / "glow.json", SYLLABLES, **SLOW_GRIFFIN_LIM)
    fragile = root / "voices" / "fragile"
    glow_tts(fragile / "glow.pth", fragile / "glow.json", SYLLABLES, nan_letters=HIEUH_SYLLABLES)
    hifigan(fragile / "hifigan.pth", fragile / "hifigan.json")
    vocoder = {"checkpoint": "hifigan.pth", "config": "hifigan.json"}
    tts = {"checkpoint": "glow.pth", "config": "glow.json"}
    _manifest(fast, {"id": 1, "name": "Fast", "version": "1", "tts": tts, "vocoder": vocoder})
    _manifest(slow, {"id": 2, "name": "Slow", "version": "1", "tts": tts})
    _manifest(fragile, {"id": 3, "name": "Fragile", "version": "1", "tts": tts, "vocoder": vocoder})
    return root


def build_reading_repository(root: Path) -> Path:
    """Two identical voices for the end-to-end reading test (members 1 and 2, the same seed):
    precomposed syllables with no space or punctuation, so only the syllables read decide the
    audio (as in the reading scorer, bench/reading.py), HiFi-GAN, and Glow-TTS without
    sampling noise, so the same syllables give the same samples on either member."""
    for member in (1, 2):
        folder = root / "voices" / f"reader-{member}"
        glow_tts(folder / "glow.pth", folder / "glow.json", SYLLABLES, punctuation="")
        hifigan(folder / "hifigan.pth", folder / "hifigan.json")
        _manifest(
            folder,
            {
                "id": member,
                "name": f"Reader {member}",
                "version": "1",
                "tts": {"checkpoint": "glow.pth", "config": "glow.json"},
                "vocoder": {"checkpoint": "hifigan.pth", "config": "hifigan.json"},
            },
        )
    return root
