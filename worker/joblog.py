"""The worker's logging: the shared setup (:mod:`common.logs`) and one line per job.

Celery's ``setup_logging`` signal hands logging to :func:`common.logs.configure` (Celery then
installs no handler of its own). While a job runs (``task_prerun`` to ``task_postrun``) every
line carries its ``job_id`` (the task id, which is the API's job id) and the ``request_id`` the
API sent in the message's headers. When it ends, one line says how it went: member, voice
version, outcome, seconds, seconds of audio and the number of characters, never the text.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import celery.apps.worker
from celery.signals import celeryd_after_setup, setup_logging, task_postrun, task_prerun
from celery.utils.log import LoggingProxy, get_multiprocessing_logger

from common import logs
from common.config import process_settings
from common.jobs import REQUEST_ID_HEADER, SENTENCE_TASK_NAME, SynthesisResult, job_status

_LOGGER = logging.getLogger(__name__)
JOB_LOGGER = logging.getLogger("worker.job")
"""One line per job, and nothing else."""

# Per task id (a pool process runs one job at a time; a dict keeps it right with threads too).
_RUNNING: dict[str, tuple[float, dict[str, Any]]] = {}


def configure_early() -> None:
    """The same format for what is logged while the app module is imported (the voice scan)
    and warnings Celery gives before its ``setup_logging``; skipped when something else (a
    test runner) already handles the root logger."""
    if not logging.getLogger().handlers:
        logs.configure(process_settings(), "worker")


@setup_logging.connect
def _configure(**_: Any) -> None:
    """The shared setup, plus what Celery does only when it configures logging itself: the
    pool's own logger (billiard's ``multiprocessing``: "Process ... exited with ...") and
    stray writes to stdout and stderr (tracebacks Python prints for a thread or a pool process
    that raised, a library's print) go through the same handler, so in JSON every line parses.
    The handler writes to the real stderr (``sys.__stderr__``), never to the redirection."""
    settings = process_settings()
    logs.configure(settings, "worker", stream=sys.__stderr__)
    pool_logger = get_multiprocessing_logger()
    pool_logger.propagate = True  # billiard sets False; with no handler it printed plain text
    pool_logger.setLevel(logging.ERROR)  # its errors only, as Celery's own setup has it
    if settings.log_format == "json":
        proxy = LoggingProxy(logging.getLogger("celery.redirected"), logging.WARNING)
        sys.stdout = sys.stderr = proxy  # type: ignore[assignment]


def _json_say(msg: str, f: Any = sys.__stderr__) -> None:
    """Celery's ``safe_say`` (its shutdown notices, written from signal handlers, where
    logging's locks are unsafe), writing one JSON line instead of free text."""
    line = json.dumps(
        {
            "level": "INFO",
            "logger": "celery.apps.worker",
            "message": msg,
            "service": "worker",
            "time": datetime.now(UTC).isoformat(),
        },
        ensure_ascii=False,
    )
    # Best effort, as Celery's own: a lost notice must not break a shutdown.
    with contextlib.suppress(OSError, ValueError, AttributeError):
        os.write(f.fileno(), f"{line}\n".encode())


@celeryd_after_setup.connect
def _quiet_banner(sender: str, instance: Any, **_: Any) -> None:
    """Celery prints a multi-line banner and its shutdown notices straight to stdout; in JSON
    they would be the only lines that are not JSON, so the banner's facts are logged as one
    line and the notices written as JSON."""
    if process_settings().log_format != "json":
        return
    instance.quiet = True
    if callable(getattr(celery.apps.worker, "safe_say", None)):
        celery.apps.worker.safe_say = _json_say
    queues = sorted(q.name for q in instance.app.amqp.queues.consume_from.values())
    _LOGGER.info(
        "celery worker %s starting: concurrency %s, queues %s",
        sender,
        instance.concurrency,
        ", ".join(queues),
    )


def request_id(task: Any) -> str | None:
    """The API request id the job's message carries, if any."""
    value = getattr(task.request, REQUEST_ID_HEADER, None)
    return value if isinstance(value, str) else None


def _sentence(task: Any) -> bool:
    return getattr(task, "name", None) == SENTENCE_TASK_NAME


@task_prerun.connect
def _job_started(task_id: str, task: Any, kwargs: dict[str, Any] | None = None, **_: Any) -> None:
    # A sentence handed out by a job logs under that job's id: one id follows a whole text.
    job_id = (kwargs or {}).get("job_id") if _sentence(task) else task_id
    tokens = logs.bind(job_id=job_id or task_id, request_id=request_id(task))
    _RUNNING[task_id] = (time.perf_counter(), tokens)


@task_postrun.connect
def _job_ended(
    task_id: str,
    task: Any,
    kwargs: dict[str, Any] | None = None,
    retval: Any = None,
    state: str | None = None,
    **_: Any,
) -> None:
    started, tokens = _RUNNING.pop(task_id, (None, {}))
    try:
        JOB_LOGGER.info(
            "sentence %s" if _sentence(task) else "job %s",
            job_outcome(state),
            extra=job_fields(kwargs or {}, retval, state, started),
        )
    finally:
        logs.unbind(tokens)


def job_outcome(state: str | None) -> str:
    """``done``, ``failed`` or ``retry`` (the job goes on later), from the task's end state."""
    if state == "RETRY":
        return "retry"
    return job_status(state or "") or (state or "unknown").lower()


def job_fields(
    kwargs: dict[str, Any], retval: Any, state: str | None, started: float | None
) -> dict[str, Any]:
    """The job line's fields; the text is counted, never copied."""
    text = kwargs.get("text")
    member = kwargs.get("member_id")
    fields: dict[str, Any] = {
        "member_id": member if isinstance(member, int) and not isinstance(member, bool) else None,
        "voice_version": None,
        "outcome": job_outcome(state),
        "seconds": round(time.perf_counter() - started, 3) if started is not None else None,
        "audio_s": None,
        "characters": len(text) if isinstance(text, str) else None,
    }
    if state == "SUCCESS" and isinstance(retval, dict):
        result: SynthesisResult = retval  # type: ignore[assignment]
        fields["voice_version"] = result.get("voice_version")
        fields["audio_s"] = result.get("duration_s")
    elif fields["member_id"] is not None:
        fields["voice_version"] = _loaded_version(fields["member_id"])
    return fields


_voices: Mapping[int, Any] = {}


def watch(voices: Mapping[int, Any]) -> None:
    """Name the voice version in a failed job's line from ``voices`` (the process's loaded
    voices, :class:`worker.voices.LoadedVoice` by member)."""
    global _voices
    _voices = voices


def _loaded_version(member_id: int) -> str | None:
    """The version of the member's voice this process holds, when it holds one."""
    voice = _voices.get(member_id)
    return voice.spec.version if voice is not None else None
