"""``GET /media/<key>``: audio from local storage, with Range, ETag and caching headers.

Only registered when ``MOKSORI_STORAGE_URL`` is a ``file://`` directory. Only server-shaped keys
(``wav/<member>/<version>/<hmac>.wav``) are looked up, and they never leave the storage root:
:meth:`LocalStorage.path_for` refuses traversal, absolute paths and symlinks. With
``MOKSORI_MEDIA_ACCESS=signed`` a request needs the URL's unexpired signature or an API key.
"""

from __future__ import annotations

from flask import Response, current_app, request, send_file
from flask_openapi3 import APIBlueprint, Tag
from pydantic import Field
from pydantic.json_schema import SkipJsonSchema
from werkzeug.http import parse_range_header

from api.auth import has_valid_key
from api.errors import INVALID_SIGNATURE, NOT_FOUND, PRECONDITION_FAILED, RANGE_NOT_SATISFIABLE
from api.openapi import URI_TOO_LONG, error
from api.validation import MediaPath, RequestModel, no_default

bp = APIBlueprint("media", __name__, url_prefix="/media", abp_tags=[Tag(name="media")])

ONE_YEAR = 365 * 24 * 3600
_WAV = {"audio/wav": {"schema": {"type": "string", "format": "binary"}}}


class MediaHeaders(RequestModel):
    """The request headers ``send_file`` reads (documented; validation only reads them)."""

    range: str | SkipJsonSchema[None] = Field(
        default=None,
        alias="Range",
        description="One byte range, to seek (`bytes=first-last`). A malformed range, several "
        "ranges or another unit is ignored: the whole file is served.",
        json_schema_extra=no_default,
    )
    if_match: str | SkipJsonSchema[None] = Field(
        default=None,
        alias="If-Match",
        description="Serve only if the file's ETag is one of these (or `*`); else 412.",
        json_schema_extra=no_default,
    )


class MediaQuery(RequestModel):
    """A signed URL's query (``MOKSORI_MEDIA_ACCESS=signed``); checked by the route, so a
    malformed value is a 403 like a wrong one."""

    expires: str | SkipJsonSchema[None] = Field(
        default=None,
        description="Unix time the URL stops being valid (signed URLs only).",
        json_schema_extra=no_default,
    )
    signature: str | SkipJsonSchema[None] = Field(
        default=None,
        description="HMAC-SHA256 of the path and `expires` (signed URLs only).",
        json_schema_extra=no_default,
    )


_REFUSALS = {
    "missing": "This audio needs a signed URL (with expires and signature) or an API key.",
    "malformed": "The URL's expires is not a Unix time.",
    "invalid": "The URL's signature does not match: use the URL exactly as the API gave it.",
    "expired": "The signed URL has expired: read the job's status again for a fresh one.",
}


@bp.get(
    "/<path:key>",
    operation_id="getMedia",
    summary="A stored WAV (only with `file://` storage)",
    description="Keys come from the server's URLs; nothing outside the storage root is ever "
    "served.",
    responses={
        200: {
            "description": "The whole file; cacheable for good (keys are content-addressed).",
            "headers": {
                "ETag": {"required": True, "schema": {"type": "string"}},
                "Cache-Control": {"required": True, "schema": {"type": "string"}},
            },
            "content": _WAV,
        },
        206: {
            "description": "The requested range.",
            "headers": {"Content-Range": {"required": True, "schema": {"type": "string"}}},
            "content": _WAV,
        },
        304: {"description": "Not modified (`If-None-Match`)."},
        403: error("A signature is needed and is missing, wrong or expired", INVALID_SIGNATURE),
        412: error("`If-Match` names another version", PRECONDITION_FAILED),
        404: error("No such file", NOT_FOUND),
        414: URI_TOO_LONG,
        416: error("The range is outside the file", RANGE_NOT_SATISFIABLE),
    },
)
def serve(path: MediaPath, query: MediaQuery, header: MediaHeaders) -> Response:
    """Serve one stored object; objects are content-addressed, so they are cacheable for good.

    ``Range`` and ``If-None-Match`` are answered by werkzeug from the request, once a ``Range``
    it cannot serve as one part is dropped (:func:`_servable_range`)."""
    storage = current_app.extensions["moksori"].storage
    # The signature is checked before the file system is asked: a refused client learns
    # nothing, not even whether the object exists.
    refusal = storage.refusal(path.key, query.expires, query.signature)
    if refusal and not has_valid_key():
        raise INVALID_SIGNATURE(_REFUSALS[refusal])
    # Only a key of the shape the server builds (MediaPath): nothing else in the root (an
    # upload's temporary file, say) and no client-made name ever reaches the file system.
    file = storage.path_for(path.key)
    if file is None or not file.is_file():
        raise NOT_FOUND("There is no such audio file.")
    # conditional=False: the conditions are evaluated below, on the request minus a Range
    # that is ignored.
    response = send_file(file, mimetype="audio/wav", conditional=False, etag=True, max_age=ONE_YEAR)
    etag, _weak = response.get_etag()
    # If-Match is evaluated before Range (RFC 9110 section 13.2.2), and its 412 carries no
    # audio (werkzeug would keep the file as the 412's body, and serve a Range regardless).
    if request.if_match and not request.if_match.contains(etag or ""):
        response.close()
        raise PRECONDITION_FAILED("If-Match names no current version of this audio file.")
    environ = dict(request.environ)
    environ.pop("HTTP_IF_MATCH", None)  # answered above (werkzeug reads `*` as a mismatch)
    if not _servable_range(environ.get("HTTP_RANGE")):
        environ.pop("HTTP_RANGE", None)
    try:
        response.make_conditional(
            environ, accept_ranges=True, complete_length=response.content_length
        )
    except BaseException:
        response.close()  # the 416: the open file is not answered
        raise
    # A signed URL grants one client access for a while: shared caches must not keep it.
    if storage.url_signer is None:
        response.cache_control.public = True
    else:
        response.cache_control.private = True
    response.cache_control.immutable = True
    return response


def _servable_range(value: str | None) -> bool:
    """Whether ``Range`` is one byte range, the only kind served (as a 206, or a 416 when it
    starts past the end). RFC 9110 section 14.2 lets a server ignore a ``Range`` and requires
    it for an unknown unit; a malformed one or several ranges (which werkzeug answered 416) are
    ignored too, so the client gets the whole file (200) rather than an error."""
    parsed = parse_range_header(value)
    return parsed is not None and parsed.units == "bytes" and len(parsed.ranges) == 1
