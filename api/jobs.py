"""``POST /api/texts`` (queue a synthesis), ``GET /api/jobs/<job_id>`` (its status) and
``GET /api/jobs/<job_id>/audio`` (its audio, streamed as its sentences are made)."""

from __future__ import annotations

import time
from typing import Any

from flask import Response, current_app, jsonify, request, url_for
from flask_openapi3 import APIBlueprint, Tag
from pydantic import ValidationError

from api.auth import client_id
from api.errors import (
    BODY_TOO_LARGE,
    EMPTY_TEXT,
    INVALID_CREATED_AT,
    INVALID_JSON,
    INVALID_MEMBER_ID,
    INVALID_TEXT,
    INVALID_UUID,
    INVALID_WAIT,
    JOB_FAILED,
    MEMBER_UNAVAILABLE,
    MISSING_MEMBER_ID,
    MISSING_TEXT,
    NOT_FOUND,
    RATE_LIMITED,
    SERVICE_UNAVAILABLE,
    TEXT_TOO_LONG,
    TOO_MANY_QUEUED,
    UNKNOWN_JOB,
    UNKNOWN_MEMBER,
    UNSPEAKABLE_TEXT,
    UNSUPPORTED_MEDIA_TYPE,
    ApiError,
)
from api.openapi import (
    AUTH_ERRORS,
    BEARER_OPTIONAL,
    RATE_ERRORS,
    RETRY_AFTER,
    URI_TOO_LONG,
    JobStatus,
    TextFinished,
    TextQueued,
    error,
)
from api.requestlog import bind_job
from api.service import JobService
from api.stream import JobEndedError, open_stream
from api.validation import JobPath, TextQuery, TextRequest, json_body, validation_error

bp = APIBlueprint("jobs", __name__, url_prefix="/api", abp_tags=[Tag(name="jobs")])

_UNAVAILABLE = error(
    "No worker serves the member, or the queue or storage is unreachable",
    MEMBER_UNAVAILABLE,
    SERVICE_UNAVAILABLE,
    headers=RETRY_AFTER,
)

WAIT_HEADER = "Moksori-Wait"
"""Set to ``declined`` on a ``202`` to a ``?wait`` request that could not wait (every waiting
slot of the process was taken): poll the ``status_url``."""
ANSWER_RESERVE_S = 0.05
"""``?wait=N`` counts from the request's start, and its wait ends this long before N s are up,
so that the stages before it (cache lookup, publish) and the answer after it fit in N s plus
100 ms."""


def _service() -> JobService:
    return current_app.extensions["moksori"]


@bp.before_request
def _json_object() -> None:
    """A body that is not a JSON object is refused (415/400) before its model reads it (not
    on the route's automatic OPTIONS: a CORS preflight has no body). A bad ``?wait`` is still
    reported first, as the query is checked before the body."""
    if request.endpoint == "jobs.create_text" and request.method == "POST":
        try:
            TextQuery.model_validate(request.args.to_dict())
        except ValidationError as exc:
            validation_error(exc)
        json_body(request)


@bp.post(
    "/texts",
    operation_id="createText",
    summary="Queue a text for a member's voice",
    description="Answered at once from storage when this voice has already said the text; "
    "identical requests in flight join one job.",
    security=BEARER_OPTIONAL,
    responses={
        200: TextFinished,
        202: TextQueued,
        400: error("Not JSON, not an object, or `wait` not 1-60", INVALID_JSON, INVALID_WAIT),
        401: AUTH_ERRORS,
        404: error("No voice for this member", UNKNOWN_MEMBER),
        413: error(
            "`text` longer than `MOKSORI_MAX_TEXT_LENGTH`, or the body over "
            "`MOKSORI_MAX_CONTENT_LENGTH` bytes",
            TEXT_TOO_LONG,
            BODY_TOO_LARGE,
        ),
        414: URI_TOO_LONG,
        415: error("The body is not `application/json`", UNSUPPORTED_MEDIA_TYPE),
        422: error(
            "A field is missing or malformed, or nothing in `text` can be pronounced",
            MISSING_MEMBER_ID,
            INVALID_MEMBER_ID,
            MISSING_TEXT,
            INVALID_TEXT,
            EMPTY_TEXT,
            UNSPEAKABLE_TEXT,
            INVALID_UUID,
            INVALID_CREATED_AT,
        ),
        429: error(
            "Too many requests, or too many of this client's jobs queued",
            RATE_LIMITED,
            TOO_MANY_QUEUED,
            headers=RETRY_AFTER,
        ),
        503: _UNAVAILABLE,
    },
)
def create_text(query: TextQuery, body: TextRequest) -> tuple[Response, int, dict[str, str]]:
    """Accept a text for a member's voice; 202 with a status URL, or 200 with the audio URL when
    it is already stored (``cached``) or ``?wait=N`` is given and the job ends within N s."""
    service = _service()
    wait = query.wait or 0
    deadline = time.monotonic() + wait - ANSWER_RESERVE_S
    submission = service.submit(body, request.host_url, client_id())
    job_id = submission.job_id
    bind_job(job_id)
    status_url = url_for("jobs.get_job", job_id=job_id)
    body = {
        "job_id": job_id,
        "status": "queued",
        "status_url": status_url,
        "uuid": body.uuid,
        "member_id": body.member_id,
        "created_at": body.created_at,
        "cached": submission.cached,
    }
    headers = {"Location": status_url}
    if submission.view is not None:  # already synthesized: the URL right away, no task sent
        body.update(submission.view)
        return jsonify(body), 200, headers
    if wait:
        with service.wait_slot() as may_wait:
            view = _waited(service, job_id, deadline) if may_wait else None
        if not may_wait:
            headers[WAIT_HEADER] = "declined"
        if view and view["status"] in {"done", "failed"}:
            body.update(view)
            return jsonify(body), 200, headers
    return jsonify(body), 202, headers


