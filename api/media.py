"""``GET /media/<key>``: audio from local storage, with Range, ETag and caching headers.

Only registered when ``MOKSORI_STORAGE_URL`` is a ``file://`` directory. Only server-shaped keys
(``wav/<member>/<version>/<sha256>.wav``) are looked up, and they never leave the storage root:
:meth:`LocalStorage.path_for` refuses traversal, absolute paths and symlinks.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, send_file

from api.errors import ApiError
from common.storage import is_key

bp = Blueprint("media", __name__, url_prefix="/media")

ONE_YEAR = 365 * 24 * 3600


@bp.get("/<path:key>")
def serve(key: str) -> Response:
    """Serve one stored object; objects are content-addressed, so they are cacheable for good."""
    # Only a key of the shape the server builds: nothing else in the root (an upload's
    # temporary file, say) and no client-made name ever reaches the file system.
    path = current_app.extensions["moksori"].storage.path_for(key) if is_key(key) else None
    if path is None or not path.is_file():
        raise ApiError(404, "not_found", "There is no such audio file.")
    response = send_file(path, mimetype="audio/wav", conditional=True, etag=True, max_age=ONE_YEAR)
    response.cache_control.public = True
    response.cache_control.immutable = True
    return response
