"""Child processes with their output in a log file, for the tests and the benchmark: the API and
workers started exactly as ``make run`` starts them (:func:`launcher.worker_argv`,
:func:`launcher.api_argv`), waited for until they serve."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from launcher import api_argv, worker_argv

REPO = Path(__file__).resolve().parent.parent


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process:
    """A child process whose output goes to a log file that failing tests can show."""

    def __init__(
        self, name: str, args: list[str], env: dict[str, str], log_dir: Path, cwd: Path = REPO
    ) -> None:
        self.name = name
        self.hostname = ""
        self.metrics_port = 0
        self.log = log_dir / f"{name}.log"
        self._fh = self.log.open("wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            args,
            env=env,
            cwd=cwd,
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
            time.sleep(0.1)
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


def spawn_worker(
    env: dict[str, str],
    log_dir: Path,
    name: str = "worker",
    prefix: Sequence[str] = (),
    cwd: Path = REPO,
) -> Process:
    """A real Celery worker process (prefork, one child), started but perhaps not ready yet
    (:func:`wait_ready`); its metrics server gets a free port (``metrics_port``) unless ``env``
    names one. ``prefix`` wraps its command line (``ip netns exec NS``: another host); ``cwd``
    is the checkout whose code it runs (with ``PYTHONPATH`` in ``env``)."""
    hostname = f"{name}-{uuid.uuid4().hex[:6]}@{socket.gethostname()}"
    env = dict(env)
    env.setdefault("MOKSORI_WORKER_METRICS_PORT", str(free_port()))
    argv = [*prefix, *worker_argv(hostname), "--without-gossip", "--without-mingle"]
    worker = Process(name, argv, env, log_dir, cwd)
    worker.hostname = hostname
    worker.metrics_port = int(env["MOKSORI_WORKER_METRICS_PORT"])
    return worker


def wait_ready(worker: Process) -> Process:
    """``worker`` once it has loaded its voices and consumes."""
    worker.wait_for("worker ready on", timeout=180)
    worker.wait_for("ready.", timeout=60)  # Celery's own "celery@host ready." once consuming
    return worker


def start_worker(
    env: dict[str, str], log_dir: Path, name: str = "worker", cwd: Path = REPO
) -> Process:
    """A real Celery worker process (prefork, one child) that has loaded its voices."""
    return wait_ready(spawn_worker(env, log_dir, name, cwd=cwd))


def start_api(
    env: dict[str, str],
    log_dir: Path,
    host: str = "127.0.0.1",
    prefix: Sequence[str] = (),
    cwd: Path = REPO,
) -> tuple[Process, str]:
    """The API under gunicorn on a free port of ``host``; returns the process and its base URL.
    ``prefix`` wraps its command line (``ip netns exec NS``: another host); ``cwd`` as for
    :func:`spawn_worker`."""
    port = free_port()
    api = Process("api", [*prefix, *api_argv(host, port)], env, log_dir, cwd)
    base = f"http://{host}:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if reachable(host, port):
            return api, base
        if api.proc.poll() is not None:
            break
        time.sleep(0.1)
    api.stop()
    raise AssertionError(f"the API did not start:\n{api.output()[-4000:]}")
