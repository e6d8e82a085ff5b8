"""The API's contract, generated: ``GET /openapi.json`` (OpenAPI 3.1.0) and Swagger UI at ``/docs``.

flask-openapi3 builds the document from the routes themselves: each ``APIBlueprint`` route
declares its request models (``api/validation.py``, which also validate the request) and its
responses (the models below, and :func:`error` for each documented error code). What is only
known at run time is filled in when the document is first generated: the text limit
(``MOKSORI_MAX_TEXT_LENGTH``) and the body limit (``MOKSORI_MAX_CONTENT_LENGTH``).
``/media/{key}`` is listed only when its blueprint is registered (``file://`` storage).
``tests/unit/test_openapi.py`` keeps the document equal to the app's routes and the codes
the code raises; ``tests/integration/test_fuzz.py`` holds the running service to it.

Swagger UI's JavaScript and CSS come from the ``flask-openapi3-swagger`` package and are served
by this app (``/docs/swagger/...``): the page needs no CDN and works offline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from uuid import UUID

import flask_openapi3_swagger
from flask import Response, current_app, jsonify, redirect, render_template_string, url_for
from flask_openapi3 import APIBlueprint, Info, OpenAPI, Tag
from flask_openapi3_swagger.templates import swagger_html_string
from pydantic import BaseModel, ConfigDict, Field, RootModel

from api.auth import Guard
from api.errors import INVALID_API_KEY, RATE_LIMITED, UNAUTHORIZED, ErrorKind
from api.validation import TextRequest

API_VERSION = "1.0.0"
"""The contract's version (``info.version``): bump it whenever a request or response changes."""

JSON = "application/json"
HTML = "text/html"
ERROR_REF = "#/components/schemas/Error"

INFO = Info(
    title="moksori",
    version=API_VERSION,
    summary="Korean text-to-speech: queue a text, get a WAV's URL.",
    description='Every error is `{"error": {"code": "...", "message": "..."}}`: 4xx for what '
    "the client can fix, 503 (with `Retry-After`) when a dependency is down. An unknown path is "
    "a `404` (`not_found`) and a method a path does not support a `405` "
    "(`method_not_allowed`, with `Allow`), in the same shape.",
)
SECURITY_SCHEMES: dict[str, Any] = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key, where the deployment requires one.",
    }
}
BEARER_OPTIONAL = [{}, {"bearerAuth": []}]
"""An operation open without keys, or behind them when ``MOKSORI_API_KEYS`` is set."""

SWAGGER_ASSETS = Path(flask_openapi3_swagger.__file__).parent / "templates" / "swagger"
# The package's page loads "swagger/css/..." relative to itself; a <base> makes that resolve
# under /docs/ although the page is served at /docs (no trailing slash).
_SWAGGER_PAGE = swagger_html_string.replace("<head>", '<head>\n    <base href="{{ base }}">', 1)


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern="^[a-z0-9_]+$", description="Stable and machine-readable.")
    message: str = Field(min_length=1, description="What was wrong, for people.")


class Error(BaseModel):
    """The one error shape of every 4xx and 5xx answer."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorDetail


def error(description: str, *kinds: ErrorKind, headers: dict[str, Any] | None = None) -> dict:
    """A documented error response: the :class:`Error` shape, narrowed to the codes of
    ``kinds`` (the errors this status can carry on this route), which share one status."""
    statuses = {kind.status for kind in kinds}
    if len(statuses) != 1:
        raise ValueError(f"one response, one status: {[(k.code, k.status) for k in kinds]}")
    return _narrowed(description, ERROR_REF, [kind.code for kind in kinds], headers)


def _narrowed(description: str, ref: str, codes: list[str], headers: dict[str, Any] | None) -> dict:
    listed = ", ".join(f"`{code}`" for code in codes)
    codes_only = {"properties": {"error": {"properties": {"code": {"enum": codes}}}}}
    response: dict[str, Any] = {
        "description": f"{description} (`error.code`: {listed}).",
        "content": {JSON: {"schema": {"allOf": [{"$ref": ref}, codes_only]}}},
    }
    if headers:
        response["headers"] = headers
    return response


class OpenAIErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str = Field(min_length=1, description="What was wrong, for people.")
    type: Literal[
        "invalid_request_error", "authentication_error", "rate_limit_error", "server_error"
    ]
    param: str | None = Field(description="The request field at fault, if one is.")
    code: str = Field(pattern="^[a-z0-9_]+$", description="Stable and machine-readable.")


class OpenAIError(BaseModel):
    """The error shape under ``/v1/``: OpenAI's, a superset of :class:`Error`."""

    model_config = ConfigDict(extra="forbid")

    error: OpenAIErrorDetail


OPENAI_ERROR_REF = "#/components/schemas/OpenAIError"


