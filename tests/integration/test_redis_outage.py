"""Result-backend outages: a private Redis (the job states) stopped for 20 s and for 2 minutes
under a steady trickle of POSTs, with a real worker and API on the shared RabbitMQ. Every job
answered 202 must end ``done`` with its audio stored once; POSTs during the outage are refused
with 503 (nothing accepted that could not be recorded); and a job record that can no longer
advance reads ``failed`` with a reason instead of ``queued``/``running`` forever.

The shared Redis on 6379 is never stopped: the outage happens on a server of the test's own
(:class:`harness.faults.RedisNode`).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from kombu import Connection

from common.config import Settings
from common.jobs import QUEUED, make_celery, member_queue
from harness import voice_factory
from harness.faults import RedisNode
from harness.processes import start_api
from tests import report
from tests.support import BROKER_URL, base_env, eventually, running_stack

_LOGGER = logging.getLogger(__name__)

FAST = 1  # the fault repository's HiFi-GAN voice: tens of milliseconds a sentence
SLOW = 2  # its Griffin-Lim voice: about a second a sentence, so a backlog builds up
POST_EVERY_S = 0.25
CALM_S = 4.0
"""Seconds of trickle before the outage and after Redis is back."""


@pytest.fixture(scope="module")
def fault_voices(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return voice_factory.build_fault_repository(tmp_path_factory.mktemp("outage-voices"))


@pytest.fixture
def redis_node() -> Iterator[RedisNode]:
    """A private Redis with AOF, stopped and deleted whatever the test does."""
    node = RedisNode()
    try:
        node.start()
        yield node
    finally:
        node.remove()


@dataclass
class Post:
    """One POST of the trickle: when it was sent (monotonic), its status and job id."""

    sent: float
    status: int
    job_id: str | None = None
    took: float = 0.0


@dataclass
class Trickle:
    """POSTs a distinct sentence every ``POST_EVERY_S`` seconds from a thread of its own, to the
    fast and the slow voice in turn: more work than the worker does, so jobs are queued (not
    only running) when the outage starts."""

    base: str
    posts: list[Post] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="trickle", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            sent = time.monotonic()
            member = SLOW if n % 2 else FAST
            body = {"member_id": member, "text": f"{uuid.uuid4().hex[:6]} {n}번째 문장입니다."}
            try:
                response = requests.post(f"{self.base}/api/texts", json=body, timeout=30)
            except requests.RequestException as exc:  # counted as neither accepted nor refused
                _LOGGER.warning("POST %d: %s", n, exc)
                self.posts.append(Post(sent, 0, took=time.monotonic() - sent))
            else:
                job_id = response.json().get("job_id") if response.status_code == 202 else None
                self.posts.append(Post(sent, response.status_code, job_id, time.monotonic() - sent))
            self._stop.wait(max(0.0, sent + POST_EVERY_S - time.monotonic()))


def private_redis_env(
    name: str, redis_node: RedisNode, voices: Path, tmp_path: Path, **settings: str
) -> dict[str, str]:
    """A stack's environment on ``redis_node`` (a queue prefix of its own, media under
    ``tmp_path``), no rate limit or queue cap, and 2 s to reach the broker or Redis."""
    return base_env(
        voice_dir=str(voices),
        queue=f"moksori-{name}-{uuid.uuid4().hex[:8]}",
        storage_url=f"file://{tmp_path / 'media'}",
        result_backend=redis_node.url,
        rate_limit="off",
        max_queued_per_client="0",
        publish_timeout="2",
        **settings,
    )


def warm_up(base: str) -> None:
    """One job through the whole stack, so every connection the API keeps is open."""
    warm = requests.post(
        f"{base}/api/texts?wait=60", json={"member_id": FAST, "text": "시작합니다."}, timeout=70
    )
    assert warm.json()["status"] == "done", warm.text


def final_status(base: str, job_id: str, timeout: float) -> dict:
    """The job's view once it is done or failed, or its last view after ``timeout``."""
    deadline = time.monotonic() + timeout
    view: dict = {}
    while time.monotonic() < deadline:
        response = requests.get(f"{base}/api/jobs/{job_id}", timeout=10)
        if response.status_code == 200:
            view = response.json()
            if view["status"] in {"done", "failed"}:
                return view
        time.sleep(0.2)
    return view


