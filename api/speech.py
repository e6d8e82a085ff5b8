"""``POST /v1/audio/speech``: OpenAI's text-to-speech call, answered with the audio's bytes.

Any OpenAI SDK pointed at ``<api>/v1`` can use a member's voice. The request goes through the
same path as ``POST /api/texts`` (:meth:`api.service.JobService.submit`: cache lookup, joining an
identical job in flight, the queue); the worker synthesizes at the requested speed and encodes
the requested format; this route waits for the job (``MOKSORI_SPEECH_TIMEOUT``), reads the
stored object and returns it. The API never transcodes: the stored object is the answer.

Errors are OpenAI's shape (``{"error": {"message", "type", "param", "code"}}``, see
:mod:`api.errors`) with a 4xx for anything the client can fix.
"""

from __future__ import annotations

import logging
import uuid
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
)
from api.openapi import BEARER_OPTIONAL, RETRY_AFTER, URI_TOO_LONG, openai_error
from api.requestlog import bind_job
from api.service import JobService
from api.validation import (
    MODELS,
    SpeechRequest,
    TextRequest,
    from_validation,
    json_body,
    openai_invalid,
)
from common.audio_formats import FORMATS, output_rate
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
    description="Goes through the same queue, cache and storage as `POST /api/texts`, waits for "
    "the job (`MOKSORI_SPEECH_TIMEOUT`) and answers with the audio's bytes. Errors are OpenAI's "
    "shape, `{error: {message, type, param, code}}`.",
    security=BEARER_OPTIONAL,
    responses={
        200: {
            "description": "The audio: wav, mp3 and flac at the voice's rate, opus (in Ogg) and "
            "pcm (raw 16-bit little-endian mono) at 24 kHz.",
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
            "No worker serves the member, the queue or storage is unreachable, the audio could "
            "not be stored, or the job was lost (the same request again starts it afresh)",
            MEMBER_UNAVAILABLE,
            SERVICE_UNAVAILABLE,
            STORAGE_FULL,
            STORAGE_UNAVAILABLE,
            JOB_LOST,
            headers=RETRY_AFTER,
        ),
        504: openai_error(
            "Not ready within `MOKSORI_SPEECH_TIMEOUT`: the job goes on, and the same request "
            "again joins it",
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
    key = submission.key
    if not submission.cached:
        key = _wait_for(service, submission.job_id)
    data = service.read(key)
    if data is None:  # deleted between the job's end and this read
        raise SERVICE_UNAVAILABLE(
            "The audio was removed from storage before it could be read; try again.",
            headers={"Retry-After": "1"},
        )
    fmt = FORMATS[body.response_format]
    rate = output_rate(fmt.name, voice.sample_rate)
    _LOGGER.info(
        "speech job %s for member %s: %s, speed %s, %d bytes%s",
        submission.job_id,
        voice.member_id,
        fmt.name,
        speed,
        len(data),
        " (cached)" if submission.cached else "",
    )
    response = Response(data, mimetype=fmt.content_type)
    response.headers["X-Sample-Rate"] = str(rate)
    response.headers["X-Moksori-Job-Id"] = submission.job_id
    response.headers["X-Moksori-Cached"] = "true" if submission.cached else "false"
    return response


def _wait_for(service: JobService, job_id: str) -> str:
    """The storage key of the job's audio once it is done; 504 when it is not done within
    ``MOKSORI_SPEECH_TIMEOUT`` (it keeps running: asking again joins it), 500 when it failed."""
    timeout = service.settings.speech_timeout
    service.wait(job_id, timeout)
    status, key, failure = service.outcome(job_id)
    if status == "done" and key is not None:
        return key
    why, code = failure or ("no audio was stored", SYNTHESIS_FAILED.code)
    if code == UNSPEAKABLE_TEXT.code:  # the worker's normalizer found nothing
        raise openai_invalid(
            "input", UNSPEAKABLE_TEXT, "input has nothing this voice can pronounce."
        )
    if code in {STORAGE_FULL.code, STORAGE_UNAVAILABLE.code}:
        kind = STORAGE_FULL if code == STORAGE_FULL.code else STORAGE_UNAVAILABLE
        raise kind(f"The audio could not be stored: {why}", headers={"Retry-After": "30"})
    if status in {"failed", "done"}:
        if code == JOB_LOST.code:
            raise JOB_LOST(why, headers={"Retry-After": "1"})
        raise SYNTHESIS_FAILED(f"The synthesis failed: {why}")
    raise TIMEOUT(
        f"The audio was not ready within {timeout:g} s; the job goes on, and the same request "
        "again joins it (or gets the stored audio).",
        headers={"Retry-After": "5"},
    )
