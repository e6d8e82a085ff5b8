"""``GET /api/members``: the voices this deployment serves."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

bp = Blueprint("members", __name__, url_prefix="/api")


@bp.get("/members")
def list_members() -> Response:
    """Every served voice: id, name, sample rate, version and vocoder."""
    voices = current_app.extensions["moksori"].voices
    return jsonify({"members": [voice.public() for voice in voices.values()]})
