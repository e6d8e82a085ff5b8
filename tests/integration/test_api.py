"""The HTTP API through Flask's test client: validation, errors, CORS, media, status lookups."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from kombu import Connection, Consumer

from api import create_app
from common.jobs import member_queue, queue_declaration
from common.storage import audio_key
from harness.processes import REPO, free_port, start_api
from tests.support import BACKEND_URL, BROKER_URL, TEST_SECRET, base_env, eventually


@pytest.fixture
def media_root(tmp_path: Path) -> Path:
    return tmp_path / "media"


def build_app(voice_dir: Path, media_root: Path, **overrides: object) -> Flask:
    """The API on the test voices, the real broker and backend, and local storage."""
    settings = {
        "voice_dir": voice_dir,
        "broker_url": BROKER_URL,
        "result_backend": BACKEND_URL,
        "storage_url": f"file://{media_root}",
        **overrides,
    }
    return create_app(settings)


@pytest.fixture
def app(voice_dir: Path, media_root: Path, queue_name: str) -> Iterator[Flask]:
    app = build_app(
        voice_dir, media_root, queue=queue_name, max_content_length=4096, max_text_length=300
    )
    yield app
    app.extensions["moksori"].celery.close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def broker_queue(queue_name: str) -> Iterator[str]:
    """The test's queue prefix on the real RabbitMQ; its member queues are deleted afterwards
    with anything left in them."""
    yield queue_name
    with Connection(BROKER_URL) as conn:
        channel = conn.channel()
        for name in [queue_name, *(member_queue(queue_name, m) for m in range(1, 5))]:
            channel.queue_delete(name)


@dataclass
class Listener:
    """A stand-in worker on the real broker: consumes members 1-3's queues, never acks."""

    connection: Connection
    bodies: list[Any]

    def next_body(self, timeout: float = 5.0) -> Any:
        deadline = time.monotonic() + timeout
        while not self.bodies and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError, socket.timeout):
                self.connection.drain_events(timeout=0.2)
        return self.bodies.pop(0)


@pytest.fixture
def listener(broker_queue: str) -> Iterator[Listener]:
    with Connection(BROKER_URL) as conn:
        channel = conn.channel()
        channel.basic_qos(0, 1, False)
        bodies: list[Any] = []
        queues = [queue_declaration(member_queue(broker_queue, m)) for m in (1, 2, 3)]
        consumer = Consumer(
            channel, queues, accept=["json"], callbacks=[lambda body, _msg: bodies.append(body)]
        )
        consumer.consume()
        yield Listener(conn, bodies)
        consumer.cancel()


def post(client: FlaskClient, body: object, query: str = "", **kwargs: object):
    return client.post(f"/api/texts{query}", json=body, **kwargs)


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json
    error = response.get_json()["error"]
    assert error["code"] == code
    assert error["message"]


