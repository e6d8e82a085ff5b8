"""Helpers the unit and integration tests share (fixtures live in the conftests): the local
services and what is missing of them, child-process environments, a running stack, and
``eventually()``."""

from __future__ import annotations

import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from kombu import Connection

from bench.reading import Scorer, load_cases
from common.jobs import member_queue
from common.media_secret import MediaSecret
from harness import netns
from harness.processes import REPO, Process, reachable, start_api, start_worker

T = TypeVar("T")

BROKER_URL = os.environ.get("TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
BACKEND_URL = os.environ.get("TEST_RESULT_BACKEND", "redis://127.0.0.1:6379/15")
CHROMIUM = os.environ.get("TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
REQUIRE_SERVICES = os.environ.get("MOKSORI_REQUIRE_SERVICES") == "1"
"""Set by ``.ci/run``: a missing service fails the tests that need it instead of skipping them."""


def _listening(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    return reachable(parts.hostname or "127.0.0.1", parts.port or default_port)


def _program(path: str) -> bool:
    return shutil.which(path) is not None


# Each service a test may need, and how to tell it is there.
SERVICES: dict[str, Callable[[], bool]] = {
    "RabbitMQ": lambda: _listening(BROKER_URL, 5672),
    "Redis": lambda: _listening(BACKEND_URL, 6379),
    "Chromium": lambda: _program(CHROMIUM) and _program(CHROMEDRIVER),
    "rabbitmq-server": lambda: _program("rabbitmq-server") and _program("rabbitmqctl"),
    "redis-server": lambda: _program("redis-server"),
    "espeak-ng": lambda: _program("espeak-ng"),
    "docker-compose": lambda: _program("docker-compose"),
    # Network namespaces and veth links (root): separate "hosts" on this machine.
    "ip-netns": netns.available,
}


def missing_services(names: tuple[str, ...]) -> list[str]:
    """Which of ``names`` (keys of :data:`SERVICES`) this machine does not have."""
    return [name for name in names if not SERVICES[name]()]


TEST_SECRET = MediaSecret(b"moksori-tests-media-secret")
"""A media secret for tests that compute object names themselves."""

SERVICE_ACCOUNT = "moksori-test@moksori-local.iam.gserviceaccount.com"
"""The account a test service-account key names (tests/conftest.py makes the key)."""


def assert_reads_held_out(scorer: Scorer, path: Path, count: int, minimum: float) -> None:
    """A held-out reading set (``count`` cases) is read as expected at least ``minimum`` of the
    time, the share measured when it was written blind; the failures are listed."""
    cases = load_cases(path)
    assert len(cases) == count
    score, failed = scorer.score(cases)
    assert score >= minimum, f"{100 * score:.1f} % read as expected:\n{failed}"


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
        # No worker metrics server unless a test asks for one (test_metrics.py): parallel
        # test runs would race for its port.
        MOKSORI_WORKER_METRICS_PORT="0",
    )
    env.update({f"MOKSORI_{k.upper()}": v for k, v in settings.items()})
    return env


def local_env(voice_dir: Path, queue: str, media: Path, **settings: str) -> dict[str, str]:
    """:func:`base_env` for a stack on local storage in ``media``, with no rate limit (tests
    post bursts from one address), plus ``settings``."""
    return base_env(
        voice_dir=str(voice_dir),
        queue=queue,
        storage_url=f"file://{media}",
        rate_limit="off",
        **settings,
    )


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


@contextmanager
def stack_on(voices: Path, logs: Path, name: str, **settings: str) -> Iterator[Stack]:
    """:func:`running_stack` on the voice repository ``voices``, with a queue (named after
    ``name``, unique to this run), storage and logs of its own under ``logs``, and ``settings``."""
    env = base_env(
        voice_dir=str(voices),
        queue=f"moksori-{name}-{uuid.uuid4().hex[:8]}",
        storage_url=f"file://{logs / 'media'}",
        **settings,
    )
    with running_stack(env, logs) as stack:
        yield stack


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


def start_gcs_emulator(
    port: int, log_dir: Path, host: str = "127.0.0.1", prefix: Sequence[str] = ()
) -> Process:
    """gcp-storage-emulator on ``host:port`` (in memory, bucket ``moksori-test``), once it
    listens; ``prefix`` wraps its command line (``ip netns exec NS``: another host)."""
    emulator = Process(
        f"gcs-emulator-{port}",
        [
            *prefix,
            sys.executable,
            "-m",
            "gcp_storage_emulator",
            "start",
            "--host",
            host,
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
    while not reachable(host, port):
        if emulator.proc.poll() is not None or time.monotonic() > deadline:
            emulator.stop()
            raise AssertionError(f"the storage emulator did not start:\n{emulator.output()}")
        time.sleep(0.1)
    emulator.hostname = f"http://{host}:{port}"
    return emulator
