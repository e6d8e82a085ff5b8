"""One log line per HTTP request, and the request id that ties it to the worker's job line.

Each request gets a request id: the client's ``X-Request-ID`` when it is a plain token (letters,
digits and ``._:-``, at most 128), else a new one (an id is metadata, not input: a malformed one
is replaced, not refused). It is bound to the request's log lines, returned in the response's
``X-Request-ID`` header and sent to the worker with the job (:meth:`api.service.JobService.submit`).

The line holds the method, the route template, the path (never the query string), the status,
the duration, the client's address and the job id the route bound (:func:`bind_job`); no
header and no body.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, Response, g, request

from common import logs

HEADER = "X-Request-ID"
_TOKEN = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_LOGGER = logging.getLogger("api.request")


def request_id(header: str | None) -> str:
    """The client's request id when it is a plain token, else a new one."""
    if header and _TOKEN.fullmatch(header):
        return header
    return uuid.uuid4().hex


def bind_job(job_id: str) -> None:
    """Name the job this request created or read, for its request line and later lines."""
    g.setdefault("moksori_log_tokens", []).append(logs.bind(job_id=job_id))


def init_app(app: Flask) -> None:
    """Register first, so the line is written even when a later hook (auth, rate limits)
    answers the request itself."""

    @app.before_request
    def _start() -> None:
        g.moksori_started = time.perf_counter()
        g.moksori_log_tokens = [
            logs.bind(request_id=request_id(request.headers.get(HEADER)), job_id=None)
        ]

    @app.after_request
    def _finish(response: Response) -> Response:
        started = g.get("moksori_started")
        rid = logs.current("request_id")
        if started is None or rid is None:  # before_request did not run (an early failure)
            return response
        response.headers[HEADER] = rid
        duration_ms = round((time.perf_counter() - started) * 1000, 1)
        _LOGGER.info(
            "%s %s %s %.1f ms",
            request.method,
            request.path,
            response.status_code,
            duration_ms,
            extra={
                "method": request.method,
                "route": request.url_rule.rule if request.url_rule else None,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": duration_ms,
                "client": request.remote_addr,
            },
        )
        return response

    @app.teardown_request
    def _reset(_: BaseException | None) -> None:
        # gthread reuses threads: nothing of this request may leak into the next one's lines.
        for tokens in reversed(g.pop("moksori_log_tokens", [])):
            logs.unbind(tokens)
