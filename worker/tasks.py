"""The Celery tasks: a job (``moksori.synthesize``) and one sentence of a longer text that its
job hands out (``moksori.sentence``). Like web views, they only unpack arguments, retry and
report: the work lives in :mod:`worker.synthesis` and :mod:`worker.paragraph`."""

from __future__ import annotations

import logging
from dataclasses import replace
from functools import cache
from typing import Any

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.states import STARTED
from celery.utils.time import get_exponential_backoff_interval
from kombu.exceptions import KombuError

from common.audio_formats import DEFAULT_FORMAT, DEFAULT_SPEED, FORMATS, MAX_SPEED, MIN_SPEED
from common.config import Settings, process_settings
from common.fleet import Fleet
from common.jobs import (
    REQUEST_ID_HEADER,
    SENTENCE_TASK_NAME,
    TASK_NAME,
    Progress,
    SentenceMessage,
    SynthesisError,
    SynthesisResult,
    member_queue,
)
from common.normalize import split_sentences
from common.storage import STORAGE_FULL, StorageError
from worker import batching, deliveries, joblog, paragraph, runtime
from worker.claims import Claims, open_claims
from worker.synthesis import SpeechJob

_LOGGER = logging.getLogger(__name__)

BACKOFF_MAX_S = 30


@shared_task(bind=True, name=TASK_NAME)
def synthesize(
    self: Task,
    member_id: int,
    text: str,
    uuid: str | None = None,
    created_at: str | None = None,
    voice_version: str | None = None,
    format: str = DEFAULT_FORMAT,
    speed: float = DEFAULT_SPEED,
) -> SynthesisResult:
    """Synthesize ``text`` in member ``member_id``'s voice, store the WAV, return its key and URL.

    The arguments are :class:`common.jobs.JobMessage`; ``uuid`` and ``created_at`` are the
    client's own bookkeeping and never become part of a file name. ``voice_version`` is the
    version the API pinned (absent in older messages: the current one); ``format`` and ``speed``
    (the OpenAI-compatible endpoint's) default to a WAV at the voice's own rate. Storage errors
    (a full disk, a refused write, GCS 429/5xx) are retried with exponential backoff, then fail
    the job with a plain reason and the code ``storage_full`` or ``storage_unavailable``; model
    errors fail at once.
    With dynamic batching on, jobs waiting in the same member's queue join this one
    (:mod:`worker.batching`).
    """
    settings = process_settings()
    deliveries.guard(
        self.backend,
        self.request.id,
        settings.max_deliveries,
        settings.result_expires,
        self.request.retries or 0,
    )
    if isinstance(member_id, bool) or not isinstance(member_id, int | str):
        raise SynthesisError(f"member_id must be an integer, not {type(member_id).__name__}.")
    if not isinstance(text, str):
        raise SynthesisError(f"text must be a string, not {type(text).__name__}.")
    try:
        member = int(member_id)
    except ValueError:
        raise SynthesisError(f"member_id must be an integer, not {member_id!r}.") from None
    if voice_version is not None and not isinstance(voice_version, str):
        raise SynthesisError(f"voice_version must be a string, not {type(voice_version).__name__}.")
    if format not in FORMATS:
        raise SynthesisError(f"format must be one of {', '.join(FORMATS)}, not {format!r}.")
    if (
        isinstance(speed, bool)
        or not isinstance(speed, int | float)
        or not MIN_SPEED <= speed <= MAX_SPEED
    ):
        raise SynthesisError(f"speed must be a number from {MIN_SPEED} to {MAX_SPEED}.")
    try:
        return _run(self, settings, SpeechJob(member, text, format, float(speed), voice_version))
    except StorageError as exc:
        retries = self.request.retries
        if retries >= settings.storage_retries:
            state = "full" if exc.code == STORAGE_FULL else "unavailable"
            raise SynthesisError(
                f"Storage is {state}: the audio could not be stored after {retries + 1} "
                f"attempts ({exc}).",
                exc.code,
            ) from exc
        countdown = get_exponential_backoff_interval(
            factor=1, retries=retries, maximum=BACKOFF_MAX_S, full_jitter=True
        )
        raise self.retry(
            exc=exc, countdown=countdown, max_retries=settings.storage_retries
        ) from exc


@cache
def _claims(app: Any, namespace: str) -> Claims:
    return open_claims(app.backend, namespace)


