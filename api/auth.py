"""Optional API keys (``MOKSORI_API_KEYS``), and who is asking (:func:`client_id`).

With keys set, every request to a protected path needs ``Authorization: Bearer <key>``: without
one it is ``401 unauthorized``, with a wrong one ``401 invalid_api_key``, both with
``WWW-Authenticate: Bearer``. Protected are ``/api/*``, ``/v1/*`` (the OpenAI-compatible API,
whose clients send their ``api_key`` this way) and, with ``MOKSORI_METRICS_AUTH``,
``/metrics``. Open are ``/healthz`` (probes), CORS preflights (browsers never send credentials on
an ``OPTIONS`` preflight) and ``/media/*``: its URLs are capability URLs (the object key is an
HMAC of the voice and the text under the server's secret, known only to whoever got the job's
answer) and a browser's ``<audio>`` element cannot send a header; with
``MOKSORI_MEDIA_ACCESS=signed`` it takes a signed URL or a key (:func:`has_valid_key`).

Only SHA-256 digests of the keys are kept; a presented key is hashed and compared in constant time
against every configured digest, without stopping at a match. Logs and rate-limit counters name a
client by a short prefix of its key's digest, never by the key.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from flask import Flask, current_app, g, request

from api.errors import INVALID_API_KEY, UNAUTHORIZED
from common.config import Settings

_EXTENSION = "moksori.auth"
_CHALLENGE = 'Bearer realm="moksori"'


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


@dataclass(frozen=True)
class Guard:
    """Which paths need a key, and the digests of the keys that open them."""

    digests: tuple[bytes, ...]
    protected: tuple[str, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> Guard:
        prefixes = ("/api", "/v1", "/metrics") if settings.metrics_auth else ("/api", "/v1")
        return cls(tuple(_digest(key) for key in settings.api_keys), prefixes)

    @property
    def enabled(self) -> bool:
        return bool(self.digests)

    def protects(self, path: str, method: str) -> bool:
        """Whether a request needs a key: keys are set, it is not a CORS preflight, and its path
        is a protected prefix or below one (``/api``, ``/api/...``; not ``/apis``)."""
        if not self.enabled or method == "OPTIONS":
            return False
        return any(path == prefix or path.startswith(prefix + "/") for prefix in self.protected)

    def key_id(self, key: str) -> str | None:
        """A short, loggable id of the configured key equal to ``key``, else None.

        Every configured digest is compared (in constant time), whatever matched before."""
        presented = _digest(key)
        matched = b""
        for digest in self.digests:
            if hmac.compare_digest(presented, digest):
                matched = digest
        return matched.hex()[:12] if matched else None


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    scheme, _, token = (header or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def _presented_key_id() -> str | None:
    """The id of the valid API key this request carries (None without one), computed once."""
    if "moksori_key_id" not in g:
        guard: Guard = current_app.extensions[_EXTENSION]
        token = bearer_token(request.headers.get("Authorization"))
        g.moksori_key_id = guard.key_id(token) if guard.enabled and token else None
    return g.moksori_key_id


def has_valid_key() -> bool:
    """Whether this request carries one of the server's API keys (never when none are set):
    what an open route such as ``/readyz`` checks before showing internals."""
    return _presented_key_id() is not None


def client_id() -> str:
    """Who is asking, for rate limits and the queue cap: ``key:<id>`` for a request with a valid
    API key, else ``ip:<address>`` (the proxy's client address with ``MOKSORI_TRUSTED_PROXIES``)."""
    key_id = _presented_key_id()
    return f"key:{key_id}" if key_id else f"ip:{request.remote_addr or 'unknown'}"


def _require_key() -> None:
    guard: Guard = current_app.extensions[_EXTENSION]
    if not guard.protects(request.path, request.method):
        return
    if bearer_token(request.headers.get("Authorization")) is None:
        raise UNAUTHORIZED(
            "This API needs a key: send it as 'Authorization: Bearer <key>'.",
            headers={"WWW-Authenticate": _CHALLENGE},
        )
    if _presented_key_id() is None:
        raise INVALID_API_KEY(
            "The API key is not valid.",
            headers={"WWW-Authenticate": f'{_CHALLENGE}, error="invalid_token"'},
        )


def init_app(app: Flask, settings: Settings) -> Guard:
    """Check keys before every request to a protected path (register after the rate limiter, so
    requests with wrong keys are still counted against their address)."""
    guard = Guard.from_settings(settings)
    app.extensions[_EXTENSION] = guard
    app.before_request(_require_key)
    return guard
