"""A text of several sentences, made sentence by sentence so that its first sentence can be
heard while the rest are made, other worker processes help, and every sentence is cached.

``plan()`` -> (``hand_out()``, then per sentence: claim -> ``make_sentence()``) -> ``assemble()``

Each sentence is an object of its own, named exactly as a text of that one sentence would be
(:func:`common.jobs.speech_key`, as a WAV at the job's speed): a later text containing it, or a
client sending it alone, finds it stored. The job that leads the text makes its sentences in
order, skipping the ones stored or claimed by another process (:mod:`worker.claims`), and hands
the others out as ``moksori.sentence`` tasks on the member's queue for idle processes to take,
longest first, so that what is left at the end is short and the processes run out of work
together.
It reports which sentences are ready after each one (the job's STARTED record, which the API
streams from), then joins them with the voice's pause into the text's own object.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from common.audio_formats import DEFAULT_FORMAT
from common.encoding import encode_audio, pcm16, read_wav, wav_bytes
from common.jobs import UNSPEAKABLE, UNSPEAKABLE_CODE, Progress, SynthesisError, SynthesisResult
from common.normalize import split_sentences
from worker.claims import Claims, LocalClaims
from worker.synthesis import Pipeline, SpeechJob, speaking_rate, synthesize
from worker.voices import LoadedVoice

_LOGGER = logging.getLogger(__name__)

WAIT_STEP_S = 0.2
"""The longest a job waiting for a sentence another process is making goes without looking
again: a helper it handed the sentence to wakes it at once (:attr:`Hooks.wait`), another job
holding the same sentence does not."""


@dataclass(frozen=True)
class Sentence:
    """One sentence of a text: where it is in the text, as written, as spoken, and its object."""

    index: int
    text: str
    spoken: str
    key: str


@dataclass
class Hooks:
    """What the leading job is given by its task: claims, and how to report and hand out."""

    claims: Claims = field(default_factory=LocalClaims)
    report: Callable[[Progress], None] = lambda progress: None
    """Called with the sentences ready so far after each one is found or made."""
    hand_out: Callable[[list[Sentence]], None] = lambda sentences: None
    """Asks other processes to make these sentences (only called when claims are shared)."""
    wait: Callable[[float], None] = time.sleep
    """Waits at most this many seconds for a process this job handed a sentence to (its
    announcement ends the wait)."""


def plan(pipeline: Pipeline, voice: LoadedVoice, job: SpeechJob) -> list[Sentence]:
    """Stage 1: the text's sentences, each normalized on its own; the ones with nothing this
    voice can say are left out. Empty: the text has nothing to say."""
    sentences: list[Sentence] = []
    for text in split_sentences(job.text):
        spoken = pipeline.normalizer.sentences(text, voice.spec.characters)
        if spoken:  # a piece is split no further, so it reads as one sentence
            key = pipeline.sentence_key(voice, text, job.speed)
            sentences.append(Sentence(len(sentences), text, " ".join(spoken), key))
    return sentences


def speak(pipeline: Pipeline, job: SpeechJob, hooks: Hooks) -> SynthesisResult:
    """A job, whole: its stored object if there is one, one synthesis for a text of one
    sentence, else the sentences as described above, then the text's object."""
    started = time.perf_counter()
    voice, key, done = pipeline.lookup(job)
    if done is not None:
        return done
    model_started = time.perf_counter()  # the model's time includes normalizing
    sentences = plan(pipeline, voice, job)
    if not sentences:
        raise SynthesisError(UNSPEAKABLE, UNSPEAKABLE_CODE)
    if len(sentences) == 1:
        return pipeline.render(voice, key, job, [sentences[0].spoken], started, model_started)
    pcm = make_all(pipeline, voice, job, sentences, hooks)
    model_s = time.perf_counter() - model_started
    return assemble(pipeline, voice, key, job, sentences, pcm, model_s, started)


