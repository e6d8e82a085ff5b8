"""The worker's Prometheus metrics, served on ``MOKSORI_WORKER_METRICS_PORT`` (0: off).

Jobs run in Celery's pool processes; each writes its samples to the worker's metrics directory
(:mod:`common.metrics`) and the worker's main process, which outlives them, serves the sum of
them all. The main process prepares that directory before it forks the pool (``worker_init``)
and starts the HTTP server once it consumes (``worker_ready``); a pool process that exits is
marked dead (``worker_process_shutdown``).

The metric objects are made on first use, in the pool process, so prometheus-client is first
imported after the directory exists (it picks multiprocess mode at import).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from celery.signals import (
    task_failure,
    task_retry,
    task_success,
    worker_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

from common import metrics
from common.config import process_settings
from common.jobs import TASK_NAME

if TYPE_CHECKING:  # the real import waits until the metrics directory is set
    from prometheus_client import Counter, Gauge, Histogram

_LOGGER = logging.getLogger(__name__)

OTHER_MEMBER = "other"
"""The member label of a job for a member this worker does not serve (bounded cardinality)."""

SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
RTF_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


@dataclass(frozen=True)
class WorkerMetrics:
    """The worker's metric objects (one set per process)."""

    jobs: Counter
    synthesis_seconds: Histogram
    real_time_factor: Histogram
    audio_seconds: Counter
    voice_load_seconds: Gauge
    voices_loaded: Gauge
    batch_size: Histogram


@functools.cache
def recorder() -> WorkerMetrics:
    """This process's metrics, made on first use (after :func:`_prepare` in a worker)."""
    from prometheus_client import Counter, Gauge, Histogram

    return WorkerMetrics(
        jobs=Counter(
            "moksori_worker_jobs",
            "Synthesis jobs ended, by member and outcome (done, failed, retried).",
            ["member", "outcome"],
        ),
        synthesis_seconds=Histogram(
            "moksori_worker_synthesis_seconds",
            "Model time of one synthesis (text to waveform: a job, or one sentence of a text of "
            "several), by member.",
            ["member"],
            buckets=SECONDS_BUCKETS,
        ),
        real_time_factor=Histogram(
            "moksori_worker_real_time_factor",
            "Synthesis seconds per second of audio produced, by member (below 1: faster than "
            "real time).",
            ["member"],
            buckets=RTF_BUCKETS,
        ),
        audio_seconds=Counter(
            "moksori_worker_audio_seconds",
            "Seconds of audio synthesized, by member.",
            ["member"],
        ),
        voice_load_seconds=Gauge(
            "moksori_worker_voice_load_seconds",
            "Seconds the latest load of a voice took (with its warm-up), by member and version.",
            ["member", "version"],
            multiprocess_mode="mostrecent",
        ),
        voices_loaded=Gauge(
            "moksori_worker_voices_loaded",
            "Live pool processes holding a member's voice (0: it failed to load, or is loading).",
            ["member"],
            multiprocess_mode="livesum",
        ),
        batch_size=Histogram(
            "moksori_worker_batch_size",
            "Jobs per model call with dynamic batching (MOKSORI_BATCH_SIZE > 1), by member.",
            ["member"],
            buckets=BATCH_BUCKETS,
        ),
    )


def synthesized(member_id: int, synthesis_s: float, audio_s: float) -> None:
    """One synthesis (a job, or a sentence of a longer text) was made: its model time,
    real-time factor and length."""
    m = recorder()
    label = str(member_id)
    m.synthesis_seconds.labels(label).observe(synthesis_s)
    m.audio_seconds.labels(label).inc(audio_s)
    if audio_s > 0:
        m.real_time_factor.labels(label).observe(synthesis_s / audio_s)


def voice_loaded(member_id: int, version: str, seconds: float) -> None:
    """This pool process holds the voice now; loading it took ``seconds``."""
    m = recorder()
    m.voice_load_seconds.labels(str(member_id), version).set(seconds)
    m.voices_loaded.labels(str(member_id)).set(1)


