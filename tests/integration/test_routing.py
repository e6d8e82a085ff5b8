"""Scale-out by member: workers started with ``MOKSORI_MEMBERS`` load only those voices and
consume only their queues; the API routes each job to its member's queue and answers 503 for a
member no worker serves. Two real workers on the real RabbitMQ."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from kombu import Connection

from common.jobs import member_queue
from harness.processes import Process, start_api, start_worker
from tests.support import BROKER_URL, base_env


@dataclass
class Fleet:
    base: str
    workers: dict[str, Process]


@pytest.fixture(scope="module")
def fleet(voice_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    logs = tmp_path_factory.mktemp("fleet")
    queue = f"moksori-fleet-{logs.name}"
    env = base_env(storage_url=f"file://{logs / 'media'}", voice_dir=str(voice_dir), queue=queue)
    started: dict[str, Process] = {}
    api = None
    try:
        for name, members in (("one", "1"), ("two", "2")):
            started[name] = start_worker({**env, "MOKSORI_MEMBERS": members}, logs, name=name)
        api, base = start_api(env, logs)
        yield Fleet(base=base, workers=started)
    finally:
        if api is not None:
            api.stop()
        for worker in started.values():
            worker.stop()
        with Connection(BROKER_URL) as conn:
            channel = conn.channel()
            for m in range(1, 5):
                channel.queue_delete(member_queue(queue, m))


def test_each_worker_loads_only_its_members(fleet: Fleet) -> None:
    assert "members [1] loaded" in fleet.workers["one"].output()
    assert "members [2] loaded" in fleet.workers["two"].output()
    assert "loaded member 2" not in fleet.workers["one"].output()
    assert "loaded member 1" not in fleet.workers["two"].output()


def test_jobs_go_to_the_worker_that_serves_their_member(fleet: Fleet) -> None:
    keys = {}
    for member in (1, 2, 1, 2):
        body = requests.post(
            f"{fleet.base}/api/texts?wait=30",
            json={"member_id": member, "text": f"{member}번 목소리로 {len(keys)}번째 말합니다."},
            timeout=40,
        ).json()
        assert body["status"] == "done", body
        keys[body["url"][body["url"].index("wav/") :]] = member
    for key, member in keys.items():
        served_by = [name for name, w in fleet.workers.items() if key in w.output()]
        assert served_by == [{1: "one", 2: "two"}[member]]


def test_member_nobody_serves_is_reported_and_refused(fleet: Fleet) -> None:
    members = requests.get(f"{fleet.base}/api/members", timeout=10).json()["members"]
    assert {m["id"]: m["served"] for m in members} == {1: True, 2: True, 3: False, 4: False}
    response = requests.post(
        f"{fleet.base}/api/texts?wait=30", json={"member_id": 3, "text": "안녕하세요"}, timeout=10
    )
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "member_unavailable"
    assert response.elapsed.total_seconds() < 1
