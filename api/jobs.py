"""``POST /api/texts`` (queue a synthesis) and ``GET /api/jobs/<job_id>`` (its status)."""

from __future__ import annotations

import uuid

from flask import Blueprint, Response, current_app, jsonify, request, url_for

from api.auth import client_id
from api.errors import ApiError
from api.requestlog import bind_job
from api.service import JobService
from api.validation import json_body, parse_text_request, wait_seconds

bp = Blueprint("jobs", __name__, url_prefix="/api")


def _service() -> JobService:
    return current_app.extensions["moksori"]


@bp.post("/texts")
def create_text() -> tuple[Response, int, dict[str, str]]:
    """Accept a text for a member's voice; 202 with a status URL, or 200 with the audio URL when
    it is already stored (``cached``) or ``?wait=N`` is given and the job ends within N s."""
    service = _service()
    wait = wait_seconds(request.args.getlist("wait"))
    req = parse_text_request(json_body(request), service.settings.max_text_length)
    submission = service.submit(req, request.host_url, client_id())
    job_id = submission.job_id
    bind_job(job_id)
    status_url = url_for("jobs.get_job", job_id=job_id)
    body = {
        "job_id": job_id,
        "status": "queued",
        "status_url": status_url,
        "uuid": req.uuid,
        "member_id": req.member_id,
        "created_at": req.created_at,
        "cached": submission.cached,
    }
    headers = {"Location": status_url}
    if submission.view is not None:  # already synthesized: the URL right away, no task sent
        body.update(submission.view)
        return jsonify(body), 200, headers
    if wait:
        try:
            service.wait(job_id, wait)
            view = service.status(job_id, request.host_url)
        except ApiError:
            # The job is already accepted: answer 202 so the client follows it rather than
            # resubmitting because the result backend hiccupped while we waited.
            view = None
        if view and view["status"] in {"done", "failed"}:
            body.update(view)
            return jsonify(body), 200, headers
    return jsonify(body), 202, headers


@bp.get("/jobs/<job_id>")
def get_job(job_id: str) -> Response:
    """A job's status: queued, running, done (with url and duration_s) or failed (with error)."""
    try:
        canonical = str(uuid.UUID(job_id))
    except ValueError:
        canonical = None
    if canonical:
        bind_job(canonical)
    view = _service().status(canonical, request.host_url) if canonical else None
    if view is None:
        raise ApiError(404, "unknown_job", "There is no job with this id (or it has expired).")
    return jsonify(view)
