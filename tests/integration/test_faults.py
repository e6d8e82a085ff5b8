"""Fault tests: real worker processes killed mid-synthesis, a real broker restarted or cut off,
storage answering 503 or gone, jobs delivered twice, poison jobs and jobs that outlive
RabbitMQ's delivery-acknowledgement timeout. Each checks that no accepted job is lost, that no
job is synthesized or stored twice, and records what happened in the robustness report.

The shared RabbitMQ on 127.0.0.1:5672 is never stopped or reconfigured: broker faults happen on
a private node (tests/faults.py) or behind a TCP proxy of the test's own.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import pytest
import requests
from amqp.exceptions import NotFound
from kombu import Connection

from common.config import Settings
from common.jobs import TASK_NAME, make_celery, member_queue
from harness import voice_factory
from harness.faults import FlakyHttp, RabbitNode, TcpProxy
from harness.processes import Process, free_port, start_api, start_worker
from launcher import worker_argv
from tests import report
from tests.support import BROKER_URL, base_env, start_gcs_emulator
from worker import deliveries

SLOW = 2  # the Griffin-Lim voice at voice_factory.SLOW_GRIFFIN_LIM: about a second a sentence
FAST = 1
FRAGILE = 3


@pytest.fixture(scope="module")
def fault_voices(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return voice_factory.build_fault_repository(tmp_path_factory.mktemp("fault-voices"))


@dataclass
class Stack:
    """A worker and the API on a queue prefix of their own; ``stop`` tears both down."""

    env: dict[str, str]
    logs: Path
    worker: Process
    api: Process
    base: str
    workers: list[Process] = field(default_factory=list)

    def post(self, body: dict[str, Any], wait: int = 0, timeout: float = 30) -> requests.Response:
        query = f"?wait={wait}" if wait else ""
        return requests.post(f"{self.base}/api/texts{query}", json=body, timeout=timeout)

    def status(self, job_id: str) -> dict[str, Any]:
        return requests.get(f"{self.base}/api/jobs/{job_id}", timeout=10).json()

    def wait_final(self, job_id: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status(job_id)
            if status["status"] in {"done", "failed"}:
                return status
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} still {status} after {timeout} s:\n{self.logs_tail()}")

    def restart_worker(self) -> Process:
        self.worker = start_worker(self.env, self.logs, name=f"worker{len(self.workers)}")
        self.workers.append(self.worker)
        return self.worker

    def worker_output(self) -> str:
        return "".join(w.output() for w in self.workers)

    def syntheses(self, key: str) -> int:
        """How many times any worker synthesized ``key`` (each synthesis logs its key)."""
        return sum(1 for line in self.worker_output().splitlines() if "RTF" in line and key in line)

    def logs_tail(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.output()[-3000:]}" for p in [*self.workers, self.api])

    def stop(self) -> None:
        self.api.stop()
        for worker in self.workers:
            if worker.proc.poll() is None:
                os.killpg(worker.proc.pid, signal.SIGCONT)  # a test may have frozen it
            worker.stop()


def launch(
    tmp_path: Path,
    voices: Path,
    broker_url: str = BROKER_URL,
    extra_env: dict[str, str] | None = None,
    **settings: str,
) -> Stack:
    queue = f"moksori-fault-{uuid.uuid4().hex[:8]}"
    env = base_env(
        **{
            "voice_dir": str(voices),
            "queue": queue,
            "storage_url": f"file://{tmp_path / 'media'}",
            # The tests poll job status quickly from one address.
            "rate_limit": "off",
            "max_queued_per_client": "0",
            **settings,
        }
    )
    env["MOKSORI_BROKER_URL"] = broker_url
    env.update(extra_env or {})
    worker = start_worker(env, tmp_path, name="worker0")
    try:
        api, base = start_api(env, tmp_path)
    except BaseException:
        worker.stop()
        raise
    return Stack(env=env, logs=tmp_path, worker=worker, api=api, base=base, workers=[worker])


def delete_queues(stack: Stack, broker_url: str = BROKER_URL) -> None:
    prefix = stack.env["MOKSORI_QUEUE"]
    try:
        with Connection(broker_url, connect_timeout=5) as conn:
            channel = conn.channel()
            for name in [prefix, *(member_queue(prefix, m) for m in (FAST, SLOW, FRAGILE))]:
                channel.queue_delete(name)
    except OSError:
        pass  # a private node that is already gone takes its queues with it


@pytest.fixture(scope="module")
def stack(fault_voices: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Worker + API on the shared RabbitMQ and Redis, local storage, shared by the tests that
    leave a worker serving (a killed one is replaced); a job may be delivered twice."""
    stack = launch(tmp_path_factory.mktemp("fault-stack"), fault_voices, max_deliveries="2")
    yield stack
    stack.stop()
    delete_queues(stack)


