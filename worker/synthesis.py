"""The synthesis pipeline, in named stages a reader can follow:

``normalize()`` -> ``synthesize()`` -> ``encode_audio()`` -> ``store()``

Plain functions and one small class, testable without a broker. The Celery task goes through
:func:`worker.paragraph.speak`, which uses :meth:`Pipeline.lookup` and :meth:`Pipeline.render`
for a text of one sentence; :meth:`Pipeline.run` is the same path for a whole text in one go.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded

from common.audio_formats import DEFAULT_FORMAT, DEFAULT_SPEED, FORMATS
from common.encoding import encode_audio, wav_bytes
from common.jobs import (
    UNSPEAKABLE,
    UNSPEAKABLE_CODE,
    SynthesisError,
    SynthesisResult,
    speech_key,
)
from common.media_secret import MediaSecret
from common.normalize import Normalizer
from common.storage import GCSStorage, LocalStorage, adopt
from worker import metrics
from worker.voices import LoadedVoice, VoiceBank

if TYPE_CHECKING:
    from worker.reload import VoiceReloader

_LOGGER = logging.getLogger(__name__)

# The least sound a synthesis may yield, in the voice's frames (hops): less is no speech at all.
# One frame, not more: an untrained voice gives each token a single frame, so a one-syllable
# sentence from it is a few frames long and still counts.
MIN_AUDIO_FRAMES = 1


def normalize(normalizer: Normalizer, text: str, voice: LoadedVoice) -> list[str]:
    """Stage 1: the sentences of ``text`` in the voice's own characters."""
    sentences = normalizer.sentences(text, voice.spec.characters)
    if not sentences:
        raise SynthesisError(UNSPEAKABLE, UNSPEAKABLE_CODE)
    return sentences


class SpeechJob(NamedTuple):
    """One job as the pipeline runs it; ``(member_id, text)`` alone means a WAV at speed 1.0."""

    member_id: int
    text: str
    fmt: str = DEFAULT_FORMAT
    speed: float = DEFAULT_SPEED
    version: str | None = None
    """The voice version the API pinned; None: the version this worker serves now."""


@contextmanager
def speaking_rate(voice: LoadedVoice, speed: float) -> Iterator[None]:
    """Glow-TTS at ``speed`` for the duration of the block: its ``length_scale`` (a multiplier
    of every predicted duration) becomes the voice's own divided by ``speed``, and is put back
    afterwards, whatever happens, so the next job in this process speaks at its own rate. A
    pool process runs one job at a time (prefork or solo), so no other synthesis sees it; a
    threaded pool would need a lock here."""
    if speed == DEFAULT_SPEED:
        yield
        return
    model = voice.synthesizer.tts_model
    base = getattr(model, "length_scale", None)
    if base is None:
        raise SynthesisError("This voice's model cannot change its speaking rate.")
    model.length_scale = float(base) / speed
    try:
        yield
    finally:
        model.length_scale = base


def synthesize(voice: LoadedVoice, sentences: list[str], pause_s: float) -> np.ndarray:
    """Stage 2: one waveform for all sentences, each synthesized alone and joined by a pause."""
    pieces: list[np.ndarray] = []
    for index, sentence in enumerate(sentences):
        try:
            samples = voice.synthesizer.tts(sentence, split_sentences=False)
        except SoftTimeLimitExceeded:
            raise  # the task's time limit, not the model's fault: reported as such
        except Exception as exc:
            raise SynthesisError(
                f"The model failed on sentence {index + 1} of {len(sentences)}: "
                f"{type(exc).__name__}"
            ) from exc
        pieces.append(_wave(samples, f"sentence {index + 1} of {len(sentences)}", voice))
    return join_waves(pieces, pause_s, voice.sample_rate)


