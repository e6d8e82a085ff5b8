"""The worker's Celery app: ``celery -A worker.celery_app worker``.

Importing this module configures Celery and nothing else; voices load when a worker process
starts (``worker_process_init``). The worker consumes one durable queue per member it serves
(``MOKSORI_MEMBERS``, default every voice in the repository), so a fleet can split voices across
machines and the API can tell when nobody serves a member.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from typing import Any

from celery import bootsteps
from celery.signals import (
    celeryd_after_setup,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_init,
)
from kombu.exceptions import KombuError

from common.config import process_settings
from common.jobs import make_celery, member_queue, queue_declaration
from worker import backend, joblog, metrics, runtime

_LOGGER = logging.getLogger(__name__)

joblog.configure_early()
_SETTINGS = process_settings()
SERVED_MEMBERS = sorted(runtime.served_repository(_SETTINGS).voices)

app = make_celery(_SETTINGS, redis_backend=backend.CLASS_PATH)
app.conf.update(
    include=["worker.tasks"],
    # Loading every voice happens inside the pool's process start-up; give it time.
    worker_proc_alive_timeout=600,
    # With no voice to serve, consume the bare prefix queue (nothing is routed there) so the
    # worker still starts, reports its errors and answers `celery inspect`.
    task_queues=[
        queue_declaration(member_queue(_SETTINGS.queue, m), _SETTINGS.queue_type)
        for m in SERVED_MEMBERS
    ]
    or [queue_declaration(_SETTINGS.queue, _SETTINGS.queue_type)],
)


# Set by the pool process once its voices are loaded (or failed to load); the worker's main
# process starts consuming only then. Created before the pool forks, so both share it.
_voices_loaded: Any = None


@celeryd_after_setup.connect
def _note_pool_size(instance: Any = None, **_: Any) -> None:
    # Before the pool forks: its processes inherit it (a job asks whether anyone can help).
    runtime.set_pool_size(getattr(instance, "concurrency", 1) or 1)


@worker_init.connect
def _prepare_ready_flag(**_: Any) -> None:
    global _voices_loaded
    _voices_loaded = multiprocessing.get_context("fork").Event()


class WaitForVoices(bootsteps.StartStopStep):
    """Start consuming only once the pool process has loaded the voices.

    Without it, a starting worker takes a job from the queue at once and holds it, unacked,
    for as long as loading takes (seconds for small voices, minutes for many big ones): a job
    another, ready worker could have run, and one that RabbitMQ's consumer_timeout may expire.
    Until then the worker does not count as serving its members (the API answers 503)."""

    requires = ("celery.worker.components:Pool",)

    def start(self, worker: Any) -> None:
        flag = _voices_loaded
        if flag is None:  # worker_init did not run (not a worker process)
            return
        processes = list(getattr(getattr(worker.pool, "_pool", None), "_pool", None) or [])
        timeout = float(app.conf.worker_proc_alive_timeout)
        deadline = time.monotonic() + timeout
        while not flag.wait(1.0):
            if processes and all(p.exitcode is not None for p in processes):
                _LOGGER.error("the pool process died while loading voices")
                return  # Celery replaces it; consume, so jobs are not stuck behind a dead pool
            if time.monotonic() > deadline:
                _LOGGER.error("voices still loading after %.0f s; consuming anyway", timeout)
                return


app.steps["worker"].add(WaitForVoices)
metrics.connect()  # the metrics directory, server and job counts (MOKSORI_WORKER_METRICS_PORT)


@task_prerun.connect
def _job_started(task: Any = None, **_: Any) -> None:
    # The wait budget for result-backend outages starts with the job's time limits.
    backend.job_started(
        getattr(task, "soft_time_limit", None) or app.conf.task_soft_time_limit,
        getattr(task, "time_limit", None) or app.conf.task_time_limit,
    )


@task_postrun.connect
def _job_ended(**_: Any) -> None:
    backend.job_ended()


@worker_process_init.connect
def _load_voices(sender: Any = None, **_: Any) -> None:
    try:
        pipeline = runtime.start(process_settings())
    finally:
        if _voices_loaded is not None:
            _voices_loaded.set()
    metrics.watch(pipeline.bank.voices)
    joblog.watch(pipeline.bank.voices)
    failed = [m for m in SERVED_MEMBERS if m not in pipeline.bank.voices]
    if failed and isinstance(sender, str):
        # Stop taking jobs for voices this process could not load, so another worker (or a
        # 503 from the API) answers them instead of this one failing each.
        queues = [member_queue(_SETTINGS.queue, m) for m in failed]
        threading.Thread(
            target=_cancel_consumers, args=(sender, queues), name="cancel-consumers", daemon=True
        ).start()


def _cancel_consumers(hostname: str, queues: list[str], attempts: int = 60) -> None:
    """Ask our own worker to stop consuming ``queues``; it only listens for control commands
    once the pool (loading voices right now) has started, so retry until it replies."""
    for queue in queues:
        for _ in range(attempts):
            try:
                replies = app.control.cancel_consumer(
                    queue, destination=[hostname], reply=True, timeout=1.0
                )
            except (OSError, KombuError) as exc:  # broker hiccups: try again
                _LOGGER.debug("cancel_consumer %s: %s", queue, exc)
                replies = []
            if replies:
                _LOGGER.warning("stopped consuming %s: its voice did not load", queue)
                break
            time.sleep(1.0)
        else:
            _LOGGER.error("could not stop consuming %s; its jobs will fail here", queue)
