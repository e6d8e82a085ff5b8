"""The one Celery task. Like a web view, it only unpacks arguments, retries and reports:
the work lives in :mod:`worker.synthesis`."""

from __future__ import annotations

from celery import Task, shared_task
from celery.utils.time import get_exponential_backoff_interval

from common.audio_formats import DEFAULT_FORMAT, DEFAULT_SPEED, FORMATS, MAX_SPEED, MIN_SPEED
from common.config import Settings, process_settings
from common.jobs import TASK_NAME, SynthesisError, SynthesisResult, member_queue
from common.storage import STORAGE_FULL, StorageError
from worker import batching, deliveries, runtime
from worker.synthesis import SpeechJob

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


def _run(task: Task, settings: Settings, job: SpeechJob) -> SynthesisResult:
    pipeline = runtime.current()
    if settings.batch_size <= 1:
        return pipeline.run(*job)
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
