"""The voice repository: which members exist and where their checkpoints are.

Two layouts are read, both under one directory (``MOKSORI_VOICE_DIR``):

* the legacy layout the first deployment had on disk::

      glow-tts/{i}/{i}g_checkpoint_{step}.pth.tar   glow-tts/{i}/{i}g_config.json
      hifigan-v2/{i}/{i}h_checkpoint_{step}.pth.tar hifigan-v2/{i}/{i}h_config.json

  where ``i`` is the member id and the highest step wins;
* one manifest per member, ``voices/<folder>/voice.json``::

      {"id": 4, "name": "Minji", "version": "2026-11-01",
       "tts": {"checkpoint": "glow.pth", "config": "glow.json"},
       "vocoder": {"checkpoint": "hifigan.pth", "config": "hifigan.json", "refine": 16}}

  with paths relative to the manifest (anywhere inside the repository, so voices can share one
  vocoder) and ``vocoder`` optional (``"griffin-lim"`` or absent: Griffin-Lim); ``refine``, also
  optional, is the iterations of the worker's mel-consistent refinement of the vocoder's output
  (0 or absent: none).

This module only reads JSON and file names, so the API can list voices without importing torch.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_LOGGER = logging.getLogger(__name__)

_LEGACY_CKPT = re.compile(
    r"^(?P<id>[0-9]+)(?P<kind>[gh])_checkpoint_(?P<step>[0-9]+)\.pth(\.tar)?$"
)
MANIFEST_NAME = "voice.json"
GRIFFIN_LIM = "griffin-lim"
"""A manifest's ``vocoder`` value for "no neural vocoder" (null means the same)."""
MAX_REFINE = 64
"""The most refinement iterations a manifest may ask for (each costs about one Griffin-Lim
iteration)."""


class VoiceError(ValueError):
    """A voice's files are missing or inconsistent."""


@dataclass(frozen=True)
class VoiceSpec:
    """Everything known about a voice before its model is loaded."""

    member_id: int
    """The member id clients send."""
    name: str
    """A human-readable name."""
    version: str
    """Changes whenever the checkpoints change; part of every audio object's key."""
    tts_checkpoint: Path
    """Glow-TTS checkpoint."""
    tts_config: Path
    """Glow-TTS config JSON (Coqui format)."""
    vocoder_checkpoint: Path | None
    """HiFi-GAN generator checkpoint, or None for Griffin-Lim."""
    vocoder_config: Path | None
    """HiFi-GAN config JSON, or None."""
    sample_rate: int
    """Output sample rate in Hz."""
    characters: str
    """The characters the model was trained on (letters, then punctuation)."""
    source: str = "manifest"
    """``legacy`` or ``manifest``: which layout it came from."""
    vocoder_refine: int = 0
    """Iterations of mel-consistent refinement after the vocoder (:mod:`worker.refine`); 0: none."""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def vocoder(self) -> str:
        """``hifigan`` or ``griffin-lim``."""
        return "hifigan" if self.vocoder_checkpoint else GRIFFIN_LIM

    def public(self) -> dict[str, Any]:
        """What ``GET /api/members`` shows about this voice."""
        return {
            "id": self.member_id,
            "name": self.name,
            "sample_rate": self.sample_rate,
            "version": self.version,
            "vocoder": self.vocoder,
        }


