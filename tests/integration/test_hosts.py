"""More than one host: RabbitMQ, Redis, the storage emulator and the API on host ``svc``, one
worker on each of hosts ``w1`` and ``w2``, each host a network namespace of its own on one
virtual switch (:mod:`harness.netns`). The host running a job is cut off the network in the
middle of it; the job must finish on the other host, stored once, and stay so when the cut
host comes back and finishes its own copy. Once with classic member queues, once with quorum
queues (``MOKSORI_QUEUE_TYPE``).

RabbitMQ gives an unacknowledged message to another consumer only once it has closed the
connection that held it; a host that vanishes sends no FIN or RST, so that happens when the
AMQP heartbeats stop. The private node offers a 3 s heartbeat (production: the worker asks for
30 s, and the job moved 84 s after the cut; docs/operations.md) so the test takes the same path
in seconds.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from kombu import Connection

from common.config import Settings
from common.jobs import make_celery, member_queue
from harness import netns, voice_factory
from harness.faults import RabbitNode, RedisNode
from harness.processes import Process, free_port, spawn_worker, start_api, wait_ready
from tests import report
from tests.support import base_env, eventually, start_gcs_emulator
from worker import deliveries

_LOGGER = logging.getLogger(__name__)

SLOW = 2  # the fault repository's Griffin-Lim voice: about a second a sentence
HEARTBEAT_S = 3
BUCKET = "moksori-test"
PREFIX = "hosts"

pytestmark = pytest.mark.needs("ip-netns", "rabbitmq-server", "redis-server")


@pytest.fixture(scope="module")
def fault_voices(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return voice_factory.build_fault_repository(tmp_path_factory.mktemp("hosts-voices"))


@dataclass
class Cluster:
    """The hosts, the services on ``svc`` and the two workers; ``base`` is the API's URL."""

    net: netns.Network
    env: dict[str, str]
    base: str
    emulator: str
    workers: dict[str, Process]
    processes: list[Process]
    rabbit: RabbitNode

    def status(self, job_id: str) -> dict[str, Any]:
        return requests.get(f"{self.base}/api/jobs/{job_id}", timeout=10).json()

    def objects(self) -> list[str]:
        """Every object under the test's prefix in the bucket (the emulator on ``svc``)."""
        url = f"{self.emulator}/storage/v1/b/{BUCKET}/o"
        answer = requests.get(url, params={"prefix": f"{PREFIX}/"}, timeout=10)
        answer.raise_for_status()
        return sorted(item["name"] for item in answer.json().get("items", []))

    def logs_tail(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.output()[-3000:]}" for p in self.processes)


@pytest.fixture
def hosts() -> Iterator[netns.Network]:
    """Hosts svc, w1 and w2 on a subnet of their own, removed whatever the test does."""
    with netns.network(["svc", "w1", "w2"]) as net:
        yield net


@contextlib.contextmanager
def cluster(
    net: netns.Network, voices: Path, key: Path, logs: Path, queue_type: str
) -> Iterator[Cluster]:
    """Start everything on its host; stop it all on exit, in reverse order."""
    svc = net["svc"]
    wrap = svc.argv([])
    rabbit = RabbitNode(address=svc.address, prefix=wrap, heartbeat_s=HEARTBEAT_S)
    redis = RedisNode(address=svc.address, prefix=wrap)
    processes: list[Process] = []
    try:
        rabbit.start()
        redis.start()
        emulator = start_gcs_emulator(free_port(), logs, host=svc.address, prefix=wrap)
        processes.append(emulator)
        env = base_env(
            voice_dir=str(voices),
            queue=f"moksori-hosts-{uuid.uuid4().hex[:8]}",
            queue_type=queue_type,
            result_backend=redis.url,
            storage_url=f"gs://{BUCKET}/{PREFIX}",
            rate_limit="off",
            max_queued_per_client="0",
        )
        env.update(
            MOKSORI_BROKER_URL=rabbit.url,
            STORAGE_EMULATOR_HOST=emulator.hostname,
            GOOGLE_APPLICATION_CREDENTIALS=str(key),
        )
        workers: dict[str, Process] = {}
        for name in ("w1", "w2"):  # both load their voices at once
            worker_env = {**env, "MOKSORI_MEMBERS": str(SLOW)}
            workers[name] = spawn_worker(worker_env, logs, name=name, prefix=net[name].argv([]))
            processes.append(workers[name])
        for worker in workers.values():
            wait_ready(worker)
        api, base = start_api(env, logs, host=svc.address, prefix=wrap)
        processes.append(api)
        yield Cluster(net, env, base, emulator.hostname, workers, processes, rabbit)
    finally:
        for host in net.hosts.values():
            host.restore()  # a cut worker stops as quickly as the others
        for process in reversed(processes):
            process.stop()
        redis.remove()
        rabbit.remove()


