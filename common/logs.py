"""One logging setup for the API, the worker and the launcher: JSON lines or plain text.

``MOKSORI_LOG_FORMAT=json`` (the default) writes every line as one JSON object with ``time``,
``level``, ``logger``, ``service``, ``message`` and whatever context is known: the ``job_id`` and
``request_id`` of the request or job being handled (kept in context variables, so a line logged
anywhere below a route or a task carries them) and the fields a line passes as ``extra``. The
formatting is python-json-logger's; ``text`` gives the same fields for a person at a terminal.

The user's sentence never reaches a log at INFO or above: Celery's task lines carry their
arguments in an ``extra`` field (``data``), which is dropped here, and the API sends the task
with a ``kwargsrepr`` that names the text's length only.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from gunicorn.glogging import Logger as _GunicornLogger
from pythonjsonlogger.json import JsonFormatter

from common.config import Settings, process_settings

FORMATS = ("json", "text")
CONTEXT_FIELDS = ("job_id", "request_id")
"""Fields every line carries while they are known (set with :func:`bind`)."""
EXTRA_FIELDS = (
    "method",
    "route",
    "path",
    "status",
    "duration_ms",
    "client",
    "member_id",
    "voice_version",
    "outcome",
    "seconds",
    "audio_s",
    "characters",
)
"""Fields of the request and job lines, shown by the text format too (JSON shows any extra)."""

_CONTEXT: dict[str, contextvars.ContextVar[str | None]] = {
    name: contextvars.ContextVar(f"moksori_{name}", default=None) for name in CONTEXT_FIELDS
}
_HANDLER_FLAG = "_moksori"


def bind(**values: str | None) -> dict[str, contextvars.Token[str | None]]:
    """Set context fields (``job_id``, ``request_id``) for the lines that follow in this
    thread or task; returns tokens for :func:`unbind`."""
    return {name: _CONTEXT[name].set(value) for name, value in values.items()}


def unbind(tokens: dict[str, contextvars.Token[str | None]]) -> None:
    """Restore the context fields :func:`bind` changed."""
    for name, token in tokens.items():
        _CONTEXT[name].reset(token)


@contextmanager
def bound(**values: str | None) -> Iterator[None]:
    """:func:`bind` for the duration of a ``with`` block."""
    tokens = bind(**values)
    try:
        yield
    finally:
        unbind(tokens)


def current(name: str) -> str | None:
    """The context field ``name`` (``job_id`` or ``request_id``) of the current thread or task."""
    return _CONTEXT[name].get()


class ContextFilter(logging.Filter):
    """Adds the known context fields to every record and drops Celery's ``data`` extra, which
    holds a task's arguments (the user's text) and return value, keeping only its task id as
    ``job_id`` (the worker's "received" line is written outside any job's context)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _CONTEXT.items():
            value = var.get()
            if value is not None and getattr(record, name, None) is None:
                setattr(record, name, value)
        data = getattr(record, "data", None)
        if isinstance(data, dict):
            del record.data
            if isinstance(data.get("id"), str) and getattr(record, "job_id", None) is None:
                record.job_id = data["id"]
        return True


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value ...``: the JSON line's fields, for people."""

    def __init__(self, service: str) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = [
            f"{name}={getattr(record, name)}"
            for name in (*EXTRA_FIELDS, *CONTEXT_FIELDS)
            if getattr(record, name, None) is not None
        ]
        if not fields:
            return line
        head, sep, tail = line.partition("\n")  # after the message, before any traceback
        return f"{head} {' '.join(fields)}{sep}{tail}"


def formatter(log_format: str, service: str) -> logging.Formatter:
    """The formatter for ``MOKSORI_LOG_FORMAT``."""
    if log_format == "text":
        return TextFormatter(service)
    return JsonFormatter(
        "%(levelname)s %(name)s %(message)s",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
        static_fields={"service": service},
        json_ensure_ascii=False,  # Korean stays readable; every line is still one UTF-8 line
    )


def configure(settings: Settings, service: str, stream: Any = None) -> logging.Handler:
    """Send every logger's lines, in ``settings.log_format``, to ``stream`` (stderr).

    Replaces the handler an earlier call installed (gunicorn's master configures before it
    forks, each worker again when it loads the app), leaving other handlers alone."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_FLAG, False)]:
        root.removeHandler(old)
    handler = logging.StreamHandler(stream or sys.stderr)
    setattr(handler, _HANDLER_FLAG, True)
    handler.setFormatter(formatter(settings.log_format, service))
    handler.addFilter(ContextFilter())
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    # Coqui logs each input sentence at INFO; users' text stays out of the logs.
    logging.getLogger("TTS").setLevel(max(logging.WARNING, root.level))
    logging.captureWarnings(True)
    return handler


class GunicornLogger(_GunicornLogger):
    """gunicorn's logger, writing through :func:`configure` (``--logger-class``).

    Its error log (start-up, worker boots, timeouts) goes to the same handler as the app's
    lines. Its access log is off: the API writes one line per request itself
    (:mod:`api.requestlog`), with the route, the job id and no query string."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        configure(process_settings(), "api")
        for log in (self.error_log, self.access_log):
            for handler in list(log.handlers):
                log.removeHandler(handler)
            log.propagate = True
        self.error_log.setLevel(logging.NOTSET)

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        """No access lines: :mod:`api.requestlog` writes one per request."""