def stored_objects(stack: Stack) -> set[str]:
    """The keys of every object in the stack's local storage."""
    media = Path(stack.env["MOKSORI_STORAGE_URL"].removeprefix("file://"))
    return {key_of(str(p)) for p in media.rglob("*.wav") if p.is_file()}


def objects_of(status: dict[str, Any]) -> set[str]:
    """The keys a done job's audio is stored under: its own object and, for a text of several
    sentences, each sentence's (some may have been stored by earlier texts)."""
    return {key_of(status["url"]), *(key_of(s["url"]) for s in status.get("sentences", []))}


def key_of(url: str) -> str:
    """The object key in a media URL or a signed GCS URL (without its query)."""
    path = urlsplit(url).path
    return path[path.index("wav/") :]


def pool_child(worker: Process) -> psutil.Process:
    children = psutil.Process(worker.proc.pid).children(recursive=True)
    assert len(children) == 1, children
    return children[0]


def running_pid(
    stack: Stack, job_id: str, timeout: float = 90, killed: frozenset[int] = frozenset()
) -> int:
    """The pid of the pool process running ``job_id``, once its body has really started (the
    start counted for the poison-job limit, one more than the ``killed`` attempts; a process
    of ``killed`` may still be reported for a moment)."""
    celery = make_celery(Settings.from_env(stack.env), main="fault-probe")
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            replies = celery.control.inspect([stack.worker.hostname], timeout=1.0).active() or {}
            for task in replies.get(stack.worker.hostname, []):
                pid = int(task.get("worker_pid") or 0)
                mine = task["id"] == job_id and pid and pid not in killed
                if mine and deliveries.starts(celery.backend, job_id) > len(killed):
                    return pid
            time.sleep(0.2)
    finally:
        celery.close()
    raise AssertionError(f"job {job_id} never started:\n{stack.logs_tail()}")


def slow_text(sentences: int = 3) -> dict[str, Any]:
    words = ["바다", "구름", "나무", "도시", "기차", "노래", "저녁", "아침"]
    text = " ".join(f"{words[i % 8]}와 {words[(i + 3) % 8]}를 봅니다." for i in range(sentences))
    return {"member_id": SLOW, "text": f"{os.urandom(2).hex()} {text}"}


# --- Worker crashes -------------------------------------------------------------------------


def test_pool_process_killed_mid_synthesis(stack: Stack) -> None:
    """kill -9 of the process running a synthesis: the job goes back to the queue, the worker
    starts a new pool process, and the job completes once: one object, status done."""
    before = stored_objects(stack)
    accepted = stack.post(slow_text())
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]
    pid = running_pid(stack, job_id)
    os.kill(pid, signal.SIGKILL)
    status = stack.wait_final(job_id)
    assert status["status"] == "done", status
    assert stored_objects(stack) - before == objects_of(status) - before
    assert requests.get(status["url"], timeout=10).content[:4] == b"RIFF"
    assert stack.syntheses(key_of(status["url"])) == 1  # the killed attempt never finished
    assert f"job {job_id} delivered again (delivery 2)" in stack.worker.output()
    report.record(
        "worker crash",
        "kill -9 of the pool process while it synthesizes",
        "job requeued (late ack), new pool process took it: done, 1 object, 1 completed synthesis",
        1,
        0,
    )


