"""One error shape for every failure: ``{"error": {"code": "...", "message": "..."}}``.

Under ``/v1/`` (the OpenAI-compatible API) the same body also carries OpenAI's ``type`` and
``param``, so OpenAI's clients read it as their own: ``{"error": {"message", "type", "param",
"code"}}``, a superset of ours.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Flask, Response, has_request_context, jsonify, request
from werkzeug.exceptions import HTTPException

from common.jobs import SYNTHESIS_FAILED_CODE, UNSPEAKABLE_CODE
from common.storage import STORAGE_FULL as STORAGE_FULL_CODE
from common.storage import STORAGE_UNAVAILABLE as STORAGE_UNAVAILABLE_CODE

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class ErrorKind:
    """One error the API answers with: its stable code, its HTTP status and, in one sentence,
    when it happens. The registry (:data:`ERRORS`) raises it, documents each route's
    responses in the OpenAPI document (:func:`api.openapi.error`) and feeds the docs' table."""

    code: str
    status: int
    when: str

    def __call__(
        self,
        message: str,
        headers: dict[str, str] | None = None,
        param: str | None = None,
        status: int | None = None,
    ) -> ApiError:
        """The error to raise, with the message the client sees."""
        return ApiError(self, message, headers, param, status)


ERRORS: dict[str, ErrorKind] = {}
"""Every error code the API can answer with, by code."""


def _kind(code: str, status: int, when: str) -> ErrorKind:
    if code in ERRORS:
        raise ValueError(f"error code {code!r} is registered twice")
    ERRORS[code] = kind = ErrorKind(code, status, when)
    return kind


# Requests to /api/*.
BAD_REQUEST = _kind("bad_request", 400, "The HTTP request itself is malformed.")
INVALID_JSON = _kind("invalid_json", 400, "The body is not JSON, or not a JSON object.")
INVALID_WAIT = _kind("invalid_wait", 400, "`wait` is not a whole number of seconds from 1 to 60.")
REQUEST_TIMEOUT = _kind(
    "request_timeout",
    408,
    "The request (headers and body) did not arrive in full within `MOKSORI_REQUEST_READ_TIMEOUT` "
    "seconds; the connection is closed.",
)
UNAUTHORIZED = _kind("unauthorized", 401, "The server has API keys and the request sent none.")
INVALID_API_KEY = _kind("invalid_api_key", 401, "The API key sent is not one of the server's.")
INVALID_SIGNATURE = _kind(
    "invalid_signature",
    403,
    "`/media` with `MOKSORI_MEDIA_ACCESS=signed`: the URL's signature is missing, wrong or "
    "expired, and no valid API key was sent.",
)
UNKNOWN_MEMBER = _kind("unknown_member", 404, "No voice has this member id.")
UNKNOWN_JOB = _kind("unknown_job", 404, "No job has this id, or its status has expired.")
NOT_FOUND = _kind("not_found", 404, "No route or audio file has this path.")
METHOD_NOT_ALLOWED = _kind("method_not_allowed", 405, "The route does not take this method.")
TEXT_TOO_LONG = _kind(
    "text_too_long", 413, "`text` is longer than `MOKSORI_MAX_TEXT_LENGTH` characters."
)
BODY_TOO_LARGE = _kind(
    "request_entity_too_large", 413, "The body is over `MOKSORI_MAX_CONTENT_LENGTH` bytes."
)
PRECONDITION_FAILED = _kind(
    "precondition_failed", 412, "`If-Match` names no current version of the audio file."
)
UNSUPPORTED_MEDIA_TYPE = _kind(
    "unsupported_media_type", 415, "The body is not sent as `application/json`."
)
RANGE_NOT_SATISFIABLE = _kind(
    "requested_range_not_satisfiable", 416, "The requested byte range is outside the file."
)
MISSING_MEMBER_ID = _kind("missing_member_id", 422, "`member_id` is missing.")
INVALID_MEMBER_ID = _kind(
    "invalid_member_id", 422, "`member_id` is not a non-negative integer (or its digits)."
)
MISSING_TEXT = _kind("missing_text", 422, "`text` is missing.")
INVALID_TEXT = _kind("invalid_text", 422, "`text` is not a string of valid Unicode.")
EMPTY_TEXT = _kind("empty_text", 422, "`text` is empty or only white space.")
UNSPEAKABLE_TEXT = _kind(
    UNSPEAKABLE_CODE, 422, "Nothing in `text` can be pronounced (no Hangul, Latin or digits)."
)
INVALID_UUID = _kind("invalid_uuid", 422, "`uuid` is not a string holding a UUID.")
INVALID_CREATED_AT = _kind(
    "invalid_created_at", 422, "`created_at` is not an ISO 8601 date or date-time."
)
RATE_LIMITED = _kind("rate_limited", 429, "More requests than `MOKSORI_RATE_LIMIT` allows.")
TOO_MANY_QUEUED = _kind(
    "too_many_queued_jobs",
    429,
    "The client has `MOKSORI_MAX_QUEUED_PER_CLIENT` jobs queued or running already.",
)
INTERNAL_ERROR = _kind("internal_error", 500, "The server failed unexpectedly (a bug).")
MEMBER_UNAVAILABLE = _kind("member_unavailable", 503, "No worker serves this member right now.")
SERVICE_UNAVAILABLE = _kind(
    "service_unavailable", 503, "The broker, the result backend or storage cannot be reached."
)
NOT_READY = _kind("not_ready", 503, "A readiness check failed (`/readyz`).")
JOB_LOST = _kind(
    "job_lost",
    503,
    "The job can no longer finish (its worker stopped reporting past the time limit, or its "
    "message left the queue unrun); the same request again starts it afresh.",
)
JOB_FAILED = _kind(
    "job_failed",
    409,
    "The job failed, or can no longer finish (its status says why): it has no audio to send.",
)
# POST /v1/audio/speech, in OpenAI's terms (every invalid request is a 400 there).
MISSING_PARAMETER = _kind(
    "missing_required_parameter", 400, "A required field of the body is missing."
)
INVALID_VALUE = _kind("invalid_value", 400, "A field of the body has a value of the wrong kind.")
UNSUPPORTED_FORMAT = _kind(
    "unsupported_format", 400, "`response_format` is not wav, mp3, flac, opus or pcm."
)
INVALID_SPEED = _kind("invalid_speed", 400, "`speed` is outside 0.25 to 4.")
UNKNOWN_VOICE = _kind("unknown_voice", 400, "No member has this `voice` (an id or a name).")
MODEL_NOT_FOUND = _kind("model_not_found", 404, "`model` is not a model name this server takes.")
SYNTHESIS_FAILED = _kind(SYNTHESIS_FAILED_CODE, 500, "The worker could not synthesize the text.")
STORAGE_FULL = _kind(
    STORAGE_FULL_CODE, 503, "The job failed: storage had no room for its audio, after retries."
)
STORAGE_UNAVAILABLE = _kind(
    STORAGE_UNAVAILABLE_CODE,
    503,
    "The job failed: storage refused the write or could not be reached (GCS 429/5xx), after "
    "retries.",
)
TIMEOUT = _kind(
    "timeout",
    504,
    "The audio was not ready within `MOKSORI_SPEECH_TIMEOUT`; the job goes on, and the same "
    "request again joins it.",
)