@pytest.mark.needs("redis-server")
@pytest.mark.parametrize("outage_s", [20, 120])
def test_redis_outage_loses_no_accepted_job(
    redis_node: RedisNode, fault_voices: Path, tmp_path: Path, outage_s: int
) -> None:
    """Redis stopped for ``outage_s`` seconds under one POST every 0.25 s: POSTs meanwhile get
    503 and nothing is accepted; the worker holds or gives back what it took instead of failing
    it; once Redis is back every accepted job ends done, each synthesized and stored once.

    The soft time limit is short (20 s) so that in the long outage a waiting job gives its
    message back several times: those give-backs must not count as crashes (at most
    MOKSORI_MAX_DELIVERIES) nor lose the job."""
    media = tmp_path / "media"
    env = private_redis_env(
        "outage",
        redis_node,
        fault_voices,
        tmp_path,
        task_soft_time_limit="20",
        task_time_limit="30",
    )
    with running_stack(env, tmp_path) as stack:
        warm_up(stack.base)
        trickle = Trickle(stack.base)
        trickle.start()
        try:
            time.sleep(CALM_S)
            redis_node.stop()
            down_at = time.monotonic()
            time.sleep(outage_s)
            back_at = time.monotonic()
            redis_node.start()
            time.sleep(CALM_S)
        finally:
            trickle.stop()
        posts = trickle.posts
        accepted = [p.job_id for p in posts if p.job_id]
        # A POST sent after the stop and answered before the start saw Redis down throughout.
        during = [p for p in posts if down_at + 0.5 < p.sent < back_at - 2.5]
        finals = {job_id: final_status(stack.base, job_id, timeout=120) for job_id in accepted}
        outcome = Counter(view.get("status", "unknown") for view in finals.values())
        worker_log = stack.worker.output()
    stored = sorted(p for p in media.rglob("*.wav") if p.is_file())
    done_keys = {v["url"].rsplit("/media/", 1)[-1] for v in finals.values() if v.get("url")}
    rendered = [line for line in worker_log.splitlines() if "(RTF" in line]
    syntheses = {key: sum(key in line for line in rendered) for key in done_keys}
    summary = (
        f"{outage_s} s outage: {len(posts)} POSTs, {len(accepted)} accepted, "
        f"{dict(outcome)}; during the outage {Counter(p.status for p in during)}; "
        f"{len(stored)} objects stored; syntheses per key {Counter(syntheses.values())}"
    )
    _LOGGER.warning("%s", summary)
    for post in posts:
        _LOGGER.warning(
            "POST at %+.1f s: %s in %.2f s", post.sent - down_at, post.status, post.took
        )
    # Nothing is accepted while Redis is down, and no POST is held until it is back (each Redis
    # call of the API is tried once, bounded by MOKSORI_PUBLISH_TIMEOUT).
    assert all(p.status == 503 for p in during), summary
    assert max(p.took for p in posts if down_at <= p.sent + p.took < back_at) < 10, summary
    assert not [p for p in posts if p.job_id and down_at + 0.5 < p.sent < back_at - 2.5]
    assert outcome == Counter({"done": len(accepted)}), (summary, finals)
    assert len(done_keys) == len(accepted), summary
    assert len(stored) == len(accepted) + 1, summary  # and the warm-up's
    assert set(syntheses.values()) == {1}, summary
    report.record(
        "result backend",
        f"Redis (job states, AOF on) stopped for {outage_s} s and started again under one POST "
        f"every {POST_EVERY_S} s",
        f"{len(during)} POSTs during the outage answered 503 (none accepted); all "
        f"{len(accepted)} accepted jobs done, each synthesized and stored once",
        len(accepted),
        0,
    )


@dataclass
class StaleRecords:
    """A job record for each case, written straight into the result backend."""

    running_old: str
    running_fresh: str
    queued_old_gone: str
    queued_old_waiting: str
    queued_legacy: str


def test_a_record_that_can_no_longer_advance_reads_failed(
    fault_voices: Path, tmp_path: Path
) -> None:
    """A `running` record older than the hard time limit plus a margin reads failed with a
    plain reason (the limit kills any attempt, and a redelivery writes a fresh start); so does
    an old `queued` record whose member queue holds no message. A fresh `running` record, an old
    `queued` one while its queue still holds messages, and a `queued` record with no time stay
    as they are."""
    queue = f"moksori-stale-{uuid.uuid4().hex[:8]}"
    env = base_env(voice_dir=str(fault_voices), queue=queue, rate_limit="off", task_time_limit="10")
    settings = Settings.from_env(env)
    celery = make_celery(settings, main="stale-test")
    backend = celery.backend
    now = time.time()
    records = StaleRecords(*(str(uuid.uuid4()) for _ in range(5)))
    started = {"pid": 1, "hostname": "gone@nowhere"}
    backend.store_result(records.running_old, {**started, "started_at": now - 3600}, "STARTED")
    backend.store_result(records.running_fresh, {**started, "started_at": now - 5}, "STARTED")
    for job_id, member in ((records.queued_old_gone, FAST), (records.queued_old_waiting, 2)):
        backend.store_result(
            job_id, {"member_id": member, "uuid": None, "queued_at": now - 3600}, QUEUED
        )
    backend.store_result(records.queued_legacy, {"member_id": FAST, "uuid": None}, QUEUED)
    with Connection(BROKER_URL) as conn:  # member 2's queue holds a message, member 1's none
        conn.SimpleQueue(member_queue(queue, 2)).put({"not": "a job"})
        conn.SimpleQueue(member_queue(queue, FAST)).clear()
    api, base = start_api(env, tmp_path)
    try:

        def view(job_id: str) -> dict:
            return requests.get(f"{base}/api/jobs/{job_id}", timeout=10).json()

        eventually(lambda: requests.get(f"{base}/healthz", timeout=5).ok, "the API")
        lost = view(records.running_old)
        assert lost["status"] == "failed", lost
        assert "worker" in lost["error"] and "time limit" in lost["error"], lost
        assert lost["error_code"] == "job_lost", lost
        assert view(records.running_fresh)["status"] == "running"
        gone = view(records.queued_old_gone)
        assert gone["status"] == "failed", gone
        assert "queue" in gone["error"], gone
        assert gone["error_code"] == "job_lost", gone
        assert view(records.queued_old_waiting)["status"] == "queued"
        assert view(records.queued_legacy)["status"] == "queued"
    finally:
        api.stop()
        celery.close()
        with Connection(BROKER_URL) as conn:
            channel = conn.channel()
            for member in (FAST, 2):
                channel.queue_delete(member_queue(queue, member))
    report.record(
        "result backend",
        "a job record left `running` past the hard time limit, or `queued` with its message "
        "gone from the queue",
        "GET /api/jobs/<id> reads failed with a plain reason and error_code job_lost; fresh "
        "records and queued jobs behind others are left as they are",
    )


