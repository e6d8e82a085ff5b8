"""The cap on jobs queued per client (MOKSORI_MAX_QUEUED_PER_CLIENT), through Flask's test
client and through the real API under gunicorn, on the real RabbitMQ and Redis (the stand-in
worker of test_api takes jobs and never finishes them, so they stay queued)."""

from __future__ import annotations

import io
import time
import wave
from pathlib import Path
from typing import Any

import pytest

from api.quota import LocalQuota, RedisQuota
from common.config import Settings
from common.jobs import QUEUED, make_celery, speech_key
from tests import report
from tests.integration import test_api, test_limits
from tests.integration.test_api import Listener, assert_error, build_app, post
from tests.integration.test_limits import as_client, call, closed, gunicorn_workers, retry_after
from tests.integration.test_security import published
from tests.support import BACKEND_URL, BROKER_URL, base_env

# Fixtures shared with test_api (the stand-in worker, the media folder) and test_limits (Redis).
broker_queue = test_api.broker_queue
listener = test_api.listener
media_root = test_api.media_root
redis_client = test_limits.redis_client


def finish(job_id: str, backend_url: str = BACKEND_URL) -> None:
    """Record a job as done, as a worker would: from another Celery app on the same backend."""
    worker_side = make_celery(
        Settings.from_env({}, result_backend=backend_url, broker_url=BROKER_URL), main="test-worker"
    )
    try:
        worker_side.backend.store_result(job_id, {"key": "wav/1/v/x.wav"}, "SUCCESS")
    finally:
        worker_side.close()


def silent_wav() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(b"\0\0" * 1600)
    return buffer.getvalue()


def test_queue_cap_refuses_then_frees_a_slot_when_a_job_ends(
    voice_dir: Path, media_root: Path, broker_queue: str, listener: Listener, redis_client: Any
) -> None:
    """A client with MOKSORI_MAX_QUEUED_PER_CLIENT jobs queued gets 429 too_many_queued_jobs with
    Retry-After and nothing is published; another client is unaffected; once one of its jobs
    ends, its next text is accepted."""
    app = build_app(
        voice_dir, media_root, queue=broker_queue, max_queued_per_client=2, rate_limit="off"
    )
    client = app.test_client()
    first = post(client, {"member_id": 1, "text": "첫째 문장입니다"})
    second = post(client, {"member_id": 2, "text": "둘째 문장입니다"})
    assert [first.status_code, second.status_code] == [202, 202]
    third = {"member_id": 3, "text": "셋째 문장입니다"}
    refused = post(client, third)
    assert_error(refused, 429, "too_many_queued_jobs")
    retry_after(refused, 60)
    assert published(listener, broker_queue) == 2
    assert post(client, third, **as_client("192.0.2.9")).status_code == 202
    assert published(listener, broker_queue) == 3
    finish(first.get_json()["job_id"])
    accepted = post(client, {"member_id": 3, "text": "넷째 문장입니다"})
    assert accepted.status_code == 202, accepted.get_json()
    assert published(listener, broker_queue) == 4
    closed(app)
    report.record(
        "limits",
        "a third job while two are queued (MOKSORI_MAX_QUEUED_PER_CLIENT=2)",
        "429 too_many_queued_jobs with Retry-After, not published; accepted once a job ended",
        4,
        0,
    )


def test_cache_hits_and_joined_jobs_take_no_slot(
    voice_dir: Path, media_root: Path, broker_queue: str, listener: Listener, redis_client: Any
) -> None:
    """Only jobs a client caused to be sent count: at its cap it still gets stored audio
    (200 cached), and a request that joined another client's identical job costs no slot."""
    app = build_app(
        voice_dir, media_root, queue=broker_queue, max_queued_per_client=1, rate_limit="off"
    )
    client = app.test_client()
    service = app.extensions["moksori"]
    stored = {"member_id": 1, "text": "이미 만들어 둔 문장입니다"}
    version, pause = service.voices[1].version, service.settings.sentence_pause
    key = speech_key(1, version, stored["text"], pause, secret=service.secret)
    service.storage.put(key, silent_wav())
    shared = {"member_id": 1, "text": "함께 기다리는 문장입니다"}
    a, b = as_client("10.1.0.1"), as_client("10.1.0.2")

    leader = post(client, shared, **a)
    assert leader.status_code == 202
    cached = post(client, stored, **a)
    assert cached.status_code == 200 and cached.get_json()["cached"] is True
    joined = post(client, shared, **b)
    assert joined.status_code == 202
    assert joined.get_json()["job_id"] == leader.get_json()["job_id"]
    assert post(client, {"member_id": 2, "text": "다른 문장입니다"}, **b).status_code == 202
    assert_error(
        post(client, {"member_id": 2, "text": "또 다른 문장"}, **a), 429, "too_many_queued_jobs"
    )
    assert published(listener, broker_queue) == 2
    closed(app)
    report.record(
        "limits",
        "cache hit and joined twin while at the queue cap (1)",
        "200 cached / 202 joined, no slot taken; a new text from the capped client is 429",
        3,
        0,
    )