class ApiError(Exception):
    """An error the client sees: an :class:`ErrorKind` of the registry and this case's message
    (raise it as ``KIND("message")``)."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        headers: dict[str, str] | None = None,
        param: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.code = kind.code
        self.status = status or kind.status
        """The kind's status, unless the route answers it with another (OpenAI's 400s)."""
        self.message = message
        self.headers = headers or {}
        self.param = param
        """The request field at fault (OpenAI's ``param``; shown only under ``/v1/``)."""


def job_failure(message: str, code: str) -> ApiError:
    """A job that ended before any of its audio could be sent (its reason and error code, as
    :func:`api.service.failure` gives them), as the error to answer with: a code not
    registered is a failed synthesis; a 503 says when to ask again (a lost job starts afresh
    at once, storage needs time)."""
    kind = ERRORS.get(code, SYNTHESIS_FAILED)
    if kind is SYNTHESIS_FAILED:
        return SYNTHESIS_FAILED(f"The synthesis failed: {message}")
    if kind.status != 503:
        return kind(message)
    return kind(message, headers={"Retry-After": "1" if kind is JOB_LOST else "30"})


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


def error_response(
    kind: ErrorKind, message: str, param: str | None = None, status: int | None = None
) -> Response:
    """The error body: ours, or OpenAI's superset of it for a request under ``/v1/``."""
    status = status or kind.status
    code = kind.code
    error: dict[str, str | None] = {"code": code, "message": message}
    if has_request_context() and request.path.startswith(OPENAI_PREFIX):
        error = {"message": message, "type": openai_type(status), "param": param, "code": code}
    response = jsonify({"error": error})
    response.status_code = status
    return response


# Flask's and werkzeug's own errors (a route that does not exist, a body over the limit, ...).
_HTTP_KINDS = {
    404: NOT_FOUND,
    405: METHOD_NOT_ALLOWED,
    412: PRECONDITION_FAILED,
    413: BODY_TOO_LARGE,
    415: UNSUPPORTED_MEDIA_TYPE,
    416: RANGE_NOT_SATISFIABLE,
}


DISCARD_FACTOR = 16


def _discard_body(limit: int | None) -> None:
    """Read and drop a refused body of up to 16x the limit, so the client's keep-alive
    connection stays usable for its next request (gunicorn itself drains only 64 KiB and then
    drops the connection, which the client sees as a reset on its *next* request). A body sent
    without a length (chunked) is read until it ends or reaches that bound."""
    length = request.content_length
    if length is None and "wsgi.input_terminated" in request.environ:
        length = DISCARD_FACTOR * (limit or 0)
    if not limit or not length or length > DISCARD_FACTOR * limit:
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
        response = error_response(exc.kind, exc.message, exc.param, exc.status)
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
        kind = _HTTP_KINDS.get(status, INTERNAL_ERROR if status >= 500 else BAD_REQUEST)
        response = error_response(kind, message, status=status)
        for name, value in exc.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        _LOGGER.exception("unhandled error")
        return error_response(INTERNAL_ERROR, "The server failed unexpectedly.")