def voice_missing(member_id: int) -> None:
    """This pool process could not load the member's voice."""
    recorder().voices_loaded.labels(str(member_id)).set(0)


def batched(member_id: int, size: int) -> None:
    recorder().batch_size.labels(str(member_id)).observe(size)


OUTCOMES = ("done", "failed", "retried")


def job_ended(member_id: Any, outcome: str) -> None:
    """Count a job's outcome: one of :data:`OUTCOMES`."""
    recorder().jobs.labels(_member_label(member_id), outcome).inc()


_served: Mapping[int, Any] = {}


def watch(voices: Mapping[int, Any]) -> None:
    """Count jobs by member for the members in ``voices`` (the process's loaded voices, kept
    current as versions change): anyone else's jobs count as ``other``. Each member's job
    counts start at 0 here, so their series exist before the first job ends."""
    global _served
    _served = voices
    jobs = recorder().jobs
    for member in list(voices):
        for outcome in OUTCOMES:
            jobs.labels(str(member), outcome)


def _member_label(member_id: Any) -> str:
    """The member as a label, when this worker serves it; else ``other`` (a job's member comes
    from the broker message and must not make new series)."""
    try:
        member = int(member_id)
    except (TypeError, ValueError):
        return OTHER_MEMBER
    return str(member) if member in _served else OTHER_MEMBER


def _ours(sender: Any) -> bool:
    return getattr(sender, "name", None) == TASK_NAME


def _on_success(sender: Any = None, result: Any = None, **_: Any) -> None:
    if _ours(sender):
        job_ended(result.get("member_id") if isinstance(result, dict) else None, "done")


def _on_failure(sender: Any = None, kwargs: Any = None, **_: Any) -> None:
    if _ours(sender):
        job_ended((kwargs or {}).get("member_id"), "failed")


def _on_retry(sender: Any = None, request: Any = None, **_: Any) -> None:
    if _ours(sender):
        job_ended((getattr(request, "kwargs", None) or {}).get("member_id"), "retried")


# The main process's side: the directory, the server, the cleanup.

_state: dict[str, Any] = {}


def _prepare(**_: Any) -> None:
    """Before the pool forks: make and empty the metrics directory (when the server is on)."""
    if process_settings().worker_metrics_port <= 0:
        return
    path, owned = metrics.prepare_dir("worker")
    _state.update(dir=path, owned=owned)


def _serve(**_: Any) -> None:
    """Serve the sum of every pool process's samples on the metrics port."""
    settings = process_settings()
    if settings.worker_metrics_port <= 0 or "dir" not in _state:
        return
    from prometheus_client import start_http_server

    host, port = settings.worker_metrics_host, settings.worker_metrics_port
    try:
        server, _thread = start_http_server(port, addr=host, registry=metrics.registry())
    except OSError as exc:  # a taken port must not stop synthesis
        _LOGGER.error("worker metrics not served: cannot listen on %s:%s (%s)", host, port, exc)
        return
    _state["server"] = server
    _LOGGER.info("worker metrics on http://%s:%s/metrics", host, port)


def _pool_process_ended(pid: int | None = None, **_: Any) -> None:
    """Sent in a pool process as it exits (recycled, or the worker stops)."""
    metrics.mark_process_dead(pid or os.getpid())


def _stop(**_: Any) -> None:
    server = _state.pop("server", None)
    if server is not None:
        server.shutdown()
        server.server_close()
    path: Path | None = _state.pop("dir", None)
    if path is not None and _state.pop("owned", False):
        metrics.remove_dir(path)


_HANDLERS = (
    (task_success, _on_success),
    (task_failure, _on_failure),
    (task_retry, _on_retry),
    (worker_init, _prepare),
    (worker_ready, _serve),
    (worker_process_shutdown, _pool_process_ended),
    (worker_shutdown, _stop),
)


def connect() -> None:
    """Hook the handlers above to Celery's signals (the worker's app module calls this)."""
    for signal, handler in _HANDLERS:
        signal.connect(handler, weak=False, dispatch_uid=f"moksori.metrics.{handler.__name__}")