@pytest.mark.needs("redis-server")
def test_posts_while_redis_stops_answer_within_seconds(
    redis_node: RedisNode, fault_voices: Path, tmp_path: Path
) -> None:
    """POSTs sent back to back while Redis shuts down and after it is gone: each is answered
    (202 before, 503 service_unavailable after) within a few seconds, none held until Redis is
    back. Celery's Redis backend retried a failed write 20 times, a second apart, so a POST
    sent as Redis went away was held for up to 20 s (and accepted if Redis came back by then)."""
    env = private_redis_env("stopping", redis_node, fault_voices, tmp_path)
    with running_stack(env, tmp_path) as stack:
        trickle = Trickle(stack.base)
        trickle.start()
        try:
            time.sleep(1.0)
            stopping_at = time.monotonic()
            redis_node.stop()
            down_at = time.monotonic()
            time.sleep(6.0)
        finally:
            trickle.stop()
            redis_node.start()
    posts = [p for p in trickle.posts if p.sent >= stopping_at - 0.5]
    slowest = max(p.took for p in posts)
    summary = f"stop took {down_at - stopping_at:.1f} s; " + ", ".join(
        f"{p.sent - stopping_at:+.1f} s: {p.status} in {p.took:.2f} s" for p in posts
    )
    _LOGGER.warning("%s", summary)
    assert len(posts) >= 10, summary
    assert {p.status for p in posts} <= {202, 503}, summary
    assert slowest < 3.0, summary
    assert all(p.status == 503 for p in posts if p.sent > down_at), summary
    report.record(
        "result backend",
        f"{len(posts)} POSTs, one every {POST_EVERY_S} s, while Redis shut down and after",
        f"each answered within {slowest:.1f} s (202 before, 503 once it was gone); none held "
        "until Redis was back",
    )


@pytest.mark.needs("redis-server")
def test_a_post_to_a_hung_redis_answers_503_within_seconds(
    redis_node: RedisNode, fault_voices: Path, tmp_path: Path
) -> None:
    """Redis frozen (SIGSTOP: connections open, nothing answered, as when it stalls on its way
    down): a POST answers 503 service_unavailable within a couple of seconds rather than
    holding its thread until Redis answers again."""
    env = private_redis_env("hung", redis_node, fault_voices, tmp_path)
    pid = int((redis_node.root / "redis.pid").read_text().strip())
    with running_stack(env, tmp_path) as stack:
        warm_up(stack.base)
        os.kill(pid, signal.SIGSTOP)
        try:
            took = []
            for n in range(3):
                started = time.monotonic()
                response = requests.post(
                    f"{stack.base}/api/texts",
                    json={"member_id": FAST, "text": f"멈춘 {n}번째 문장입니다."},
                    timeout=90,
                )
                took.append(time.monotonic() - started)
                assert response.status_code == 503, response.text
                assert response.json()["error"]["code"] == "service_unavailable"
        finally:
            os.kill(pid, signal.SIGCONT)
        _LOGGER.warning("POSTs to a frozen Redis answered in %s s", [f"{t:.2f}" for t in took])
        assert max(took) < 5.0, took
    report.record(
        "result backend",
        "Redis frozen (SIGSTOP) with the API's connections open; 3 POSTs",
        f"each 503 service_unavailable within {max(took):.1f} s (MOKSORI_PUBLISH_TIMEOUT 2 s)",
    )
