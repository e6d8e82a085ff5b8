"""The one Celery task. Like a web view, it only unpacks arguments, retries and reports:
the work lives in :mod:`worker.synthesis`."""

from __future__ import annotations

from celery import Task, shared_task

from common.jobs import TASK_NAME, SynthesisResult, member_queue
from common.storage import StorageError
from worker import batching, runtime


@shared_task(
    bind=True,
    name=TASK_NAME,
    autoretry_for=(StorageError,),
    retry_backoff=1,
    retry_backoff_max=30,
    retry_jitter=True,
    max_retries=4,
)
def synthesize(
    self: Task,
    member_id: int,
    text: str,
    uuid: str | None = None,
    created_at: str | None = None,
) -> SynthesisResult:
    """Synthesize ``text`` in member ``member_id``'s voice, store the WAV, return its key and URL.

    The arguments are :class:`common.jobs.JobMessage`; ``uuid`` and ``created_at`` are the
    client's own bookkeeping and never become part of a file name. With dynamic batching on,
    jobs waiting in the same member's queue join this one (:mod:`worker.batching`).
    """
    settings = runtime.settings()
    pipeline = runtime.current()
    if settings.batch_size <= 1:
        return pipeline.run(int(member_id), text)
    queue = member_queue(settings.queue, int(member_id))
    wait_s = settings.batch_wait_ms / 1000
    with batching.waiting_jobs(self.app, queue, settings.batch_size - 1, wait_s) as taken:
        jobs = [(int(member_id), text), *((job.member_id, job.text) for job in taken)]
        outcomes = pipeline.run_batch(jobs)
        batching.report(self.app, taken, outcomes[1:])
    mine = outcomes[0]
    if isinstance(mine, Exception):
        raise mine
    return mine
