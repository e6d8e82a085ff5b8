"""The request rate per client on /api/* (MOKSORI_RATE_LIMIT), through Flask's test client and
through the real API under gunicorn, with counters in the real Redis."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
from flask import Flask

from harness.processes import Process, free_port, start_api
from tests import report
from tests.integration.test_api import assert_error, build_app, post
from tests.integration.test_security import ALLOWED, KEY_A, KEY_B, bearer
from tests.support import BACKEND_URL, base_env


@pytest.fixture
def redis_client(queue_name: str) -> Iterator[redis.Redis]:
    """The tests' Redis database; afterwards every key naming the test's queue is deleted."""
    client = redis.Redis.from_url(BACKEND_URL)
    yield client
    for key in client.scan_iter(match=f"*{queue_name}*"):
        client.delete(key)
    client.close()


def unknown_job() -> str:
    return f"/api/jobs/{uuid.uuid4()}"


def as_client(address: str) -> dict[str, Any]:
    """Test-client arguments for a request from another address."""
    return {"environ_base": {"REMOTE_ADDR": address}}


def retry_after(response: Any, most: int) -> int:
    seconds = int(response.headers["Retry-After"])
    assert 1 <= seconds <= most
    return seconds


def closed(app: Flask) -> None:
    app.extensions["moksori"].celery.close()


def test_rate_limit_in_redis_is_a_json_429_with_retry_after(
    voice_dir: Path, tmp_path: Path, queue_name: str, redis_client: redis.Redis
) -> None:
    """Over MOKSORI_RATE_LIMIT a client gets 429 rate_limited with Retry-After (and CORS headers
    for its origin); /healthz and preflights are not counted; another address has its own count;
    the counters are in Redis under the deployment's queue prefix."""
    app = build_app(
        voice_dir,
        tmp_path,
        queue=queue_name,
        rate_limit="3/minute",
        rate_limit_storage=BACKEND_URL,
    )
    client = app.test_client()
    for _ in range(5):
        assert client.get("/healthz").status_code == 200
        preflight = client.options(
            "/api/texts",
            headers={"Origin": ALLOWED, "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 200
    answers = [client.get(unknown_job(), headers={"Origin": ALLOWED}) for _ in range(3)]
    assert [a.status_code for a in answers] == [404, 404, 404]
    refused = client.get(unknown_job(), headers={"Origin": ALLOWED})
    assert_error(refused, 429, "rate_limited")
    seconds = retry_after(refused, 60)
    assert refused.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert_error(post(client, {"member_id": 1, "text": "안녕"}), 429, "rate_limited")
    assert client.get("/healthz").status_code == 200
    assert client.get(unknown_job(), **as_client("192.0.2.7")).status_code == 404
    counters = [k.decode() for k in redis_client.scan_iter(match=f"*{queue_name}*")]
    assert any("ip:127.0.0.1" in k for k in counters), counters
    assert any("ip:192.0.2.7" in k for k in counters), counters
    closed(app)
    report.record(
        "limits",
        "/api/* over MOKSORI_RATE_LIMIT=3/minute (Redis counters)",
        f"429 rate_limited, Retry-After: {seconds}, CORS headers kept; /healthz and preflights "
        "not counted",
        0,
        0,
    )


def test_rate_limit_counts_per_key_and_unauthenticated_per_address(
    voice_dir: Path, tmp_path: Path, queue_name: str, redis_client: redis.Redis
) -> None:
    """A valid API key has its own count, whatever the address; requests without a valid key,
    refused 401, still count against their address, so guessing keys is rate limited too. No
    counter's name holds a key."""
    app = build_app(
        voice_dir,
        tmp_path,
        queue=queue_name,
        api_keys=f"{KEY_A},{KEY_B}",
        rate_limit="2/minute",
        rate_limit_storage=BACKEND_URL,
    )
    client = app.test_client()
    key_a = [client.get(unknown_job(), headers=bearer(KEY_A)).status_code for _ in range(3)]
    assert key_a == [404, 404, 429]
    assert client.get(unknown_job(), headers=bearer(KEY_B)).status_code == 404
    moved = client.get(unknown_job(), headers=bearer(KEY_A), **as_client("192.0.2.8"))
    assert_error(moved, 429, "rate_limited")  # the key's count follows it to another address
    guesses = [
        client.get(unknown_job(), headers=bearer(f"guess-{n}-xxxxxxxxxxxxxxxx")) for n in range(3)
    ]
    assert [g.status_code for g in guesses] == [401, 401, 429]
    assert_error(client.get(unknown_job()), 429, "rate_limited")  # same address, no key
    counters = " ".join(k.decode() for k in redis_client.scan_iter(match=f"*{queue_name}*"))
    assert "key:" in counters and "ip:127.0.0.1" in counters
    assert KEY_A not in counters and KEY_B not in counters
    closed(app)
    report.record(
        "limits",
        "rate limit with API keys: per key; wrong or missing keys per address",
        "429 rate_limited after the limit, for each key and for key guesses from one address",
    )


def test_rate_limit_storage_down_falls_back_to_memory(
    voice_dir: Path, tmp_path: Path, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """With the limiter's Redis unreachable every request is still answered quickly (never a
    500), and the limit still holds, counted in the process's memory."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    app = build_app(
        voice_dir, tmp_path, queue=queue_name, rate_limit="3/minute", rate_limit_storage=dead
    )
    client = app.test_client()
    statuses = []
    for _ in range(5):
        started = time.monotonic()
        statuses.append(client.get(unknown_job()).status_code)
        assert time.monotonic() - started < 2
    assert statuses == [404, 404, 404, 429, 429]
    assert "falling back to in-memory storage" in caplog.text
    closed(app)
    report.record(
        "limits",
        "rate-limit Redis unreachable (closed port)",
        "answers as usual within 2 s, limit counted in memory per process: 429 after 3",
        0,
        0,
    )


def test_rate_limit_off_and_bad_values(voice_dir: Path, tmp_path: Path, queue_name: str) -> None:
    """MOKSORI_RATE_LIMIT=off counts nothing; a value limits cannot parse stops the start-up
    with the variable's name."""
    app = build_app(voice_dir, tmp_path, queue=queue_name, rate_limit="off")
    client = app.test_client()
    assert {client.get(unknown_job()).status_code for _ in range(40)} == {404}
    closed(app)
    with pytest.raises(ValueError, match="MOKSORI_RATE_LIMIT='lots/minute'"):
        build_app(voice_dir, tmp_path, queue=queue_name, rate_limit="lots/minute")


@pytest.mark.parametrize("trusted", [0, 1])
def test_forwarded_for_counts_only_behind_trusted_proxies(
    voice_dir: Path, tmp_path: Path, queue_name: str, trusted: int
) -> None:
    """With MOKSORI_TRUSTED_PROXIES=1 the address from X-Forwarded-For is the client; with 0 (the
    default) the header is ignored, so a client cannot dodge its limit by inventing one."""
    app = build_app(
        voice_dir, tmp_path, queue=queue_name, rate_limit="2/minute", trusted_proxies=trusted
    )
    client = app.test_client()
    statuses = [
        client.get(unknown_job(), headers={"X-Forwarded-For": "203.0.113.5"}).status_code
        for _ in range(3)
    ]
    assert statuses == [404, 404, 429]
    other = client.get(unknown_job(), headers={"X-Forwarded-For": "203.0.113.6"})
    assert other.status_code == (404 if trusted else 429)
    closed(app)
    report.record(
        "limits",
        f"X-Forwarded-For from a new address each time (MOKSORI_TRUSTED_PROXIES={trusted})",
        "counted per forwarded address" if trusted else "ignored: still 429",
    )


# --- through gunicorn -----------------------------------------------------------------------------


def worker_of(master: psutil.Process, conn: HTTPConnection) -> int:
    """The pid of the gunicorn worker holding the server side of ``conn``."""
    port = conn.sock.getsockname()[1]
    for worker in master.children():
        for c in worker.net_connections(kind="tcp"):
            if c.raddr and c.raddr.port == port:
                return worker.pid
    raise AssertionError(f"no gunicorn worker holds the connection from port {port}")


def one_connection_per_worker(api: Process, port: int) -> dict[int, HTTPConnection]:
    """A keep-alive connection to each of gunicorn's two workers, by pid: connections are opened
    until both workers have accepted one (a connection stays with the process that took it)."""
    master = psutil.Process(api.proc.pid)
    found: dict[int, tuple[HTTPConnection, float]] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        conn = HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/healthz")
        assert conn.getresponse().read()
        pid = worker_of(master, conn)
        if pid in found:
            found[pid][0].close()
        found[pid] = (conn, time.monotonic())
        fresh = all(time.monotonic() - opened < 1 for _, opened in found.values())
        if len(found) == 2 and fresh:  # gunicorn drops idle keep-alive connections after 2 s
            return {pid: conn for pid, (conn, _) in found.items()}
        time.sleep(0.02)
    raise AssertionError(f"gunicorn's two workers did not both take a connection:\n{api.output()}")


def call(
    conn: HTTPConnection, method: str, path: str, client: str, body: dict | None = None
) -> tuple[int, dict[str, str], dict]:
    """One request on ``conn`` from ``client`` (an address the trusted proxy forwarded)."""
    headers = {"X-Forwarded-For": client, "Content-Type": "application/json"}
    data = None if body is None else json.dumps(body).encode()
    conn.request(method, path, body=data, headers=headers)
    response = conn.getresponse()
    return response.status, dict(response.getheaders()), json.loads(response.read())


@contextlib.contextmanager
def gunicorn_workers(env: dict[str, str], log_dir: Path) -> Iterator[tuple[HTTPConnection, ...]]:
    """The API under gunicorn with its 2 worker processes (as ``make run`` starts it) and one
    keep-alive connection to each; afterwards it checks neither connection changed process."""
    api, base = start_api(env, log_dir)
    conns: dict[int, HTTPConnection] = {}
    try:
        conns = one_connection_per_worker(api, int(base.rsplit(":", 1)[1]))
        yield tuple(conns.values())
        master = psutil.Process(api.proc.pid)
        assert {pid: worker_of(master, conn) for pid, conn in conns.items()} == {
            pid: pid for pid in conns
        }
    finally:
        for conn in conns.values():
            conn.close()
        api.stop()


def test_rate_limit_holds_across_gunicorn_processes(
    voice_dir: Path, tmp_path: Path, queue_name: str, redis_client: redis.Redis
) -> None:
    """The real API under gunicorn with Redis counters: alternating between a connection to each
    of its two processes, a client gets exactly MOKSORI_RATE_LIMIT answers, then 429
    rate_limited with Retry-After from both."""
    env = base_env(
        voice_dir=str(voice_dir),
        storage_url=f"file://{tmp_path / 'media'}",
        queue=queue_name,
        rate_limit="6/minute",
        rate_limit_storage=BACKEND_URL,
    )
    with gunicorn_workers(env, tmp_path) as (a, b):
        answers = [call(conn, "GET", unknown_job(), "127.0.0.1") for conn in [a, b] * 5]
    assert [status for status, _, _ in answers] == [404] * 6 + [429] * 4, answers
    for _, headers, body in answers[6:]:
        assert body["error"]["code"] == "rate_limited"
        assert 1 <= int(headers["Retry-After"]) <= 60
    report.record(
        "limits",
        "gunicorn, 2 processes, Redis counters: 10 requests alternating between them (limit 6)",
        "6 answered, then 429 rate_limited with Retry-After from both processes",
        0,
        0,
    )


def post_chunked(port: int, body: bytes, chunk: int = 65536) -> tuple[int, dict[str, Any]]:
    """POST ``body`` to /api/texts with ``Transfer-Encoding: chunked`` (no Content-Length) on a
    raw socket, sending from a thread of its own (the server may answer, and stop reading,
    before it is all sent); the answer's status and JSON body."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)

    def send() -> None:
        head = (
            b"POST /api/texts HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        with contextlib.suppress(OSError):  # the server closed its side: it has answered
            sock.sendall(head)
            for start in range(0, len(body), chunk):
                part = body[start : start + chunk]
                sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
            sock.sendall(b"0\r\n\r\n")

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk_in := sock.recv(65536):
            data += chunk_in
    sender.join(timeout=30)
    sock.close()
    head, _, payload = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload)


def test_a_chunked_body_over_the_limit_is_a_413(voice_dir: Path, tmp_path: Path) -> None:
    """A 10 MB JSON body sent chunked (no Content-Length, so no header to check) is refused as
    too large (413 request_entity_too_large) under gunicorn, where werkzeug cut it at the limit
    and it read as invalid JSON (400); a chunked body within the limit is read whole."""
    env = base_env(voice_dir=str(voice_dir), storage_url=f"file://{tmp_path / 'media'}")
    api, base = start_api(env, tmp_path)
    port = int(base.rsplit(":", 1)[1])
    try:
        big = json.dumps({"member_id": 1, "text": "가" * (10 * 1024 * 1024 // 3)}).encode()
        status, answer = post_chunked(port, big)
        assert (status, answer["error"]["code"]) == (413, "request_entity_too_large"), answer
        small = json.dumps({"member_id": 1, "pad": "x" * 60_000}).encode()  # under 64 KiB
        status, answer = post_chunked(port, small, chunk=1000)
        assert (status, answer["error"]["code"]) == (422, "missing_text"), answer
    finally:
        api.stop()
    report.record(
        "limits",
        f"POST /api/texts with a {len(big) // 2**20} MB JSON body sent chunked (no "
        "Content-Length), gunicorn",
        "413 request_entity_too_large; a chunked body under the limit is read whole",
    )
