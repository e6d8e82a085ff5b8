"""Shared fixtures: tiny real voices, the real broker and backend, and real processes.

Integration tests need RabbitMQ (127.0.0.1:5672) and Redis (127.0.0.1:6379). When they are not
reachable the tests are skipped, unless ``MOKSORI_REQUIRE_SERVICES=1`` (set by ``.ci/run``), in
which case they fail.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from kombu import Connection

from common.jobs import member_queue
from launcher.processes import REPO, Process, free_port, reachable, start_api, start_worker
from tests import voice_factory

T = TypeVar("T")

BROKER_URL = os.environ.get("TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
BACKEND_URL = os.environ.get("TEST_RESULT_BACKEND", "redis://127.0.0.1:6379/15")


def require_services() -> None:
    """Skip (or fail, in CI) when RabbitMQ or Redis is not reachable."""
    missing = [
        name
        for name, port in (("RabbitMQ", 5672), ("Redis", 6379))
        if not reachable("127.0.0.1", port)
    ]
    if not missing:
        return
    message = f"{' and '.join(missing)} not reachable on 127.0.0.1"
    if os.environ.get("MOKSORI_REQUIRE_SERVICES") == "1":
        pytest.fail(message + " (MOKSORI_REQUIRE_SERVICES=1: the broker-backed tests must run)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def voice_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A voice repository with three tiny real voices (both layouts) and one broken one."""
    return voice_factory.build_repository(tmp_path_factory.mktemp("voices"))


@pytest.fixture(scope="session")
def services() -> None:
    require_services()


@pytest.fixture
def queue_name() -> str:
    """A queue of the test's own, so parallel runs and leftovers never mix."""
    return f"moksori-test-{uuid.uuid4().hex[:8]}"


def base_env(**settings: str) -> dict[str, str]:
    """The environment for a child process: this one's, minus any MOKSORI_*, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOKSORI_")}
    env.update(
        PYTHONPATH=str(REPO),
        MOKSORI_BROKER_URL=BROKER_URL,
        MOKSORI_RESULT_BACKEND=BACKEND_URL,
        MOKSORI_DEVICE="cpu",
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
        # No worker metrics server unless a test asks for one (tests/test_metrics.py): parallel
        # test runs would race for its port.
        MOKSORI_WORKER_METRICS_PORT="0",
    )
    env.update({f"MOKSORI_{k.upper()}": v for k, v in settings.items()})
    return env


@dataclass
class Stack:
    """A real worker and the API under gunicorn, sharing ``env``."""

    base: str
    worker: Process
    api: Process
    env: dict[str, str]


@contextmanager
def running_stack(env: dict[str, str], logs: Path) -> Iterator[Stack]:
    """Start a worker (voices loaded, consuming) and the API on ``env``; on exit stop both and
    delete the member queues of ``env``'s ``MOKSORI_QUEUE`` with anything left in them."""
    queue = env["MOKSORI_QUEUE"]
    worker = start_worker(env, logs)
    try:
        api, base = start_api(env, logs)
    except BaseException:
        worker.stop()
        raise
    try:
        yield Stack(base=base, worker=worker, api=api, env=env)
    finally:
        api.stop()
        worker.stop()
        with Connection(BROKER_URL) as conn:
            channel = conn.channel()
            for name in [queue, *(member_queue(queue, m) for m in range(1, 5))]:
                channel.queue_delete(name)


SERVICE_ACCOUNT = "moksori-test@moksori-local.iam.gserviceaccount.com"


@pytest.fixture(scope="session")
def service_account_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A service-account key file made here (a fresh RSA key, as Google's JSON key format has
    it): what GOOGLE_APPLICATION_CREDENTIALS names so signed URLs are signed for real. The
    storage emulator checks no signature, so any key works against it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "moksori-local",
        "private_key_id": uuid.uuid4().hex,
        "private_key": pem,
        "client_email": SERVICE_ACCOUNT,
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    path = tmp_path_factory.mktemp("gcp") / "service-account.json"
    path.write_text(json.dumps(info), encoding="utf-8")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="session")
def gcs_emulator(gcs_emulator_process: Process) -> str:
    """The storage emulator's host URL (for STORAGE_EMULATOR_HOST); bucket ``moksori-test``."""
    return gcs_emulator_process.hostname


@pytest.fixture(scope="session")
def gcs_emulator_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    """gcp-storage-emulator on a free port with a bucket ``moksori-test``; its ``hostname`` is
    its URL and its log shows every request it was sent."""
    emulator = start_gcs_emulator(free_port(), tmp_path_factory.mktemp("gcs"))
    yield emulator
    emulator.stop()


def start_gcs_emulator(port: int, log_dir: Path) -> Process:
    """gcp-storage-emulator on ``port`` (in memory, bucket ``moksori-test``), once it listens."""
    emulator = Process(
        f"gcs-emulator-{port}",
        [
            sys.executable,
            "-m",
            "gcp_storage_emulator",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--in-memory",
            "--default-bucket",
            "moksori-test",
        ],
        {**os.environ},
        log_dir,
    )
    deadline = time.monotonic() + 30
    while not reachable("127.0.0.1", port):
        if emulator.proc.poll() is not None or time.monotonic() > deadline:
            emulator.stop()
            raise AssertionError(f"the storage emulator did not start:\n{emulator.output()}")
        time.sleep(0.1)
    emulator.hostname = f"http://127.0.0.1:{port}"
    return emulator


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write the fault and bad-input report the tests recorded (tests/report.py)."""
    from tests import report

    report.write(REPO / "var" / "reports" / "robustness.md")


def eventually(
    probe: Callable[[], T],
    what: str = "the condition",
    *,
    timeout: float = 30,
    interval: float = 0.2,
) -> T:
    """``probe()``'s first truthy answer, asked every ``interval`` seconds; fails the test when
    none comes within ``timeout`` seconds (a condition to wait on, never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = probe()
        if answer:
            return answer
        time.sleep(interval)
    raise AssertionError(f"never saw {what} within {timeout} s")
