"""``GET /api/members``: the voices this deployment knows, and whether a worker serves each."""

from __future__ import annotations

import logging
from typing import Any

from flask import Response, current_app, jsonify
from flask_openapi3 import APIBlueprint, Tag

from api.openapi import AUTH_ERRORS, BEARER_OPTIONAL, RATE_ERRORS, Members
from api.service import UNAVAILABLE, JobService

bp = APIBlueprint("members", __name__, url_prefix="/api", abp_tags=[Tag(name="members")])
_LOGGER = logging.getLogger(__name__)


@bp.get(
    "/members",
    operation_id="listMembers",
    summary="The voices, and whether a worker serves each",
    security=BEARER_OPTIONAL,
    responses={200: Members, 401: AUTH_ERRORS, 429: RATE_ERRORS},
)
def list_members() -> Response:
    """Every voice: id, name, sample rate, version, vocoder, and ``served`` (true when a worker
    consumes its queue, false when none does, null when the broker cannot tell)."""
    service: JobService = current_app.extensions["moksori"]
    members: list[dict[str, Any]] = []
    for member_id, voice in service.voices.items():
        try:
            served = service.fleet.consumers(member_id)
        except UNAVAILABLE as exc:  # the list answers even with the broker down
            _LOGGER.warning("cannot read consumers of member %s: %s", member_id, exc)
            served = None
        members.append({**voice.public(), "served": None if served is None else served > 0})
    return jsonify({"members": members})
