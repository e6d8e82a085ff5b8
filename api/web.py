"""``GET /`` and ``GET /web/<name>``: a page to try the voices in a browser.

Plain HTML, CSS and one ES module (``api/web/``), no build step and nothing fetched from elsewhere.
The page speaks the public API only (``GET /api/members``, ``POST /api/texts``, the job's status
URL), so it needs an API key exactly when the API does. Asset names are looked up in a fixed
table: a client's string never becomes a file path.
"""

from __future__ import annotations

from importlib import resources

from flask import Blueprint, Response, request

from api.errors import ApiError

bp = Blueprint("web", __name__)

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


def _read(name: str) -> bytes:
    return resources.files("api").joinpath("web", name).read_bytes()


@bp.get("/")
def index() -> Response:
    """The page: pick a member, type a text, press play."""
    return _conditional(_read("index.html"), "text/html; charset=utf-8")


@bp.get("/web/<name>")
def asset(name: str) -> Response:
    """The page's stylesheet and script, by their fixed names."""
    mimetype = ASSETS.get(name)
    if mimetype is None:
        raise ApiError(404, "not_found", "There is no such file of the web page.")
    return _conditional(_read(name), mimetype)


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
