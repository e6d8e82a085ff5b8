"""``GET /readyz`` against the real service: one worker on RabbitMQ, and API processes under
gunicorn pointed at what is wrong in each case (no worker on their queue, a closed broker port,
a port that accepts and never answers, storage that cannot be written). Each answer is timed."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
import schemathesis

from api import create_app
from api.readiness import TTL_S
from common.storage import GCSStorage, StorageError
from harness.processes import Process, free_port, start_api
from tests import report
from tests.support import BACKEND_URL, BROKER_URL, Stack, stack_on

ANSWER_LIMIT_S = 1.0
KEY = "readiness-key-0123456789"
"""The stack's API key: a request with it is shown each check's internals."""


@pytest.fixture(scope="module")
def stack(voice_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A worker (the tiny voices) and the API on a queue prefix of their own."""
    logs = tmp_path_factory.mktemp("readiness")
    with stack_on(voice_dir, logs, "ready", torch_threads="1", api_keys=KEY) as stack:
        # The worker gives up member 4's queue (a broken voice) just after it starts consuming.
        stack.worker.wait_for("stopped consuming", timeout=60)
        booted(stack.api)
        yield stack


def booted(api: Process, processes: int = 2, timeout: float = 60) -> None:
    """Wait until each of gunicorn's worker processes has built the app: gunicorn listens
    before they have, and a request meanwhile would time their start-up, not /readyz."""
    deadline = time.monotonic() + timeout
    while api.output().count("API ready:") < processes:
        assert time.monotonic() < deadline and api.proc.poll() is None, api.output()[-4000:]
        time.sleep(0.1)


def readyz(base: str, key: str | None = KEY) -> tuple[requests.Response, float]:
    """The answer to ``GET /readyz`` (sent with ``key``, if any) and how long it took, in
    seconds; the answer is checked against the API's own OpenAPI document (status, headers and
    body schema)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    started = time.perf_counter()
    response = requests.get(f"{base}/readyz", headers=headers, timeout=10)
    elapsed = time.perf_counter() - started
    spec = requests.get(f"{base}/openapi.json", timeout=10).json()
    schemathesis.openapi.from_dict(spec)["/readyz"]["GET"].validate_response(response)
    return response, elapsed


@contextmanager
def other_api(stack: Stack, tmp_path: Path, **env: str) -> Iterator[str]:
    """The base URL of an API process like the stack's, with ``env`` changed."""
    api, base = start_api({**stack.env, **env}, tmp_path)
    try:
        booted(api)
        yield base
    finally:
        api.stop()


def assert_not_ready(response: requests.Response, elapsed: float, failed: str) -> str:
    """503 in the one error shape with Retry-After, in under a second, naming ``failed`` (and
    no other check) as failed; returns its reason."""
    assert elapsed < ANSWER_LIMIT_S, f"/readyz took {elapsed:.3f} s"
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"].isdigit()
    error = response.json()["error"]
    assert error["code"] == "not_ready"
    prefix = f"Not ready: {failed}: "
    assert error["message"].startswith(prefix), error
    for other in {"broker", "workers", "storage"} - {failed}:
        assert f"; {other}: " not in error["message"], error
    return error["message"].removeprefix(prefix)


def test_ready_when_a_worker_serves(stack: Stack) -> None:
    """With the worker consuming, the broker up and storage writable: 200, every check ok, each
    member queue's consumer count reported, within a second."""
    response, elapsed = readyz(stack.base)
    assert elapsed < ANSWER_LIMIT_S, f"/readyz took {elapsed:.3f} s"
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert {name: check["status"] for name, check in body["checks"].items()} == {
        "broker": "ok",
        "workers": "ok",
        "storage": "ok",
    }
    # Member 4's voice is broken: the worker does not consume its queue, and the check says so.
    assert body["checks"]["workers"]["consumers"] == {"1": 1, "2": 1, "3": 1, "4": 0}
    assert body["checks"]["workers"]["detail"].endswith("no worker for member(s) 4")
    assert "Retry-After" not in response.headers
    media = stack.env["MOKSORI_STORAGE_URL"].removeprefix("file://")
    assert media in body["checks"]["storage"]["detail"]  # shown with the key
    public = readyz(stack.base, key=None)[0]
    assert public.json()["status"] == "ready" and media not in public.text, public.text


def test_storage_probe_is_cached(stack: Stack, tmp_path: Path) -> None:
    """The storage probe writes at most once per TTL however often /readyz is asked (an API
    process of its own, in-process, so one cache is observed): the media folder changes on the
    first request, not during a burst of 20, and again once the TTL has passed."""
    media = tmp_path / "media"
    media.mkdir()
    settings = {
        "broker_url": BROKER_URL,
        "result_backend": BACKEND_URL,
        "queue": stack.env["MOKSORI_QUEUE"],  # the stack's worker serves it: 200s
        "voice_dir": stack.env["MOKSORI_VOICE_DIR"],
        "storage_url": f"file://{media}",
        "media_secret": "readiness-tests-secret",  # no secret file: the folder holds only probes
    }
    client = create_app(settings).test_client()
    before = media.stat().st_mtime_ns
    time.sleep(0.01)
    assert client.get("/readyz").status_code == 200
    probed = media.stat().st_mtime_ns
    assert probed != before  # the probe file was created and removed
    for _ in range(20):
        response = client.get("/readyz")
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["checks"]["storage"]["status"] == "ok"
    assert media.stat().st_mtime_ns == probed
    time.sleep(TTL_S["storage"] + 0.1)
    assert client.get("/readyz").status_code == 200
    assert media.stat().st_mtime_ns != probed
    assert not list(media.iterdir())


