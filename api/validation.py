"""Request models: pydantic v2 models that validate requests and generate ``/openapi.json``.

flask-openapi3 reads a view's ``query``/``path``/``body`` annotations both to validate the request
and to write the operation's parameters and request body, so the documented contract is the code.
Each field's validator raises a :class:`PydanticCustomError` whose *type* is our stable error
code (``invalid_member_id``, ``text_too_long``, ...); :func:`validation_error` turns the first
error of a request into our one error shape with the status its :data:`api.errors.ERRORS` kind has.
"""

from __future__ import annotations

import copy
import re
import uuid as uuid_mod
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal, NoReturn

from flask import Request, current_app, has_app_context, has_request_context, request
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    WithJsonSchema,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError
from werkzeug.exceptions import RequestEntityTooLarge

from api.errors import (
    EMPTY_TEXT,
    ERRORS,
    INVALID_CREATED_AT,
    INVALID_JSON,
    INVALID_MEMBER_ID,
    INVALID_SPEED,
    INVALID_TEXT,
    INVALID_UUID,
    INVALID_VALUE,
    INVALID_WAIT,
    MISSING_PARAMETER,
    MISSING_TEXT,
    NOT_FOUND,
    TEXT_TOO_LONG,
    UNKNOWN_JOB,
    UNSUPPORTED_FORMAT,
    UNSUPPORTED_MEDIA_TYPE,
    ApiError,
    ErrorKind,
)
from common.audio_formats import FORMATS, MAX_SPEED, MIN_SPEED
from common.storage import KEY_PATTERN, is_key

MAX_WAIT_S = 60
MAX_MEMBER_ID = 2**31 - 1
# member_id as the code reads it: a JSON integer, or a string of ASCII digits (the React client
# sends either); whitespace around the digits is ASCII only.
_MEMBER_ID_STRING = r"^[ \t\n\r\x0b\x0c]*[0-9]+[ \t\n\r\x0b\x0c]*$"
_SURROGATE = re.compile("[\ud800-\udfff]")

_FIELD_CODES = {"job_id": "unknown_job", "key": "not_found"}
"""The code for a value of these fields that a stock pydantic check (a pattern, a bound) refused;
any other field's is ``invalid_<field>`` (and a missing one ``missing_<field>``)."""


def _fail(kind: ErrorKind, message: str, **context: Any) -> NoReturn:
    """Refuse a field's value as ``kind`` (the error's type is its code)."""
    raise PydanticCustomError(kind.code, message, context or None)


def no_default(schema: dict[str, Any]) -> None:
    """A default the server fills in (a new UUID, now) is not a literal ``null`` to document."""
    schema.pop("default", None)


def _member_id(value: Any) -> int:
    if isinstance(value, bool) or value is None:
        _fail(INVALID_MEMBER_ID, "member_id must be an integer.")
    if isinstance(value, str) and value.isascii() and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or not 0 <= value <= MAX_MEMBER_ID:
        _fail(INVALID_MEMBER_ID, "member_id must be a non-negative integer.")
    return value


def _max_text_length() -> int | None:
    """``MOKSORI_MAX_TEXT_LENGTH`` of the app answering (a runtime setting, not a constant)."""
    return current_app.config["MOKSORI"].max_text_length if has_app_context() else None


def _text(value: Any) -> str:
    if value is None:
        _fail(MISSING_TEXT, "text is required.")
    if not isinstance(value, str):
        _fail(INVALID_TEXT, "text must be a string.")
    if not value.strip():
        _fail(EMPTY_TEXT, "text is empty.")
    if not value.isascii() and _SURROGATE.search(value):  # JSON's \ud800 escapes allow them
        _fail(INVALID_TEXT, "text is not valid Unicode (a lone surrogate).")
    limit = _max_text_length()
    if limit is not None and len(value) > limit:
        _fail(
            TEXT_TOO_LONG,
            "text has {length} characters; the limit is {limit}.",
            length=len(value),
            limit=limit,
        )
    return value


def _uuid(value: Any) -> str:
    if value is None:
        return str(uuid_mod.uuid4())
    if not isinstance(value, str):
        _fail(INVALID_UUID, "uuid must be a string holding a UUID.")
    try:
        return str(uuid_mod.UUID(value))
    except ValueError:
        _fail(INVALID_UUID, "uuid is not a valid UUID.")


def _created_at(value: Any) -> str:
    if value is None:
        return datetime.now(UTC).isoformat(timespec="seconds")
    if isinstance(value, str) and len(value) <= 64:
        for parse in (date.fromisoformat, datetime.fromisoformat):
            try:
                return parse(value).isoformat()
            except ValueError:
                continue
    _fail(INVALID_CREATED_AT, "created_at must be an ISO 8601 date or date-time.")


