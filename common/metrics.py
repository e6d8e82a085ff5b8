"""Prometheus plumbing shared by the API and the worker: prometheus-client's multiprocess mode.

gunicorn runs the API in several processes and Celery runs jobs in pool processes, so each
process writes its samples to files in one directory (``PROMETHEUS_MULTIPROC_DIR``) and whoever
is scraped adds them up (:func:`exposition`). prometheus-client decides on multiprocess mode when
it is first imported, so :func:`prepare_dir` runs in the process that starts the others (the
gunicorn master, the Celery worker's main process) before they fork, and switches an already
imported prometheus-client over (the celery CLI imports Flower's plugin, and with it
prometheus-client, before the worker starts).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the real import waits until the directory is set
    from prometheus_client import CollectorRegistry

_LOGGER = logging.getLogger(__name__)

ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_dir(prefix: str) -> tuple[Path, bool]:
    """Make this process tree's metrics directory and empty it of earlier runs' files.

    ``PROMETHEUS_MULTIPROC_DIR`` names it when set (one directory per process tree: never share
    it between the API and a worker); otherwise a private temporary directory is made and the
    variable set, so the processes started from here inherit it. Returns the directory and
    whether it was made here (the caller then removes it with :func:`remove_dir` at exit)."""
    configured = os.environ.get(ENV, "").strip()
    if configured:
        path, owned = Path(configured), False
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):  # counters of processes from an earlier run
            stale.unlink(missing_ok=True)
    else:
        path, owned = Path(tempfile.mkdtemp(prefix=f"moksori-{prefix}-metrics-")), True
        os.environ[ENV] = str(path)
    values = sys.modules.get("prometheus_client.values")
    if values is not None:  # imported before the variable was set: metrics made from now on
        values.ValueClass = values.get_value_class()  # (ours are) write to the directory
    return path, owned


def remove_dir(path: Path) -> None:
    """Remove a metrics directory :func:`prepare_dir` made."""
    shutil.rmtree(path, ignore_errors=True)


def multiprocess() -> bool:
    """Whether this process writes its samples to the shared directory."""
    return bool(os.environ.get(ENV, "").strip())


def mark_process_dead(pid: int) -> None:
    """Drop a finished process's live gauges (its counters and histograms stay counted)."""
    if not multiprocess():
        return
    from prometheus_client import multiprocess as mp

    mp.mark_process_dead(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def forget_killed(path: Path) -> None:
    """Mark dead the processes whose live gauges are still on file though they are gone: one
    killed outright (SIGKILL, the OOM killer) never ran its exit hook."""
    for live in path.glob("gauge_live*_*.db"):
        pid = live.stem.rsplit("_", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            mark_process_dead(int(pid))


class _Collector:
    """Every process's samples, read from the directory at each scrape."""

    def __init__(self, path: Path) -> None:
        from prometheus_client import multiprocess as mp

        self._path = path
        self._files = mp.MultiProcessCollector(None, str(path))

    def collect(self) -> Any:
        forget_killed(self._path)
        return self._files.collect()


def registry() -> CollectorRegistry:
    """What to expose: every process's samples in multiprocess mode, else this process's."""
    from prometheus_client import REGISTRY, CollectorRegistry

    if not multiprocess():
        return REGISTRY
    collected = CollectorRegistry()
    collected.register(_Collector(Path(os.environ[ENV])))
    return collected


def exposition() -> tuple[bytes, str]:
    """The text exposition of :func:`registry`, and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return generate_latest(registry()), CONTENT_TYPE_LATEST
