"""A request rate per client on ``/api/*`` and ``/v1/*`` (``MOKSORI_RATE_LIMIT``, through
Flask-Limiter).

The client is :func:`api.auth.client_id`: its API key when it presented a valid one, else its
address. Counters live in ``MOKSORI_RATE_LIMIT_STORAGE``: ``memory://`` counts per process (each
gunicorn worker on its own), ``redis://`` is shared by every process and machine; keys are prefixed
with ``MOKSORI_QUEUE`` so deployments sharing a Redis stay apart. Over the limit the answer is
``429 rate_limited`` with ``Retry-After`` (seconds until the window resets). ``/healthz``,
``/media/*`` and CORS preflights are not counted.

When the storage cannot be reached, counting falls back to this process's memory (the same limits,
per process) and Flask-Limiter checks the storage again with a growing back-off; a request is
never refused or failed because the counter store is down.
"""

from __future__ import annotations

import logging
import math
import time

from flask import Flask, Response, request
from flask_limiter import Limiter, RateLimitExceeded
from limits import parse_many
from redis.backoff import NoBackoff
from redis.retry import Retry

from api.auth import client_id
from api.errors import RATE_LIMITED, error_response
from common.config import Settings

_LOGGER = logging.getLogger(__name__)

OFF = {"", "off", "none", "0"}


def _not_limited() -> bool:
    """Requests outside /api/* and /v1/*, and CORS preflights, are never counted."""
    path = request.path
    counted = any(path == p or path.startswith(p + "/") for p in ("/api", "/v1"))
    return request.method == "OPTIONS" or not counted


def rate_limit(settings: Settings) -> str | None:
    """The configured limit string, checked; None when rate limiting is off."""
    value = settings.rate_limit.strip()
    if value.lower() in OFF:
        return None
    try:
        parse_many(value)
    except ValueError:
        raise ValueError(
            f"MOKSORI_RATE_LIMIT={value!r} is not valid: use e.g. '300/minute;30/second' or 'off'"
        ) from None
    return value


def _storage_options(settings: Settings) -> dict[str, object]:
    """A Redis that does not answer costs a request at most ``MOKSORI_PUBLISH_TIMEOUT``, once:
    after that the limiter counts in memory until the storage answers again."""
    if not settings.rate_limit_storage.startswith(("redis://", "rediss://", "redis+unix://")):
        return {}
    return {
        "socket_connect_timeout": settings.publish_timeout,
        "socket_timeout": settings.publish_timeout,
        "retry": Retry(NoBackoff(), 0),
    }


def init_app(app: Flask, settings: Settings) -> Limiter | None:
    """Count every /api/* request per client; register before :func:`api.auth.init_app`."""
    limit = rate_limit(settings)
    if limit is None:
        return None
    limiter = Limiter(
        client_id,
        app=app,
        application_limits=[limit],
        application_limits_exempt_when=_not_limited,
        strategy="fixed-window",
        storage_uri=settings.rate_limit_storage,
        storage_options=_storage_options(settings),
        key_prefix=f"moksori:{settings.queue}",
        in_memory_fallback_enabled=True,
        swallow_errors=True,  # last resort: a limiter fault lets the request through, logged
        headers_enabled=False,  # Retry-After is set on the 429 below, not on every answer
    )

    @app.errorhandler(RateLimitExceeded)
    def _rate_limited(exc: RateLimitExceeded) -> Response:
        retry_after = _seconds_to_reset(limiter, exc)
        _LOGGER.info("%s is over the rate limit of %s", client_id(), exc.limit.limit)
        response = error_response(
            RATE_LIMITED,
            f"Too many requests: the limit is {exc.limit.limit} per client; "
            f"try again in {retry_after} s.",
        )
        response.headers["Retry-After"] = str(retry_after)
        return response

    return limiter


def _seconds_to_reset(limiter: Limiter, exc: RateLimitExceeded) -> int:
    """Whole seconds until the breached window resets (at least 1)."""
    window = exc.limit.limit.get_expiry()
    current = limiter.current_limit
    try:
        if current is not None and current.breached:
            return max(1, min(window, math.ceil(current.reset_at - time.time())))
    except Exception:  # the storage died since it said no: the window bounds the wait
        _LOGGER.warning("could not read when the rate limit resets", exc_info=True)
    return max(1, window)
