"""One error shape for every failure: ``{"error": {"code": "...", "message": "..."}}``.

Under ``/v1/`` (the OpenAI-compatible API) the same body also carries OpenAI's ``type`` and
``param``, so OpenAI's clients read it as their own: ``{"error": {"message", "type", "param",
"code"}}``, a superset of ours.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, has_request_context, jsonify, request
from werkzeug.exceptions import HTTPException

_LOGGER = logging.getLogger(__name__)


class ApiError(Exception):
    """An error the client should see, with its HTTP status and a stable machine-readable code."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.param = param
        """The request field at fault (OpenAI's ``param``; shown only under ``/v1/``)."""


OPENAI_PREFIX = "/v1/"


def openai_type(status: int) -> str:
    """OpenAI's ``error.type`` for a status: what its own API answers in each case."""
    if status == 401:
        return "authentication_error"
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def error_response(status: int, code: str, message: str, param: str | None = None) -> Response:
    """The error body: ours, or OpenAI's superset of it for a request under ``/v1/``."""
    error: dict[str, str | None] = {"code": code, "message": message}
    if has_request_context() and request.path.startswith(OPENAI_PREFIX):
        error = {"message": message, "type": openai_type(status), "param": param, "code": code}
    response = jsonify({"error": error})
    response.status_code = status
    return response


def _http_code(exc: HTTPException) -> str:
    return (exc.name or "error").lower().replace(" ", "_").replace("'", "")


DISCARD_FACTOR = 16


def _discard_body(limit: int | None) -> None:
    """Read and drop a refused body of up to 16x the limit, so the client's keep-alive
    connection stays usable for its next request (gunicorn itself drains only 64 KiB and then
    drops the connection, which the client sees as a reset on its *next* request)."""
    length = request.content_length or 0
    if not limit or length > DISCARD_FACTOR * limit:
        return
    stream = request.environ.get("wsgi.input")
    remaining = length
    while stream is not None and remaining > 0:
        chunk = stream.read(min(remaining, 65536))
        if not chunk:
            break
        remaining -= len(chunk)


def init_app(app: Flask) -> None:
    """Register handlers so no route, including Flask's own 404/405/413, answers in HTML."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        response = error_response(exc.status, exc.code, exc.message, exc.param)
        response.headers.update(exc.headers)
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        message = exc.description or exc.name
        if status == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            message = f"The request body is larger than the limit of {limit} bytes."
            _discard_body(limit)
        response = error_response(status, _http_code(exc), message)
        for name, value in exc.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        _LOGGER.exception("unhandled error")
        return error_response(500, "internal_error", "The server failed unexpectedly.")
