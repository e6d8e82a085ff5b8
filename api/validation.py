"""Parsing of request bodies and query strings into typed values, with one clear error each."""

from __future__ import annotations

import re
import uuid as uuid_mod
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from flask import Request

from api.errors import ApiError
from common.audio_formats import DEFAULT_FORMAT, DEFAULT_SPEED

MAX_WAIT_S = 60
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class TextRequest:
    """A ``POST /api/texts`` body, in the shape the existing React client sends."""

    member_id: int
    text: str
    uuid: str
    created_at: str
    format: str = DEFAULT_FORMAT
    """Output format (``/v1/audio/speech`` only; ``/api/texts`` always makes a WAV)."""
    speed: float = DEFAULT_SPEED
    """Speaking rate (``/v1/audio/speech`` only)."""


def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object, or a 415/400 explaining why there is none."""
    if not request.is_json:
        raise ApiError(
            415,
            "unsupported_media_type",
            "Send the body as JSON with Content-Type: application/json.",
        )
    try:
        payload = request.get_json(silent=True)
    except RecursionError:  # "[[[[...": silent only covers ValueError (it was a 500)
        raise ApiError(400, "invalid_json", "The request body is nested too deeply.") from None
    if payload is None:
        raise ApiError(400, "invalid_json", "The request body is not valid JSON.")
    if not isinstance(payload, dict):
        raise ApiError(400, "invalid_json", "The request body must be a JSON object.")
    return payload


def _member_id(value: Any) -> int:
    if isinstance(value, bool) or value is None:
        raise ApiError(422, "invalid_member_id", "member_id must be an integer.")
    if isinstance(value, str) and value.isascii() and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or not 0 <= value < 2**31:
        raise ApiError(422, "invalid_member_id", "member_id must be a non-negative integer.")
    return value


def check_text(value: Any, max_length: int) -> str:
    """A text to say: a non-blank string of valid Unicode, at most ``max_length`` characters."""
    if value is None:
        raise ApiError(422, "missing_text", "text is required.")
    if not isinstance(value, str):
        raise ApiError(422, "invalid_text", "text must be a string.")
    if not value.strip():
        raise ApiError(422, "empty_text", "text is empty.")
    if not value.isascii() and _SURROGATE.search(value):  # JSON's \ud800 escapes allow them
        raise ApiError(422, "invalid_text", "text is not valid Unicode (a lone surrogate).")
    if len(value) > max_length:
        raise ApiError(
            413,
            "text_too_long",
            f"text has {len(value)} characters; the limit is {max_length}.",
        )
    return value


def _uuid(value: Any) -> str:
    if value is None:
        return str(uuid_mod.uuid4())
    if not isinstance(value, str):
        raise ApiError(422, "invalid_uuid", "uuid must be a string holding a UUID.")
    try:
        return str(uuid_mod.UUID(value))
    except ValueError:
        raise ApiError(422, "invalid_uuid", "uuid is not a valid UUID.") from None


def _created_at(value: Any) -> str:
    if value is None:
        return datetime.now(UTC).isoformat(timespec="seconds")
    if isinstance(value, str) and len(value) <= 64:
        for parse in (date.fromisoformat, datetime.fromisoformat):
            try:
                return parse(value).isoformat()
            except ValueError:
                continue
    raise ApiError(422, "invalid_created_at", "created_at must be an ISO 8601 date or date-time.")


def parse_text_request(payload: dict[str, Any], max_length: int) -> TextRequest:
    """Validate a ``POST /api/texts`` body (unknown extra fields are ignored)."""
    if "member_id" not in payload:
        raise ApiError(422, "missing_member_id", "member_id is required.")
    return TextRequest(
        member_id=_member_id(payload["member_id"]),
        text=check_text(payload.get("text"), max_length),
        uuid=_uuid(payload.get("uuid")),
        created_at=_created_at(payload.get("created_at")),
    )


def wait_seconds(values: list[str]) -> int:
    """The ``?wait=N`` query parameter (every value given for it): 0 when absent, else one
    whole number 1..60. An empty or repeated ``wait`` is refused, not read as absent."""
    if not values:
        return 0
    raw = values[0]
    if len(values) > 1 or not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_WAIT_S:
        raise ApiError(
            400,
            "invalid_wait",
            f"wait must be given once, a whole number of seconds from 1 to {MAX_WAIT_S}.",
        )
    return int(raw)
