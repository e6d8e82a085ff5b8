"""Audio as bytes: float samples peak-normalised to 16-bit PCM, and PCM encoded in each output
format (:data:`common.audio_formats.FORMATS`). The worker encodes what it stores with it; the
API encodes the sentences it streams, so both write a format alike. No torch here.
"""

from __future__ import annotations

import io
import wave

import numpy as np
import soundfile
import soxr

from common.audio_formats import DEFAULT_FORMAT, FORMATS, output_rate
from common.jobs import SynthesisError

STREAMED_FORMATS = ("wav", "pcm", "mp3")
"""The formats whose pieces can be sent one after another as one playable stream (a WAV
header of unknown length, raw samples, MP3 frames: :func:`without_info_frame`); FLAC and Ogg
Opus cannot."""
UNKNOWN_LENGTH = 0xFFFFFFFF
"""The RIFF and data sizes of a WAV header written before its length is known."""


def pcm16(samples: np.ndarray) -> np.ndarray:
    """16-bit PCM peak-normalised the way Coqui's ``save_wav`` does, in one pass: scaled by
    ``32767 / max(0.01, peak)`` nothing can overflow, so the product is written straight into
    the int16 buffer (~2 ms for a minute of 22 kHz audio instead of ~6)."""
    peak = max(float(samples.max()), -float(samples.min())) if samples.size else 0.0
    pcm = np.empty(samples.shape, dtype="<i2")
    np.multiply(samples, 32767 / max(0.01, peak), out=pcm, casting="unsafe")
    return pcm


def encode_wav(samples: np.ndarray, sample_rate: int) -> bytes:
    """Stage 3: 16-bit PCM mono WAV (:func:`pcm16`) at the voice's rate."""
    return wav_bytes(pcm16(samples), sample_rate)


