"""End to end: a real Celery worker process on the real RabbitMQ, the API under gunicorn, real
HTTP, real (tiny) models, in both storage modes."""

from __future__ import annotations

import io
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from common.config import Settings
from common.jobs import TASK_NAME, make_celery, member_queue
from common.storage import LocalStorage, open_storage
from harness.processes import REPO
from tests import report
from tests.support import Stack, base_env, running_stack


@pytest.fixture(scope="module", params=["file", "gcs"])
def stack(
    request: pytest.FixtureRequest,
    voice_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """Worker + API for one storage mode, on a queue of their own. With GCS the objects are
    private and the URLs signed with a service-account key made for the test."""
    logs = tmp_path_factory.mktemp(f"stack-{request.param}")
    if request.param == "file":
        env = base_env(storage_url=f"file://{logs / 'media'}")
    else:
        env = base_env(storage_url="gs://moksori-test/it")
        env["STORAGE_EMULATOR_HOST"] = request.getfixturevalue("gcs_emulator")
        env["GOOGLE_APPLICATION_CREDENTIALS"] = str(request.getfixturevalue("service_account_key"))
    env.update(MOKSORI_VOICE_DIR=str(voice_dir), MOKSORI_QUEUE=f"moksori-it-{logs.name}")
    # These tests send bursts from one address (12 at once, back to back with the previous
    # test's): the per-client rate limit is test_limits.py's subject, not theirs.
    env["MOKSORI_RATE_LIMIT"] = "off"
    with running_stack(env, logs) as stack:
        yield stack


def fetch_wav(url: str) -> wave.Wave_read:
    response = requests.get(url, timeout=10)
    assert response.status_code == 200, response.text
    assert response.content[:4] == b"RIFF"
    return wave.open(io.BytesIO(response.content))


def test_post_and_wait_gives_a_playable_wav(stack: Stack) -> None:
    """POST ?wait -> 200 done with a URL -> a 16-bit WAV of plausible length at that URL."""
    started = time.monotonic()
    response = requests.post(
        f"{stack.base}/api/texts?wait=60",
        json={
            "member_id": 1,
            "text": "안녕하세요! 오늘은 2024년 3월 15일입니다.",
            "uuid": "022db29c-d0e2-11e5-bb4c-60f81dca7676",
            "created_at": "2022-08-22",
        },
        timeout=70,
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "done"
    assert body["uuid"] == "022db29c-d0e2-11e5-bb4c-60f81dca7676"
    assert body["created_at"] == "2022-08-22"
    assert elapsed < 30
    with fetch_wav(body["url"]) as wav:
        assert wav.getsampwidth() == 2
        assert wav.getframerate() == 16000
        duration = wav.getnframes() / wav.getframerate()
    assert duration == pytest.approx(body["duration_s"], abs=0.01)
    assert 0.3 < duration < 60


def test_poll_until_done_and_repeat_maps_to_same_object(stack: Stack) -> None:
    """A 202 job can be followed at its status URL; the same text again gives the same URL."""
    text = {"member_id": 3, "text": "반갑습니다. 저는 서준입니다. 잘 부탁드립니다."}
    first = requests.post(f"{stack.base}/api/texts", json=text, timeout=10)
    assert first.status_code == 202
    status_url = stack.base + first.headers["Location"]
    seen = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = requests.get(status_url, timeout=10).json()
        seen.add(status["status"])
        if status["status"] in {"done", "failed"}:
            break
        time.sleep(0.05)
    assert status["status"] == "done", status
    assert seen <= {"queued", "running", "done"}
    second = requests.post(f"{stack.base}/api/texts?wait=60", json=text, timeout=70).json()
    assert key_of(second["url"]) == key_of(status["url"])
    with fetch_wav(status["url"]) as wav:
        assert wav.getnframes() / wav.getframerate() > 0.5  # three sentences and two pauses


def test_concurrent_requests_all_finish(stack: Stack) -> None:
    """Several clients at once (every voice, both vocoders) all get their audio."""
    bodies = [
        {"member_id": m, "text": f"{n}번째 문장입니다."} for n in range(1, 4) for m in (1, 2, 3)
    ]
    with ThreadPoolExecutor(len(bodies)) as pool:
        responses = list(
            pool.map(
                lambda b: requests.post(f"{stack.base}/api/texts?wait=60", json=b, timeout=70),
                bodies,
            )
        )
    assert [r.status_code for r in responses] == [200] * len(bodies), [r.text for r in responses]
    assert len({key_of(r.json()["url"]) for r in responses}) == len(bodies)


def test_voice_that_failed_to_load_is_not_served(stack: Stack) -> None:
    """The worker stops consuming the queue of a voice it could not load: /api/members says
    so and the API answers 503 at once instead of queuing a job nobody will run."""
    assert "voice for member 4" in stack.worker.output()  # reported at start-up
    stack.worker.wait_for("stopped consuming", timeout=30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        members = requests.get(f"{stack.base}/api/members", timeout=10).json()["members"]
        served = {m["id"]: m["served"] for m in members}
        if served[4] is False:
            break
        time.sleep(0.5)
    assert served == {1: True, 2: True, 3: True, 4: False}
    refused = requests.post(
        f"{stack.base}/api/texts?wait=30", json={"member_id": 4, "text": "안녕"}, timeout=40
    )
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "member_unavailable"


def test_failed_job_reports_a_reason_and_worker_keeps_serving(stack: Stack) -> None:
    """A job the worker cannot do (here: text with nothing to pronounce, sent straight to the
    queue) fails with a plain reason at its status URL; the next job still succeeds."""
    celery = make_celery(Settings.from_env(stack.env), main="test-client")
    job = celery.send_task(
        TASK_NAME,
        kwargs={"member_id": 1, "text": "🙂🙂"},
        queue=member_queue(stack.env["MOKSORI_QUEUE"], 1),
    )
    job.get(timeout=30, propagate=False)
    celery.close()
    status = requests.get(f"{stack.base}/api/jobs/{job.id}", timeout=10).json()
    assert status["status"] == "failed"
    assert "nothing this voice can pronounce" in status["error"]
    ok = requests.post(
        f"{stack.base}/api/texts?wait=30", json={"member_id": 2, "text": "괜찮아요"}, timeout=40
    )
    assert ok.json()["status"] == "done"


def syntheses(stack: Stack, key: str) -> int:
    """How many times the worker synthesized ``key`` (it logs each synthesis with its key)."""
    return sum(1 for line in stack.worker.output().splitlines() if "RTF" in line and key in line)


def tasks_run(stack: Stack) -> int:
    celery = make_celery(Settings.from_env(stack.env), main="test-client")
    try:
        stats = celery.control.inspect([stack.worker.hostname], timeout=5).stats()
    finally:
        celery.close()
    return stats[stack.worker.hostname]["total"].get(TASK_NAME, 0)


def key_of(url: str) -> str:
    """The object key in a URL: the same object's URLs differ when signed at different times."""
    path = urlsplit(url).path
    return path[path.index("wav/") :]


def test_repeat_is_answered_from_storage_without_a_task(stack: Stack) -> None:
    """Text already synthesized for that member and voice version: 200 with its URL at once,
    no task sent; its status URL works like any job's."""
    text = {"member_id": 1, "text": "다시 들어도 같은 목소리입니다."}
    first = requests.post(f"{stack.base}/api/texts?wait=30", json=text, timeout=40).json()
    assert first["status"] == "done" and first["cached"] is False
    before = tasks_run(stack)
    repeats = [requests.post(f"{stack.base}/api/texts", json=text, timeout=10) for _ in range(5)]
    assert {r.status_code for r in repeats} == {200}
    for response in repeats:
        body = response.json()
        assert body["cached"] is True
        assert body["status"] == "done"
        assert key_of(body["url"]) == key_of(first["url"])
        assert body["duration_s"] == pytest.approx(first["duration_s"], abs=0.002)
        status = requests.get(stack.base + body["status_url"], timeout=10).json()
        assert status["status"] == "done" and key_of(status["url"]) == key_of(first["url"])
    assert tasks_run(stack) == before
    assert syntheses(stack, key_of(first["url"])) == 1


def delete_object(stack: Stack, key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS"):
        if name in stack.env:
            monkeypatch.setenv(name, stack.env[name])
    storage = open_storage(stack.env["MOKSORI_STORAGE_URL"])
    if isinstance(storage, LocalStorage):
        path = storage.path_for(key)
        assert path is not None
        path.unlink()
    else:
        storage._bucket.blob(storage._name(key)).delete()
    assert storage.lookup(key) is None


def test_deleted_object_is_synthesized_again(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cached object that was deleted from storage is rendered again, never a dead URL."""
    text = {"member_id": 3, "text": "지워진 파일은 다시 만듭니다."}
    first = requests.post(f"{stack.base}/api/texts?wait=30", json=text, timeout=40).json()
    assert first["status"] == "done"
    key = key_of(first["url"])
    delete_object(stack, key, monkeypatch)
    again = requests.post(f"{stack.base}/api/texts?wait=30", json=text, timeout=40).json()
    assert again["status"] == "done" and again["cached"] is False
    assert key_of(again["url"]) == key_of(first["url"])
    assert syntheses(stack, key) == 2
    with fetch_wav(again["url"]) as wav:
        assert wav.getnframes() > 0


def test_identical_requests_in_flight_share_one_synthesis(stack: Stack) -> None:
    """Many clients asking for the same new text at once: one synthesis, one URL for all."""
    text = {"member_id": 2, "text": "모두 같은 문장을 동시에 요청합니다."}
    with ThreadPoolExecutor(12) as pool:
        responses = list(
            pool.map(
                lambda _: requests.post(f"{stack.base}/api/texts?wait=30", json=text, timeout=40),
                range(12),
            )
        )
    bodies = [r.json() for r in responses]
    assert [r.status_code for r in responses] == [200] * 12, bodies
    assert {b["status"] for b in bodies} == {"done"}, bodies
    assert len({key_of(b["url"]) for b in bodies}) == 1
    assert syntheses(stack, key_of(bodies[0]["url"])) == 1


def test_refused_big_body_keeps_the_connection_usable(stack: Stack) -> None:
    """A 413 for a body over the limit (but not absurdly so) leaves the keep-alive connection
    clean: the client's next request on it is answered, not reset."""
    session = requests.Session()
    for _ in range(4):
        big = session.post(
            f"{stack.base}/api/texts",
            data="x" * 70_000,
            headers={"Content-Type": "application/json"},
            timeout=10,
        )
        assert big.status_code == 413
        assert big.json()["error"]["code"] == "request_entity_too_large"
        small = session.post(f"{stack.base}/api/texts", json={"member_id": 1}, timeout=10)
        assert small.status_code == 422


def test_celery_cli_sees_the_worker(stack: Stack) -> None:
    """`celery inspect ping` and `inspect registered` answer from the running worker."""

    def inspect(*args: str) -> str:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "worker.celery_app",
                "inspect",
                *args,
                "-d",
                stack.worker.hostname,
                "--timeout",
                "5",
            ],
            env=stack.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    assert "pong" in inspect("ping")
    assert "moksori.synthesize" in inspect("registered")
    assert '"prefetch_count": 1' in inspect("stats", "--json") or "prefetch_count" in inspect(
        "stats"
    )


def test_urls_are_made_when_read_and_results_keep_locations(stack: Stack) -> None:
    """A job's stored result (the worker's, or the API's for a cached answer) holds where the
    object is, never a URL; each answer makes its URL then: with GCS a V4 signature made
    afresh on every status read, with local files the API's /media link."""
    text = {"member_id": 2, "text": "주소는 읽을 때마다 새로 만듭니다."}
    done = requests.post(f"{stack.base}/api/texts?wait=30", json=text, timeout=40).json()
    cached = requests.post(f"{stack.base}/api/texts", json=text, timeout=10).json()
    assert done["status"] == "done" and cached["cached"] is True
    key = key_of(done["url"])
    celery = make_celery(Settings.from_env(stack.env), main="test-client")
    try:
        stored = [celery.backend.get_task_meta(b["job_id"])["result"] for b in (done, cached)]
    finally:
        celery.close()
    if "STORAGE_EMULATOR_HOST" not in stack.env:
        assert [s["url"] for s in stored] == [f"/media/{key}"] * 2
        assert done["url"] == f"{stack.base}/media/{key}"
        return
    assert [s["url"] for s in stored] == [f"gs://moksori-test/it/{key}"] * 2
    status_url = stack.base + done["status_url"]
    urls = [done["url"]]
    for _ in range(2):
        time.sleep(1.05)  # X-Goog-Date has a resolution of one second
        urls.append(requests.get(status_url, timeout=10).json()["url"])
    queries = [dict(parse_qsl(urlsplit(url).query)) for url in urls]
    assert len({q["X-Goog-Date"] for q in queries}) == 3  # signed at each read
    assert {q["X-Goog-Algorithm"] for q in queries} == {"GOOG4-RSA-SHA256"}
    assert {q["X-Goog-Expires"] for q in queries} == {"3600"}
    with fetch_wav(urls[-1]) as wav:
        assert wav.getnframes() > 0
    report.record(
        "storage privacy",
        "GCS job status read 3 times, 1 s apart (real worker, emulator)",
        "a V4 URL signed at each read; results store gs:// locations, never a URL",
        1,
        0,
    )
