"""Dynamic batching on a real worker: with ``MOKSORI_BATCH_SIZE`` set, a burst of jobs for one
member is taken from its RabbitMQ queue together and synthesized in one model call, and every
job still gets its own result."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from kombu import Connection

from common.jobs import member_queue
from harness.processes import Process, free_port, start_api, start_worker
from tests.support import BROKER_URL, base_env


@pytest.fixture(scope="module")
def batching_stack(
    voice_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Process]]:
    logs = tmp_path_factory.mktemp("batching")
    queue = f"moksori-batch-{logs.name}"
    env = base_env(
        storage_url=f"file://{logs / 'media'}",
        voice_dir=str(voice_dir),
        queue=queue,
        members="1",
        batch_size="4",
        batch_wait_ms="300",
        worker_metrics_port=str(free_port()),
    )
    worker = start_worker(env, logs)
    api = None
    try:
        api, base = start_api(env, logs)
        yield base, worker
    finally:
        if api is not None:
            api.stop()
        worker.stop()
        with Connection(BROKER_URL) as conn:
            conn.default_channel.queue_delete(member_queue(queue, 1))


def test_burst_is_synthesized_in_batches(batching_stack: tuple[str, Process]) -> None:
    base, worker = batching_stack
    texts = [f"{n}번째 손님의 주문을 받았습니다." for n in range(1, 9)]
    with ThreadPoolExecutor(len(texts)) as pool:
        answers = list(
            pool.map(
                lambda t: requests.post(
                    f"{base}/api/texts?wait=60", json={"member_id": 1, "text": t}, timeout=70
                ),
                texts,
            )
        )
    bodies = [a.json() for a in answers]
    assert [b["status"] for b in bodies] == ["done"] * len(texts), bodies
    assert len({b["url"] for b in bodies}) == len(texts)
    for body in bodies:
        audio = requests.get(body["url"], timeout=10)
        assert audio.status_code == 200 and audio.content[:4] == b"RIFF"
        status = requests.get(base + body["status_url"], timeout=10).json()
        assert status["status"] == "done" and status["url"] == body["url"]
    sizes = [int(n) for n in re.findall(r"batch of (\d+) job", worker.output())]
    assert sum(sizes) == len(texts)
    assert max(sizes) > 1, sizes
    # One job line each, whether the job ran as a task or was taken into another's batch.
    job_lines = [
        json.loads(line) for line in worker.output().splitlines() if '"worker.job"' in line
    ]
    assert sorted(r["job_id"] for r in job_lines) == sorted(b["job_id"] for b in bodies)
    assert all(r["outcome"] == "done" and r["request_id"] for r in job_lines), job_lines

    # The worker's metrics count every job once, whether it ran as the task or joined a batch.
    metrics = f"http://127.0.0.1:{worker.metrics_port}/metrics"
    done = f'moksori_worker_jobs_total{{member="1",outcome="done"}} {float(len(texts))}'
    deadline = time.monotonic() + 30
    while done not in (text := requests.get(metrics, timeout=10).text):
        assert time.monotonic() < deadline, text
        time.sleep(0.2)
    assert f'moksori_worker_batch_size_count{{member="1"}} {float(len(sizes))}' in text
    assert f'moksori_worker_batch_size_sum{{member="1"}} {float(len(texts))}' in text