def _waited(service: JobService, job_id: str, deadline: float) -> dict[str, Any] | None:
    """The job's view if it ended by ``deadline``, else None."""
    try:
        ended = service.wait(job_id, deadline - time.monotonic())
        return service.status(job_id, request.host_url) if ended else None
    except ApiError:
        # The job is already accepted: answer 202 so the client follows it rather than
        # resubmitting because the result backend hiccupped while we waited.
        return None


@bp.get(
    "/jobs/<job_id>",
    operation_id="getJob",
    summary="A job's status",
    security=BEARER_OPTIONAL,
    responses={
        200: JobStatus,
        401: AUTH_ERRORS,
        404: error(
            "Never issued, or expired after `MOKSORI_RESULT_EXPIRES`", UNKNOWN_JOB, NOT_FOUND
        ),
        414: URI_TOO_LONG,
        429: RATE_ERRORS,
        503: error(
            "The result backend or storage is unreachable",
            SERVICE_UNAVAILABLE,
            headers=RETRY_AFTER,
        ),
    },
)
def get_job(path: JobPath) -> Response:
    """A job's status: queued, running, done (with url and duration_s) or failed (with error).

    Any spelling of a UUID is read as that job; anything else is an unknown job (404)."""
    bind_job(path.job_id)
    view = _service().status(path.job_id, request.host_url)
    if view is None:
        raise UNKNOWN_JOB("There is no job with this id (or it has expired).")
    return jsonify(view)


STREAM_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


@bp.get(
    "/jobs/<job_id>/audio",
    operation_id="streamJobAudio",
    summary="A job's audio, sent as it is made",
    description="Starts as soon as the first sentence is stored and sends each next one as it "
    "is, joined by the voice's pause (chunked; a WAV whose header gives no length, so players "
    "read to the end). The bytes are the job's WAV once it is done. A job that fails after its "
    "first sentence ends the stream early; one that failed before is a 409; its status says "
    "why.",
    security=BEARER_OPTIONAL,
    responses={
        200: {
            "description": "The audio as a WAV stream (or, for a job of one sentence, its WAV).",
            "content": {"audio/wav": {"schema": {"type": "string", "format": "binary"}}},
        },
        401: AUTH_ERRORS,
        404: error(
            "Never issued, or expired after `MOKSORI_RESULT_EXPIRES`", UNKNOWN_JOB, NOT_FOUND
        ),
        414: URI_TOO_LONG,
        409: error("The job failed before any of its audio was stored", JOB_FAILED),
        429: RATE_ERRORS,
        503: error(
            "Every streaming slot of this process is taken (`MOKSORI_MAX_WAITING`), or the "
            "result backend or storage is unreachable",
            SERVICE_UNAVAILABLE,
            headers=RETRY_AFTER,
        ),
    },
)
def stream_audio(path: JobPath) -> Response:
    """The job's audio as a WAV stream, from its first stored sentence on."""
    bind_job(path.job_id)
    try:
        first, body = open_stream(_service(), path.job_id, "wav")
    except JobEndedError as exc:
        if exc.code == UNKNOWN_JOB.code:
            raise UNKNOWN_JOB(exc.message) from None
        # Asking again cannot help, whatever the reason: the job's own code is in the message.
        raise JOB_FAILED(f"The job failed ({exc.code}): {exc.message}") from None
    mimetype = "audio/wav" if first.key.endswith(".wav") else "application/octet-stream"
    response = Response(body, mimetype=mimetype, headers=STREAM_HEADERS)
    response.headers["X-Moksori-Job-Id"] = path.job_id
    return response