class TextRequest(BaseModel):
    """A ``POST /api/texts`` body, in the shape the existing React client sends."""

    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "description": "The existing React client's fields; unknown fields are ignored."
        },
        openapi_extra={
            "example": {
                "member_id": 1,
                "text": "안녕하세요!",
                "uuid": "022db29c-d0e2-11e5-bb4c-60f81dca7676",
                "created_at": "2022-08-22",
            }
        },
    )

    member_id: Annotated[
        int,
        BeforeValidator(_member_id),
        WithJsonSchema(
            {
                "description": "Whose voice: a non-negative integer (a string of digits is read "
                "as one).",
                "anyOf": [
                    {"type": "integer", "minimum": 0, "maximum": MAX_MEMBER_ID},
                    {"type": "string", "pattern": _MEMBER_ID_STRING},
                ],
            }
        ),
    ]
    text: Annotated[
        str,
        # Constraints before the validator, or pydantic leaves the pattern out of the schema.
        Field(
            min_length=1,
            pattern=r"\S",
            description="What to say: not blank, at most `MOKSORI_MAX_TEXT_LENGTH` characters "
            "(`maxLength`, this deployment's setting), and with something pronounceable "
            "(Hangul, Latin letters or digits).",
        ),
        BeforeValidator(_text),
    ]
    uuid: Annotated[
        str,
        BeforeValidator(_uuid),
        WithJsonSchema(
            {
                "anyOf": [{"type": "string", "format": "uuid"}, {"type": "null"}],
                "description": "Echoed back, hyphenated; generated when absent or null (braces, "
                "`urn:uuid:` and 32 bare hex digits are read as a UUID too).",
            }
        ),
    ] = Field(default=None, validate_default=True, json_schema_extra=no_default)
    created_at: Annotated[
        str,
        BeforeValidator(_created_at),
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "null"},
                    {"type": "string", "format": "date"},
                    {"type": "string", "format": "date-time", "maxLength": 64},
                ],
                "description": "An ISO 8601 date or date-time, echoed back; now when absent or "
                "null.",
            }
        ),
    ] = Field(default=None, validate_default=True, json_schema_extra=no_default)


class RequestModel(BaseModel):
    """A query or header model: flask-openapi3 asks for its JSON schema on every request it
    validates (to tell lists from scalars), which costs ~1 ms each time; the schema of a class
    never changes, so it is made once."""

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        key = (args, tuple(sorted(kwargs.items())))
        cache = cls.__dict__.get("_moksori_schemas")
        if cache is None:
            cache = {}
            type.__setattr__(cls, "_moksori_schemas", cache)
        if key not in cache:
            cache[key] = super().model_json_schema(*args, **kwargs)
        return copy.deepcopy(cache[key])


def _wait(value: Any) -> int:
    given = request.args.getlist("wait") if has_request_context() else [value]
    if (
        len(given) > 1
        or not isinstance(value, str)
        or not (value.isascii() and value.isdigit())
        or not 1 <= int(value) <= MAX_WAIT_S
    ):
        _fail(
            INVALID_WAIT,
            "wait must be given once, a whole number of seconds from 1 to {max}.",
            max=MAX_WAIT_S,
        )
    return int(value)


class TextQuery(RequestModel):
    """``POST /api/texts``'s query string."""

    wait: Annotated[
        Annotated[int, Field(ge=1, le=MAX_WAIT_S)] | SkipJsonSchema[None],
        BeforeValidator(_wait),
        Field(
            description="Wait up to this many seconds for the job to finish (given once; an "
            "empty or repeated `wait` is a 400).",
            json_schema_extra=no_default,
        ),
    ] = None


def _job_id(value: Any) -> str:
    try:
        return str(uuid_mod.UUID(value))
    except (TypeError, ValueError):
        _fail(UNKNOWN_JOB, "There is no job with this id (or it has expired).")


class JobPath(BaseModel):
    """``GET /api/jobs/{job_id}``: any UUID spelling is read; anything else is an unknown job."""

    job_id: Annotated[
        str, BeforeValidator(_job_id), WithJsonSchema({"type": "string", "format": "uuid"})
    ]


def _media_key(value: Any) -> str:
    if not isinstance(value, str) or not is_key(value):
        _fail(NOT_FOUND, "There is no such audio file.")
    return value


class MediaPath(BaseModel):
    """``GET /media/{key}``: only keys of the shape the server builds are looked up."""

    key: Annotated[
        str,
        Field(
            pattern=KEY_PATTERN,
            description="`wav/{member}/{voice version}/{hmac}.wav` (its slashes may be sent "
            "as they are).",
        ),
        BeforeValidator(_media_key),
    ]