def openai_error(
    description: str, *kinds: ErrorKind, headers: dict[str, Any] | None = None
) -> dict:
    """A documented error response under ``/v1/``: :class:`OpenAIError`, narrowed to the codes
    of ``kinds`` (OpenAI answers every invalid request with 400, whatever our own status)."""
    return _narrowed(description, OPENAI_ERROR_REF, [kind.code for kind in kinds], headers)


URI_TOO_LONG = {
    "description": "The request line is over 4094 bytes: refused by the HTTP server (gunicorn) "
    "before the API sees it, with gunicorn's own HTML page, not the JSON error shape.",
    "content": {HTML: {"schema": {"type": "string"}}},
}
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }
}
LOCATION = {
    "Location": {
        "description": "The job's status URL (`status_url`).",
        "required": True,
        "schema": {"type": "string"},
    }
}
AUTH_ERRORS = error("A missing or wrong API key", UNAUTHORIZED, INVALID_API_KEY)
"""Every ``/api/*`` route: keys apply when ``MOKSORI_API_KEYS`` is set."""
RATE_ERRORS = error(
    "More requests than `MOKSORI_RATE_LIMIT` allows", RATE_LIMITED, headers=RETRY_AFTER
)
"""Every ``/api/*`` route: the request rate applies to all."""

_TO_JOB = {"GetJob": {"operationId": "getJob", "parameters": {"job_id": "$response.body#/job_id"}}}


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Health(_Closed):
    model_config = ConfigDict(openapi_extra={"description": "Always, while the process answers."})

    status: Literal["ok"]


class _Job(_Closed):
    job_id: UUID
    status_url: str = Field(description="Where to follow the job.")
    uuid: UUID = Field(description="The client's `uuid`, or one generated for it.")
    member_id: int = Field(ge=0)
    created_at: str = Field(
        description="The client's `created_at` in ISO 8601, or the time of the request."
    )


_URL = Field(
    description="Where the WAV is: the API's `/media/` for local files; for GCS a V4 signed URL "
    "made for this answer (valid for `MOKSORI_SIGNED_URL_TTL` seconds), or a plain URL when the "
    "bucket is public."
)
_DURATION = Field(description="Length of the audio in seconds (null when storage cannot tell).")
_WHY = Field(description="Why the job failed, in a sentence.")
_WHY_CODE = Field(
    description="The failure's stable code: `synthesis_failed`, `unspeakable_text`, "
    "`storage_full`, `storage_unavailable` or `job_lost` (the job can no longer finish; submit "
    "it again).",
    examples=["synthesis_failed"],
)


class SentenceReady(_Closed):
    index: int = Field(ge=0, description="Its place in the text, from 0.")
    url: str = Field(description="Where the sentence's own WAV is (made as `url` is).")


class _Sentences(_Closed):
    """Set for a text of several sentences, once the worker has split it."""

    sentences_done: int | None = Field(None, ge=0, description="Sentences stored so far.")
    sentences_total: int | None = Field(None, ge=2, description="Sentences in the text.")
    sentences: list[SentenceReady] | None = Field(
        None,
        description="Each sentence stored so far, in the text's order; each is a WAV of its "
        "own, and `GET /api/jobs/{job_id}/audio` streams them joined as they come.",
    )


WAIT_DECLINED = {
    "Moksori-Wait": {
        "description": "`declined` when `?wait` was asked but every waiting slot of the API "
        "process was taken (`MOKSORI_MAX_WAITING`): the answer came at once; poll `status_url`.",
        "required": False,
        "schema": {"type": "string", "enum": ["declined"]},
    }
}


class TextQueued(_Job):
    model_config = ConfigDict(
        openapi_extra={
            "description": "Queued: follow `status_url`.",
            "headers": {**LOCATION, **WAIT_DECLINED},
            "links": _TO_JOB,
        }
    )

    status: Literal["queued"]
    cached: Literal[False]


class TextDone(_Job, _Sentences):
    status: Literal["done"]
    cached: bool
    url: str = _URL
    duration_s: float | None = _DURATION


class TextFailed(_Job):
    status: Literal["failed"]
    cached: Literal[False]
    error: str = _WHY
    error_code: str = _WHY_CODE


class TextFinished(RootModel[Annotated[TextDone | TextFailed, Field(discriminator="status")]]):
    """Already stored (``cached``), or finished within ``?wait``."""

    model_config = ConfigDict(
        openapi_extra={
            "description": "Done (or failed) already: stored before, or finished in time.",
            "headers": LOCATION,
            "links": _TO_JOB,
        }
    )


class JobPending(_Sentences):
    job_id: UUID
    status: Literal["queued", "running"]


class JobDone(_Sentences):
    job_id: UUID
    status: Literal["done"]
    url: str = _URL
    duration_s: float | None = _DURATION


