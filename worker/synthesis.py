"""The synthesis pipeline, in named stages a reader can follow:

``normalize()`` -> ``synthesize()`` -> ``encode_wav()`` -> ``store()``

Plain functions and one small class, testable without a broker; the Celery task only calls
:meth:`Pipeline.run`.
"""

from __future__ import annotations

import io
import logging
import time
import wave
from dataclasses import dataclass

import numpy as np

from common.jobs import SynthesisResult, speech_key
from common.normalize import Normalizer
from common.storage import GCSStorage, LocalStorage
from worker.voices import LoadedVoice, VoiceBank

_LOGGER = logging.getLogger(__name__)


class SynthesisError(Exception):
    """A job that cannot succeed however often it is retried (the client sees the message)."""


def normalize(normalizer: Normalizer, text: str, voice: LoadedVoice) -> list[str]:
    """Stage 1: the sentences of ``text`` in the voice's own characters."""
    sentences = normalizer.sentences(text, voice.spec.characters)
    if not sentences:
        raise SynthesisError("The text has nothing this voice can pronounce.")
    return sentences


def synthesize(voice: LoadedVoice, sentences: list[str], pause_s: float) -> np.ndarray:
    """Stage 2: one waveform for all sentences, each synthesized alone and joined by a pause."""
    pause = np.zeros(round(pause_s * voice.sample_rate), dtype=np.float32)
    pieces: list[np.ndarray] = []
    for index, sentence in enumerate(sentences):
        if index:
            pieces.append(pause)
        try:
            samples = voice.synthesizer.tts(sentence, split_sentences=False)
        except Exception as exc:
            raise SynthesisError(
                f"The model failed on sentence {index + 1} of {len(sentences)}: "
                f"{type(exc).__name__}"
            ) from exc
        pieces.append(np.asarray(samples, dtype=np.float32).reshape(-1))
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)


def encode_wav(samples: np.ndarray, sample_rate: int) -> bytes:
    """Stage 3: 16-bit PCM mono WAV, peak-normalised the way Coqui's ``save_wav`` does."""
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    scaled = samples * (32767 / max(0.01, peak))
    pcm = np.clip(scaled, -32768, 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


@dataclass
class Pipeline:
    """Everything a worker process needs to turn (member, text) into a stored WAV."""

    bank: VoiceBank
    storage: LocalStorage | GCSStorage
    normalizer: Normalizer
    sentence_pause: float = 0.25

    def voice(self, member_id: int) -> LoadedVoice:
        voice = self.bank.voices.get(member_id)
        if voice is None:
            reason = self.bank.errors.get(f"member {member_id}")
            detail = f" (it failed to load: {reason})" if reason else ""
            raise SynthesisError(
                f"No voice for member {member_id} is loaded on this worker{detail}."
            )
        return voice

    def run(self, member_id: int, text: str) -> SynthesisResult:
        """Normalize, synthesize, encode and store; returns the object's key and URL.

        A key already stored (a duplicate delivery, or a twin job that slipped past the API's
        coalescing) is returned without synthesizing again."""
        started = time.perf_counter()
        voice = self.voice(member_id)
        key = speech_key(member_id, voice.spec.version, text, self.sentence_pause)
        stored = self.storage.lookup(key)
        if stored is not None and stored.duration_s is not None:
            _LOGGER.info("member %s: %s already stored, not synthesized again", member_id, key)
            return self._result(voice, key, stored.duration_s, 0.0)
        model_started = time.perf_counter()
        sentences = normalize(self.normalizer, text, voice)
        samples = synthesize(voice, sentences, self.sentence_pause)
        model_s = time.perf_counter() - model_started
        wav = encode_wav(samples, voice.sample_rate)
        duration = samples.size / voice.sample_rate
        self.storage.put(key, wav, "audio/wav", round(duration, 3))
        elapsed = time.perf_counter() - started
        _LOGGER.info(
            "member %s: %d sentence(s), %.2f s of audio in %.2f s (RTF %.3f) -> %s",
            member_id,
            len(sentences),
            duration,
            elapsed,
            elapsed / duration if duration else 0.0,
            key,
        )
        return self._result(voice, key, duration, model_s)

    def _result(
        self, voice: LoadedVoice, key: str, duration_s: float, model_s: float
    ) -> SynthesisResult:
        return SynthesisResult(
            key=key,
            url=self.storage.url(key),
            duration_s=round(duration_s, 3),
            sample_rate=voice.sample_rate,
            member_id=voice.spec.member_id,
            voice_version=voice.spec.version,
            synthesis_s=round(model_s, 4),
        )