@dataclass(frozen=True)
class Repository:
    """The voices found in a directory, plus the problems met while reading it."""

    voices: dict[int, VoiceSpec]
    errors: dict[str, str]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise VoiceError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VoiceError(f"{path} is not readable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise VoiceError(f"{path} does not hold a JSON object")
    return data


def characters_of(config: dict[str, Any]) -> str:
    """The model's symbol inventory (characters + punctuations) from a Coqui TTS config."""
    chars = config.get("characters") or {}
    letters = chars.get("characters") or ""
    punctuation = chars.get("punctuations") or ""
    if not letters:
        raise VoiceError("the TTS config lists no characters (phoneme voices are not supported)")
    return letters + punctuation


def sample_rate_of(config: dict[str, Any]) -> int:
    rate = (config.get("audio") or {}).get("sample_rate")
    if not isinstance(rate, int) or rate <= 0:
        raise VoiceError("the TTS config has no audio.sample_rate")
    return rate


def _spec(
    member_id: int,
    name: str,
    version: str,
    tts: tuple[Path, Path],
    vocoder: tuple[Path, Path] | None,
    source: str,
    vocoder_refine: int = 0,
) -> VoiceSpec:
    for path in (*tts, *(vocoder or ())):
        if not path.is_file():
            raise VoiceError(f"{path} is missing")
    config = _read_json(tts[1])
    return VoiceSpec(
        member_id=member_id,
        name=name,
        version=version,
        tts_checkpoint=tts[0],
        tts_config=tts[1],
        vocoder_checkpoint=vocoder[0] if vocoder else None,
        vocoder_config=vocoder[1] if vocoder else None,
        sample_rate=sample_rate_of(config),
        characters=characters_of(config),
        source=source,
        vocoder_refine=vocoder_refine,
    )


def _latest_checkpoints(folder: Path, kind: str) -> dict[int, tuple[int, Path]]:
    """member id -> (step, path) of the highest-step checkpoint of ``kind`` (g or h) per member."""
    found: dict[int, tuple[int, Path]] = {}
    if not folder.is_dir():
        return found
    for member_dir in sorted(folder.iterdir()):
        if not (member_dir.is_dir() and member_dir.name.isdigit()):
            continue
        for path in member_dir.iterdir():
            m = _LEGACY_CKPT.match(path.name)
            if not m or m["kind"] != kind or m["id"] != member_dir.name:
                continue
            member_id, step = int(m["id"]), int(m["step"])
            if member_id not in found or step > found[member_id][0]:
                found[member_id] = (step, path)
    return found


def _legacy(root: Path, errors: dict[str, str]) -> dict[int, VoiceSpec]:
    voices: dict[int, VoiceSpec] = {}
    glow = _latest_checkpoints(root / "glow-tts", "g")
    hifi = _latest_checkpoints(root / "hifigan-v2", "h")
    for member_id, (step, ckpt) in sorted(glow.items()):
        vocoder = None
        version = f"g{step}"
        if member_id in hifi:
            h_step, h_ckpt = hifi[member_id]
            vocoder = (h_ckpt, h_ckpt.parent / f"{member_id}h_config.json")
            version += f"-h{h_step}"
        try:
            voices[member_id] = _spec(
                member_id,
                f"member-{member_id}",
                version,
                (ckpt, ckpt.parent / f"{member_id}g_config.json"),
                vocoder,
                "legacy",
            )
        except VoiceError as exc:
            errors[f"glow-tts/{member_id}"] = str(exc)
    return voices


def _inside(base: Path, relative: Any, what: str, root: Path) -> Path:
    if not isinstance(relative, str) or not relative:
        raise VoiceError(f"{what} must be a relative file path")
    path = (base / relative).resolve()
    if not path.is_relative_to(root.resolve()):
        raise VoiceError(f"{what} {relative!r} points outside the voice repository")
    return path


def _refine(value: Any, path: Path) -> int:
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_REFINE:
        raise VoiceError(f"{path}: vocoder.refine must be an integer from 0 to {MAX_REFINE}")
    return value


def load_manifest(path: Path, root: Path | None = None) -> VoiceSpec:
    """Read one ``voice.json`` manifest; its files must lie inside ``root`` (the repository it
    was found in; by default the manifest's own folder)."""
    data = _read_json(path)
    base = path.parent
    root = root or base
    member_id = data.get("id")
    if not isinstance(member_id, int) or isinstance(member_id, bool) or member_id < 0:
        raise VoiceError(f"{path}: id must be a non-negative integer")
    tts = data.get("tts")
    if not isinstance(tts, dict):
        raise VoiceError(f"{path}: tts must be an object with checkpoint and config")
    vocoder_data = data.get("vocoder")
    vocoder = None
    refine = 0
    if vocoder_data not in (None, GRIFFIN_LIM):
        if not isinstance(vocoder_data, dict):
            raise VoiceError(f'{path}: vocoder must be an object, "{GRIFFIN_LIM}" or null')
        vocoder = (
            _inside(base, vocoder_data.get("checkpoint"), "vocoder.checkpoint", root),
            _inside(base, vocoder_data.get("config"), "vocoder.config", root),
        )
        refine = _refine(vocoder_data.get("refine"), path)
    spec = _spec(
        member_id,
        str(data.get("name") or f"member-{member_id}"),
        str(data.get("version") or "1"),
        (
            _inside(base, tts.get("checkpoint"), "tts.checkpoint", root),
            _inside(base, tts.get("config"), "tts.config", root),
        ),
        vocoder,
        "manifest",
        refine,
    )
    return spec


def scan(root: Path) -> Repository:
    """Find every voice under ``root``; broken ones go to ``errors``, the rest still load."""
    errors: dict[str, str] = {}
    voices = _legacy(root, errors)
    for manifest in sorted((root / "voices").glob(f"*/{MANIFEST_NAME}")):
        try:
            spec = load_manifest(manifest, root)
        except VoiceError as exc:
            errors[str(manifest.relative_to(root))] = str(exc)
            continue
        if spec.member_id in voices:
            _LOGGER.warning(
                "member %s is defined twice; %s replaces the %s voice",
                spec.member_id,
                manifest.relative_to(root),
                voices[spec.member_id].source,
            )
        voices[spec.member_id] = spec
    for where, problem in errors.items():
        _LOGGER.error("voice %s cannot be used: %s", where, problem)
    return Repository(voices=dict(sorted(voices.items())), errors=errors)


def fingerprint(root: Path) -> tuple[tuple[str, int, int, int], ...]:
    """What changes when a voice does: every manifest's and legacy checkpoint's name, inode,
    size and mtime. A few ``stat`` calls, cheap enough to take every few seconds; a manifest
    swapped in with ``os.replace`` always changes it (a new inode)."""
    paths = [
        *(root / "voices").glob(f"*/{MANIFEST_NAME}"),
        *(root / "glow-tts").glob("*/*"),
        *(root / "hifigan-v2").glob("*/*"),
    ]
    found = []
    for path in sorted(paths):
        try:
            st = path.stat()
        except OSError:  # vanished between glob and stat: the next look sees the new state
            continue
        found.append((str(path), st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(found)


class VoiceCatalog:
    """The voices of a repository, kept current: :meth:`current` rescans at most once per
    ``interval`` seconds, and only when :func:`fingerprint` changed.

    A member that disappears from a rescan (its manifest broken or half-written, or its files
    removed) keeps its last good spec, logged: a bad rollout never takes a voice away. Members
    are added or removed for good by a restart.
    """

    def __init__(
        self,
        root: Path,
        interval: float,
        narrow: Callable[[Repository], Repository] | None = None,
    ) -> None:
        self.root = root
        self.interval = interval
        self._narrow = narrow or (lambda repository: repository)
        self._lock = threading.Lock()
        self._print = fingerprint(root)
        self.repository = self._narrow(scan(root))
        self._voices = dict(self.repository.voices)
        self._checked = time.monotonic()

    @property
    def voices(self) -> dict[int, VoiceSpec]:
        """The voices as last scanned (no rescan)."""
        return self._voices

    def current(self) -> dict[int, VoiceSpec]:
        """The voices, rescanned first when ``interval`` has passed and the files changed."""
        if self.interval > 0 and time.monotonic() - self._checked >= self.interval:
            self.refresh()
        return self._voices

    def refresh(self, force: bool = False) -> bool:
        """Rescan now if the files changed (or ``force``); True when any version changed."""
        with self._lock:
            self._checked = time.monotonic()
            now = fingerprint(self.root)
            if now == self._print and not force:
                return False
            self._print = now
            repository = self._narrow(scan(self.root))
            voices = dict(self._voices)
            changed = False
            for member_id, spec in repository.voices.items():
                old = voices.get(member_id)
                if old is None or old.version != spec.version:
                    _LOGGER.info(
                        "member %s: version %s in the repository (was %s)",
                        member_id,
                        spec.version,
                        old.version if old else "absent",
                    )
                    changed = True
                voices[member_id] = spec
            for member_id in set(voices) - set(repository.voices):
                _LOGGER.warning(
                    "member %s is no longer readable in %s; keeping version %s",
                    member_id,
                    self.root,
                    voices[member_id].version,
                )
            self.repository = repository
            self._voices = dict(sorted(voices.items()))
            return changed