def test_not_ready_without_a_worker(stack: Stack, tmp_path: Path) -> None:
    """An API whose queue prefix no worker consumes: 503 naming the workers check."""
    with other_api(stack, tmp_path, MOKSORI_QUEUE=f"moksori-ready-none-{os.getpid()}") as base:
        response, elapsed = readyz(base)
        reason = assert_not_ready(response, elapsed, "workers")
        assert reason.startswith("no worker consumes any member queue"), reason


def test_not_ready_when_the_broker_port_is_closed(stack: Stack, tmp_path: Path) -> None:
    """A broker URL on a port nobody listens on: 503 naming the broker (refused), at once."""
    url = f"amqp://guest:guest@127.0.0.1:{free_port()}//"
    with other_api(stack, tmp_path, MOKSORI_BROKER_URL=url) as base:
        response, elapsed = readyz(base)
        reason = assert_not_ready(response, elapsed, "broker")
        assert "refused" in reason.lower(), reason


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel completes them) and never says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]


def test_not_ready_when_the_broker_never_answers(
    stack: Stack, tmp_path: Path, silent_port: int
) -> None:
    """A broker URL on a port that accepts and never answers: every answer still comes within a
    second, 503 naming the broker, and the API keeps answering meanwhile."""
    url = f"amqp://guest:guest@127.0.0.1:{silent_port}//"
    with other_api(stack, tmp_path, MOKSORI_BROKER_URL=url) as base:
        timings = []
        for _ in range(4):
            response, elapsed = readyz(base)
            reason = assert_not_ready(response, elapsed, "broker")
            assert "no answer within" in reason, reason
            timings.append(elapsed)
        assert requests.get(f"{base}/healthz", timeout=5).status_code == 200
        report.record(
            "readiness",
            "GET /readyz, broker URL on a port that accepts and never answers (4 requests)",
            f"503 naming the broker in {max(timings):.2f} s at most; /healthz still answers",
        )


def test_not_ready_when_storage_is_not_writable(stack: Stack, tmp_path: Path) -> None:
    """Storage under a path that is a regular file (root ignores permissions, so a read-only
    folder would not do): 503 naming storage with the OS's reason; broker and workers ok."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_bytes(b"")
    url = f"file://{blocker / 'media'}"
    with other_api(stack, tmp_path, MOKSORI_STORAGE_URL=url) as base:
        response, elapsed = readyz(base)
        reason = assert_not_ready(response, elapsed, "storage")
        assert "Not a directory" in reason, reason


def test_gcs_probe_writes_and_removes_an_object(
    gcs_emulator: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The GCS probe uploads and deletes one object under the prefix (nothing is left), and a
    bucket that does not exist fails it with a StorageError."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    storage = GCSStorage("moksori-test", "ready-probe", public_bucket=True)
    storage.probe(timeout=2)
    assert not list(storage._bucket.list_blobs(prefix="ready-probe/"))
    with pytest.raises(StorageError, match="cannot write to gs://no-such-bucket"):
        GCSStorage("no-such-bucket", "x", public_bucket=True).probe(timeout=2)


def test_embedded_broker_is_ready_with_workers_unknown(tmp_path: Path, voice_dir: Path) -> None:
    """On the embedded filesystem broker (``make run``'s default) /readyz is 200 with the
    workers check ``unknown`` (that broker keeps no consumer list), and 503 naming the broker
    when its folder is gone and cannot be written."""
    settings = {
        "broker_url": "filesystem://",
        "broker_dir": tmp_path / "broker",
        "result_backend": f"db+sqlite:///{tmp_path / 'results.sqlite'}",
        "storage_url": f"file://{tmp_path / 'media'}",
        "voice_dir": voice_dir,
    }
    client = create_app(settings).test_client()
    response = client.get("/readyz")
    assert response.status_code == 200, response.get_json()
    checks = response.get_json()["checks"]
    assert checks["workers"]["status"] == "unknown"
    assert "filesystem broker" in checks["workers"]["detail"]
    assert {checks["broker"]["status"], checks["storage"]["status"]} == {"ok"}

    (tmp_path / "broker" / "queue").rmdir()
    (tmp_path / "broker" / "queue").write_bytes(b"")  # a file where the folder was
    time.sleep(TTL_S["broker"] + 0.1)
    response = client.get("/readyz")
    assert response.status_code == 503
    message = response.get_json()["error"]["message"]
    assert message.startswith("Not ready: broker: ") and "not writable" in message, message


def test_readyz_shows_internals_only_with_a_key(stack: Stack, tmp_path: Path) -> None:
    """/readyz is open, so without a key (or with a wrong one) a failing answer names the
    failed checks in fixed words: no storage path, no broker URL, password or port, no error
    text; the same answer with a valid key says why, with those internals."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_bytes(b"")
    port = free_port()
    password = "broker-secret-9d1c"
    env = {
        "MOKSORI_BROKER_URL": f"amqp://guest:{password}@127.0.0.1:{port}//",
        "MOKSORI_STORAGE_URL": f"file://{blocker / 'media'}",
    }
    with other_api(stack, tmp_path, **env) as base:
        for key in (None, "not-the-key-0123456789"):
            response, _ = readyz(base, key=key)
            message = response.json()["error"]["message"]
            assert response.status_code == 503
            assert message == (
                "Not ready: broker: the broker is unreachable; storage: storage is unreachable."
            ), message
            for secret in (str(blocker), password, str(port), "refused", "127.0.0.1"):
                assert secret not in response.text, (secret, response.text)
        full = readyz(base)[0].json()["error"]["message"]
        assert "refused" in full.lower() and f"{blocker}/media" in full, full
    report.record(
        "readiness",
        "GET /readyz without a key, and with a wrong one, while broker and storage fail",
        "503 naming the failed checks in fixed words (no path, broker URL or error text); "
        "the reasons only with a valid key",
    )
