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
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from kombu import Connection

from tests.conftest import BROKER_URL, REPO, Process, base_env, start_api, start_worker

pytestmark = pytest.mark.integration


@dataclass
class Stack:
    base: str
    worker: Process
    api: Process
    env: dict[str, str]


@pytest.fixture(scope="module", params=["file", "gcs"])
def stack(
    request: pytest.FixtureRequest,
    services: None,
    voice_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """Worker + API for one storage mode, on a queue of their own."""
    logs = tmp_path_factory.mktemp(f"stack-{request.param}")
    queue = f"moksori-it-{logs.name}"
    if request.param == "file":
        env = base_env(storage_url=f"file://{logs / 'media'}")
    else:
        env = base_env(storage_url="gs://moksori-test/it")
        env["STORAGE_EMULATOR_HOST"] = request.getfixturevalue("gcs_emulator")
    env.update(MOKSORI_VOICE_DIR=str(voice_dir), MOKSORI_QUEUE=queue)
    worker = start_worker(env, logs)
    try:
        api, base = start_api(env, logs)
    except BaseException:
        worker.stop()
        raise
    yield Stack(base=base, worker=worker, api=api, env=env)
    api.stop()
    worker.stop()
    with Connection(BROKER_URL) as conn:
        conn.channel().queue_delete(queue)


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
    assert second["url"] == status["url"]
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
    assert [r.status_code for r in responses] == [200] * len(bodies)
    assert len({r.json()["url"] for r in responses}) == len(bodies)


def test_failed_synthesis_reports_a_reason_and_worker_keeps_serving(stack: Stack) -> None:
    """A voice that failed to load makes its jobs fail with the reason; other jobs still succeed."""
    assert "voice for member 4" in stack.worker.output()  # reported at start-up
    failed = requests.post(
        f"{stack.base}/api/texts?wait=30", json={"member_id": 4, "text": "안녕"}, timeout=40
    ).json()
    assert failed["status"] == "failed"
    assert "member 4" in failed["error"] and "failed to load" in failed["error"]
    status = requests.get(f"{stack.base}/api/jobs/{failed['job_id']}", timeout=10).json()
    assert status["status"] == "failed"
    ok = requests.post(
        f"{stack.base}/api/texts?wait=30", json={"member_id": 2, "text": "괜찮아요"}, timeout=40
    )
    assert ok.json()["status"] == "done"


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
