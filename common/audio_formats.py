"""The audio formats a job can be stored in, as API and worker both name them.

Plain data (no soundfile, no numpy): the API needs the names and content types, the worker the
encoding details. ``wav`` at the voice's own rate is what ``/api/texts`` has always produced;
the others exist for the OpenAI-compatible ``/v1/audio/speech``.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_FORMAT = "wav"
DEFAULT_SPEED = 1.0
MIN_SPEED, MAX_SPEED = 0.25, 4.0
"""OpenAI's range for ``speed``; it maps to Glow-TTS's ``length_scale`` as ``1 / speed``."""

OPENAI_RATE = 24000
"""The rate of ``pcm`` (and of ``opus``), as OpenAI's own ``pcm`` is: raw samples carry no rate,
so clients written for OpenAI assume this one."""


@dataclass(frozen=True)
class AudioFormat:
    """One output format: its file extension, its HTTP content type, and the rate it is written
    at (None: the voice's own rate)."""

    name: str
    extension: str
    content_type: str
    sample_rate: int | None = None


FORMATS: dict[str, AudioFormat] = {
    fmt.name: fmt
    for fmt in (
        AudioFormat("wav", "wav", "audio/wav"),
        AudioFormat("mp3", "mp3", "audio/mpeg"),
        AudioFormat("flac", "flac", "audio/flac"),
        # Opus encodes only 8/12/16/24/48 kHz: the voice is resampled to OpenAI's 24 kHz.
        AudioFormat("opus", "opus", "audio/ogg", OPENAI_RATE),
        AudioFormat("pcm", "pcm", "audio/pcm", OPENAI_RATE),
    )
}


def output_rate(fmt: str, voice_rate: int) -> int:
    """The sample rate audio in ``fmt`` is written at for a voice of ``voice_rate``."""
    return FORMATS[fmt].sample_rate or voice_rate