def test_healthz(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_members(client: FlaskClient, listener: Listener) -> None:
    """It lists each voice's id, name, sample rate, version, and whether a worker serves it."""
    members = client.get("/api/members").get_json()["members"]
    assert [m["id"] for m in members] == [1, 2, 3, 4]
    assert members[1] == {
        "id": 2,
        "name": "Minji",
        "sample_rate": 16000,
        "version": "2026.11.1",
        "vocoder": "griffin-lim",
        "served": True,
    }
    assert members[3]["served"] is False  # the listener does not consume member 4's queue


def test_unserved_member_is_a_quick_503(client: FlaskClient, listener: Listener) -> None:
    """A member whose queue nobody consumes is refused at once, not queued forever."""
    started = time.monotonic()
    response = post(client, {"member_id": 4, "text": "안녕"}, "?wait=5")
    assert time.monotonic() - started < 1
    assert_error(response, 503, "member_unavailable")
    assert response.headers["Retry-After"]
    assert not listener.bodies


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        (
            {"data": "member_id=1", "content_type": "application/x-www-form-urlencoded"},
            415,
            "unsupported_media_type",
        ),
        ({"data": "{not json", "content_type": "application/json"}, 400, "invalid_json"),
        ({"data": "[1, 2]", "content_type": "application/json"}, 400, "invalid_json"),
        (
            {"data": "[" * 1500 + "]" * 1500, "content_type": "application/json"},
            400,
            "invalid_json",
        ),
        (  # nesting deep enough to exhaust the JSON parser's recursion (it was a 500)
            {
                "data": '{"member_id": 1, "x": ' + "[" * 2000 + "]" * 2000 + "}",
                "content_type": "application/json",
            },
            400,
            "invalid_json",
        ),
        ({"json": {"text": "안녕"}}, 422, "missing_member_id"),
        ({"json": {"member_id": 1}}, 422, "missing_text"),
        ({"json": {"member_id": 1, "text": ""}}, 422, "empty_text"),
        ({"json": {"member_id": 1, "text": " \n\t"}}, 422, "empty_text"),
        ({"json": {"member_id": 1, "text": 42}}, 422, "invalid_text"),
        (  # a lone surrogate, legal in JSON's \u escapes, is no text (it was a 500)
            {
                "data": '{"member_id": 1, "text": "\\ud800 안녕"}',
                "content_type": "application/json",
            },
            422,
            "invalid_text",
        ),
        ({"json": {"member_id": 1, "text": "🙂🙂 !!!"}}, 422, "unspeakable_text"),
        ({"json": {"member_id": 77, "text": "안녕"}}, 404, "unknown_member"),
        ({"json": {"member_id": "../../etc/passwd", "text": "안녕"}}, 422, "invalid_member_id"),
        ({"json": {"member_id": True, "text": "안녕"}}, 422, "invalid_member_id"),
        ({"json": {"member_id": 1.5, "text": "안녕"}}, 422, "invalid_member_id"),
        ({"json": {"member_id": -1, "text": "안녕"}}, 422, "invalid_member_id"),
        (
            {"json": {"member_id": 1, "text": "안녕", "uuid": "../../etc/passwd"}},
            422,
            "invalid_uuid",
        ),
        ({"json": {"member_id": 1, "text": "안녕", "uuid": 5}}, 422, "invalid_uuid"),
        (
            {"json": {"member_id": 1, "text": "안녕", "created_at": "../../etc/passwd"}},
            422,
            "invalid_created_at",
        ),
        (
            {"json": {"member_id": 1, "text": "안녕", "created_at": 20220822}},
            422,
            "invalid_created_at",
        ),
        ({"json": {"member_id": 1, "text": "가" * 301}}, 413, "text_too_long"),
        (
            {
                "data": json.dumps({"member_id": 1, "text": "가" * 5000}),
                "content_type": "application/json",
            },
            413,
            "request_entity_too_large",
        ),
    ],
)
def test_bad_input_gets_a_clear_4xx(
    client: FlaskClient, kwargs: dict, status: int, code: str
) -> None:
    """Every malformed request gets a JSON error naming what was wrong."""
    assert_error(client.post("/api/texts", **kwargs), status, code)
    assert client.get("/healthz").status_code == 200  # and the service keeps serving


def test_query_errors_come_before_body_errors(client: FlaskClient) -> None:
    """A bad ``?wait`` is named even when the body is not JSON either (the query is checked
    first), and a good one lets the body's own error through."""
    assert_error(client.post("/api/texts?wait=0", data="x"), 400, "invalid_wait")
    assert_error(client.post("/api/texts?wait=5", data="x"), 415, "unsupported_media_type")
    assert_error(post(client, [1], "?wait=x"), 400, "invalid_wait")


@pytest.mark.parametrize("query", ["0", "61", "abc", "-1", "1.5", "", "5&wait=5", "&wait=x"])
def test_bad_wait_is_refused(client: FlaskClient, query: str) -> None:
    """Anything but one whole number from 1 to 60 (schemathesis found ``?wait=&wait=x``
    accepted: only the first, empty, value was read, as "no wait")."""
    assert_error(
        post(client, {"member_id": 1, "text": "안녕"}, f"?wait={query}"), 400, "invalid_wait"
    )


def test_unknown_routes_and_methods_are_json(client: FlaskClient) -> None:
    assert_error(client.get("/nope"), 404, "not_found")
    assert_error(client.get("/api/texts"), 405, "method_not_allowed")


@pytest.mark.parametrize(
    ("job_id", "code"),
    [
        ("not-a-uuid", "unknown_job"),
        (str(uuid.uuid4()), "unknown_job"),
        ("..%2f..%2fetc%2fpasswd", "not_found"),
    ],
)
def test_unknown_job_is_404(client: FlaskClient, job_id: str, code: str) -> None:
    """An id nobody issued is a 404, not 'queued' forever."""
    assert_error(client.get(f"/api/jobs/{job_id}"), 404, code)


