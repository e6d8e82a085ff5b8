"""Dynamic batching (``MOKSORI_BATCH_SIZE`` > 1): a job that starts also takes up to
``batch_size - 1`` jobs still waiting in its member's queue, waiting at most
``MOKSORI_BATCH_WAIT_MS`` for them (Triton's ``max_queue_delay_microseconds``), so a burst for
one voice becomes one model call (:meth:`worker.synthesis.Pipeline.run_batch`).

The extra jobs are taken with ``basic.get`` on a channel of their own and acknowledged only once
their results are stored: if the worker dies meanwhile, the broker redelivers them. A taken job
whose upload fails goes back to the queue (and is then retried like any job).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from celery import Celery
from kombu import Message

from common import logs
from common.audio_formats import DEFAULT_FORMAT, DEFAULT_SPEED, FORMATS, MAX_SPEED, MIN_SPEED
from common.jobs import REQUEST_ID_HEADER, TASK_NAME, SynthesisResult, queue_declaration
from common.storage import StorageError
from worker import metrics
from worker.joblog import JOB_LOGGER, job_fields, job_outcome

_LOGGER = logging.getLogger(__name__)
POLL_S = 0.002


@dataclass
class Taken:
    """A job taken from the queue alongside the running one."""

    task_id: str
    member_id: int
    text: str
    message: Message
    voice_version: str | None = None
    """The version the API pinned, if the message names one."""
    fmt: str = DEFAULT_FORMAT
    speed: float = DEFAULT_SPEED
    started: float = field(default_factory=time.perf_counter)

    @property
    def request_id(self) -> str | None:
        """The API request id its message carries, if any."""
        value = (self.message.headers or {}).get(REQUEST_ID_HEADER)
        return value if isinstance(value, str) else None

    @property
    def job(self) -> tuple[int, str, str, float, str | None]:
        """Its :class:`worker.synthesis.SpeechJob` fields."""
        return (self.member_id, self.text, self.fmt, self.speed, self.voice_version)


@contextmanager
def waiting_jobs(app: Celery, queue: str, limit: int, wait_s: float) -> Iterator[list[Taken]]:
    """Up to ``limit`` jobs from ``queue``, collected for at most ``wait_s``."""
    with app.pool.acquire(block=True) as conn:  # a pooled connection: no handshake per job
        conn.ensure_connection(max_retries=1)
        channel = conn.channel()
        bound = queue_declaration(queue, app.conf.task_default_queue_type)(channel)
        taken: list[Taken] = []
        deadline = time.monotonic() + wait_s
        while len(taken) < limit:
            message = bound.get(no_ack=False, accept=["json"])
            if message is None:
                if time.monotonic() >= deadline:
                    break
                time.sleep(POLL_S)
                continue
            job = _job(message)
            if job is None:  # not ours to batch: leave it to the normal consumer
                message.requeue()
                break
            taken.append(job)
        try:
            yield taken
        finally:
            for job in taken:  # anything not reported goes back to the queue
                if not job.message.acknowledged:
                    job.message.requeue()
            channel.close()


def _job(message: Message) -> Taken | None:
    headers = message.headers or {}
    if headers.get("task") != TASK_NAME or headers.get("eta") or headers.get("retries"):
        return None
    try:
        _args, kwargs, _embed = message.decode()
        version = kwargs.get("voice_version")
        fmt = kwargs.get("format", DEFAULT_FORMAT)
        speed = float(kwargs.get("speed", DEFAULT_SPEED))
        if fmt not in FORMATS or not MIN_SPEED <= speed <= MAX_SPEED:
            return None  # the task itself refuses it, with its reason
        return Taken(
            str(headers["id"]),
            int(kwargs["member_id"]),
            str(kwargs["text"]),
            message,
            None if version is None else str(version),
            fmt,
            speed,
        )
    except (KeyError, TypeError, ValueError):
        return None


def report(app: Celery, taken: list[Taken], outcomes: list[SynthesisResult | Exception]) -> None:
    """Store each taken job's result (or failure) and acknowledge it; storage trouble sends the
    job back to the queue for a later attempt. Each job gets its own job line, as a task
    does (:mod:`worker.joblog`)."""
    for job, outcome in zip(taken, outcomes, strict=True):
        with logs.bound(job_id=job.task_id, request_id=job.request_id):
            _report(app, job, outcome)


def _report(app: Celery, job: Taken, outcome: SynthesisResult | Exception) -> None:
    if isinstance(outcome, StorageError):
        _LOGGER.warning("job %s back to the queue: %s", job.task_id, outcome)
        job.message.requeue()
        metrics.job_ended(job.member_id, "retried")
        state = "RETRY"
    elif isinstance(outcome, Exception):
        app.backend.mark_as_failure(job.task_id, outcome)
        metrics.job_ended(job.member_id, "failed")
        job.message.ack()
        state = "FAILURE"
    else:
        app.backend.mark_as_done(job.task_id, dict(outcome))
        metrics.job_ended(job.member_id, "done")
        job.message.ack()
        state = "SUCCESS"
    kwargs = {"member_id": job.member_id, "text": job.text}
    JOB_LOGGER.info(
        "job %s", job_outcome(state), extra=job_fields(kwargs, outcome, state, job.started)
    )
