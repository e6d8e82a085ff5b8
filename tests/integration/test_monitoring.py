"""Monitoring with Celery's own tools against a live worker, through the light operator app
``common.monitoring`` (no torch, no voices): ``celery inspect active|ping|stats``, ``celery
events --dump`` and Flower's HTTP API, each checked to name the task and the worker while a slow
synthesis runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from common.jobs import TASK_NAME
from harness import voice_factory
from harness.processes import REPO, Process, free_port, reachable
from tests.support import Stack, eventually, stack_on

APP = "common.monitoring"
SLOW = 2  # the fault repository's Griffin-Lim voice: about a second a sentence
FLOWER_AUTH = ("ops", "flower-test-password")
MARKER = os.urandom(4).hex()
"""Begins the job's text: none of the tools may show it (they show its length instead)."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A worker with the slow voice and the API, on a queue prefix of their own."""
    logs = tmp_path_factory.mktemp("monitoring")
    voices = voice_factory.build_fault_repository(logs / "voices")
    with stack_on(voices, logs, "monitor", torch_threads="1", rate_limit="off") as stack:
        yield stack


def celery(stack: Stack, *args: str, timeout: float = 60) -> str:
    """``celery -A common.monitoring <args>`` as an operator runs it; its standard output."""
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", APP, *args],
        env=stack.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def flower(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Flower from PyPI on a free port against the live worker, behind basic auth; its URL."""
    port = free_port()
    argv = [
        sys.executable, "-m", "celery", "-A", APP, "flower",
        "--address=127.0.0.1", f"--port={port}", f"--basic-auth={':'.join(FLOWER_AUTH)}",
    ]  # fmt: skip
    process = Process("flower", argv, stack.env, tmp_path_factory.mktemp("flower"))
    try:
        eventually(lambda: reachable("127.0.0.1", port), "Flower listening")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()


@pytest.fixture(scope="module")
def event_dump(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    """``celery events --dump`` capturing from before the job is sent."""
    process = Process(
        "events",
        [sys.executable, "-m", "celery", "-A", APP, "events", "--dump"],
        stack.env,
        tmp_path_factory.mktemp("events"),
    )
    try:
        process.wait_for("starting capture", timeout=30)
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def running_job(stack: Stack, flower: str, event_dump: Process) -> Iterator[str]:
    """A slow synthesis, sent once Flower and the event dump listen; its job id. Waits for it to
    end afterwards, so the module leaves no work behind."""
    words = " ".join(["바다와 구름을 봅니다."] * 8)
    response = requests.post(
        f"{stack.base}/api/texts",
        json={"member_id": SLOW, "text": f"{MARKER} {words}"},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    yield job_id

    def final() -> dict[str, Any] | None:
        status = requests.get(f"{stack.base}/api/jobs/{job_id}", timeout=10).json()
        return status if status["status"] in {"done", "failed"} else None

    assert eventually(final, f"job {job_id} ending", timeout=120)["status"] == "done"


def test_inspect_active_names_the_running_task_and_worker(stack: Stack, running_job: str) -> None:
    """`celery inspect active --json` while the job runs: the worker's hostname, with the task
    `moksori.synthesize` and the job's id among its active tasks."""

    def active() -> list[dict[str, Any]] | None:
        answer = json.loads(celery(stack, "inspect", "active", "--json", "--timeout", "5"))
        tasks = answer.get(stack.worker.hostname) or []
        return [task for task in tasks if task["id"] == running_job] or None

    (task,) = eventually(active, f"job {running_job} active")
    assert task["name"] == TASK_NAME
    assert task["hostname"] == stack.worker.hostname
    # `inspect active` shows a running job's real arguments (Celery offers no CLI switch for its
    # `safe` mode): docs/operations.md says so. Events and Flower's task list show no text.
    assert task["kwargs"]["member_id"] == SLOW


def test_inspect_ping_and_stats_name_the_worker(stack: Stack, running_job: str) -> None:
    """`inspect ping` gets a pong from the worker by name, even mid-synthesis; `inspect stats
    --json` reports its pool (one prefork process) and prefetch count (1)."""
    ping = json.loads(celery(stack, "inspect", "ping", "--json", "--timeout", "5"))
    assert ping[stack.worker.hostname] == {"ok": "pong"}
    stats = json.loads(celery(stack, "inspect", "stats", "--json", "--timeout", "5"))
    mine = stats[stack.worker.hostname]
    assert mine["pool"]["max-concurrency"] == 1
    assert mine["prefetch_count"] == 1
    human = celery(stack, "inspect", "ping", "--timeout", "5")
    assert stack.worker.hostname in human and "pong" in human


def test_flower_api_names_the_worker_and_the_task(
    stack: Stack, flower: str, running_job: str
) -> None:
    """Flower's HTTP API (basic auth) lists the worker and the job's task by name and worker;
    without credentials it refuses."""
    assert requests.get(f"{flower}/api/workers", timeout=10).status_code == 401

    def workers() -> dict[str, Any] | None:
        response = requests.get(
            f"{flower}/api/workers", params={"refresh": "1"}, auth=FLOWER_AUTH, timeout=15
        )
        assert response.status_code == 200, response.text
        return response.json().get(stack.worker.hostname)

    assert eventually(workers, "the worker in Flower")

    def task() -> dict[str, Any] | None:
        response = requests.get(f"{flower}/api/tasks", auth=FLOWER_AUTH, timeout=10)
        assert response.status_code == 200, response.text
        return response.json().get(running_job)

    seen = eventually(task, f"job {running_job} in Flower")
    assert seen["name"] == TASK_NAME
    assert seen["worker"] == stack.worker.hostname
    assert MARKER not in json.dumps(seen) and "'characters':" in seen["kwargs"]


def test_events_dump_captures_the_job(stack: Stack, event_dump: Process, running_job: str) -> None:
    """`celery events --dump` prints the job's task events: received (with the task's name and
    id) and started, each from the worker."""
    event_dump.wait_for(f"{TASK_NAME}({running_job})", timeout=30)
    event_dump.wait_for("task started", timeout=30)
    lines = [line for line in event_dump.output().splitlines() if running_job in line]
    kinds = {line.split("] ", 1)[1].split(":", 1)[0].lower() for line in lines}
    assert {"task received", "task started"} <= kinds, lines
    assert all(line.startswith(f"{stack.worker.hostname} [") for line in lines), lines
    assert MARKER not in event_dump.output()


def test_monitoring_app_needs_neither_torch_nor_voices(stack: Stack, tmp_path: Path) -> None:
    """`common.monitoring` imports no torch, numpy or worker code and reads no voice folder, so
    Flower runs from the light API image."""
    code = (
        "import sys, common.monitoring as m; "
        "print(m.app.conf.broker_url.split('@')[-1], "
        "sorted(x for x in ('torch', 'numpy', 'worker', 'TTS') if x in sys.modules))"
    )
    env = {**stack.env, "MOKSORI_VOICE_DIR": str(tmp_path / "missing")}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["127.0.0.1:5672//", "[]"]


def test_compose_runs_flower_from_the_light_image() -> None:
    """docker-compose.yml's opt-in `flower` service runs this app's Flower from the API image
    (no torch), refuses to start without basic-auth credentials, and has a healthcheck; the
    image installs Flower and carries common/; the worker's healthcheck pings through it too."""
    import yaml

    services = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))["services"]
    flower = services["flower"]
    assert flower["profiles"] == ["monitoring"]
    assert flower["build"]["dockerfile"] == "Dockerfile.api"
    command = flower["command"][-1]
    assert f"celery -A {APP} flower" in command and "FLOWER_BASIC_AUTH" in command
    assert "/healthcheck" in " ".join(flower["healthcheck"]["test"])
    assert flower["ports"] == ["127.0.0.1:5555:5555"]
    assert f"celery -A {APP} inspect ping" in services["worker"]["healthcheck"]["test"][-1]
    requirements = (REPO / "requirements-api.txt").read_text(encoding="utf-8")
    assert "\nflower==" in requirements
    assert "COPY common/ common/" in (REPO / "Dockerfile.api").read_text(encoding="utf-8")
