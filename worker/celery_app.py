"""The worker's Celery app: ``celery -A worker.celery_app worker``.

Importing this module configures Celery and nothing else; voices load when a worker process
starts (``worker_process_init``).
"""

from __future__ import annotations

from typing import Any

from celery.signals import worker_process_init

from common.config import Settings
from common.jobs import make_celery
from worker import runtime

app = make_celery(Settings.from_env())
app.conf.update(
    include=["worker.tasks"],
    # Loading every voice happens inside the pool's process start-up; give it time.
    worker_proc_alive_timeout=600,
)


@worker_process_init.connect
def _load_voices(**_: Any) -> None:
    runtime.start(Settings.from_env())