def make_all(
    pipeline: Pipeline, voice: LoadedVoice, job: SpeechJob, sentences: list[Sentence], hooks: Hooks
) -> list[np.ndarray | None]:
    """Stage 2: every sentence stored, in order where this job makes them; returns the PCM of
    the ones made here (None for the ones found stored, read back when assembled)."""
    total = len(sentences)
    ready: list[str | None] = [None] * total
    pcm: list[np.ndarray | None] = [None] * total

    def report() -> None:
        hooks.report(Progress(member_id=voice.spec.member_id, total=total, ready=list(ready)))

    for sentence in sentences:
        if pipeline.storage.lookup(sentence.key) is not None:
            ready[sentence.index] = sentence.key
    report()
    missing = [s for s in sentences if ready[s.index] is None]
    if hooks.claims.shared and len(missing) > 1:
        # The first one is this job's to make right away; the others go out longest first.
        hooks.hand_out(sorted(missing[1:], key=lambda s: -len(s.spoken)))
    while missing:
        progressed = False
        for sentence in missing:
            with hooks.claims.holding(sentence.key) as mine:
                if not mine:
                    continue  # another process is making it; look at the next one
                # Looked up only once claimed: whoever held it before may have stored it.
                if pipeline.storage.lookup(sentence.key) is None:
                    try:
                        pcm[sentence.index] = make_sentence(pipeline, voice, sentence, job.speed)
                    except SynthesisError as exc:
                        raise SynthesisError(
                            f"Sentence {sentence.index + 1} of {total} failed: {exc.message}",
                            exc.code,
                        ) from exc
            ready[sentence.index] = sentence.key
            report()
            progressed = True
            break  # start again from the first missing sentence: order first
        missing = [s for s in missing if ready[s.index] is None]
        if missing and not progressed:
            hooks.wait(WAIT_STEP_S)  # all claimed by others: wait for one to be released
    return pcm


def make_sentence(
    pipeline: Pipeline, voice: LoadedVoice, sentence: Sentence, speed: float
) -> np.ndarray:
    """One sentence synthesized and stored as a WAV object; returns its 16-bit PCM."""
    started = time.perf_counter()
    with speaking_rate(voice, speed):
        samples = synthesize(voice, [sentence.spoken], 0.0)
    pcm = pcm16(samples)
    duration = pcm.size / voice.sample_rate
    pipeline.store_wav(voice, sentence.key, pcm, time.perf_counter() - started)
    _LOGGER.info(
        "member %s: sentence %d (%.2f s of audio) made in %.2f s -> %s",
        voice.spec.member_id,
        sentence.index + 1,
        duration,
        time.perf_counter() - started,
        sentence.key,
    )
    return pcm


def read_pcm(pipeline: Pipeline, key: str) -> np.ndarray:
    """A stored sentence's 16-bit PCM; SynthesisError when it is gone or unreadable."""
    data = pipeline.storage.read(key)
    if data is None:
        raise SynthesisError("A sentence's audio vanished from storage while its text was made.")
    try:
        return read_wav(data)[1]
    except ValueError as exc:
        raise SynthesisError(f"A sentence's stored audio is unreadable: {exc}") from exc


def assemble(
    pipeline: Pipeline,
    voice: LoadedVoice,
    key: str,
    job: SpeechJob,
    sentences: list[Sentence],
    pcm: list[np.ndarray | None],
    model_s: float,
    started: float,
) -> SynthesisResult:
    """Stage 3: the sentences joined by the voice's pause, encoded as the job asks and stored
    under the text's key. A WAV is the sentences' samples as they are (what a stream of the job
    sent); other formats are encoded from them."""
    pause = np.zeros(round(pipeline.sentence_pause * voice.sample_rate), dtype="<i2")
    pieces: list[np.ndarray] = []
    for sentence, made in zip(sentences, pcm, strict=True):
        if pieces:
            pieces.append(pause)
        pieces.append(made if made is not None else read_pcm(pipeline, sentence.key))
    joined = np.concatenate(pieces)
    duration = joined.size / voice.sample_rate
    if job.fmt == DEFAULT_FORMAT:
        data = wav_bytes(joined, voice.sample_rate)
    else:
        data, _rate = encode_audio(joined.astype(np.float32) / 32767, voice.sample_rate, job.fmt)
    result = pipeline.put(voice, key, job.fmt, data, duration, model_s, started)
    result["sentences"] = [s.key for s in sentences]
    return result
