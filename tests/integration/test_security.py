"""API keys and CORS through Flask's test client, on the real RabbitMQ and Redis."""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from kombu import Connection

from api import auth, create_app
from common.config import Settings
from common.jobs import member_queue
from common.storage import audio_key
from tests import report
from tests.integration import test_api
from tests.integration.test_api import Listener, assert_error, build_app, post
from tests.support import BROKER_URL, TEST_SECRET

# The stand-in worker on the real RabbitMQ and the test's media folder, shared with test_api.
broker_queue = test_api.broker_queue
listener = test_api.listener
media_root = test_api.media_root

KEY_A = "moksori-test-key-alpha-0123456789"
KEY_B = "moksori-test-key-bravo-9876543210"
ALLOWED = "http://localhost:3000"
TEXT = {"member_id": 1, "text": "안녕하세요"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def published(listener: Listener, queue: str) -> int:
    """How many jobs reached members 1-3's queues on RabbitMQ: those the stand-in worker holds
    (one per queue: it never acks) plus those still waiting in the queues."""
    with contextlib.suppress(TimeoutError, socket.timeout):
        while True:  # one delivery per call, until none arrives for 0.3 s
            listener.connection.drain_events(timeout=0.3)
    with Connection(BROKER_URL) as conn:
        channel = conn.channel()
        ready = sum(
            channel.queue_declare(member_queue(queue, m), passive=True).message_count
            for m in (1, 2, 3)
        )
    return len(listener.bodies) + ready


@pytest.fixture
def keyed(voice_dir: Path, media_root: Path, broker_queue: str) -> Iterator[FlaskClient]:
    """The API with two keys set (rate limit off, so only the keys decide)."""
    app = build_app(
        voice_dir, media_root, queue=broker_queue, api_keys=f"{KEY_A},{KEY_B}", rate_limit="off"
    )
    yield app.test_client()
    app.extensions["moksori"].celery.close()


def guard(**settings: object) -> auth.Guard:
    return auth.Guard.from_settings(Settings.from_env({}, **settings))


@pytest.mark.parametrize(
    ("settings", "method", "path", "protected"),
    [
        ({"api_keys": KEY_A}, "POST", "/api/texts", True),
        ({"api_keys": KEY_A}, "GET", "/api/jobs/x", True),
        ({"api_keys": KEY_A}, "GET", "/api", True),
        ({"api_keys": KEY_A}, "GET", "/api/unknown/route", True),
        ({"api_keys": KEY_A}, "GET", "/apis", False),
        ({"api_keys": KEY_A}, "OPTIONS", "/api/texts", False),
        ({"api_keys": KEY_A}, "GET", "/healthz", False),
        ({"api_keys": KEY_A}, "GET", "/media/wav/1/v/abc.wav", False),
        ({"api_keys": KEY_A}, "GET", "/metrics", False),
        ({"api_keys": KEY_A, "metrics_auth": True}, "GET", "/metrics", True),
        ({"api_keys": KEY_A, "metrics_auth": True}, "GET", "/metrics/x", True),
        ({"api_keys": KEY_A, "metrics_auth": True}, "GET", "/metricsx", False),
        ({"api_keys": KEY_A, "metrics_auth": True}, "GET", "/healthz", False),
        ({}, "POST", "/api/texts", False),
        ({"metrics_auth": True}, "GET", "/metrics", False),
    ],
)
def test_guard_path_policy(settings: dict, method: str, path: str, protected: bool) -> None:
    """Keys guard /api and everything below it, /metrics only with MOKSORI_METRICS_AUTH, never
    /healthz, /media or a CORS preflight; without keys nothing is guarded."""
    assert guard(**settings).protects(path, method) is protected


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (f"Bearer {KEY_A}", KEY_A),
        (f"bearer   {KEY_A} ", KEY_A),
        ("Bearer", None),
        ("Bearer ", None),
        (f"Basic {KEY_A}", None),
        (KEY_A, None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_token_parsing(header: str | None, token: str | None) -> None:
    assert auth.bearer_token(header) == token


def test_every_configured_key_is_compared(monkeypatch: pytest.MonkeyPatch) -> None:
    """A presented key is compared with hmac.compare_digest against every configured key, with
    no early exit on a match, and the answer names the key by a digest prefix only."""
    keys = [KEY_A, KEY_B, "moksori-test-key-charlie-000000"]
    checker = guard(api_keys=",".join(keys))
    calls: list[int] = []
    real = auth.hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    for presented, valid in [(KEY_A, True), (keys[-1], True), ("not-a-key-at-all-xxxx", False)]:
        calls.clear()
        key_id = checker.key_id(presented)
        assert len(calls) == len(keys)
        assert (key_id is not None) is valid
        if key_id:
            assert len(key_id) == 12 and key_id not in presented
    assert checker.key_id(KEY_A) != checker.key_id(KEY_B)
    report.record(
        "auth",
        "key comparison",
        "SHA-256 digests compared with hmac.compare_digest against every key, no early exit",
    )


def test_no_keys_means_open(
    voice_dir: Path, media_root: Path, broker_queue: str, listener: Listener
) -> None:
    """Without MOKSORI_API_KEYS (the laptop default) no key is needed, and a stray
    Authorization header changes nothing."""
    client = build_app(voice_dir, media_root, queue=broker_queue).test_client()
    assert post(client, TEXT).status_code == 202
    assert (
        post(client, {**TEXT, "text": "반갑습니다"}, headers=bearer("whatever")).status_code == 202
    )
    assert published(listener, broker_queue) == 2


@pytest.mark.parametrize(
    ("label", "headers"),
    [
        ("no Authorization", {}),
        ("'Bearer ' with no key", {"Authorization": "Bearer "}),
        ("Basic scheme", {"Authorization": f"Basic {KEY_A}"}),
        ("key in X-Api-Key", {"X-Api-Key": KEY_A}),
    ],
)
def test_request_without_a_key_is_401(
    keyed: FlaskClient,
    broker_queue: str,
    listener: Listener,
    label: str,
    headers: dict[str, str],
) -> None:
    """With keys set, every /api/* call without a bearer key is 401 unauthorized with
    WWW-Authenticate: Bearer, and nothing is queued."""
    for response in [
        post(keyed, TEXT, headers=headers),
        keyed.get("/api/members", headers=headers),
        keyed.get("/api/jobs/00000000-0000-0000-0000-000000000000", headers=headers),
        keyed.get("/api/no-such-route", headers=headers),
    ]:
        assert_error(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert published(listener, broker_queue) == 0
    report.record(
        "auth",
        f"/api/* without a key (keys set): {label}",
        "401 unauthorized, WWW-Authenticate: Bearer; nothing queued",
        0,
        0,
    )


@pytest.mark.parametrize(
    ("label", "key"),
    [
        ("upper-cased", KEY_A.upper()),
        ("one character short", KEY_A[:-1]),
        ("one character more", KEY_A + "x"),
        ("two keys joined", f"{KEY_A},{KEY_B}"),
        ("10,000 characters", "x" * 10_000),
    ],
)
def test_wrong_key_is_401_invalid_api_key(
    keyed: FlaskClient,
    broker_queue: str,
    listener: Listener,
    label: str,
    key: str,
) -> None:
    """A bearer key that is not one of the configured keys is 401 invalid_api_key."""
    response = post(keyed, TEXT, headers=bearer(key))
    assert_error(response, 401, "invalid_api_key")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="moksori", error="invalid_token"'
    assert key not in response.get_data(as_text=True)
    assert published(listener, broker_queue) == 0
    report.record("auth", f"POST /api/texts with a wrong key: {label}", "401 invalid_api_key", 0, 0)


def test_valid_keys_are_accepted(keyed: FlaskClient, broker_queue: str, listener: Listener) -> None:
    """Each configured key opens the API: the job is queued and its status is readable."""
    for n, key in enumerate([KEY_A, KEY_B]):
        response = post(keyed, {**TEXT, "text": f"{n}번 열쇠"}, headers=bearer(key))
        assert response.status_code == 202, response.get_json()
        assert published(listener, broker_queue) == n + 1
        status = keyed.get(response.headers["Location"], headers={"Authorization": f"bearer {key}"})
        assert status.get_json()["status"] == "queued"
        assert keyed.get("/api/members", headers=bearer(key)).status_code == 200
    report.record("auth", "POST /api/texts with a valid key (either of two)", "202, queued", 2, 0)


def test_open_paths_with_keys_set(keyed: FlaskClient, media_root: Path) -> None:
    """/healthz, /readyz, /media/* (capability URLs), the docs and the web page answer without
    a key; /metrics needs none unless MOKSORI_METRICS_AUTH is set."""
    assert keyed.get("/healthz").get_json() == {"status": "ok"}
    key = audio_key(1, "v1", "안녕", secret=TEST_SECRET)
    (media_root / key).parent.mkdir(parents=True)
    (media_root / key).write_bytes(b"RIFF" + bytes(64))
    assert keyed.get(f"/media/{key}").status_code == 200
    metrics = keyed.get("/metrics")
    assert metrics.status_code == 200 and metrics.mimetype == "text/plain"
    for path in ("/", "/web/app.js", "/docs", "/openapi.json"):
        assert keyed.get(path).status_code == 200, path
    assert keyed.get("/readyz").status_code in {200, 503}  # never 401: probes carry no key
    report.record(
        "auth",
        "/healthz, /readyz, /media/*, /metrics, /docs, /openapi.json and / with keys set",
        "answered without a key",
    )


def test_metrics_needs_a_key_when_configured(voice_dir: Path, tmp_path: Path) -> None:
    """With MOKSORI_METRICS_AUTH, /metrics is 401 without a key and the metrics with one."""
    app = build_app(voice_dir, tmp_path, api_keys=KEY_A, metrics_auth=True, rate_limit="off")
    client = app.test_client()
    assert_error(client.get("/metrics"), 401, "unauthorized")
    assert client.get("/metrics", headers=bearer(KEY_A)).status_code == 200
    assert client.get("/healthz").status_code == 200
    report.record("auth", "GET /metrics without a key (MOKSORI_METRICS_AUTH=true)", "401")


def test_preflight_needs_no_key_and_allows_authorization(keyed: FlaskClient) -> None:
    """A browser's CORS preflight carries no credentials: it is answered without a key, with
    Authorization among the allowed request headers for an allowed origin."""
    preflight = keyed.options(
        "/api/texts",
        headers={
            "Origin": ALLOWED,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Authorization, Content-Type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == ALLOWED
    allowed = preflight.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    report.record("cors", "preflight from an allowed origin (keys set)", "200, ACAO, Authorization")


@pytest.mark.parametrize("keys", ["", KEY_A], ids=["open", "keys-set"])
def test_preflight_from_a_disallowed_origin_gets_no_cors_headers(
    voice_dir: Path, tmp_path: Path, keys: str
) -> None:
    """A preflight from an origin not on the list gets no Access-Control-Allow-Origin, so the
    browser refuses the real request."""
    client = build_app(voice_dir, tmp_path, api_keys=keys, rate_limit="off").test_client()
    preflight = client.options(
        "/api/texts",
        headers={
            "Origin": "https://evil.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Authorization, Content-Type",
        },
    )
    assert "Access-Control-Allow-Origin" not in preflight.headers
    assert "Access-Control-Allow-Headers" not in preflight.headers
    report.record(
        "cors",
        f"preflight from a disallowed origin ({'keys set' if keys else 'open'})",
        "no Access-Control-Allow-Origin",
    )


def test_401_is_readable_by_an_allowed_origin(keyed: FlaskClient) -> None:
    """The 401 itself carries CORS headers for an allowed origin, so the web app can show it."""
    response = keyed.get("/api/members", headers={"Origin": ALLOWED})
    assert_error(response, 401, "unauthorized")
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    evil = keyed.get("/api/members", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in evil.headers


def test_keys_never_appear_in_logs(
    voice_dir: Path,
    media_root: Path,
    broker_queue: str,
    listener: Listener,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """At DEBUG, start-up and requests with a wrong and a right key log neither key; the
    settings' repr leaves the keys out too."""
    wrong = "moksori-wrong-key-5555555555555"
    caplog.set_level(logging.DEBUG)
    app = build_app(
        voice_dir, media_root, queue=broker_queue, api_keys=f"{KEY_A},{KEY_B}", rate_limit="1/hour"
    )
    client = app.test_client()
    assert_error(post(client, TEXT, headers=bearer(wrong)), 401, "invalid_api_key")
    assert post(client, TEXT, headers=bearer(KEY_A)).status_code == 202
    assert published(listener, broker_queue) == 1
    assert_error(post(client, TEXT, headers=bearer(KEY_A)), 429, "rate_limited")  # logged too
    app.extensions["moksori"].celery.close()
    logged = caplog.text + "".join(repr(r.args) for r in caplog.records)
    assert "API ready" in logged and "2 API key(s)" in logged
    assert "rate limit" in logged
    for secret in (KEY_A, KEY_B, wrong):
        assert secret not in logged
        assert secret not in repr(app.config["MOKSORI"])
    report.record("auth", "keys in logs (DEBUG, start-up, wrong and right key, 429)", "never", 1, 0)


def test_short_keys_are_refused_at_start(voice_dir: Path) -> None:
    """A key shorter than 16 characters stops the API at start-up (without echoing it)."""
    with pytest.raises(ValueError, match="at least 16 characters") as excinfo:
        create_app({"voice_dir": voice_dir, "api_keys": f"{KEY_A},short-key"})
    assert "short-key" not in str(excinfo.value)


def test_security_settings_from_the_environment() -> None:
    """The new variables parse like the others; the defaults leave a laptop open but limited."""
    settings = Settings.from_env(
        {
            "MOKSORI_API_KEYS": f" {KEY_A} , {KEY_B} ,",
            "MOKSORI_METRICS_AUTH": "true",
            "MOKSORI_RATE_LIMIT": "10/minute",
            "MOKSORI_RATE_LIMIT_STORAGE": "redis://127.0.0.1:6379/1",
            "MOKSORI_MAX_QUEUED_PER_CLIENT": "3",
            "MOKSORI_TRUSTED_PROXIES": "1",
        }
    )
    assert settings.api_keys == (KEY_A, KEY_B)
    assert settings.metrics_auth is True
    assert settings.rate_limit == "10/minute"
    assert settings.rate_limit_storage == "redis://127.0.0.1:6379/1"
    assert (settings.max_queued_per_client, settings.trusted_proxies) == (3, 1)
    defaults = Settings.from_env({})
    assert defaults.api_keys == () and defaults.metrics_auth is False
    assert defaults.rate_limit == "300/minute;30/second"
    assert defaults.rate_limit_storage == "memory://"
    assert (defaults.max_queued_per_client, defaults.trusted_proxies) == (20, 0)