def json_body(req: Request) -> dict[str, Any]:
    """The request's JSON object, or a 415/400 explaining why there is none.

    Run before the body model (a ``before_request`` hook): the model only ever sees an object,
    and a body nested too deeply to parse is a 400, not the ``RecursionError`` it would raise.
    """
    if not req.is_json:
        raise UNSUPPORTED_MEDIA_TYPE(
            "Send the body as JSON with Content-Type: application/json.",
        )
    _within_limit(req)
    try:
        payload = req.get_json(silent=True)
    except RecursionError:  # "[[[[...": silent=True only covers ValueError
        raise INVALID_JSON("The request body is nested too deeply.") from None
    if payload is None:
        raise INVALID_JSON("The request body is not valid JSON.")
    if not isinstance(payload, dict):
        raise INVALID_JSON("The request body must be a JSON object.")
    return payload


def _within_limit(req: Request) -> None:
    """Refuse (413) a body sent without ``Content-Length`` (``Transfer-Encoding: chunked``)
    that is over ``MAX_CONTENT_LENGTH``. werkzeug checks the header when there is one; without
    it, it stops reading at the limit and hands over the cut body, which then read as invalid
    JSON (a 400). Reading one byte past the limit tells a body of exactly the limit from a
    longer one; what was read stays cached for ``get_json``."""
    limit = req.max_content_length
    if limit is None or req.content_length is not None:
        return
    if "wsgi.input_terminated" not in req.environ:  # no body without a length (WSGI's rule)
        return
    req.get_data(cache=True)
    if req.environ["wsgi.input"].read(1):
        raise RequestEntityTooLarge()


def validation_error(exc: ValidationError) -> NoReturn:
    """flask-openapi3's ``validation_error_callback``: the request's first error (fields are
    checked in the model's order) as an :class:`ApiError` with our code and status; a
    ``/v1/audio/speech`` body's in OpenAI's terms (:func:`from_validation`)."""
    if exc.title == "SpeechRequest":
        raise from_validation(exc)
    first = exc.errors(include_url=False)[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    if first["type"] in ERRORS:  # one of our validators
        raise ERRORS[first["type"]](first["msg"])
    if first["type"] == "missing":
        raise ERRORS[f"missing_{field}"](f"{field} is required.")
    # A stock pydantic check (a pattern, a bound).
    raise ERRORS[_FIELD_CODES.get(field, f"invalid_{field}")](f"{field}: {first['msg']}.")


# ``POST /v1/audio/speech`` (api/speech.py): OpenAI's request body and its errors.

MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts", "moksori")
"""Model names accepted for compatibility. They all mean the same thing here: the voice is the
member's own model (``voice`` picks it), so ``model`` does not change the audio."""

SpeechFormat = Literal["wav", "mp3", "flac", "opus", "pcm"]


class SpeechRequest(BaseModel):
    """The body of ``POST /v1/audio/speech``, as OpenAI defines it (fields OpenAI has that this
    server does not use, such as ``instructions``, are ignored)."""

    model_config = ConfigDict(
        extra="ignore",
        openapi_extra={"example": {"model": "tts-1", "voice": "1", "input": "안녕하세요!"}},
    )

    model: StrictStr = Field(description=f"One of {', '.join(MODELS)}; all mean the same.")
    input: StrictStr = Field(description="The text to say (`MOKSORI_MAX_TEXT_LENGTH` at most).")
    voice: StrictInt | StrictStr = Field(
        description="A member's id (integer or digits) or name (case-insensitive)."
    )
    response_format: SpeechFormat = Field(default="mp3", description="The audio format.")
    speed: float = Field(
        default=1.0, ge=MIN_SPEED, le=MAX_SPEED, strict=True, description="Speaking rate."
    )
    stream_format: Literal["audio"] | None = Field(
        default=None, description="Only `audio` (the whole file in the body); `sse` is refused."
    )


def openai_invalid(param: str, kind: ErrorKind, message: str) -> ApiError:
    """An error naming the request field at fault, answered with 400 as OpenAI does for every
    invalid request."""
    return kind(message, param=param, status=400)


def from_validation(error: ValidationError) -> ApiError:
    """The first problem pydantic found, as one OpenAI error naming the field."""
    first = error.errors(include_url=False)[0]
    param = str(first["loc"][0]) if first["loc"] else ""
    if first["type"] == "missing":
        return openai_invalid(param, MISSING_PARAMETER, f"Missing required parameter: {param!r}.")
    if param == "response_format":
        listed = ", ".join(FORMATS)
        return openai_invalid(
            param, UNSUPPORTED_FORMAT, f"response_format must be one of {listed}."
        )
    if param == "speed":
        return openai_invalid(
            param, INVALID_SPEED, f"speed must be a number from {MIN_SPEED} to {MAX_SPEED}."
        )
    return openai_invalid(param, INVALID_VALUE, f"Invalid value for {param!r}: {first['msg']}.")
