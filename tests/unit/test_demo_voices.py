"""The demo voices shipped in voice_model/: present, small, inference-only and speaking."""

from __future__ import annotations

import pytest
from TTS.vocoder.models import setup_generator

from common.config import REPO_ROOT
from common.normalize import Normalizer
from common.repository import scan
from voice_model.demo import DEMO_REFINE, DEMO_VOCODER
from voice_model.vocoder import start_from_export, vocoder_config

VOICE_DIR = REPO_ROOT / "voice_model"


def test_three_demo_members_share_one_vocoder_under_40_mb() -> None:
    repository = scan(VOICE_DIR)
    assert repository.errors == {}
    assert [(v.member_id, v.name, v.vocoder) for v in repository.voices.values()] == [
        (1, "Haneul", "hifigan"),
        (2, "Minji", "hifigan"),
        (3, "Jihun", "hifigan"),
    ]
    vocoders = {(v.vocoder_checkpoint, v.vocoder_refine) for v in repository.voices.values()}
    assert vocoders == {(DEMO_VOCODER.resolve(), DEMO_REFINE)}
    shipped = [*(VOICE_DIR / "voices").rglob("*"), *DEMO_VOCODER.parent.rglob("*")]
    assert sum(p.stat().st_size for p in shipped if p.is_file()) < 40 * 2**20


def test_checkpoints_are_inference_only() -> None:
    import torch

    for spec in scan(VOICE_DIR).voices.values():
        checkpoint = torch.load(spec.tts_checkpoint, map_location="cpu", weights_only=False)
        assert set(checkpoint) == {"model", "config", "step"}, spec.name


@pytest.mark.parametrize("member_id", [1, 2, 3])
def test_demo_member_speaks(member_id: int) -> None:
    """Each demo voice turns a held-out sentence into audio of a sensible length."""
    from worker.synthesis import synthesize
    from worker.voices import load_voice

    spec = scan(VOICE_DIR).voices[member_id]
    voice = load_voice(spec, "cpu")
    samples = synthesize(voice, Normalizer().sentences("만나서 반갑습니다.", spec.characters), 0)
    assert 0.5 < samples.size / voice.sample_rate < 4.0


def test_the_demo_vocoder_in_training_can_be_trained_further() -> None:
    """The kept export (docs/voices.md, "The demo vocoder") is a small 128-channel generator that
    ``--init`` loads, with its step count and the held-out list it was scored on."""
    folder = VOICE_DIR / "checkpoints" / "demo-vocoder"
    assert (folder / "hifigan.pth").stat().st_size < 2_000_000
    assert len((folder / "held_out.txt").read_text(encoding="utf-8").split()) > 100
    generator = setup_generator(vocoder_config(channels=128))
    assert start_from_export(generator, folder / "hifigan.pth", 128) > 10_000
