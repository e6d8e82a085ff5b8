"""The HTTP API: accepts texts, queues synthesis jobs, reports their status and serves local audio.

``create_app()`` builds the app; importing this package does nothing else. The API never imports
torch: it talks to the workers through the broker only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, request
from flask_cors import CORS
from werkzeug.middleware.proxy_fix import ProxyFix

from api import (
    auth,
    errors,
    health,
    jobs,
    limits,
    media,
    members,
    metrics,
    openapi,
    readiness,
    requestlog,
    speech,
    web,
)
from api.service import JobService
from api.validation import validation_error
from common.config import Settings
from common.storage import LocalStorage

_LOGGER = logging.getLogger(__name__)

MIN_KEY_LENGTH = 16
CORS_PATHS = ("/api/", "/media/", "/v1/")
"""The paths browsers may call from other origins (``MOKSORI_CORS_ORIGINS``)."""


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the API from ``MOKSORI_*`` settings, overridden by ``test_config`` fields."""
    settings = Settings.from_env(**dict(test_config or {}))
    if any(origin.strip() == "*" for origin in settings.cors_origins):
        raise ValueError("MOKSORI_CORS_ORIGINS must list origins; '*' is not allowed")
    if any(len(key) < MIN_KEY_LENGTH for key in settings.api_keys):
        raise ValueError(f"MOKSORI_API_KEYS: every key needs at least {MIN_KEY_LENGTH} characters")

    # flask-openapi3's OpenAPI is a Flask subclass that writes /openapi.json from the routes'
    # pydantic models and validates requests with the same models (api/openapi.py).
    app = openapi.MoksoriAPI(
        __name__,
        static_folder=None,  # no /static route: nothing to serve there
        info=openapi.INFO,
        security_schemes=openapi.SECURITY_SCHEMES,
        doc_ui=False,  # /openapi.json and /docs are our own routes (api/openapi.py)
        validation_error_model=openapi.Error,
        validation_error_callback=validation_error,
    )
    # "//" in a path is not merged by an HTML redirect (Flask returns routing redirects without
    # error handlers): such a path is simply unknown, a JSON 404; under /media, an absolute key.
    app.url_map.merge_slashes = False
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_content_length,
        MOKSORI=settings,
    )
    app.json.ensure_ascii = False  # Korean stays readable in responses
    app.json.sort_keys = False
    if settings.trusted_proxies:  # the client's address from the proxies' X-Forwarded-For
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies)

    service = JobService.from_settings(settings)
    app.extensions["moksori"] = service

    requestlog.init_app(app)  # first: its line and X-Request-ID cover early refusals too

    # Registered before flask-cors, so it runs after it (after-request hooks run in reverse).
    app.after_request(_vary_on_origin)
    CORS(
        app,
        resources={rf"{prefix}*": {} for prefix in CORS_PATHS},
        origins=list(settings.cors_origins),
        always_send=False,  # no Access-Control-Allow-Origin for a request that sent no Origin
        expose_headers=["Location", "Content-Range", "Accept-Ranges", "ETag", requestlog.HEADER],
        max_age=600,
    )
    errors.init_app(app)
    metrics.init_app(app)  # first: requests refused by the limiter or the key check count too
    limiter = limits.init_app(app, settings)  # before auth: wrong keys count against their IP
    guard = auth.init_app(app, settings)
    app.register_api(health.bp)
    readiness.init_app(app, settings, service.storage, list(service.voices))
    app.register_api(members.bp)
    app.register_api(jobs.bp)
    if isinstance(service.storage, LocalStorage):
        app.register_api(media.bp)
    app.register_api(speech.bp)
    app.register_api(openapi.bp)
    app.register_api(web.bp)  # the page at /, for people
    _LOGGER.info(
        "API ready: %d voice(s), broker %s, storage %s, %s, rate limit %s, queued jobs per "
        "client %s",
        len(service.voices),
        _redact(settings.broker_url),
        settings.storage_url,
        f"{len(guard.digests)} API key(s)" if guard.enabled else "no API keys (open)",
        f"{settings.rate_limit} in {_redact(settings.rate_limit_storage)}" if limiter else "off",
        settings.max_queued_per_client or "unlimited",
    )
    return app


def _vary_on_origin(response: Response) -> Response:
    """Say ``Vary: Origin`` on every answer under :data:`CORS_PATHS`, whether or not this request
    sent an Origin: the CORS headers depend on it, and ``/media`` answers are ``public,
    immutable``, so a shared cache must never hand one origin's answer (or one made without
    CORS headers) to another. flask-cors adds it only for some configurations; folding its
    header into ``response.vary`` keeps a single ``Vary`` line."""
    if request.path.startswith(CORS_PATHS):
        response.vary.add("Origin")
    return response


def _redact(url: str) -> str:
    """A URL without its password, for logs."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