def test_whole_worker_killed_mid_synthesis(stack: Stack) -> None:
    """kill -9 of the whole worker (main and pool process, as when a machine dies): RabbitMQ
    requeues the unacknowledged job and a new worker completes it."""
    before = stored_objects(stack)
    accepted = stack.post(slow_text())
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]
    running_pid(stack, job_id)
    os.killpg(stack.worker.proc.pid, signal.SIGKILL)
    stack.worker.proc.wait(timeout=10)
    assert stack.status(job_id)["status"] in {"queued", "running"}
    stack.restart_worker()
    status = stack.wait_final(job_id)
    assert status["status"] == "done", status
    assert stored_objects(stack) - before == objects_of(status) - before
    assert stack.syntheses(key_of(status["url"])) == 1
    report.record(
        "worker crash",
        "kill -9 of the whole worker (main + pool) mid-synthesis, then a new worker",
        "RabbitMQ requeued the unacked job; the new worker finished it: done, 1 object",
        1,
        0,
    )


def test_job_that_keeps_killing_its_worker_stops_being_retried(stack: Stack) -> None:
    """A poison job that takes its worker process down every time (an OOM kill, a segfault) is
    delivered MOKSORI_MAX_DELIVERIES (here 2) times, then fails with a reason; the worker
    serves on."""
    job_id = stack.post(slow_text()).json()["job_id"]
    killed: set[int] = set()
    for _ in range(2):
        pid = running_pid(stack, job_id, killed=frozenset(killed))
        os.kill(pid, signal.SIGKILL)
        killed.add(pid)
    status = stack.wait_final(job_id)
    assert status["status"] == "failed", status
    assert "stopped 2 times" in status["error"]
    assert "url" not in status
    ok = stack.post({"member_id": FAST, "text": "그래도 다음 일은 합니다."}, wait=60, timeout=70)
    assert ok.json()["status"] == "done", ok.text
    report.record(
        "poison job",
        "a job whose pool process is killed on every delivery (MOKSORI_MAX_DELIVERIES=2)",
        f'failed after 2 deliveries: "{status["error"]}"; the next job was done',
        2,
        0,
    )


def test_a_starting_worker_takes_no_job_before_its_voices_load(
    fault_voices: Path, tmp_path: Path
) -> None:
    """A worker consumes its members' queues only once its pool process has loaded the voices,
    so it never holds a job (unacked) that a ready worker could run, and the API does not count
    it as serving until then."""
    queue = f"moksori-fault-{uuid.uuid4().hex[:8]}"
    env = base_env(voice_dir=str(fault_voices), queue=queue)
    worker = Process("starting-worker", worker_argv(f"starting-{queue}@localhost"), env, tmp_path)
    seen: list[tuple[bool, int]] = []  # (voices loaded per the log, consumers of member 1's queue)
    try:
        with Connection(BROKER_URL) as conn:
            deadline = time.monotonic() + 180
            # Until the voices are loaded (the pool's log) and Celery consumes ("ready.").
            while not all(line in worker.output() for line in ("worker ready on", "ready.")):
                assert worker.proc.poll() is None and time.monotonic() < deadline, worker.output()
                loaded = "worker ready on" in worker.output()
                channel = conn.channel()
                try:
                    _, _, consumers = channel.queue_declare(member_queue(queue, FAST), passive=True)
                    channel.close()
                except NotFound:
                    consumers = 0
                seen.append((loaded, consumers))
                time.sleep(0.2)
    finally:
        worker.stop()
        with Connection(BROKER_URL) as conn:
            channel = conn.channel()
            for member in (FAST, SLOW, FRAGILE):
                channel.queue_delete(member_queue(queue, member))
    before = [consumers for loaded, consumers in seen if not loaded]
    assert len(before) > 10 and set(before) == {0}, seen
    report.record(
        "worker start-up",
        "a worker starting while its voices load",
        f"no consumer on its queues for the {len(before) * 0.2:.0f} s of loading; consuming once "
        "loaded, so it holds no job meanwhile and the API answers 503 member_unavailable",
        "-",
        "-",
    )


# --- Poison input ---------------------------------------------------------------------------