def test_accepted_job_is_queued(client: FlaskClient, listener: Listener) -> None:
    """A valid text is published to its member's RabbitMQ queue (ids and text only) and answered
    202 with a status URL."""
    body = {
        "member_id": 1,
        "text": "안녕하세요!",
        "uuid": "022db29c-d0e2-11e5-bb4c-60f81dca7676",
        "created_at": "2022-08-22",
    }
    response = post(client, body)
    assert response.status_code == 202
    data = response.get_json()
    assert data["status"] == "queued"
    assert data["uuid"] == body["uuid"]
    assert data["member_id"] == 1
    assert data["created_at"] == "2022-08-22"
    assert response.headers["Location"] == data["status_url"] == f"/api/jobs/{data['job_id']}"
    assert data["cached"] is False
    status = client.get(data["status_url"]).get_json()
    assert status == {"job_id": data["job_id"], "status": "queued"}
    _args, kwargs, _embed = listener.next_body()
    members = client.get("/api/members").get_json()["members"]
    version = next(m["version"] for m in members if m["id"] == 1)
    assert kwargs == {  # the job is pinned to the version its cache key names
        "member_id": 1,
        "text": "안녕하세요!",
        "uuid": body["uuid"],
        "created_at": "2022-08-22",
        "voice_version": version,
    }


def test_defaults_for_uuid_and_created_at(client: FlaskClient, listener: Listener) -> None:
    """uuid and created_at are generated when absent; member_id may be a digit string."""
    data = post(client, {"member_id": "2", "text": "안녕"}).get_json()
    assert uuid.UUID(data["uuid"])
    assert data["created_at"].endswith("+00:00")
    assert data["member_id"] == 2


def test_wait_times_out_to_202(client: FlaskClient, listener: Listener) -> None:
    """With a worker that never finishes, ?wait=1 gives up after about a second: 202."""
    started = time.monotonic()
    response = post(client, {"member_id": 1, "text": "안녕"}, "?wait=1")
    assert response.status_code == 202
    assert 0.9 < time.monotonic() - started < 3


@pytest.mark.parametrize("backend", ["redis", "sqlite"])
def test_wait_bounds_the_whole_request(
    voice_dir: Path, tmp_path: Path, broker_queue: str, listener: Listener, backend: str
) -> None:
    """Against the API under gunicorn, from its first (cold) request on, with a worker that takes
    each job and never ends it: ``?wait=N`` answers 202, still queued, within N s plus 100 ms,
    on Redis (results pushed) and on SQL (results polled)."""
    results = BACKEND_URL if backend == "redis" else f"db+sqlite:///{tmp_path / 'results.sqlite'}"
    env = base_env(
        voice_dir=str(voice_dir),
        storage_url=f"file://{tmp_path / 'media'}",
        queue=broker_queue,
        result_backend=results,
        rate_limit="off",
    )
    api, base = start_api(env, tmp_path)
    try:
        # gunicorn accepts connections while its processes still import the app: wait for both.
        eventually(lambda: api.output().count("API ready") == 2, "both API processes up")
        for wait in (1, 3, 1, 3):
            started = time.monotonic()
            response = requests.post(
                f"{base}/api/texts?wait={wait}",
                json={"member_id": 1, "text": f"안녕 {uuid.uuid4().hex[:6]}"},
                timeout=30,
            )
            took = time.monotonic() - started
            assert response.status_code == 202, response.text
            assert response.json()["status"] == "queued"
            assert wait - 0.2 < took <= wait + 0.1, f"?wait={wait} took {took:.3f} s"
    finally:
        api.stop()


@pytest.mark.parametrize("down", ["broker_url", "result_backend"])
def test_unreachable_dependency_is_a_quick_503(
    voice_dir: Path, tmp_path: Path, broker_queue: str, listener: Listener, down: str
) -> None:
    """With RabbitMQ or Redis unreachable the API answers 503 within seconds, never a fake 202."""
    port = free_port()
    dead = {
        "broker_url": f"amqp://guest:guest@127.0.0.1:{port}//",
        "result_backend": f"redis://127.0.0.1:{port}/0",
    }[down]
    client = build_app(
        voice_dir, tmp_path, publish_timeout=1.0, queue=broker_queue, **{down: dead}
    ).test_client()
    started = time.monotonic()
    response = post(client, {"member_id": 1, "text": "안녕"})
    assert time.monotonic() - started < 8
    assert_error(response, 503, "service_unavailable")
    assert response.headers["Retry-After"]
    if down == "result_backend":
        assert_error(client.get(f"/api/jobs/{uuid.uuid4()}"), 503, "service_unavailable")