class JobFailed(_Closed):
    job_id: UUID
    status: Literal["failed"]
    error: str = _WHY
    error_code: str = _WHY_CODE


class JobStatus(
    RootModel[Annotated[JobPending | JobDone | JobFailed, Field(discriminator="status")]]
):
    model_config = ConfigDict(
        openapi_extra={
            "description": "Queued, running, done (with `url`) or failed (with `error`); a "
            "`url` is made for each answer."
        }
    )


class Member(_Closed):
    id: int = Field(ge=0)
    name: str
    sample_rate: int = Field(ge=1)
    version: str
    vocoder: str = Field(examples=["hifigan", "griffin-lim"])
    served: bool | None = Field(
        description="Whether a worker consumes the member's queue (null: the broker cannot tell)."
    )


class Members(_Closed):
    model_config = ConfigDict(openapi_extra={"description": "Every voice of the repository."})

    members: list[Member]


class MoksoriAPI(OpenAPI):
    """flask-openapi3's app, finishing its generated document with this deployment's limits."""

    def generate_spec_json(self) -> None:
        super().generate_spec_json()
        _finish(self.spec_json, self.config["MOKSORI"])
        _secure(self.spec_json, Guard.from_settings(self.config["MOKSORI"]))


def _finish(spec: dict[str, Any], settings: Any) -> None:
    """Put the run-time limits into the document, and drop the generic "422: a list of
    validation errors" flask-openapi3 adds to every operation (ours are documented per route)."""
    for path_item in spec["paths"].values():
        for operation in path_item.values():
            invalid = operation["responses"].get("422", {}).get("content", {}).get(JSON, {})
            if invalid.get("schema", {}).get("type") == "array":
                del operation["responses"]["422"]
            if "requestBody" in operation:
                operation["requestBody"]["description"] = (
                    f"At most {settings.max_content_length} bytes (`MOKSORI_MAX_CONTENT_LENGTH`); "
                    "a larger body is a 413 (`request_entity_too_large`)."
                )
    schemas = spec["components"]["schemas"]
    if any(OPENAI_ERROR_REF in str(item) for item in spec["paths"].values()):
        openai = OpenAIError.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(openai.pop("$defs", {}))
        schemas[OpenAIError.__name__] = openai
    if "SpeechRequest" in schemas:  # the same text checks as /api/texts
        text = schemas["SpeechRequest"]["properties"]["input"]
        text.update(minLength=1, maxLength=settings.max_text_length, pattern=r"\S")
    if TextRequest.__name__ in schemas:
        schemas[TextRequest.__name__]["properties"]["text"]["maxLength"] = settings.max_text_length


def _secure(spec: dict[str, Any], guard: Guard) -> None:
    """Padlocks only where a key is needed: each operation requires ``bearerAuth`` exactly when
    the key check (:mod:`api.auth`) guards its path, and without ``MOKSORI_API_KEYS`` the
    document declares no security at all."""
    for path, path_item in spec["paths"].items():
        for method, operation in path_item.items():
            if guard.protects(path, method.upper()):
                operation["security"] = [{"bearerAuth": []}]
            else:
                operation.pop("security", None)
    if not guard.enabled:
        spec.get("components", {}).pop("securitySchemes", None)


bp = APIBlueprint(
    "openapi",
    __name__,
    static_folder=str(SWAGGER_ASSETS),
    static_url_path="/docs/swagger",
    abp_tags=[Tag(name="docs", description="This API's own description.")],
)


@bp.get(
    "/openapi.json",
    operation_id="openapi",
    summary="This document",
    responses={
        200: {
            "description": "The OpenAPI 3.1 description of this deployment.",
            "content": {JSON: {"schema": {"type": "object"}}},
        }
    },
)
def spec() -> Response:
    return jsonify(current_app.api_doc)  # type: ignore[attr-defined]


@bp.get(
    "/docs",
    operation_id="docs",
    summary="Swagger UI for this document",
    responses={
        200: {
            "description": "Swagger UI, served with its assets by this API (no CDN).",
            "content": {HTML: {"schema": {"type": "string"}}},
        }
    },
)
def docs() -> str:
    return render_template_string(
        _SWAGGER_PAGE,
        base=url_for("openapi.docs") + "/",
        doc_url=url_for("openapi.spec"),
        swagger_config=current_app.config.get("SWAGGER_CONFIG"),
        oauth_config=None,
    )


@bp.get(
    "/docs/",
    operation_id="docsSlash",
    summary="To `/docs`",
    responses={
        308: {
            "description": "Swagger UI is at `/docs`; the address with a slash leads there.",
            "headers": {"Location": {"required": True, "schema": {"type": "string"}}},
        }
    },
)
def docs_slash() -> Response:
    return redirect(url_for("openapi.docs"), 308)
