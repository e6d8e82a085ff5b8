"""``GET /``, ``GET /web/<name>`` and ``GET /favicon.ico``: a page to try the voices in a browser.

Plain HTML, CSS and one ES module (``api/web/``), no build step and nothing fetched from elsewhere.
The page speaks the public API only (``GET /api/members``, ``POST /api/texts``, the job's status
URL and audio stream), so it needs an API key exactly when the API does. Asset names are looked
up in a fixed table: a client's string never becomes a file path.
"""

from __future__ import annotations

from importlib import resources
from typing import Annotated, Any

from flask import Response, request
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, BeforeValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

from api.errors import NOT_FOUND
from api.openapi import HTML, error

bp = APIBlueprint(
    "web", __name__, abp_tags=[Tag(name="web", description="A page to try the voices.")]
)

ASSETS: dict[str, str] = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
"""Every file served under ``/web/``, with its content type."""

# The page loads only its own files and talks only to this origin; audio may come from a GCS
# signed URL, so media may be any http(s) origin.
CSP = (
    "default-src 'self'; media-src 'self' https: http:; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)


def _asset_name(value: Any) -> str:
    if not isinstance(value, str) or value not in ASSETS:
        raise PydanticCustomError("not_found", "There is no such file of the web page.")
    return value


class AssetPath(BaseModel):
    """``GET /web/{name}``: one of the page's fixed file names."""

    name: Annotated[
        str,
        BeforeValidator(_asset_name),
        WithJsonSchema({"type": "string", "enum": sorted(ASSETS)}),
    ]


NOT_MODIFIED = {"description": "Not modified (`If-None-Match`)."}


def _read(name: str) -> bytes:
    return resources.files("api").joinpath("web", name).read_bytes()


@bp.get(
    "/",
    operation_id="webPage",
    summary="The web page: pick a member, type a text, hear it",
    description="Plain HTML that loads `/web/style.css` and `/web/app.js` and speaks this API; "
    "it asks for an API key where the deployment requires one.",
    responses={
        200: {"description": "The page.", "content": {HTML: {"schema": {"type": "string"}}}},
        304: NOT_MODIFIED,
    },
)
def index() -> Response:
    """The page: pick a member, type a text, press play."""
    return _conditional(_read("index.html"), "text/html; charset=utf-8")


@bp.get(
    "/web/<name>",
    operation_id="webAsset",
    summary="The web page's stylesheet and script",
    responses={
        200: {
            "description": "The file.",
            "content": {
                mimetype.split(";")[0]: {"schema": {"type": "string"}}
                for mimetype in ASSETS.values()
            },
        },
        304: NOT_MODIFIED,
        404: error("No such file", NOT_FOUND),
    },
)
def asset(path: AssetPath) -> Response:
    """The page's stylesheet and script, by their fixed names."""
    return _conditional(_read(path.name), ASSETS[path.name])


@bp.get(
    "/favicon.ico",
    operation_id="favicon",
    summary="The page's icon",
    description="What browsers ask for on their own; an icon rather than a 404 in the logs.",
    responses={
        200: {
            "description": "The icon.",
            "content": {"image/x-icon": {"schema": {"type": "string"}}},
        },
        304: NOT_MODIFIED,
    },
)
def favicon() -> Response:
    """A small icon (16 and 32 px)."""
    return _conditional(_read("favicon.ico"), "image/x-icon")


def _conditional(body: bytes, mimetype: str) -> Response:
    """The file with an ETag (a 304 when the browser has it) and headers that keep the page
    to its own origin."""
    response = Response(body, content_type=mimetype)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.cache_control.no_cache = True  # revalidated: a deploy shows its new page at once
    response.add_etag()
    return response.make_conditional(request)