def _wave(samples: Any, which: str, voice: LoadedVoice) -> np.ndarray:
    """A model's output as float32 samples; SynthesisError when it is no usable audio.

    Refused: anything not finite (NaN or inf would be encoded as noise and stored), and sound
    shorter than :data:`MIN_AUDIO_FRAMES` of the voice's frames once Coqui's trailing silence
    pad is set aside (an empty or all-zero output: a model whose durations collapsed still
    "succeeds" on some CPUs, and its client would get a silent file marked done)."""
    wave = np.asarray(samples, dtype=np.float32).reshape(-1)
    if not np.isfinite(wave).all():
        raise SynthesisError(f"The model produced invalid audio for {which}.")
    sounding = np.flatnonzero(wave)
    length = int(sounding[-1]) + 1 if sounding.size else 0
    if length < MIN_AUDIO_FRAMES * voice.frame_samples:
        raise SynthesisError(
            f"The model produced no usable audio for {which} "
            f"({length} samples, under {MIN_AUDIO_FRAMES} frame of {voice.frame_samples})."
        )
    return wave


def join_waves(pieces: list[np.ndarray], pause_s: float, sample_rate: int) -> np.ndarray:
    """Sentences' waveforms as one, with ``pause_s`` of silence between them."""
    if not pieces:
        return np.zeros(0, dtype=np.float32)
    pause = np.zeros(round(pause_s * sample_rate), dtype=np.float32)
    joined: list[np.ndarray] = []
    for index, piece in enumerate(pieces):
        if index:
            joined.append(pause)
        joined.append(piece)
    return np.concatenate(joined)


