"""``GET /healthz``: the process is alive and answering (no dependency is checked here)."""

from __future__ import annotations

from flask import Response, jsonify
from flask_openapi3 import APIBlueprint, Tag

from api.openapi import Health

bp = APIBlueprint("health", __name__, abp_tags=[Tag(name="health")])


@bp.get("/healthz", operation_id="health", summary="The process is alive", responses={200: Health})
def healthz() -> Response:
    return jsonify({"status": "ok"})