def test_queue_cap_holds_across_api_processes(
    voice_dir: Path, media_root: Path, broker_queue: str, listener: Listener, redis_client: Any
) -> None:
    """Two API instances on one Redis result backend share each client's count."""
    apps = [
        build_app(
            voice_dir, media_root, queue=broker_queue, max_queued_per_client=2, rate_limit="off"
        )
        for _ in range(2)
    ]
    one, two = (app.test_client() for app in apps)
    statuses = [
        post(one, {"member_id": 1, "text": "하나"}).status_code,
        post(two, {"member_id": 1, "text": "둘"}).status_code,
        post(one, {"member_id": 1, "text": "셋"}).status_code,
        post(two, {"member_id": 1, "text": "넷"}).status_code,
    ]
    assert statuses == [202, 202, 429, 429]
    assert published(listener, broker_queue) == 2
    for app in apps:
        closed(app)


def test_queue_cap_per_process_with_sqlite(
    voice_dir: Path, tmp_path: Path, broker_queue: str, listener: Listener
) -> None:
    """With the SQLite result backend the cap is kept per process, and a job's end, read from
    SQLite, frees its slot."""
    backend = f"db+sqlite:///{tmp_path / 'results.sqlite'}"
    app = build_app(
        voice_dir,
        tmp_path / "media",
        queue=broker_queue,
        result_backend=backend,
        max_queued_per_client=1,
        rate_limit="off",
    )
    client = app.test_client()
    first = post(client, {"member_id": 1, "text": "하나"})
    assert first.status_code == 202
    assert_error(post(client, {"member_id": 1, "text": "둘"}), 429, "too_many_queued_jobs")
    finish(first.get_json()["job_id"], backend)
    assert post(client, {"member_id": 1, "text": "둘"}).status_code == 202
    assert published(listener, broker_queue) == 2
    closed(app)


@pytest.mark.parametrize("cap", [0, 1])
def test_lost_jobs_stop_counting_and_zero_means_no_cap(
    voice_dir: Path,
    media_root: Path,
    broker_queue: str,
    listener: Listener,
    redis_client: Any,
    cap: int,
) -> None:
    """A job that never reaches a final state holds its slot for 2x MOKSORI_TASK_TIME_LIMIT
    only; MOKSORI_MAX_QUEUED_PER_CLIENT=0 sets no cap."""
    app = build_app(
        voice_dir,
        media_root,
        queue=broker_queue,
        max_queued_per_client=cap,
        task_time_limit=1,
        rate_limit="off",
    )
    client = app.test_client()
    assert post(client, {"member_id": 1, "text": "하나"}).status_code == 202
    second = post(client, {"member_id": 1, "text": "둘"})
    assert second.status_code == (202 if cap == 0 else 429)
    if cap:
        time.sleep(2.2)
        assert post(client, {"member_id": 1, "text": "둘"}).status_code == 202
    assert published(listener, broker_queue) == 2
    closed(app)


def test_queue_cap_holds_across_gunicorn_processes(
    voice_dir: Path, tmp_path: Path, broker_queue: str, listener: Listener, redis_client: Any
) -> None:
    """The real API under gunicorn: new texts alternating between its two processes are
    accepted up to the cap, then refused 429 too_many_queued_jobs by both."""
    env = base_env(
        voice_dir=str(voice_dir),
        storage_url=f"file://{tmp_path / 'media'}",
        queue=broker_queue,
        max_queued_per_client="2",
        trusted_proxies="1",
    )
    texts = [{"member_id": 1, "text": f"{n}번째 요청입니다"} for n in range(4)]
    with gunicorn_workers(env, tmp_path) as (a, b):
        answers = [
            call(conn, "POST", "/api/texts", "198.51.100.1", text)
            for conn, text in zip([a, b, a, b], texts, strict=True)
        ]
    assert [status for status, _, _ in answers] == [202, 202, 429, 429], answers
    assert {body["error"]["code"] for _, _, body in answers[2:]} == {"too_many_queued_jobs"}
    assert published(listener, broker_queue) == 2
    report.record(
        "limits",
        "gunicorn, 2 processes: 4 new texts alternating between them (queue cap 2)",
        "202, 202, then 429 too_many_queued_jobs from both; 2 published, still queued",
        2,
        0,
    )


@pytest.mark.parametrize("shared", [True, False], ids=["redis", "per-process"])
def test_a_take_refused_while_another_sweeps_is_taken_after_all(
    broker_queue: str, redis_client: Any, shared: bool
) -> None:
    """A client at its cap only with jobs that ended: two takes at once are both admitted,
    even when the other one sweeps the ended slots between this one's refusal and its own look
    for them (it then finds nothing to sweep, yet there is room). Twelve identical requests at
    once were refused 429 this way while earlier jobs held every slot."""
    celery = make_celery(Settings.from_env({}, result_backend=BACKEND_URL, broker_url=BROKER_URL))
    quota_of = RedisQuota if shared else LocalQuota
    args = (celery.backend, 3, 60) + ((broker_queue,) if shared else ())
    mine, theirs = quota_of(*args), quota_of(*args)
    if not shared:
        theirs = mine  # another request thread of the same process
    for n in range(3):
        job = f"{broker_queue}-ended-{n}"
        assert mine.take("client", job)
        celery.backend.store_result(job, {"key": "wav/1/v/x.wav"}, "SUCCESS")
    first_try = mine._try

    def refused_then_swept(*args: str) -> bool:
        admitted = first_try(*args)
        mine._try = first_try  # the other take runs once, with the real method
        assert not admitted
        other = f"{broker_queue}-other"
        celery.backend.store_result(other, {"member_id": 1}, QUEUED)
        assert theirs.take("client", other)
        return admitted

    mine._try = refused_then_swept
    try:
        assert mine.take("client", f"{broker_queue}-mine")
    finally:
        celery.close()