def _hooks(task: Task, settings: Settings, job: SpeechJob) -> paragraph.Hooks:
    """How a job leading a text of several sentences reports them and hands them out."""

    def report(progress: Progress) -> None:
        task.update_state(state=STARTED, meta=dict(progress))

    def hand_out(sentences: list[paragraph.Sentence]) -> None:
        pipeline = runtime.current()
        version = pipeline.voice(job.member_id, job.version).spec.version
        request_id = joblog.request_id(task)
        try:
            if not _helped(task, settings, job.member_id):
                return  # nobody else could take them: they would only cost a lookup each
            for sentence in sentences:
                message = SentenceMessage(
                    member_id=job.member_id,
                    text=sentence.text,
                    voice_version=version,
                    speed=job.speed,
                    job_id=task.request.id,
                    index=sentence.index,
                )
                task.app.send_task(
                    SENTENCE_TASK_NAME,
                    kwargs=dict(message),
                    kwargsrepr=repr({"job_id": task.request.id, "sentence": sentence.index + 1}),
                    queue=member_queue(settings.queue, job.member_id),
                    headers={REQUEST_ID_HEADER: request_id} if request_id else None,
                )
        except (KombuError, OSError) as exc:  # the job makes them itself
            _LOGGER.warning("could not hand out sentences of job %s: %s", task.request.id, exc)

    claims = _claims(task.app, settings.queue)
    return paragraph.Hooks(
        claims=claims,
        report=report,
        hand_out=hand_out,
        wait=lambda seconds: claims.wait(task.request.id, seconds),
    )


def _helped(task: Task, settings: Settings, member_id: int) -> bool:
    """Whether another process may take this member's sentences: another pool process here,
    or another worker consuming the member's queue (a broker that cannot count: assume so)."""
    if runtime.pool_size() > 1:
        return True
    consumers = _fleet(task.app, settings.queue, settings.publish_timeout).consumers(member_id)
    return consumers is None or consumers > 1


@cache
def _fleet(app: Any, queue: str, timeout_s: float) -> Fleet:
    return Fleet(app, queue, timeout_s)


def _run(task: Task, settings: Settings, job: SpeechJob) -> SynthesisResult:
    pipeline = runtime.current()
    if settings.batch_size <= 1 or len(split_sentences(job.text)) > 1:
        return paragraph.speak(pipeline, job, _hooks(task, settings, job))
    queue = member_queue(settings.queue, job.member_id)
    wait_s = settings.batch_wait_ms / 1000
    with batching.waiting_jobs(task.app, queue, settings.batch_size - 1, wait_s) as taken:
        jobs = [job, *(taken_job.job for taken_job in taken)]
        outcomes = pipeline.run_batch(jobs)
        batching.report(task.app, taken, outcomes[1:])
    mine = outcomes[0]
    if isinstance(mine, Exception):
        raise mine
    return mine


@shared_task(bind=True, name=SENTENCE_TASK_NAME, ignore_result=True)
def synthesize_sentence(
    self: Task,
    member_id: int,
    text: str,
    voice_version: str,
    speed: float,
    job_id: str = "",
    index: int = 0,
) -> None:
    """Make and store one sentence of job ``job_id``'s text, unless it is stored already or
    another process is making it (:class:`common.jobs.SentenceMessage`).

    A failure is logged and not raised: the job that handed the sentence out makes it itself
    when it gets there, and fails with the sentence's place in the text if it fails again."""
    settings = process_settings()
    deliveries.guard(
        self.backend, self.request.id, settings.max_deliveries, settings.result_expires
    )
    try:
        pipeline = runtime.current()
        voice = pipeline.voice(int(member_id), voice_version)
        sentences = paragraph.plan(pipeline, voice, SpeechJob(int(member_id), text, speed=speed))
        claims = _claims(self.app, settings.queue)
        for sentence in sentences:  # one, unless the job's worker split it differently
            sentence = replace(sentence, index=int(index) + sentence.index)
            if pipeline.storage.lookup(sentence.key) is not None:
                continue  # a duplicate delivery, or the job got there first
            mine = False
            try:
                with claims.holding(sentence.key) as mine:
                    # Looked up again once claimed: whoever held it before may have stored it.
                    if mine and pipeline.storage.lookup(sentence.key) is None:
                        paragraph.make_sentence(pipeline, voice, sentence, float(speed))
            finally:
                if mine and job_id:  # made or given up, and the claim released: look again
                    claims.announce(job_id)
    except SoftTimeLimitExceeded:
        raise
    except Exception as exc:  # the job makes it, or fails with the sentence's index
        _LOGGER.warning("a sentence of job %s was not made here: %s", job_id, exc)
