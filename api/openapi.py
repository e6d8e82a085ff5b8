"""``GET /openapi.json``: the API's contract as an OpenAPI 3.1 document.

Written by hand from the README's "API" section and the code; ``tests/test_openapi.py`` checks
that its paths and methods are exactly the app's routes, and ``tests/test_fuzz.py`` has
schemathesis hold the running service to it. The limits it states are the deployment's own
(``MOKSORI_MAX_TEXT_LENGTH``, ``MOKSORI_MAX_CONTENT_LENGTH``), and ``/media/{key}`` is listed only
when this API serves local files.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from api.validation import MAX_WAIT_S
from common.config import Settings

API_VERSION = "1.0.0"
"""The contract's version (``info.version``): bump it whenever a request or response changes."""

bp = Blueprint("openapi", __name__)

JSON = "application/json"
_ERROR = {"$ref": "#/components/schemas/Error"}
_UUID = {"type": "string", "format": "uuid"}
_KEY_PATTERN = r"^wav/[0-9]+/[A-Za-z0-9_-][A-Za-z0-9._-]*/[0-9a-f]{64}\.wav$"
# member_id as the code reads it: a JSON integer, or a string of ASCII digits (the React client
# sends either); whitespace around the digits is ASCII only.
_MEMBER_ID_STRING = r"^[ \t\n\r\x0b\x0c]*[0-9]+[ \t\n\r\x0b\x0c]*$"


def _error(description: str, *codes: str, headers: dict[str, Any] | None = None) -> dict:
    """A response in the one error shape; ``codes`` are the ``error.code`` values it can carry."""
    listed = ", ".join(f"`{code}`" for code in codes)
    codes_only = {"properties": {"error": {"properties": {"code": {"enum": list(codes)}}}}}
    response: dict[str, Any] = {
        "description": f"{description} (`error.code`: {listed}).",
        "content": {JSON: {"schema": {"allOf": [_ERROR, codes_only]}}},
    }
    if headers:
        response["headers"] = headers
    return response


_URI_TOO_LONG = {
    "description": "The request line is over 4094 bytes: refused by the HTTP server (gunicorn) "
    "before the API sees it, with gunicorn's own HTML page, not the JSON error shape.",
    "content": {"text/html": {"schema": {"type": "string"}}},
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }
}
_LOCATION = {
    "Location": {
        "description": "The job's status URL (`status_url`).",
        "required": True,
        "schema": {"type": "string"},
    }
}


# Every /api/* route: keys (when MOKSORI_API_KEYS is set) and the request rate apply to all.
_UNAUTHORIZED = _error("A missing or wrong API key", "unauthorized", "invalid_api_key")
_RATE_LIMITED = _error(
    "More requests than `MOKSORI_RATE_LIMIT` allows", "rate_limited", headers=_RETRY_AFTER
)