def long_text(sentences: int) -> str:
    words = ["바다", "구름", "나무", "도시", "기차", "노래", "저녁", "아침"]
    text = " ".join(f"{words[i % 8]}와 {words[(i + 3) % 8]}를 봅니다." for i in range(sentences))
    return f"{os.urandom(2).hex()} {text}"


def key_of(url: str) -> str:
    """The object key in a job's (signed) URL."""
    path = urlsplit(url).path
    return path[path.index("wav/") :]


def took(worker: Process, job_id: str) -> bool:
    """Whether ``worker`` has received ``job_id`` (Celery logs each task it receives)."""
    return f"[{job_id}] received" in worker.output()


def finished_copy(worker: Process, job_id: str) -> bool:
    """Whether ``worker`` logged the end of its run of ``job_id`` (success or not)."""
    return any(
        job_id in line and ("succeeded" in line or "failed" in line or "retry" in line.lower())
        for line in worker.output().splitlines()
    )


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
def test_worker_host_cut_mid_job(
    hosts: netns.Network,
    fault_voices: Path,
    service_account_key: Path,
    tmp_path: Path,
    queue_type: str,
) -> None:
    """The worker host running a job loses its network mid-synthesis: RabbitMQ gives the job
    to the other host once the cut host's heartbeats stop, the job ends done with exactly one
    object in the bucket, and when the cut host comes back and finishes its own copy the job
    is still done with that one object (content-addressed names: its write lands on the same
    name)."""
    with cluster(hosts, fault_voices, service_account_key, tmp_path, queue_type) as c:
        answer = requests.post(
            f"{c.base}/api/texts", json={"member_id": SLOW, "text": long_text(10)}, timeout=30
        )
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["job_id"]
        queue = member_queue(c.env["MOKSORI_QUEUE"], SLOW)
        assert c.rabbit.queue_types()[queue] == queue_type

        celery = make_celery(Settings.from_env(c.env), main="hosts-probe")
        try:
            eventually(
                lambda: deliveries.starts(celery.backend, job_id) >= 1,
                "the job's body start",
                timeout=60,
            )
        finally:
            celery.close()
        first = next((n for n, w in c.workers.items() if took(w, job_id)), None)
        assert first is not None, c.logs_tail()
        other = "w2" if first == "w1" else "w1"
        assert c.status(job_id)["status"] == "running"

        hosts[first].cut()
        cut_at = time.monotonic()
        eventually(
            lambda: took(c.workers[other], job_id),
            f"the job redelivered to {other}",
            timeout=60,
            interval=0.1,
        )
        redelivered_s = time.monotonic() - cut_at
        view = eventually(
            lambda: (v := c.status(job_id))["status"] in {"done", "failed"} and v,
            "the job's end",
            timeout=90,
        )
        done_s = time.monotonic() - cut_at
        assert view["status"] == "done", f"{view}\n{c.logs_tail()}"
        # The text's own object and its sentences' (each once), nothing else.
        urls = [view["url"], *(s["url"] for s in view.get("sentences", []))]
        stored = sorted({f"{PREFIX}/{key_of(url)}" for url in urls})
        assert c.objects() == stored, c.logs_tail()

        # The cut host comes back: its worker finishes (or gives up) its own copy; nothing
        # may change what the client sees.
        hosts[first].restore()
        eventually(
            lambda: finished_copy(c.workers[first], job_id),
            f"{first} finishing its copy",
            timeout=90,
        )
        assert c.workers[first].proc.poll() is None, "the cut host's worker exited"
        after = c.status(job_id)
        assert after["status"] == "done", f"{after}\n{c.logs_tail()}"
        assert key_of(after["url"]) == key_of(view["url"])
        assert c.objects() == stored
        with Connection(c.env["MOKSORI_BROKER_URL"], connect_timeout=5) as conn:
            _, waiting, _ = conn.default_channel.queue_declare(queue, passive=True)
        assert waiting == 0
        _LOGGER.info(
            "%s: redelivered %.1f s and done %.1f s after the cut",
            queue_type,
            redelivered_s,
            done_s,
        )

    report.record(
        "more than one host",
        f"worker host cut off the network (link down) mid-job, {queue_type} queues, "
        f"{HEARTBEAT_S} s AMQP heartbeat; the host comes back and finishes its own copy",
        f"redelivered to the other host {redelivered_s:.0f} s after the cut, done "
        f"{done_s:.0f} s after it; 1 object stored; still done with 1 object once the cut host "
        "finished its copy",
        1,
        0,
    )