def test_text_that_makes_the_model_fail(stack: Stack) -> None:
    """Text that makes the model raise fails that job with a reason, once (no redelivery), and
    the worker keeps serving the same voice."""
    bad = stack.post({"member_id": FRAGILE, "text": "하늘이 파랗다."}, wait=60, timeout=70)
    assert bad.status_code == 200, bad.text
    body = bad.json()
    assert body["status"] == "failed"
    assert "The model failed on sentence 1 of 1" in body["error"]
    good = stack.post({"member_id": FRAGILE, "text": "바다로 갑니다."}, wait=60, timeout=70)
    assert good.json()["status"] == "done", good.text
    time.sleep(1.0)
    received = stack.worker.output().count(f"[{body['job_id']}] received")
    assert received == 1
    report.record(
        "poison job",
        "text the model raises on (a voice with NaN weights for syllables starting with ㅎ)",
        f'failed once with "{body["error"]}"; not redelivered; the same voice then said '
        "another text",
        2,
        0,
    )


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"member_id": FAST, "text": None}, "text must be a string"),
        ({"member_id": "abc", "text": "안녕"}, "member_id must be an integer"),
        ({"member_id": 77, "text": "안녕"}, "No voice for member 77"),
        ({"member_id": FAST}, "missing 1 required positional argument"),
    ],
)
def test_malformed_messages_fail_with_a_reason(
    stack: Stack, kwargs: dict[str, Any], reason: str
) -> None:
    """Messages no API would send (published straight to the queue) fail with a reason and are
    not redelivered; the worker keeps serving."""
    celery = make_celery(Settings.from_env(stack.env), main="fault-client")
    try:
        job = celery.send_task(
            TASK_NAME, kwargs=kwargs, queue=member_queue(stack.env["MOKSORI_QUEUE"], FAST)
        )
        job.get(timeout=30, propagate=False)
    finally:
        celery.close()
    status = stack.status(job.id)
    assert status["status"] == "failed", status
    assert reason in status["error"]
    ok = stack.post({"member_id": FAST, "text": "다음 문장은 괜찮습니다."}, wait=60, timeout=70)
    assert ok.json()["status"] == "done"
    assert stack.worker.output().count(f"[{job.id}] received") == 1
    report.record(
        "poison job",
        f"malformed message on the queue: {kwargs!r}",
        f'failed with "{status["error"]}"; not redelivered; next job done',
        1,
        0,
    )


def test_synthesis_over_the_time_limit(fault_voices: Path, tmp_path: Path) -> None:
    """A synthesis past MOKSORI_TASK_SOFT_TIME_LIMIT is stopped and fails with a plain reason,
    once (not redelivered), and the same worker process serves the next job."""
    stack = launch(tmp_path, fault_voices, task_soft_time_limit="2", task_time_limit="20")
    try:
        started = time.monotonic()
        long = stack.post(slow_text(12), wait=60, timeout=70)
        elapsed = time.monotonic() - started
        body = long.json()
        assert body["status"] == "failed", body
        assert body["error"] == "Synthesis took longer than the time limit."
        assert elapsed < 15
        child = pool_child(stack.worker).pid
        ok = stack.post({"member_id": FAST, "text": "짧은 문장은 됩니다."}, wait=60, timeout=70)
        assert ok.json()["status"] == "done", ok.text
        assert pool_child(stack.worker).pid == child  # stopped, not killed: no voice reload
        assert stack.worker.output().count(f"[{body['job_id']}] received") == 1
    finally:
        stack.stop()
        delete_queues(stack)
    report.record(
        "resource limits",
        "a synthesis longer than MOKSORI_TASK_SOFT_TIME_LIMIT (2 s; ~12 s of work)",
        f'stopped after {elapsed:.1f} s: failed with "{body["error"]}"; not redelivered; the '
        "same pool process served the next job",
        1,
        0,
    )


def test_same_job_delivered_twice(stack: Stack) -> None:
    """The same job published twice (a publisher retry after a lost confirm): one synthesis,
    one object, one URL, and the job reads done."""
    before = stored_objects(stack)
    accepted = stack.post({"member_id": FAST, "text": "두 번 배달된 일입니다."})
    assert accepted.status_code == 202
    job_id = accepted.json()["job_id"]
    celery = make_celery(Settings.from_env(stack.env), main="fault-client")
    try:
        again = celery.send_task(
            TASK_NAME,
            kwargs={"member_id": FAST, "text": "두 번 배달된 일입니다.", "uuid": None},
            task_id=job_id,
            queue=member_queue(stack.env["MOKSORI_QUEUE"], FAST),
        )
        again.get(timeout=30)
    finally:
        celery.close()
    deadline = time.monotonic() + 30
    while stack.worker.output().count(f"[{job_id}] succeeded") < 2:
        assert time.monotonic() < deadline, stack.logs_tail()
        time.sleep(0.1)
    status = stack.wait_final(job_id)
    assert status["status"] == "done"
    assert stored_objects(stack) - before == objects_of(status) - before
    assert stack.syntheses(key_of(status["url"])) == 1
    report.record(
        "duplicate delivery",
        "the same job id published twice",
        "both deliveries succeeded with the same URL; 1 synthesis (the second found the object "
        "stored), 1 object",
        1,
        0,
    )


