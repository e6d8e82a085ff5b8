"""Loading voices into memory: one Coqui ``Synthesizer`` per member, built once per process.

A voice is a value (:class:`LoadedVoice`): its spec from the repository plus the synthesizer. A
voice that fails to load is reported and left out; the others still serve.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from common.repository import Repository, VoiceSpec
from worker import metrics
from worker.memory import release_freed_memory

_LOGGER = logging.getLogger(__name__)

WARM_UP_TEXT_CHARS = 8


@dataclass
class LoadedVoice:
    """A voice ready to synthesize."""

    spec: VoiceSpec
    synthesizer: Any  # TTS.utils.synthesizer.Synthesizer (typed loosely: torch is heavy to import)
    load_seconds: float

    @property
    def sample_rate(self) -> int:
        return int(self.synthesizer.output_sample_rate)

    @property
    def frame_samples(self) -> int:
        """Output samples per frame of the acoustic model (its hop, at the output rate)."""
        audio = self.synthesizer.tts_config.audio
        return max(1, round(audio["hop_length"] * self.sample_rate / audio["sample_rate"]))


@dataclass
class VoiceBank:
    """The voices this worker process holds, and why any others are missing.

    ``voices`` holds each member's current version; ``previous`` the versions it replaced, newest
    first (``MOKSORI_KEEP_VERSIONS`` of them), so jobs pinned to them still run on them;
    ``failed`` the version (and why) that last failed to load for a member, which keeps its
    current one."""

    voices: dict[int, LoadedVoice] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    previous: dict[int, list[LoadedVoice]] = field(default_factory=dict)
    failed: dict[int, tuple[VoiceSpec, str]] = field(default_factory=dict)

    def held(self, member_id: int, version: str) -> LoadedVoice | None:
        """The loaded voice of ``member_id`` at ``version`` (current or kept), if any."""
        current = self.voices.get(member_id)
        if current is not None and current.spec.version == version:
            return current
        for voice in self.previous.get(member_id, ()):
            if voice.spec.version == version:
                return voice
        return None

    def swap(self, voice: LoadedVoice, keep: int) -> LoadedVoice | None:
        """Make ``voice`` its member's current version at once; the one it replaces is kept (up
        to ``keep`` older versions) for jobs pinned to it. A job already running holds its own
        reference and finishes on the version it started with. Returns the replaced voice."""
        member_id = voice.spec.member_id
        old = self.voices.get(member_id)
        kept = [v for v in ([old] if old else []) + self.previous.get(member_id, [])]
        kept = [v for v in kept if v.spec.version != voice.spec.version][: max(keep, 0)]
        self.previous[member_id] = kept  # first, so a pinned job never finds neither
        self.voices[member_id] = voice
        self.failed.pop(member_id, None)
        return old


def resolve_device(device: str) -> str:
    """``auto``: ``cuda`` if a GPU is visible, else ``cpu``; ``cuda`` without a GPU is an error."""
    import torch

    device = device.strip().lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("MOKSORI_DEVICE=cuda but no CUDA device is visible")
    if device not in {"cpu", "cuda"}:
        raise ValueError(f"MOKSORI_DEVICE must be auto, cuda or cpu, not {device!r}")
    return device


def load_voice(spec: VoiceSpec, device: str) -> LoadedVoice:
    """Build one voice's synthesizer: Glow-TTS + HiFi-GAN, or Griffin-Lim with no vocoder."""
    from TTS.utils.synthesizer import Synthesizer

    from worker import griffin_lim, refine

    started = time.perf_counter()
    synthesizer = Synthesizer(
        tts_checkpoint=str(spec.tts_checkpoint),
        tts_config_path=str(spec.tts_config),
        vocoder_checkpoint=str(spec.vocoder_checkpoint) if spec.vocoder_checkpoint else None,
        vocoder_config=str(spec.vocoder_config) if spec.vocoder_config else None,
        use_cuda=device == "cuda",
    )
    if synthesizer.vocoder_model is None:
        griffin_lim.install(synthesizer)
    else:
        # Coqui builds HiFi-GAN's discriminators (70 M parameters, ~280 MB) for every vocoder
        # it loads and keeps them with a generator-only checkpoint; synthesis never uses them.
        synthesizer.vocoder_model.model_d = None
        release_freed_memory()
        if spec.vocoder_refine:
            refine.install(synthesizer, spec.vocoder_refine)
    voice = LoadedVoice(spec=spec, synthesizer=synthesizer, load_seconds=0.0)
    # One short synthesis now, so the first client does not pay for lazy initialisation
    # (Griffin-Lim's first call alone takes over a second on CPU).
    letters = [ch for ch in spec.characters if ch.isalpha()][:WARM_UP_TEXT_CHARS]
    synthesizer.tts("".join(letters), split_sentences=False)
    voice.load_seconds = time.perf_counter() - started
    return voice


def load_bank(repository: Repository, device: str) -> VoiceBank:
    """Load every voice in the repository; failures are logged and recorded, never fatal."""
    bank = VoiceBank(errors=dict(repository.errors))
    for member_id, spec in repository.voices.items():
        try:
            voice = load_voice(spec, device)
        except Exception as exc:  # a broken checkpoint must not take the other voices down
            _LOGGER.exception(
                "voice for member %s (%s) failed to load", member_id, spec.tts_checkpoint
            )
            bank.errors[f"member {member_id}"] = f"{type(exc).__name__}: {exc}"
            metrics.voice_missing(member_id)
            continue
        bank.voices[member_id] = voice
        metrics.voice_loaded(member_id, spec.version, voice.load_seconds)
        _LOGGER.info(
            "loaded member %s (%s, version %s, %s, %d Hz) in %.2f s",
            member_id,
            spec.name,
            spec.version,
            spec.vocoder,
            voice.sample_rate,
            voice.load_seconds,
        )
    return bank
