"""``MOKSORI_QUEUE_TYPE`` against queues of the other type: RabbitMQ refuses to redeclare an
existing queue with another ``x-queue-type`` (PRECONDITION_FAILED), so an API switched to quorum
over classic queues cannot publish to them. It must answer 503 (never a 500), leave no job
that looks queued, and keep publishing to the queues whose type does match."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from kombu import Connection, Consumer

from common.jobs import member_queue, queue_declaration
from harness.processes import start_api
from tests import report
from tests.support import BROKER_URL, base_env, eventually


@pytest.fixture
def prefix() -> Iterator[str]:
    name = f"moksori-qtype-{uuid.uuid4().hex[:8]}"
    yield name
    with Connection(BROKER_URL) as conn:
        channel = conn.channel()
        for member in (1, 2):
            channel.queue_delete(member_queue(name, member))


def test_quorum_api_over_classic_queues_answers_503(
    prefix: str, voice_dir: Path, tmp_path: Path
) -> None:
    """Member 1's queue is a quorum queue, member 2's a classic one (declared before the switch),
    each with a consumer; the API runs with MOKSORI_QUEUE_TYPE=quorum. A job for member 2 gets
    503 each time and no job id; a job for member 1 is still published."""
    received: list[Any] = []
    with Connection(BROKER_URL) as conn:
        channel = conn.channel()
        queues = [
            queue_declaration(member_queue(prefix, 1), "quorum"),
            queue_declaration(member_queue(prefix, 2), "classic"),
        ]
        consumer = Consumer(channel, queues, callbacks=[lambda body, _m: received.append(body)])
        consumer.consume()
        env = base_env(
            voice_dir=str(voice_dir),
            queue=prefix,
            queue_type="quorum",
            storage_url=f"file://{tmp_path / 'media'}",
            rate_limit="off",
        )
        api, base = start_api(env, tmp_path)
        try:
            statuses = []
            for n in range(2):
                answer = requests.post(
                    f"{base}/api/texts", json={"member_id": 2, "text": f"바다 {n}"}, timeout=30
                )
                statuses.append(answer.status_code)
                assert answer.status_code == 503, answer.text
                assert answer.json()["error"]["code"] == "service_unavailable"
                assert "job_id" not in answer.json()
            assert "PRECONDITION_FAILED" in api.output()
            good = requests.post(
                f"{base}/api/texts", json={"member_id": 1, "text": "구름"}, timeout=30
            )
            assert good.status_code == 202, good.text

            def delivered() -> list[Any]:
                with contextlib.suppress(TimeoutError):
                    conn.drain_events(timeout=0.2)
                return received

            eventually(delivered, "the member 1 job on its queue")
        finally:
            consumer.cancel()
            api.stop()
    report.record(
        "queue type",
        "API with MOKSORI_QUEUE_TYPE=quorum over an existing classic member queue "
        "(RabbitMQ: PRECONDITION_FAILED)",
        f"{statuses[0]} then {statuses[1]} with Retry-After, no job recorded; jobs for the "
        "members whose queues match are still published",
        0,
        0,
    )