# --- Storage faults -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gcs_stack(
    fault_voices: Path,
    service_account_key: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Stack, FlakyHttp, Process]]:
    """Worker + API on GCS (a private emulator) through an HTTP proxy that can answer 503.
    The test that stops the emulator runs last."""
    tmp_path = tmp_path_factory.mktemp("gcs-fault-stack")
    port = free_port()
    emulator = start_gcs_emulator(port, tmp_path)
    flaky = FlakyHttp(f"http://127.0.0.1:{port}")
    stack = None
    try:
        stack = launch(
            tmp_path,
            fault_voices,
            extra_env={
                "STORAGE_EMULATOR_HOST": flaky.url,
                "GOOGLE_APPLICATION_CREDENTIALS": str(service_account_key),
            },
            storage_url="gs://moksori-test/faults",
            storage_timeout="1",
            storage_retries="2",
        )
        yield stack, flaky, emulator
    finally:
        if stack is not None:
            stack.stop()
            delete_queues(stack)
        flaky.close()
        emulator.stop()


def gcs_exists(stack: Stack, key: str, upstream: str) -> bool:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    os.environ["STORAGE_EMULATOR_HOST"] = upstream
    try:
        client = storage.Client(credentials=AnonymousCredentials(), project="moksori-local")
        return client.bucket("moksori-test").blob(f"faults/{key}").exists()
    finally:
        del os.environ["STORAGE_EMULATOR_HOST"]


