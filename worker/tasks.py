"""The one Celery task. Like a web view, it only unpacks arguments, retries and reports:
the work lives in :mod:`worker.synthesis`."""

from __future__ import annotations

from celery import shared_task

from common.jobs import TASK_NAME, SynthesisResult
from common.storage import StorageError
from worker import runtime


@shared_task(
    name=TASK_NAME,
    autoretry_for=(StorageError,),
    retry_backoff=1,
    retry_backoff_max=30,
    retry_jitter=True,
    max_retries=4,
)
def synthesize(
    member_id: int, text: str, uuid: str | None = None, created_at: str | None = None
) -> SynthesisResult:
    """Synthesize ``text`` in member ``member_id``'s voice, store the WAV, return its key and URL.

    The arguments are :class:`common.jobs.JobMessage`; ``uuid`` and ``created_at`` are the
    client's own bookkeeping and never become part of a file name.
    """
    return runtime.current().run(int(member_id), text)