def wav_bytes(pcm: np.ndarray, sample_rate: int) -> bytes:
    """16-bit PCM samples as a mono WAV file."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


# libsndfile's (format, subtype) for each stored format other than WAV and raw PCM.
_SOUNDFILE = {
    "mp3": ("MP3", "MPEG_LAYER_III"),
    "flac": ("FLAC", "PCM_16"),
    "opus": ("OGG", "OPUS"),
}


def encode_audio(samples: np.ndarray, sample_rate: int, fmt: str) -> tuple[bytes, int]:
    """Stage 3 for any format: the encoded bytes and the rate they are at.

    ``wav`` is :func:`encode_wav` at the voice's rate, exactly as before. The others are
    peak-normalised the same way, resampled with soxr where the format needs it (``opus`` and
    ``pcm`` at 24 kHz) and written by libsndfile (``pcm``: raw 16-bit little-endian mono)."""
    if fmt == DEFAULT_FORMAT:
        return encode_wav(samples, sample_rate), sample_rate
    if fmt not in FORMATS:
        raise SynthesisError(f"Unknown output format {fmt!r}.")
    rate = output_rate(fmt, sample_rate)
    if rate != sample_rate and samples.size:
        samples = soxr.resample(samples, sample_rate, rate).astype(np.float32, copy=False)
    return encode_pcm(pcm16(samples), rate, fmt), rate


def encode_pcm(pcm: np.ndarray, rate: int, fmt: str, **options: str | float) -> bytes:
    """16-bit PCM already at ``fmt``'s rate, encoded as is (no normalisation): ``pcm`` raw
    little-endian, the others by libsndfile (with ``options``, :func:`soundfile.write`'s)."""
    if fmt == "pcm":
        return pcm.astype("<i2", copy=False).tobytes()
    if fmt == DEFAULT_FORMAT:
        return wav_bytes(pcm, rate)
    container, subtype = _SOUNDFILE[fmt]
    buffer = io.BytesIO()
    soundfile.write(buffer, pcm, rate, format=container, subtype=subtype, **options)
    return buffer.getvalue()


def stream_piece(pcm: np.ndarray, voice_rate: int, fmt: str, first: bool) -> bytes:
    """One piece of a stream in ``fmt`` (one of :data:`STREAMED_FORMATS`): ``pcm`` at the
    voice's rate, resampled to the format's, preceded for the first piece of a WAV stream by a
    header of unknown length (players read to the end of the connection)."""
    rate = output_rate(fmt, voice_rate)
    if rate != voice_rate and pcm.size:
        pcm = soxr.resample(pcm, voice_rate, rate)
    if fmt == DEFAULT_FORMAT:
        body = pcm.astype("<i2", copy=False).tobytes()
        return (wav_header(rate) if first else b"") + body
    if fmt == "mp3":
        return without_info_frame(encode_pcm(pcm, rate, fmt, **MP3_STREAM))
    return encode_pcm(pcm, rate, fmt)


MP3_STREAM = {"bitrate_mode": "CONSTANT", "compression_level": 0.5}
"""libsndfile's options for a streamed MP3's pieces: a constant bitrate (80 kbps at 16 to 24
kHz, 160 kbps from 32 kHz), as a stream of plain frames has no Xing/Info frame to count them,
and a decoder can then tell its length only from its size."""


# Layer III bitrates in kbps by the header's index: MPEG-1, then MPEG-2 and 2.5.
_MP3_KBPS = (
    (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
)
_MP3_RATES = (44100, 48000, 32000)  # MPEG-1's; MPEG-2 halves them, MPEG-2.5 quarters them
_MP3_SHIFT = {3: 0, 2: 1, 0: 2}  # by the header's version bits: MPEG-1, 2, 2.5


def without_info_frame(data: bytes) -> bytes:
    """An MP3 without its first frame when that is LAME's Xing/Info frame. The frame counts
    the file's frames, so a decoder reading MP3s sent one after another would stop at the end
    of the first; without it each is plain frames, read to the end (the encoder's delay is
    then not trimmed: a few tens of ms more silence a piece)."""
    if len(data) < 4 or data[0] != 0xFF or data[1] & 0xE0 != 0xE0:
        return data
    version, index, rate_index = (data[1] >> 3) & 3, data[2] >> 4, (data[2] >> 2) & 3
    if version not in _MP3_SHIFT or index in {0, 15} or rate_index == 3:
        return data
    mpeg1 = version == 3
    kbps = _MP3_KBPS[0 if mpeg1 else 1][index]
    rate = _MP3_RATES[rate_index] >> _MP3_SHIFT[version]
    length = (144 if mpeg1 else 72) * kbps * 1000 // rate + ((data[2] >> 1) & 1)
    tag_at = 4 + (17 if mpeg1 else 9) + (0 if data[3] >> 6 == 3 else 15 if mpeg1 else 8)
    if data[tag_at : tag_at + 4] in {b"Xing", b"Info"}:
        return data[length:]
    return data


def wav_header(rate: int) -> bytes:
    """The 44-byte header of a 16-bit mono WAV stream whose length is not known yet."""
    return b"".join(
        (
            b"RIFF",
            UNKNOWN_LENGTH.to_bytes(4, "little"),
            b"WAVEfmt ",
            (16).to_bytes(4, "little"),
            (1).to_bytes(2, "little"),  # PCM
            (1).to_bytes(2, "little"),  # mono
            rate.to_bytes(4, "little"),
            (rate * 2).to_bytes(4, "little"),
            (2).to_bytes(2, "little"),
            (16).to_bytes(2, "little"),
            b"data",
            UNKNOWN_LENGTH.to_bytes(4, "little"),
        )
    )


def read_wav(data: bytes) -> tuple[int, np.ndarray]:
    """A stored 16-bit mono WAV's rate and samples; ValueError when it is not one."""
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
                raise ValueError("not 16-bit mono")
            return wav.getframerate(), np.frombuffer(wav.readframes(wav.getnframes()), "<i2")
    except (wave.Error, EOFError) as exc:
        raise ValueError(str(exc)) from exc
