"""The voice repository: the legacy on-disk layout and per-member manifests."""

from __future__ import annotations

import json
from pathlib import Path

from common.repository import scan


def test_both_layouts_are_found(voice_dir: Path) -> None:
    """It lists legacy and manifest voices, with names, versions and sample rates."""
    repo = scan(voice_dir)
    assert sorted(repo.voices) == [1, 2, 3, 4]
    assert repo.voices[1].public() == {
        "id": 1,
        "name": "member-1",
        "sample_rate": 16000,
        "version": "g2500-h300",
        "vocoder": "hifigan",
    }
    assert repo.voices[2].public()["vocoder"] == "griffin-lim"
    assert repo.voices[2].name == "Minji"
    assert repo.voices[3].version == "3"


def test_highest_legacy_step_wins(voice_dir: Path) -> None:
    """Of several legacy checkpoints, the one with the highest step is used."""
    spec = scan(voice_dir).voices[1]
    assert spec.tts_checkpoint.name == "1g_checkpoint_2500.pth.tar"
    assert spec.vocoder_checkpoint is not None
    assert spec.vocoder_checkpoint.name == "1h_checkpoint_300.pth.tar"


def test_broken_voice_is_reported_not_fatal(voice_dir: Path) -> None:
    """A manifest pointing at a missing file is reported; the other voices are still listed."""
    repo = scan(voice_dir)
    assert 9 not in repo.voices
    assert "missing.pth is missing" in repo.errors["voices/broken/voice.json"]


def test_manifest_paths_cannot_leave_the_repository(tmp_path: Path, voice_dir: Path) -> None:
    """A manifest cannot point at files outside the voice repository it was found in."""
    folder = tmp_path / "voices" / "evil"
    folder.mkdir(parents=True)
    (folder / "voice.json").write_text(
        json.dumps(
            {
                "id": 7,
                "tts": {
                    "checkpoint": "../../../etc/passwd",
                    "config": str(voice_dir / "voices/minji/glow.json"),
                },
            }
        )
    )
    repo = scan(tmp_path)
    assert repo.voices == {}
    assert "outside the voice repository" in repo.errors["voices/evil/voice.json"]


def test_empty_directory(tmp_path: Path) -> None:
    """An empty or missing repository has no voices and no errors."""
    assert scan(tmp_path / "nothing").voices == {}


def test_a_vocoder_shared_inside_the_repository_with_refinement(
    tmp_path: Path, voice_dir: Path
) -> None:
    """Voices may share one vocoder kept elsewhere in the repository; ``refine`` is read, and
    anything but an integer from 0 to 64 is refused."""
    shared = tmp_path / "checkpoints" / "shared"
    shared.mkdir(parents=True)
    for name in ("hifigan.pth", "hifigan.json"):
        (shared / name).write_bytes((voice_dir / "voices" / "seojun" / name).read_bytes())
    refines = {"a": 16, "b": None, "c": -1, "d": 65, "e": True, "f": "8"}
    for folder, refine in refines.items():
        voice = tmp_path / "voices" / folder
        voice.mkdir(parents=True)
        (voice / "glow.json").write_bytes((voice_dir / "voices/seojun/glow.json").read_bytes())
        (voice / "glow.pth").write_bytes(b"")
        vocoder = {
            "checkpoint": "../../checkpoints/shared/hifigan.pth",
            "config": "../../checkpoints/shared/hifigan.json",
        }
        if refine is not None:
            vocoder["refine"] = refine
        manifest = {"id": ord(folder), "tts": {"checkpoint": "glow.pth", "config": "glow.json"}}
        (voice / "voice.json").write_text(json.dumps({**manifest, "vocoder": vocoder}))
    repo = scan(tmp_path)
    assert {v.vocoder_refine for v in repo.voices.values()} == {16, 0}
    assert {v.vocoder_checkpoint for v in repo.voices.values()} == {shared / "hifigan.pth"}
    assert sorted(repo.errors) == [f"voices/{f}/voice.json" for f in "cdef"]
    assert all("vocoder.refine must be an integer" in e for e in repo.errors.values())
