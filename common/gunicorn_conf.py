"""gunicorn settings for the API (``gunicorn --config python:common.gunicorn_conf``): the hooks
that keep ``/metrics`` right across gunicorn's worker processes.

The master reads this file before it forks any worker, so the metrics directory is made and
emptied here (:func:`common.metrics.prepare_dir`) and every worker inherits
``PROMETHEUS_MULTIPROC_DIR``; a worker that exits is marked dead, and a directory made here is
removed when gunicorn stops. It lives outside the ``api`` package because importing that
package imports prometheus-client, which must come after the directory is set.
"""

from __future__ import annotations

from typing import Any

from common import metrics

_DIR, _OWNED = metrics.prepare_dir("api")


def child_exit(server: Any, worker: Any) -> None:
    """A worker process ended (gunicorn restarts it): drop its live gauges."""
    metrics.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    if _OWNED:
        metrics.remove_dir(_DIR)