def _object(properties: dict[str, Any], required: list[str] | None = None) -> dict:
    """A closed JSON object: every listed property is required unless ``required`` says
    otherwise, and nothing else may appear."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }


def _job_fields() -> dict[str, Any]:
    return {
        "job_id": _UUID,
        "status_url": {"type": "string", "description": "Where to follow the job."},
        "uuid": {**_UUID, "description": "The client's `uuid`, or one generated for it."},
        "member_id": {"type": "integer", "minimum": 0},
        "created_at": {
            "type": "string",
            "description": "The client's `created_at` in ISO 8601, or the time of the request.",
        },
    }


_DONE = {
    "url": {
        "type": "string",
        "description": "Where the WAV is: the API's `/media/` for local files; for GCS a V4 "
        "signed URL made for this answer (valid for `MOKSORI_SIGNED_URL_TTL` seconds), or a "
        "plain URL when the bucket is public.",
    },
    "duration_s": {
        "type": ["number", "null"],
        "description": "Length of the audio in seconds (null when storage cannot tell).",
    },
}
_FAILED = {"error": {"type": "string", "description": "Why the job failed, in a sentence."}}


def _schemas(max_text_length: int) -> dict[str, Any]:
    job = _job_fields()
    return {
        "Error": _object(
            {
                "error": _object(
                    {
                        "code": {
                            "type": "string",
                            "pattern": "^[a-z0-9_]+$",
                            "description": "Stable and machine-readable.",
                        },
                        "message": {
                            "type": "string",
                            "minLength": 1,
                            "description": "What was wrong, for people.",
                        },
                    }
                )
            }
        ),
        "TextRequest": {
            "type": "object",
            "description": "The existing React client's fields; unknown fields are ignored.",
            "required": ["member_id", "text"],
            "properties": {
                "member_id": {
                    "description": "Whose voice: a non-negative integer (a string of digits is "
                    "read as one).",
                    "anyOf": [
                        {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
                        {"type": "string", "pattern": _MEMBER_ID_STRING},
                    ],
                },
                "text": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": max_text_length,
                    "pattern": r"\S",
                    "description": "What to say: not blank, at most `MOKSORI_MAX_TEXT_LENGTH` "
                    "characters, and with something pronounceable (Hangul, Latin letters or "
                    "digits).",
                },
                "uuid": {
                    "type": ["string", "null"],
                    "format": "uuid",
                    "description": "Echoed back, hyphenated; generated when absent or null "
                    "(braces, `urn:uuid:` and 32 bare hex digits are read as a UUID too).",
                },
                "created_at": {
                    "anyOf": [
                        {"type": "null"},
                        {"type": "string", "format": "date"},
                        {"type": "string", "format": "date-time", "maxLength": 64},
                    ],
                    "description": "An ISO 8601 date or date-time, echoed back; now when absent "
                    "or null.",
                },
            },
            "examples": [
                {
                    "member_id": 1,
                    "text": "안녕하세요!",
                    "uuid": "022db29c-d0e2-11e5-bb4c-60f81dca7676",
                    "created_at": "2022-08-22",
                }
            ],
        },
        "TextQueued": _object(
            {
                **job,
                "status": {"const": "queued"},
                "cached": {"const": False},
            }
        ),
        "TextFinished": {
            "description": "Already stored (`cached`), or finished within `?wait`.",
            "oneOf": [
                _object(
                    {**job, "status": {"const": "done"}, "cached": {"type": "boolean"}, **_DONE}
                ),
                _object(
                    {**job, "status": {"const": "failed"}, "cached": {"const": False}, **_FAILED}
                ),
            ],
        },
        "JobStatus": {
            "oneOf": [
                _object({"job_id": _UUID, "status": {"enum": ["queued", "running"]}}),
                _object({"job_id": _UUID, "status": {"const": "done"}, **_DONE}),
                _object({"job_id": _UUID, "status": {"const": "failed"}, **_FAILED}),
            ]
        },
        "Members": _object(
            {
                "members": {
                    "type": "array",
                    "items": _object(
                        {
                            "id": {"type": "integer", "minimum": 0},
                            "name": {"type": "string"},
                            "sample_rate": {"type": "integer", "minimum": 1},
                            "version": {"type": "string"},
                            "vocoder": {"type": "string", "examples": ["hifigan", "griffin-lim"]},
                            "served": {
                                "type": ["boolean", "null"],
                                "description": "Whether a worker consumes the member's queue "
                                "(null: the broker cannot tell).",
                            },
                        }
                    ),
                }
            }
        ),
    }


def _post_texts(max_content_length: int) -> dict[str, Any]:
    to_status = {"job_id": "$response.body#/job_id"}
    links = {"GetJob": {"operationId": "getJob", "parameters": to_status}}
    return {
        "operationId": "createText",
        "summary": "Queue a text for a member's voice",
        "description": "Answered at once from storage when this voice has already said the "
        "text; identical requests in flight join one job.",
        "security": [{}, {"bearerAuth": []}],
        "parameters": [
            {
                "name": "wait",
                "in": "query",
                "required": False,
                "description": "Wait up to this many seconds for the job to finish (given "
                "once; an empty or repeated `wait` is a 400).",
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_WAIT_S},
            }
        ],
        "requestBody": {
            "required": True,
            "content": {JSON: {"schema": {"$ref": "#/components/schemas/TextRequest"}}},
        },
        "responses": {
            "200": {
                "description": "Done (or failed) already: stored before, or finished in time.",
                "headers": _LOCATION,
                "content": {JSON: {"schema": {"$ref": "#/components/schemas/TextFinished"}}},
                "links": links,
            },
            "202": {
                "description": "Queued: follow `status_url`.",
                "headers": _LOCATION,
                "content": {JSON: {"schema": {"$ref": "#/components/schemas/TextQueued"}}},
                "links": links,
            },
            "400": _error(
                "Not JSON, not an object, or `wait` not 1-60", "invalid_json", "invalid_wait"
            ),
            "401": _UNAUTHORIZED,
            "404": _error("No voice for this member", "unknown_member"),
            "413": _error(
                f"`text` too long, or the body over {max_content_length} bytes",
                "text_too_long",
                "request_entity_too_large",
            ),
            "414": _URI_TOO_LONG,
            "415": _error("The body is not `application/json`", "unsupported_media_type"),
            "422": _error(
                "A field is missing or malformed, or nothing in `text` can be pronounced",
                "missing_member_id",
                "invalid_member_id",
                "missing_text",
                "invalid_text",
                "empty_text",
                "unspeakable_text",
                "invalid_uuid",
                "invalid_created_at",
            ),
            "429": _error(
                "Too many requests, or too many of this client's jobs queued",
                "rate_limited",
                "too_many_queued_jobs",
                headers=_RETRY_AFTER,
            ),
            "503": _error(
                "No worker serves the member, or the queue or storage is unreachable",
                "member_unavailable",
                "service_unavailable",
                headers=_RETRY_AFTER,
            ),
        },
    }


def _paths(max_content_length: int, media: bool) -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/api/texts": {"post": _post_texts(max_content_length)},
        "/api/jobs/{job_id}": {
            "get": {
                "operationId": "getJob",
                "summary": "A job's status",
                "parameters": [
                    {
                        "name": "job_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "format": "uuid"},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "Queued, running, done (with `url`) or failed (with "
                        "`error`); a `url` is made for each answer.",
                        "content": {JSON: {"schema": {"$ref": "#/components/schemas/JobStatus"}}},
                    },
                    "401": _UNAUTHORIZED,
                    "404": _error(
                        "Never issued, or expired after `MOKSORI_RESULT_EXPIRES`",
                        "unknown_job",
                        "not_found",
                    ),
                    "429": _RATE_LIMITED,
                    "414": _URI_TOO_LONG,
                    "503": _error(
                        "The result backend or storage is unreachable",
                        "service_unavailable",
                        headers=_RETRY_AFTER,
                    ),
                },
            }
        },
        "/api/members": {
            "get": {
                "operationId": "listMembers",
                "summary": "The voices, and whether a worker serves each",
                "responses": {
                    "200": {
                        "description": "Every voice of the repository.",
                        "content": {JSON: {"schema": {"$ref": "#/components/schemas/Members"}}},
                    },
                    "401": _UNAUTHORIZED,
                    "429": _RATE_LIMITED,
                },
            }
        },
        "/healthz": {
            "get": {
                "operationId": "health",
                "summary": "The process is alive",
                "responses": {
                    "200": {
                        "description": "Always, while the process answers.",
                        "content": {JSON: {"schema": _object({"status": {"const": "ok"}})}},
                    }
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics of every API process",
                "responses": {
                    "200": {
                        "description": 'Prometheus text exposition format (README, "Metrics").',
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "401": _error(
                        "With `MOKSORI_METRICS_AUTH`, a missing or wrong API key",
                        "unauthorized",
                        "invalid_api_key",
                    ),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": {
                    "200": {
                        "description": "The OpenAPI 3.1 description of this deployment.",
                        "content": {JSON: {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    }
    if media:
        paths["/media/{key}"] = {"get": _media()}
    return paths


def _media() -> dict[str, Any]:
    wav = {"audio/wav": {"schema": {"type": "string", "contentMediaType": "audio/wav"}}}
    return {
        "operationId": "getMedia",
        "summary": "A stored WAV (only with `file://` storage)",
        "description": "Keys come from the server's URLs; nothing outside the storage root is "
        "ever served.",
        "parameters": [
            {
                "name": "key",
                "in": "path",
                "required": True,
                "description": "`wav/{member}/{voice version}/{sha256}.wav` (its slashes may be "
                "sent as they are).",
                "schema": {"type": "string", "pattern": _KEY_PATTERN},
            },
            {
                "name": "Range",
                "in": "header",
                "required": False,
                "description": "A byte range, for seeking.",
                "schema": {"type": "string"},
            },
        ],
        "responses": {
            "200": {
                "description": "The whole file; cacheable for good (keys are content-addressed).",
                "headers": {
                    "ETag": {"required": True, "schema": {"type": "string"}},
                    "Cache-Control": {"required": True, "schema": {"type": "string"}},
                },
                "content": wav,
            },
            "206": {
                "description": "The requested range.",
                "headers": {"Content-Range": {"required": True, "schema": {"type": "string"}}},
                "content": wav,
            },
            "304": {"description": "Not modified (`If-None-Match`)."},
            "404": _error("No such file", "not_found"),
            "414": _URI_TOO_LONG,
            "416": _error("The range is outside the file", "requested_range_not_satisfiable"),
        },
    }


def build(
    *, max_text_length: int = 1000, max_content_length: int = 64 * 1024, media: bool = True
) -> dict[str, Any]:
    """The OpenAPI 3.1 document for a deployment with these limits (``media``: whether it
    serves ``/media/{key}``, i.e. uses ``file://`` storage)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "moksori",
            "version": API_VERSION,
            "summary": "Korean text-to-speech: queue a text, get a WAV's URL.",
            "description": 'Every error is `{"error": {"code": "...", "message": '
            '"..."}}`: 4xx for what the client can fix, 503 (with `Retry-After`) when a '
            "dependency is down. An unknown path is a `404` (`not_found`) and a method a path "
            "does not support a `405` (`method_not_allowed`, with `Allow`), in the same shape.",
        },
        "paths": _paths(max_content_length, media),
        "components": {
            "schemas": _schemas(max_text_length),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key, where the deployment requires one.",
                }
            },
        },
    }


def for_settings(settings: Settings, media: bool) -> dict[str, Any]:
    """The document for a deployment with ``settings``."""
    return build(
        max_text_length=settings.max_text_length,
        max_content_length=settings.max_content_length,
        media=media,
    )


@bp.get("/openapi.json")
def openapi() -> Response:
    spec = for_settings(current_app.config["MOKSORI"], media="media" in current_app.blueprints)
    return jsonify(spec)