def synthesize_batch(voice: LoadedVoice, sentences: list[str]) -> list[np.ndarray]:
    """Stage 2, batched: every sentence through one padded Glow-TTS call and, with HiFi-GAN, one
    vocoder call; each waveform comes out as :meth:`Synthesizer.tts` would give it for that
    sentence alone (Griffin-Lim still runs per sentence: Coqui's is not batched).

    Dynamic batching (``MOKSORI_BATCH_SIZE``) uses it to turn a burst of jobs for one member
    into one model call; it pays off where the model has spare parallelism (GPUs)."""
    import torch
    from TTS.tts.utils.synthesis import inv_spectrogram
    from TTS.utils.synthesizer import PAD_SILENCE_SAMPLES

    synth = voice.synthesizer
    model = synth.tts_model
    if synth.vocoder_model is not None and (
        synth.vocoder_config.audio["sample_rate"] != model.ap.sample_rate
    ):  # Coqui interpolates mels for such pairs; keep its own per-sentence path
        return [synthesize(voice, [s], 0.0) for s in sentences]
    ids = [model.tokenizer.text_to_ids(sentence) for sentence in sentences]
    lengths = torch.tensor([len(i) for i in ids], dtype=torch.long)
    tokens = torch.zeros(len(ids), int(lengths.max()), dtype=torch.long)
    for row, seq in enumerate(ids):
        tokens[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    device = model.device
    try:
        with torch.inference_mode():
            outputs = model.inference(
                tokens.to(device), aux_input={"x_lengths": lengths.to(device), "d_vectors": None}
            )
            mels = outputs["model_outputs"].float().cpu()  # [B, T_max, C]
            # Every output frame is aligned to exactly one input token: the frame count, cut to
            # a multiple of the decoder's squeeze factor as a batch of one would be.
            squeeze = int(getattr(model, "num_squeeze", 1))
            frames = [
                int(n) // squeeze * squeeze
                for n in outputs["alignments"].sum(dim=(1, 2)).round().long().cpu().tolist()
            ]
            if synth.vocoder_model is None:
                waves = [
                    inv_spectrogram(mels[b, : frames[b]].numpy(), model.ap, model.config)
                    for b in range(len(ids))
                ]
            else:
                waves = vocode_batch(synth, mels, frames)
    except SoftTimeLimitExceeded:
        raise  # the task's time limit, not the model's fault: reported as such
    except Exception as exc:
        raise SynthesisError(f"The model failed on a batch: {type(exc).__name__}") from exc
    out = []
    for index, samples in enumerate(waves):
        samples = _wave(samples, f"sentence {index + 1} of a batch of {len(waves)}", voice)
        if synth.tts_config.audio.get("do_trim_silence"):
            samples = samples[: model.ap.find_endpoint(samples)]
        out.append(np.concatenate([samples, np.zeros(PAD_SILENCE_SAMPLES, dtype=np.float32)]))
    return out


def vocode_batch(synth: Any, mels: Any, frames: list[int]) -> list[np.ndarray]:
    """HiFi-GAN over padded mels (renormalized as Coqui's ``_run_vocoder`` does), each item
    edge-padded the way the generator pads a batch of one, then cut back out."""
    import torch

    model, vocoder_ap = synth.tts_model, synth.vocoder_ap
    hop = int(synth.vocoder_config.audio["hop_length"])
    pad = int(getattr(synth.vocoder_model.model_g, "inference_padding", 0))
    inputs = [  # [C, T + 2 pad] each
        np.pad(
            vocoder_ap.normalize(model.ap.denormalize(mels[b, : frames[b]].numpy().T)),
            ((0, 0), (pad, pad)),
            mode="edge",
        )
        for b in range(len(frames))
    ]
    width = max(x.shape[1] for x in inputs)
    batch = np.zeros((len(inputs), inputs[0].shape[0], width), dtype=np.float32)
    for b, x in enumerate(inputs):
        batch[b, :, : x.shape[1]] = x
        batch[b, :, x.shape[1] :] = x[:, -1:]  # filler repeats the item's last frame
    device = next(synth.vocoder_model.parameters()).device
    waves = synth.vocoder_model.inference(torch.from_numpy(batch).to(device))
    start = pad * hop  # the generator's own padding of the whole batch
    return [
        waves[b].reshape(-1)[start : start + inputs[b].shape[1] * hop].cpu().numpy()
        for b in range(len(frames))
    ]


def vocode_mel(voice: LoadedVoice, mel: np.ndarray) -> np.ndarray:
    """One mel ``[bands, frames]`` of the voice's acoustic model (normalized as its outputs are)
    through the voice's vocoder as synthesis runs it: one frame of samples per mel frame. For
    copy synthesis (a recording's mel back to audio), which measures the vocoder alone."""
    import torch

    synth = voice.synthesizer
    if synth.vocoder_model is None:
        return np.asarray(synth.tts_model.ap.inv_melspectrogram(mel), dtype=np.float32)
    hop = int(synth.vocoder_config.audio["hop_length"])
    pad = int(getattr(synth.vocoder_model.model_g, "inference_padding", 0))
    batch = torch.from_numpy(np.ascontiguousarray(mel.T[None], dtype=np.float32))
    with torch.inference_mode():
        wave = vocode_batch(synth, batch, [mel.shape[1]])[0]
    return wave[pad * hop : (pad + mel.shape[1]) * hop]  # the item's own edge padding


@dataclass
class Pipeline:
    """Everything a worker process needs to turn (member, text) into a stored WAV."""

    bank: VoiceBank
    storage: LocalStorage | GCSStorage
    normalizer: Normalizer
    secret: MediaSecret
    """What object names are keyed with (the API's, so both name an object alike)."""
    sentence_pause: float = 0.25
    legacy_names: bool = False
    """``MOKSORI_MEDIA_LEGACY_NAMES``: an object found under its unkeyed name is adopted."""
    reloader: VoiceReloader | None = None
    """Loads new voice versions; asked at once for a version newer than this process holds."""

    def voice(self, member_id: int, version: str | None = None) -> LoadedVoice:
        """Member ``member_id``'s voice at ``version`` (None: the current one).

        A version this process holds (current or kept) is used as is; one it does not hold
        yet makes the reloader look at the repository now (the API saw it first). A version
        that failed to load here is served by the current one (logged; the result names the
        version used); one that is no longer loaded fails the job, saying so."""
        voice = self.bank.voices.get(member_id)
        if voice is None:
            reason = self.bank.errors.get(f"member {member_id}")
            detail = f" (it failed to load: {reason})" if reason else ""
            raise SynthesisError(
                f"No voice for member {member_id} is loaded on this worker{detail}."
            )
        if version is None or version == voice.spec.version:
            return voice
        held = self.bank.held(member_id, version)
        if held is None and self.reloader is not None:
            self.reloader.check()
            held = self.bank.held(member_id, version)
        if held is not None:
            return held
        voice = self.bank.voices[member_id]
        failed = self.bank.failed.get(member_id)
        if failed is not None and failed[0].version == version:
            _LOGGER.warning(
                "member %s: version %s failed to load here (%s); version %s serves the job",
                member_id,
                version,
                failed[1],
                voice.spec.version,
            )
            return voice
        raise SynthesisError(
            f"Version {version} of member {member_id}'s voice is no longer loaded (this worker "
            f"serves version {voice.spec.version}); send the text again for the current version."
        )

    def run(
        self,
        member_id: int,
        text: str,
        fmt: str = DEFAULT_FORMAT,
        speed: float = DEFAULT_SPEED,
        version: str | None = None,
    ) -> SynthesisResult:
        """Normalize, synthesize (at ``speed``, on the pinned ``version`` if given), encode (as
        ``fmt``) and store; returns the object's key and URL.

        A key already stored (a duplicate delivery, or a twin job that slipped past the API's
        coalescing) is returned without synthesizing again."""
        started = time.perf_counter()
        job = SpeechJob(member_id, text, fmt, speed, version)
        voice, key, done = self.lookup(job)
        if done is not None:
            return done
        model_started = time.perf_counter()
        sentences = normalize(self.normalizer, text, voice)
        return self.render(voice, key, job, sentences, started, model_started)

    def render(
        self,
        voice: LoadedVoice,
        key: str,
        job: SpeechJob,
        sentences: list[str],
        started: float,
        model_started: float | None = None,
    ) -> SynthesisResult:
        """Normalized ``sentences`` synthesized in one go, encoded and stored under ``key``;
        the model's time counts from ``model_started`` (when normalizing began) if given."""
        model_started = model_started or time.perf_counter()
        with speaking_rate(voice, job.speed):
            samples = synthesize(voice, sentences, self.sentence_pause)
        return self._store(voice, key, job.fmt, len(sentences), samples, model_started, started)

    def run_batch(self, jobs: list[tuple[Any, ...]]) -> list[SynthesisResult | Exception]:
        """Several jobs at once (dynamic batching): per voice version and speed, every sentence
        of every job that is not already stored goes through one :func:`synthesize_batch` call
        (each job then encoded in its own format). ``jobs`` are :class:`SpeechJob` fields. A
        job's failure is returned in its place and never fails the others."""
        started = time.perf_counter()
        outcomes: list[SynthesisResult | Exception | None] = [None] * len(jobs)
        todo: dict[tuple[int, str, float], list[tuple[int, LoadedVoice, str, str, list[str]]]] = {}
        for index, fields in enumerate(jobs):
            try:
                job = SpeechJob(*fields)
                voice, key, done = self.lookup(job)
                if done is not None:
                    outcomes[index] = done
                    continue
                sentences = normalize(self.normalizer, job.text, voice)
            except Exception as exc:  # reported as this job's own failure
                outcomes[index] = exc
                continue
            group = todo.setdefault((job.member_id, voice.spec.version, job.speed), [])
            group.append((index, voice, key, job.fmt, sentences))
        for (_, _, speed), member_jobs in todo.items():
            voice = member_jobs[0][1]
            model_started = time.perf_counter()
            flat = [sentence for *_, sentences in member_jobs for sentence in sentences]
            try:
                with speaking_rate(voice, speed):
                    waves = synthesize_batch(voice, flat)
            except SynthesisError as exc:
                for index, *_ in member_jobs:
                    outcomes[index] = exc
                continue
            metrics.batched(voice.spec.member_id, len(member_jobs))
            _LOGGER.info(
                "member %s: batch of %d job(s), %d sentence(s) in one model call",
                voice.spec.member_id,
                len(member_jobs),
                len(flat),
            )
            for index, _, key, fmt, sentences in member_jobs:
                pieces, waves = waves[: len(sentences)], waves[len(sentences) :]
                samples = join_waves(pieces, self.sentence_pause, voice.sample_rate)
                try:
                    outcomes[index] = self._store(
                        voice, key, fmt, len(sentences), samples, model_started, started
                    )
                except Exception as exc:  # storage failed for this job only
                    outcomes[index] = exc
        return [o if o is not None else SynthesisError("The job was not run.") for o in outcomes]

    def sentence_key(self, voice: LoadedVoice, text: str, speed: float) -> str:
        """The object of one sentence of a text: named as a text of that sentence alone would
        be, as a WAV at the job's speed, so either finds the other stored."""
        return speech_key(
            voice.spec.member_id,
            voice.spec.version,
            text,
            self.sentence_pause,
            DEFAULT_FORMAT,
            speed,
            secret=self.secret,
        )

    def lookup(self, job: SpeechJob) -> tuple[LoadedVoice, str, SynthesisResult | None]:
        """The voice, the object key, and the result already stored under it, if any.

        A stored WAV counts only when its header reads (its duration); other formats carry no
        header the storage reads, and count when the object exists (uploads are atomic)."""
        if job.fmt not in FORMATS:
            raise SynthesisError(f"Unknown output format {job.fmt!r}.")
        voice = self.voice(job.member_id, job.version)
        identity = (
            job.member_id,
            voice.spec.version,
            job.text,
            self.sentence_pause,
            job.fmt,
            job.speed,
        )
        key = speech_key(*identity, secret=self.secret)
        legacy = speech_key(*identity, secret=None) if self.legacy_names else None
        stored = adopt(self.storage, key, legacy)
        if stored is not None and (stored.duration_s is not None or job.fmt != DEFAULT_FORMAT):
            _LOGGER.info("member %s: %s already stored, not synthesized again", job.member_id, key)
            return voice, key, self._result(voice, key, stored.duration_s, 0.0)
        return voice, key, None

    def store_wav(self, voice: LoadedVoice, key: str, pcm: np.ndarray, model_s: float) -> None:
        """One sentence's PCM stored as a WAV object (counted as synthesized audio)."""
        duration = pcm.size / voice.sample_rate
        data = wav_bytes(pcm, voice.sample_rate)
        self.storage.put(key, data, FORMATS[DEFAULT_FORMAT].content_type, round(duration, 3))
        metrics.synthesized(voice.spec.member_id, model_s, duration)

    def put(
        self,
        voice: LoadedVoice,
        key: str,
        fmt: str,
        data: bytes,
        duration: float,
        model_s: float,
        started: float,
    ) -> SynthesisResult:
        """A text's encoded audio, made from sentences already counted, stored under ``key``;
        ``model_s`` is what making its sentences took here."""
        self.storage.put(key, data, FORMATS[fmt].content_type, round(duration, 3))
        elapsed = time.perf_counter() - started
        _LOGGER.info(
            "member %s: %.2f s of audio assembled in %.2f s (RTF %.3f) -> %s",
            voice.spec.member_id,
            duration,
            elapsed,
            elapsed / duration if duration else 0.0,
            key,
        )
        return self._result(voice, key, duration, model_s, elapsed)

    def _store(
        self,
        voice: LoadedVoice,
        key: str,
        fmt: str,
        sentence_count: int,
        samples: np.ndarray,
        model_started: float,
        started: float,
    ) -> SynthesisResult:
        """Encode and store one job's audio; log and return its result."""
        model_s = time.perf_counter() - model_started
        data, _rate = encode_audio(samples, voice.sample_rate, fmt)
        duration = samples.size / voice.sample_rate
        self.storage.put(key, data, FORMATS[fmt].content_type, round(duration, 3))
        metrics.synthesized(voice.spec.member_id, model_s, duration)
        elapsed = time.perf_counter() - started
        _LOGGER.info(
            "member %s: %d sentence(s), %.2f s of audio in %.2f s (RTF %.3f) -> %s",
            voice.spec.member_id,
            sentence_count,
            duration,
            elapsed,
            elapsed / duration if duration else 0.0,
            key,
        )
        return self._result(voice, key, duration, model_s, elapsed)

    def _result(
        self,
        voice: LoadedVoice,
        key: str,
        duration_s: float | None,
        model_s: float,
        pipeline_s: float = 0.0,
    ) -> SynthesisResult:
        return SynthesisResult(
            key=key,
            url=self.storage.location(key),  # clients get a URL made when they ask
            duration_s=None if duration_s is None else round(duration_s, 3),
            sample_rate=voice.sample_rate,
            member_id=voice.spec.member_id,
            voice_version=voice.spec.version,
            synthesis_s=round(model_s, 4),
            pipeline_s=round(pipeline_s, 4),
        )
