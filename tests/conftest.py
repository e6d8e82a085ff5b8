"""Shared fixtures: tiny real voices, the real broker and backend, and real processes.

Integration tests need RabbitMQ (127.0.0.1:5672) and Redis (127.0.0.1:6379). When they are not
reachable the tests are skipped, unless ``MOKSORI_REQUIRE_SERVICES=1`` (set by ``.ci/run``), in
which case they fail.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher.processes import REPO, Process, free_port, reachable
from tests import voice_factory

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
    )
    env.update({f"MOKSORI_{k.upper()}": v for k, v in settings.items()})
    return env


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """gcp-storage-emulator on a free port with a bucket ``moksori-test``; yields its host URL."""
    port = free_port()
    log_dir = tmp_path_factory.mktemp("gcs")
    emulator = Process(
        "gcs-emulator",
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
    yield f"http://127.0.0.1:{port}"
    emulator.stop()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write the fault and bad-input report the tests recorded (tests/report.py)."""
    from tests import report

    report.write(REPO / "var" / "reports" / "robustness.md")
