"""``GET /metrics``: the API's Prometheus metrics, added up over every gunicorn worker process.

Requests are counted by route template (Flask's URL rule, e.g. ``/api/jobs/<job_id>``: never
the raw path, so job ids and junk paths cannot blow up the number of series; a request that
matches no route counts as ``<unmatched>``), method and status, and timed in a histogram. The
job service counts what became of each accepted text: queued, answered from the cache, or
joined to an identical job in flight. With ``MOKSORI_METRICS_AUTH`` the route needs an API key
(:mod:`api.auth`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from flask import Flask, Response, g, request
from flask_openapi3 import APIBlueprint, Tag
from prometheus_client import Counter, Histogram

from api.errors import INVALID_API_KEY, UNAUTHORIZED
from api.openapi import BEARER_OPTIONAL, error
from common import metrics

bp = APIBlueprint(
    "metrics", __name__, abp_tags=[Tag(name="operations", description="For operators.")]
)

UNMATCHED = "<unmatched>"
"""The route label of a request no route matched (404, 405)."""

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

REQUESTS = Counter(
    "moksori_api_requests",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
)
LATENCY = Histogram(
    "moksori_api_request_duration_seconds",
    "Time to answer an HTTP request, by route template and method.",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
JOBS_QUEUED = Counter(
    "moksori_api_jobs_queued", "Synthesis jobs sent to the workers, by member.", ["member"]
)
CACHE_HITS = Counter(
    "moksori_api_cache_hits",
    "Texts answered from storage without a synthesis, by member.",
    ["member"],
)
JOBS_JOINED = Counter(
    "moksori_api_jobs_joined",
    "Texts that joined an identical job already queued or running, by member.",
    ["member"],
)
WAITS_DECLINED = Counter(
    "moksori_api_waits_declined",
    "`?wait` requests answered 202 at once because every waiting slot was taken.",
)


def known(members: Iterable[int]) -> None:
    """Start each member's job counters at 0, so a series exists before its first event (as
    Prometheus' instrumentation guide asks: a rate over a missing series is no rate at all)."""
    for member in members:
        for counter in (JOBS_QUEUED, CACHE_HITS, JOBS_JOINED):
            counter.labels(member)


@bp.get(
    "/metrics",
    operation_id="metrics",
    summary="Prometheus metrics of every API process",
    security=BEARER_OPTIONAL,
    responses={
        200: {
            "description": 'Prometheus text exposition format (docs/operations.md, "Metrics").',
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        401: error(
            "With `MOKSORI_METRICS_AUTH`, a missing or wrong API key",
            UNAUTHORIZED,
            INVALID_API_KEY,
        ),
    },
)
def metrics_view() -> Response:
    """Every API process's samples in Prometheus's text format."""
    body, content_type = metrics.exposition()
    return Response(body, content_type=content_type)


def _started() -> None:
    g.moksori_started = time.perf_counter()


def _observed(response: Response) -> Response:
    rule = request.url_rule
    route = rule.rule if rule is not None else UNMATCHED
    method = request.method if request.method in _METHODS else "other"
    REQUESTS.labels(route, method, str(response.status_code)).inc()
    started = g.get("moksori_started")
    if started is not None:
        LATENCY.labels(route, method).observe(time.perf_counter() - started)
    return response


def init_app(app: Flask) -> None:
    """Count and time every request; register before the rate limiter and the key check, so
    the requests they refuse are counted and timed too."""
    app.before_request(_started)
    app.after_request(_observed)
    app.register_api(bp)  # type: ignore[attr-defined]
