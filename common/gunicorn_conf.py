"""gunicorn settings for the API (``gunicorn --config python:common.gunicorn_conf``), the one
place they are made: the worker class, processes and threads, the logger, and the hooks that
keep ``/metrics`` right across gunicorn's worker processes.

The worker class is :class:`common.gunicorn_worker.GuardedThreadWorker`: gunicorn's threaded
worker that reads each request in its event loop under ``MOKSORI_REQUEST_READ_TIMEOUT`` and
serves ``/healthz`` and ``/readyz`` on threads of their own, so no client can starve the
probes (docs/operations.md says why this and not an async worker).

The master reads this file before it forks any worker, so the metrics directory is made and
emptied here (:func:`common.metrics.prepare_dir`) and every worker inherits
``PROMETHEUS_MULTIPROC_DIR``; a worker that exits is marked dead, and a directory made here is
removed when gunicorn stops. It lives outside the ``api`` package because importing that
package imports prometheus-client, which must come after the directory is set.
"""

from __future__ import annotations

from typing import Any

from common import metrics
from common.config import process_settings

_SETTINGS = process_settings()

bind = f"{_SETTINGS.host}:{_SETTINGS.port}"
worker_class = "common.gunicorn_worker.GuardedThreadWorker"
workers = _SETTINGS.api_workers
threads = _SETTINGS.api_threads
logger_class = "common.logs.GunicornLogger"

_DIR, _OWNED = metrics.prepare_dir("api")


def child_exit(server: Any, worker: Any) -> None:
    """A worker process ended (gunicorn restarts it): drop its live gauges."""
    metrics.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    if _OWNED:
        metrics.remove_dir(_DIR)
