"""``POST /v1/audio/speech``: OpenAI's text-to-speech call, answered with the audio's bytes.

Any OpenAI SDK pointed at ``<api>/v1`` can use a member's voice. The request goes through the
same path as ``POST /api/texts`` (:meth:`api.service.JobService.submit`: cache lookup, joining an
identical job in flight, the queue); the worker synthesizes at the requested speed and encodes
the requested format. ``wav``, ``pcm`` and ``mp3`` are streamed as OpenAI's are
(:func:`api.stream.open_stream`): the first bytes once the job's first sentence is stored,
each next sentence as it is, encoded here from the sentences' stored WAVs. ``flac`` and
``opus`` cannot be sent piecewise: the route waits for the job and answers with its stored
object, as it does for a cache hit or a text of one sentence in any format. Nothing is
answered before the first bytes are ready (``MOKSORI_SPEECH_TIMEOUT``), so every failure up to
then is an error the client can read; a failure after them ends the stream.

Errors are OpenAI's shape (``{"error": {"message", "type", "param", "code"}}``, see
:mod:`api.errors`) with a 4xx for anything the client can fix.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from flask import Response, current_app, request
from flask_openapi3 import APIBlueprint, Tag
from pydantic import ValidationError

from api.auth import client_id
from api.errors import (
    BODY_TOO_LARGE,
    EMPTY_TEXT,
    ERRORS,
    INVALID_API_KEY,
    INVALID_JSON,
    INVALID_SPEED,
    INVALID_TEXT,
    INVALID_VALUE,
    JOB_LOST,
    MEMBER_UNAVAILABLE,
    MISSING_PARAMETER,
    MISSING_TEXT,
    MODEL_NOT_FOUND,
    RATE_LIMITED,
    SERVICE_UNAVAILABLE,
    STORAGE_FULL,
    STORAGE_UNAVAILABLE,
    SYNTHESIS_FAILED,
    TEXT_TOO_LONG,
    TIMEOUT,
    TOO_MANY_QUEUED,
    UNAUTHORIZED,
    UNKNOWN_VOICE,
    UNSPEAKABLE_TEXT,
    UNSUPPORTED_FORMAT,
    UNSUPPORTED_MEDIA_TYPE,
    ApiError,
    job_failure,
)
from api.openapi import BEARER_OPTIONAL, RETRY_AFTER, URI_TOO_LONG, openai_error
from api.requestlog import bind_job
from api.service import NO_AUDIO, JobService
from api.stream import JobEndedError, NotReadyError, open_stream
from api.validation import (
    MODELS,
    SpeechRequest,
    TextRequest,
    from_validation,
    json_body,
    openai_invalid,
)
from common.audio_formats import FORMATS, output_rate
from common.encoding import STREAMED_FORMATS
from common.repository import VoiceSpec

_LOGGER = logging.getLogger(__name__)

bp = APIBlueprint(
    "openai",
    __name__,
    url_prefix="/v1",
    abp_tags=[Tag(name="openai", description="OpenAI-compatible text to speech.")],
)


def _service() -> JobService:
    return current_app.extensions["moksori"]


def parse_speech_request(payload: dict[str, Any]) -> SpeechRequest:
    """Validate a body into a :class:`SpeechRequest`, or a 400 naming the field at fault."""
    try:
        return SpeechRequest.model_validate(payload)
    except ValidationError as exc:
        raise from_validation(exc) from None


def resolve_voice(voices: dict[int, VoiceSpec], voice: int | str) -> VoiceSpec:
    """A member by id (an integer or a string of digits) or by name, case-insensitively."""
    wanted = voice.strip() if isinstance(voice, str) else voice
    if isinstance(wanted, str) and wanted.isascii() and wanted.isdigit():
        wanted = int(wanted)
    if isinstance(wanted, int):
        found = voices.get(wanted)
    else:
        folded = wanted.casefold()
        found = next((v for v in voices.values() if v.name.casefold() == folded), None)
    if found is None:
        known = ", ".join(f"{v.member_id} ({v.name})" for v in voices.values()) or "none"
        raise openai_invalid(
            "voice", UNKNOWN_VOICE, f"There is no voice {voice!r} (known: {known})."
        )
    return found


_AUDIO = {
    fmt.content_type: {"schema": {"type": "string", "contentMediaType": fmt.content_type}}
    for fmt in FORMATS.values()
}


@bp.before_request
def _json_object() -> None:
    """A body that is not a JSON object is refused (415/400) before the model reads it."""
    if request.endpoint == "openai.create_speech" and request.method == "POST":
        json_body(request)


@bp.post(
    "/audio/speech",
    operation_id="createSpeech",
    summary="OpenAI-compatible text to speech: the audio itself",
    description="Goes through the same queue, cache and storage as `POST /api/texts`. `wav`, "
    "`pcm` and `mp3` are streamed (chunked): the first bytes once the job's first sentence is "
    "stored, each next sentence as it is; a failure after the first bytes ends the stream "
    "early. `flac` and `opus` are answered whole once the job is done. Audio already stored "
    "(a repeat, or a text of one sentence) is sent as stored. Everything up to the first "
    "bytes is bounded by `MOKSORI_SPEECH_TIMEOUT` and its errors are OpenAI's shape, "
    "`{error: {message, type, param, code}}`.",
    security=BEARER_OPTIONAL,
    responses={
        200: {
            "description": "The audio: wav, mp3 and flac at the voice's rate, opus (in Ogg) and "
            "pcm (raw 16-bit little-endian mono) at 24 kHz. A streamed wav's header gives no "
            "length (players read to the end).",
            "headers": {
                "X-Sample-Rate": {
                    "description": "The audio's sample rate in Hz.",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^[0-9]+$"},
                }
            },
            "content": _AUDIO,
        },
        400: openai_error(
            "Not JSON or not an object, a field missing or malformed, an unknown voice or "
            "format, a speed outside 0.25-4, or an `input` that is blank, too long or has "
            "nothing to pronounce",
            INVALID_JSON,
            MISSING_PARAMETER,
            INVALID_VALUE,
            UNSUPPORTED_FORMAT,
            INVALID_SPEED,
            UNKNOWN_VOICE,
            MISSING_TEXT,
            INVALID_TEXT,
            EMPTY_TEXT,
            TEXT_TOO_LONG,
            UNSPEAKABLE_TEXT,
        ),
        401: openai_error("A missing or wrong API key", UNAUTHORIZED, INVALID_API_KEY),
        404: openai_error("A model name this server does not accept", MODEL_NOT_FOUND),
        413: openai_error("The body is over `MOKSORI_MAX_CONTENT_LENGTH`", BODY_TOO_LARGE),
        414: URI_TOO_LONG,
        415: openai_error("The body is not `application/json`", UNSUPPORTED_MEDIA_TYPE),
        429: openai_error(
            "Too many requests, or too many of this client's jobs queued",
            RATE_LIMITED,
            TOO_MANY_QUEUED,
            headers=RETRY_AFTER,
        ),
        500: openai_error("The synthesis failed", SYNTHESIS_FAILED),
        503: openai_error(
            "No worker serves the member, the queue or storage is unreachable, every streaming "
            "slot of this process is taken (`MOKSORI_MAX_WAITING`), the audio could not be "
            "stored, or the job was lost (the same request again starts it afresh)",
            MEMBER_UNAVAILABLE,
            SERVICE_UNAVAILABLE,
            STORAGE_FULL,
            STORAGE_UNAVAILABLE,
            JOB_LOST,
            headers=RETRY_AFTER,
        ),
        504: openai_error(
            "Nothing to send within `MOKSORI_SPEECH_TIMEOUT` (for a stream, its first sentence; "
            "else the whole job): the job goes on, and the same request again joins it",
            TIMEOUT,
            headers=RETRY_AFTER,
        ),
    },
)
def create_speech(body: SpeechRequest) -> Response:
    """Say ``input`` in ``voice``'s voice; 200 with the audio bytes in ``response_format``."""
    service = _service()
    if body.model not in MODELS:
        raise MODEL_NOT_FOUND(
            f"The model {body.model!r} does not exist here; use one of {', '.join(MODELS)}.",
            param="model",
        )
    voice = resolve_voice(service.voices, body.voice)
    try:
        req = TextRequest.model_validate(
            {
                "member_id": voice.member_id,
                "text": body.input,
                "uuid": str(uuid.uuid4()),
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )
    except ValidationError as exc:  # the text's own checks: OpenAI answers these with 400
        first = exc.errors(include_url=False)[0]
        raise openai_invalid(
            "input", ERRORS.get(first["type"], INVALID_VALUE), first["msg"]
        ) from None
    speed = round(body.speed, 3)
    try:
        submission = service.submit(
            req, request.host_url, client_id(), fmt=body.response_format, speed=speed
        )
    except ApiError as exc:
        if exc.status in {413, 422}:  # the text's own checks: OpenAI answers these with 400
            raise openai_invalid("input", exc.kind, exc.message) from None
        raise
    bind_job(submission.job_id)
    fmt = FORMATS[body.response_format]
    timeout = service.settings.speech_timeout
    audio: bytes | Iterator[bytes]
    if submission.cached:
        audio = _stored(service, submission.key)
    elif fmt.name in STREAMED_FORMATS:
        audio = _streamed(service, submission.job_id, fmt.name, timeout)
    else:
        audio = _stored(service, _wait_for(service, submission.job_id, timeout))
    _LOGGER.info(
        "speech job %s for member %s: %s, speed %s, %s%s",
        submission.job_id,
        voice.member_id,
        fmt.name,
        speed,
        f"{len(audio)} bytes" if isinstance(audio, bytes) else "streamed",
        " (cached)" if submission.cached else "",
    )
    response = Response(audio, mimetype=fmt.content_type)
    response.headers["X-Sample-Rate"] = str(output_rate(fmt.name, voice.sample_rate))
    response.headers["X-Moksori-Job-Id"] = submission.job_id
    response.headers["X-Moksori-Cached"] = "true" if submission.cached else "false"
    return response


def _streamed(service: JobService, job_id: str, fmt: str, timeout: float) -> Iterator[bytes]:
    """The job's audio as a stream in ``fmt`` (one of :data:`STREAMED_FORMATS`), once its
    first sentence is stored: 504 when that takes over ``timeout`` seconds."""
    try:
        _first, body = open_stream(service, job_id, fmt, time.monotonic() + timeout)
    except JobEndedError as exc:
        raise _failed(exc.message, exc.code) from None
    except NotReadyError:
        raise _late(timeout) from None
    return body


def _wait_for(service: JobService, job_id: str, timeout: float) -> str:
    """The storage key of the job's audio once it is done; 504 when it is not done within
    ``timeout`` seconds."""
    service.wait(job_id, timeout)
    status, key, failure = service.outcome(job_id)
    if status == "done" and key is not None:
        return key
    if status in {"failed", "done"}:
        raise _failed(*(failure or (NO_AUDIO, SYNTHESIS_FAILED.code)))
    raise _late(timeout)


def _stored(service: JobService, key: str) -> bytes:
    data = service.read(key)
    if data is None:  # deleted between the job's end and this read
        raise SERVICE_UNAVAILABLE(
            "The audio was removed from storage before it could be read; try again.",
            headers={"Retry-After": "1"},
        )
    return data


def _failed(message: str, code: str) -> ApiError:
    """A job that failed before any audio was sent; OpenAI answers bad input with 400."""
    if code == UNSPEAKABLE_TEXT.code:  # the worker's normalizer found nothing
        return openai_invalid(
            "input", UNSPEAKABLE_TEXT, "input has nothing this voice can pronounce."
        )
    return job_failure(message, code)


def _late(timeout: float) -> ApiError:
    """Nothing to send within ``timeout`` seconds: the job keeps running, and asking again
    joins it."""
    return TIMEOUT(
        f"The audio was not ready within {timeout:g} s; the job goes on, and the same request "
        "again joins it (or gets the stored audio).",
        headers={"Retry-After": "5"},
    )
