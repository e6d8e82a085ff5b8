"""Shared fixtures: tiny real voices, the real broker and backend, and real processes.

Integration tests need RabbitMQ (127.0.0.1:5672) and Redis (127.0.0.1:6379). When they are not
reachable the tests are skipped, unless ``MOKSORI_REQUIRE_SERVICES=1`` (set by ``.ci/run``), in
which case they fail.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher import api_argv, worker_argv
from tests import voice_factory

REPO = Path(__file__).resolve().parent.parent
BROKER_URL = os.environ.get("TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
BACKEND_URL = os.environ.get("TEST_RESULT_BACKEND", "redis://127.0.0.1:6379/15")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_services() -> None:
    """Skip (or fail, in CI) when RabbitMQ or Redis is not reachable."""
    missing = [
        name
        for name, port in (("RabbitMQ", 5672), ("Redis", 6379))
        if not _reachable("127.0.0.1", port)
    ]
    if not missing:
        return
    message = f"{' and '.join(missing)} not reachable on 127.0.0.1"
    if os.environ.get("MOKSORI_REQUIRE_SERVICES") == "1":
        pytest.fail(message + " (MOKSORI_REQUIRE_SERVICES=1: the broker-backed tests must run)")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


class Process:
    """A child process whose output goes to a log file that failing tests can show."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.hostname = ""
        self.log = log_dir / f"{name}.log"
        self._fh = self.log.open("wb")
        self.proc = subprocess.Popen(
            args,
            env=env,
            cwd=REPO,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_for(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.output():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"{self.name} never logged {needle!r}:\n{self.output()[-4000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        self._fh.close()


def start_worker(env: dict[str, str], log_dir: Path, name: str = "worker") -> Process:
    """A real Celery worker process (prefork, one child) that has loaded its voices."""
    hostname = f"{name}-{uuid.uuid4().hex[:6]}@{socket.gethostname()}"
    worker = Process(
        name, [*worker_argv(hostname), "--without-gossip", "--without-mingle"], env, log_dir
    )
    worker.hostname = hostname
    worker.wait_for("worker ready on", timeout=180)
    worker.wait_for("ready.", timeout=60)  # Celery's own "celery@host ready." once consuming
    return worker


def start_api(env: dict[str, str], log_dir: Path) -> tuple[Process, str]:
    """The API under gunicorn on a free port; returns the process and its base URL."""
    port = free_port()
    api = Process("api", api_argv("127.0.0.1", port), env, log_dir)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if _reachable("127.0.0.1", port):
            return api, base
        if api.proc.poll() is not None:
            break
        time.sleep(0.2)
    api.stop()
    raise AssertionError(f"the API did not start:\n{api.output()[-4000:]}")


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
    while not _reachable("127.0.0.1", port):
        if emulator.proc.poll() is not None or time.monotonic() > deadline:
            emulator.stop()
            raise AssertionError(f"the storage emulator did not start:\n{emulator.output()}")
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    emulator.stop()