def test_cors_allows_only_listed_origins(client: FlaskClient) -> None:
    """Localhost dev origins get Access-Control-Allow-Origin; others get none."""
    ok = client.get("/api/members", headers={"Origin": "http://localhost:3000"})
    assert ok.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    evil = client.get("/api/members", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in evil.headers
    preflight = client.options(
        "/api/texts",
        headers={
            "Origin": "http://127.0.0.1:5173",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Content-Type",
        },
    )
    assert preflight.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:5173"


def test_cors_origins_from_settings(voice_dir: Path) -> None:
    """MOKSORI_CORS_ORIGINS replaces the default list, and '*' is refused."""
    app = create_app({"voice_dir": voice_dir, "cors_origins": ("https://moksori.example",)})
    client = app.test_client()
    ok = client.get("/api/members", headers={"Origin": "https://moksori.example"})
    assert ok.headers["Access-Control-Allow-Origin"] == "https://moksori.example"
    local = client.get("/api/members", headers={"Origin": "http://localhost:3000"})
    assert "Access-Control-Allow-Origin" not in local.headers
    with pytest.raises(ValueError, match="not allowed"):
        create_app({"voice_dir": voice_dir, "cors_origins": ("*",)})


def test_media_is_served_with_range_etag_and_caching(client: FlaskClient, media_root: Path) -> None:
    """Local audio supports Range (seeking), ETag revalidation and long-lived caching."""
    key = audio_key(1, "v1", "안녕", secret=TEST_SECRET)
    path = media_root / key
    path.parent.mkdir(parents=True)
    path.write_bytes(b"RIFF" + bytes(range(256)) * 4)
    full = client.get(f"/media/{key}")
    assert full.status_code == 200
    assert full.headers["Content-Type"] == "audio/wav"
    assert full.headers["Accept-Ranges"] == "bytes"
    assert "immutable" in full.headers["Cache-Control"]
    etag = full.headers["ETag"]
    part = client.get(f"/media/{key}", headers={"Range": "bytes=4-7"})
    assert part.status_code == 206
    assert part.data == bytes([0, 1, 2, 3])
    assert part.headers["Content-Range"] == f"bytes 4-7/{len(full.data)}"
    assert client.get(f"/media/{key}", headers={"If-None-Match": etag}).status_code == 304


@pytest.mark.parametrize(
    "path",
    [
        "/media/%2e%2e/%2e%2e/etc/passwd",
        "/media/..%2f..%2fetc%2fpasswd",
        "/media//etc/passwd",
        "/media/wav/../../secret.txt",
        "/media/wav/1/none.wav",
    ],
)
def test_media_never_leaves_its_root(client: FlaskClient, media_root: Path, path: str) -> None:
    """Encoded traversal, absolute paths and missing files are all 404s."""
    media_root.mkdir(parents=True, exist_ok=True)
    (media_root.parent / "secret.txt").write_text("secret")
    response = client.get(path, follow_redirects=True)  # "//" is merged by a redirect first
    assert response.status_code == 404
    assert b"secret" not in response.data


def test_api_never_imports_torch(voice_dir: Path, tmp_path: Path) -> None:
    """Building the app and answering requests leaves torch (and g2pK's dictionary) unloaded."""
    code = (
        "import sys; from api import create_app; app = create_app();"
        "c = app.test_client(); assert c.get('/api/members').status_code == 200;"
        "r = c.post('/api/texts', json={'member_id': 1, 'text': '🙂'});"
        "assert r.status_code == 422, r.status_code;"
        "assert 'torch' not in sys.modules, 'torch was imported';"
        "assert not [m for m in sys.modules if m.startswith('mecab')], 'mecab was loaded'"
    )
    env = base_env(voice_dir=str(voice_dir), storage_url=f"file://{tmp_path}")
    subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, check=True, timeout=120)


def test_sql_result_backend_tracks_jobs(
    voice_dir: Path, tmp_path: Path, broker_queue: str, listener: Listener
) -> None:
    """A SQL result backend (shared by API processes on one host) also knows queued vs unknown."""
    app = build_app(
        voice_dir,
        tmp_path,
        result_backend=f"db+sqlite:///{tmp_path / 'results.sqlite'}",
        queue=broker_queue,
    )
    client = app.test_client()
    response = post(client, {"member_id": 1, "text": "안녕"})
    assert response.status_code == 202
    assert client.get(response.headers["Location"]).get_json()["status"] == "queued"
    assert_error(client.get(f"/api/jobs/{uuid.uuid4()}"), 404, "unknown_job")