def test_storage_503s_are_retried_with_backoff(
    gcs_stack: tuple[Stack, FlakyHttp, Process],
) -> None:
    """A few 503s from GCS: the upload is retried (the client's own retries, then the job's,
    with backoff) and the job completes with a URL to an object that exists."""
    stack, flaky, _ = gcs_stack
    upstream = f"http://{flaky.upstream[0]}:{flaky.upstream[1]}"
    flaky.fail_next = 6
    response = stack.post(
        {"member_id": FAST, "text": "잠깐 실패해도 저장합니다."}, wait=60, timeout=70
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "done", body
    assert flaky.failed == 6
    assert gcs_exists(stack, key_of(body["url"]), upstream)
    report.record(
        "storage",
        "GCS answers 503 to the next 6 requests",
        f"retried; done with a URL to an existing object ({flaky.failed} 503s absorbed)",
        1,
        0,
    )


@pytest.mark.parametrize("status", [429, 500])
def test_storage_429s_and_500s_are_retried(
    gcs_stack: tuple[Stack, FlakyHttp, Process], status: int
) -> None:
    """GCS answering 429 (rate limited) or 500 to a few requests: retried like 503s (the
    client's own retries, then the job's with backoff), and the job is done."""
    stack, flaky, _ = gcs_stack
    upstream = f"http://{flaky.upstream[0]}:{flaky.upstream[1]}"
    flaky.status, flaky.fail_next, flaky.failed = status, 6, 0
    try:
        response = stack.post(
            {"member_id": FAST, "text": f"{status} 응답도 다시 시도합니다."}, wait=60, timeout=70
        )
    finally:
        flaky.status = 503
    body = response.json()
    assert response.status_code == 200 and body["status"] == "done", body
    assert flaky.failed == 6
    assert gcs_exists(stack, key_of(body["url"]), upstream)
    report.record(
        "storage",
        f"GCS answers {status} to the next 6 requests",
        f"retried; done with a URL to an existing object ({flaky.failed} {status}s absorbed)",
        1,
        0,
    )


def test_storage_outage_fails_the_job_clearly_and_recovers(
    gcs_stack: tuple[Stack, FlakyHttp, Process],
) -> None:
    """GCS answering 503 to everything: the job retries with backoff, then fails with a plain
    reason and no URL, and no object appears; once storage is back the same text succeeds."""
    stack, flaky, _ = gcs_stack
    upstream = f"http://{flaky.upstream[0]}:{flaky.upstream[1]}"
    text = {"member_id": FAST, "text": "저장소가 멈추면 실패를 알립니다."}
    flaky.fail_next = -1
    started = time.monotonic()
    accepted = stack.post(text)
    assert accepted.status_code == 202, accepted.text  # lookup failed: treated as a miss
    assert time.monotonic() - started < 5
    job_id = accepted.json()["job_id"]
    status = stack.wait_final(job_id, timeout=120)
    assert status["status"] == "failed", status
    assert "Storage is unavailable" in status["error"] and "3 attempts" in status["error"]
    assert "GCS answered HTTP 503" in status["error"], status
    assert status["error_code"] == "storage_unavailable" and "url" not in status
    assert stack.worker.output().count(f"[{job_id}] retry") == 2
    flaky.fail_next = 0
    again = stack.post(text, wait=60, timeout=70).json()
    assert again["status"] == "done", again
    assert gcs_exists(stack, key_of(again["url"]), upstream)
    report.record(
        "storage",
        "GCS answers 503 to every request (then recovers)",
        f"202 at once; job retried twice with backoff, then failed code storage_unavailable: "
        f'"{status["error"][:60]}…" with no URL and no object; the same text succeeded once '
        "storage was back",
        2,
        0,
    )


def test_storage_emulator_stopped(gcs_stack: tuple[Stack, FlakyHttp, Process]) -> None:
    """Storage not answering at all (the emulator stopped): the job fails with a reason after
    its retries, never with a URL; with storage started again, jobs succeed."""
    stack, flaky, emulator = gcs_stack
    emulator.stop()
    accepted = stack.post({"member_id": FAST, "text": "저장소가 꺼졌습니다."})
    assert accepted.status_code == 202, accepted.text
    status = stack.wait_final(accepted.json()["job_id"], timeout=120)
    assert status["status"] == "failed" and "url" not in status, status
    assert "Storage is unavailable" in status["error"]
    restarted = start_gcs_emulator(flaky.upstream[1], stack.logs)
    try:
        ok = stack.post(
            {"member_id": FAST, "text": "저장소가 다시 켜졌습니다."}, wait=60, timeout=70
        )
        assert ok.json()["status"] == "done", ok.text
    finally:
        restarted.stop()
    report.record(
        "storage",
        "storage emulator stopped (connections refused), then started again",
        "job failed after its retries with a reason and no URL; jobs after the restart done",
        2,
        0,
    )


# --- Broker faults --------------------------------------------------------------------------


@pytest.fixture
def rabbit_node(tmp_path: Path) -> Iterator[RabbitNode]:
    """A private RabbitMQ node the test may stop, crash and restart."""
    node = RabbitNode()
    try:
        node.start()
        yield node
    finally:
        node.remove()


def freeze(worker: Process, frozen: bool) -> None:
    """SIGSTOP/SIGCONT a worker (main and pool process): a busy worker, so jobs stay queued."""
    os.killpg(worker.proc.pid, signal.SIGSTOP if frozen else signal.SIGCONT)


def accept_jobs(stack: Stack, label: str, count: int = 4) -> list[str]:
    ids = []
    for n in range(count):
        response = stack.post({"member_id": FAST, "text": f"{label} {n + 1}번째 문장입니다."})
        assert response.status_code == 202, response.text
        ids.append(response.json()["job_id"])
    return ids


def refused_quickly(stack: Stack, text: str) -> float:
    """POST while the broker is unreachable: a 503 with Retry-After, in how many seconds."""
    started = time.monotonic()
    response = stack.post({"member_id": FAST, "text": text}, timeout=30)
    elapsed = time.monotonic() - started
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "service_unavailable"
    assert response.headers["Retry-After"]
    return elapsed


def recovers(stack: Stack, label: str, timeout: float = 60) -> float:
    """Seconds until the API accepts a new job again, with nobody restarting it."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        response = stack.post({"member_id": FAST, "text": f"{label} 다시 받습니다."}, timeout=30)
        if response.status_code in {200, 202}:
            return time.monotonic() - started
        assert response.status_code == 503, response.text
        time.sleep(0.5)
    raise AssertionError(f"the API did not recover in {timeout} s:\n{stack.logs_tail()}")


@pytest.mark.parametrize("how", ["restart", "crash"])
@pytest.mark.needs("rabbitmq-server")
def test_broker_restart_loses_no_accepted_job(
    rabbit_node: RabbitNode, fault_voices: Path, tmp_path: Path, how: str
) -> None:
    """Jobs queued when the broker restarts (or crashes and comes back) survive it: durable
    queues, persistent confirmed messages. Meanwhile the API answers 503 at once, and API and
    worker reconnect by themselves."""
    stack = launch(tmp_path, fault_voices, broker_url=rabbit_node.url, publish_timeout="2")
    try:
        warm = stack.post({"member_id": FAST, "text": "시작합니다."}, wait=60, timeout=70)
        assert warm.json()["status"] == "done", warm.text
        freeze(stack.worker, True)
        jobs = accept_jobs(stack, how)
        rabbit_node.kill() if how == "crash" else rabbit_node.stop()
        refused_s = refused_quickly(stack, "브로커가 없습니다.")
        assert refused_s < 5
        assert {stack.status(j)["status"] for j in jobs} == {"queued"}
        rabbit_node.start()
        freeze(stack.worker, False)
        recovered_s = recovers(stack, how)
        finals = [stack.wait_final(j) for j in jobs]
        assert [f["status"] for f in finals] == ["done"] * len(jobs), finals
    finally:
        stack.stop()
    report.record(
        "broker",
        f"RabbitMQ {'killed -9' if how == 'crash' else 'stopped'} and started again with "
        f"{len(jobs)} jobs queued",
        f"503 service_unavailable in {refused_s:.2f} s while down; API accepting again "
        f"{recovered_s:.1f} s after the broker was back; all {len(jobs)} queued jobs done",
        len(jobs),
        0,
    )


def consumers_on(broker_url: str, queue: str) -> int:
    """The consumer count of ``queue`` on the broker, read on a connection of the test's own
    (0 when the broker or the queue is not there)."""
    try:
        with Connection(broker_url, connect_timeout=2) as conn:
            return int(conn.channel().queue_declare(queue=queue, passive=True)[2])
    except (OSError, NotFound, ConnectionError):
        return 0


@pytest.mark.needs("rabbitmq-server")
def test_first_posts_after_a_broker_restart_on_an_idle_api(
    rabbit_node: RabbitNode, fault_voices: Path, tmp_path: Path
) -> None:
    """RabbitMQ restarted while the API sends nothing: the connections the API pooled are dead
    without its knowing. Once the worker consumes again, the very first POSTs are accepted
    (each API process reconnects once on finding its connection dead) instead of a 503."""
    stack = launch(tmp_path, fault_voices, broker_url=rabbit_node.url, publish_timeout="2")
    queue = member_queue(stack.env["MOKSORI_QUEUE"], FAST)
    try:
        warm = stack.post({"member_id": FAST, "text": "시작합니다."}, wait=60, timeout=70)
        assert warm.json()["status"] == "done", warm.text
        # Enough new connections that both gunicorn processes pool broker connections.
        accept_jobs(stack, "idle-warm", count=6)
        rabbit_node.stop()
        rabbit_node.start()
        started = time.monotonic()
        # The worker's own reconnection, observed without asking the API anything.
        while consumers_on(rabbit_node.url, queue) == 0:
            assert time.monotonic() - started < 120, stack.logs_tail()
            time.sleep(0.5)
        answers = []
        for n in range(6):
            response = stack.post({"member_id": FAST, "text": f"다시 {n}번째 문장입니다."})
            answers.append((response.status_code, response.json().get("error")))
        assert [status for status, _ in answers] == [202] * 6, (answers, stack.logs_tail())
    finally:
        stack.stop()
    report.record(
        "broker",
        "RabbitMQ stopped and started while the API was idle (its pooled connections dead)",
        "the first 6 POSTs once a worker consumed again: all 202 (each API process reconnected "
        "once), none 503",
    )


@pytest.mark.needs("rabbitmq-server")
def test_broker_connection_cut_loses_no_accepted_job(fault_voices: Path, tmp_path: Path) -> None:
    """Every connection to the broker dropped and new ones refused (a partition), then
    restored: 503s meanwhile, then API and worker reconnect by themselves and every job queued
    before the cut is done."""
    proxy = TcpProxy(5672)
    broker = f"amqp://guest:guest@127.0.0.1:{proxy.port}//"
    stack = launch(tmp_path, fault_voices, broker_url=broker, publish_timeout="2")
    try:
        warm = stack.post({"member_id": FAST, "text": "연결합니다."}, wait=60, timeout=70)
        assert warm.json()["status"] == "done", warm.text
        freeze(stack.worker, True)
        jobs = accept_jobs(stack, "끊김")
        proxy.cut()
        refused_s = refused_quickly(stack, "연결이 끊겼습니다.")
        assert refused_s < 5
        proxy.restore()
        freeze(stack.worker, False)
        recovered_s = recovers(stack, "끊김")
        finals = [stack.wait_final(j) for j in jobs]
        assert [f["status"] for f in finals] == ["done"] * len(jobs), finals
    finally:
        stack.stop()
        proxy.cut()
        delete_queues(stack)
    report.record(
        "broker",
        f"every broker connection cut (TCP proxy), new ones refused, with {len(jobs)} jobs "
        "queued; then restored",
        f"503 in {refused_s:.2f} s during the cut; accepting again {recovered_s:.1f} s after; "
        f"all {len(jobs)} jobs done",
        len(jobs),
        0,
    )


@pytest.mark.needs("rabbitmq-server")
def test_job_longer_than_the_consumer_timeout(fault_voices: Path, tmp_path: Path) -> None:
    """A synthesis that outlives RabbitMQ's delivery-acknowledgement timeout (3 s on this
    private node; 30 min by default, above MOKSORI_TASK_TIME_LIMIT) is neither lost nor
    synthesized twice. RabbitMQ closes the channel and Celery stops the worker once the running
    job is done; the job reads done, and the restarted worker (as `make run` or Docker restarts
    it) answers the redelivered copy from storage, in time, since it takes no job before its
    voices are loaded."""
    node = RabbitNode(consumer_timeout_ms=3000)
    node.start()
    try:
        stack = launch(tmp_path, fault_voices, broker_url=node.url)
    except BaseException:
        node.remove()
        raise
    try:
        before = stored_objects(stack)
        # Long enough to outlive the 3 s acknowledgement timeout on a fast machine too.
        accepted = stack.post(slow_text(30))
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job_id"]
        status = stack.wait_final(job_id, timeout=180)
        assert status["status"] == "done", status
        first = stack.worker
        first.proc.wait(timeout=60)  # Celery: "Unrecoverable error: PreconditionFailed"
        assert "delivery acknowledgement on channel" in first.output()
        # Same 3 s timeout: the new worker takes the redelivered copy only once its voices are
        # loaded, and answers it from storage well within the timeout.
        stack.restart_worker()
        stack.worker.wait_for(f"job {job_id} delivered again (delivery 2)", timeout=60)
        stack.worker.wait_for(f"[{job_id}] succeeded", timeout=60)
        assert stack.status(job_id)["status"] == "done"
        ok = stack.post(
            {"member_id": FAST, "text": "시간 초과 뒤에도 일합니다."}, wait=60, timeout=70
        )
        assert ok.json().get("status") == "done", ok.text + stack.logs_tail()
        made = objects_of(status) | {key_of(ok.json()["url"])}
        assert stored_objects(stack) - before == made - before
        assert stack.syntheses(key_of(status["url"])) == 1
        assert stack.worker.proc.poll() is None  # the restarted worker survived the timeout
    finally:
        stack.stop()
        node.remove()
    report.record(
        "broker",
        "a synthesis longer than RabbitMQ's consumer_timeout (3 s on a private node)",
        "job done once (1 synthesis, 1 object); RabbitMQ closed the channel, Celery stopped the "
        "worker after the job; the restarted worker (same timeout) took the redelivered copy "
        "once its voices were loaded and answered it from storage",
        1,
        0,
    )
