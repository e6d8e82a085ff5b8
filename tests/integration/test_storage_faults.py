"""Local storage faults against a real API (gunicorn) and a real worker: a volume that is full
(a 2 MiB tmpfs filled up) and a directory that refuses writes (``chattr +i``, which stops root
too). Jobs retry with backoff, then fail with a stable code and a plain reason (never an errno
text), none is lost, nothing half-written or temporary is left, ``/readyz`` says not ready while
it lasts, and jobs succeed once it is over, including jobs still retrying when it ends."""

from __future__ import annotations

import concurrent.futures
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from harness.faults import TinyVolume, immutable
from tests import report
from tests.support import REQUIRE_SERVICES, Stack, eventually, local_env, running_stack

JOBS = 100


def volume_or_skip(path: Path, size_kb: int) -> TinyVolume:
    """A tmpfs, or a skip (a failure under MOKSORI_REQUIRE_SERVICES=1) where mounting one is
    not allowed (no root, or a container without CAP_SYS_ADMIN)."""
    try:
        return TinyVolume(path, size_kb)
    except (OSError, subprocess.CalledProcessError) as exc:  # no mount program, or refused
        message = f"cannot mount a tmpfs here ({exc}): the disk-full test needs one"
        if REQUIRE_SERVICES:
            pytest.fail(message)
        pytest.skip(message)


def storage_env(voice_dir: Path, queue: str, media: Path, **settings: str) -> dict[str, str]:
    return local_env(
        voice_dir,
        queue,
        media,
        **{
            "max_queued_per_client": "0",
            "media_secret": "storage-fault-tests-secret",  # no secret file on a full volume
            "storage_retries": "2",
            **settings,
        },
    )


def post(stack: Stack, text: str) -> str:
    response = requests.post(
        f"{stack.base}/api/texts", json={"member_id": 1, "text": text}, timeout=30
    )
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def final(stack: Stack, job_id: str, timeout: float = 300) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        view = requests.get(f"{stack.base}/api/jobs/{job_id}", timeout=10).json()
        return view if view["status"] in {"done", "failed"} else None

    return eventually(ended, f"job {job_id} end", timeout=timeout, interval=0.5)


def readiness(stack: Stack) -> requests.Response:
    return requests.get(f"{stack.base}/readyz", timeout=5)


def not_ready(stack: Stack, what: str) -> str:
    """``/readyz``'s message once it answers 503 (its storage result is kept for 5 s)."""

    def refused() -> str | None:
        answer = readiness(stack)
        return str(answer.json()["error"]["message"]) if answer.status_code == 503 else None

    return eventually(refused, what, timeout=15)


def leftovers(media: Path) -> list[str]:
    """Anything under the media root but the filler: objects, temporary uploads, folders' files."""
    return sorted(
        str(p.relative_to(media))
        for p in media.rglob("*")
        if p.is_file() and p.name != "filler.bin"
    )


@pytest.fixture
def full_volume(tmp_path: Path) -> Iterator[TinyVolume]:
    volume = volume_or_skip(tmp_path / "media", 2048)
    try:
        yield volume
    finally:
        volume.unmount()


def test_disk_full_fails_every_job_with_storage_full(
    voice_dir: Path, queue_name: str, tmp_path: Path, full_volume: TinyVolume
) -> None:
    """100 jobs on a volume with 16 KiB free (less than one WAV, so each write starts and runs
    out of space): each is retried, then fails ``storage_full`` with a plain reason; none is
    lost; no object and no temporary file is left; ``/readyz`` is 503 naming the free space."""
    media = full_volume.path
    env = storage_env(voice_dir, queue_name, media, storage_min_free_mb="1")
    with running_stack(env, tmp_path) as stack:
        assert readiness(stack).status_code == 200, readiness(stack).text
        full_volume.fill(free_kb=16)
        message = not_ready(stack, "/readyz report the full volume")
        assert "storage" in message and "MOKSORI_STORAGE_MIN_FREE_MB" in message, message
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            ids = list(
                pool.map(lambda n: post(stack, f"꽉 찬 디스크 {n}번 문장입니다."), range(JOBS))
            )
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            views = list(pool.map(lambda job_id: final(stack, job_id, timeout=900), ids))
        took = time.monotonic() - started
        assert all(v["status"] == "failed" for v in views), [
            v for v in views if v["status"] != "failed"
        ]
        assert {v["error_code"] for v in views} == {"storage_full"}
        reasons = {v["error"] for v in views}
        assert all(r.startswith("Storage is full") and "3 attempts" in r for r in reasons), reasons
        assert not any("Errno" in r or "OSError" in r for r in reasons), reasons
        retries = stack.worker.output().count("retry: Retry in")
        assert retries >= 2 * JOBS, retries
        assert leftovers(media) == [], leftovers(media)
        assert readiness(stack).status_code == 503
        report.record(
            "storage",
            f"local volume full (a 2 MiB tmpfs with 16 KiB free, each WAV write runs out of "
            f"space mid-file); {JOBS} jobs",
            f'all {JOBS} retried twice with backoff then failed code storage_full ("Storage is '
            f'full: ... after 3 attempts (no space left on the storage volume ...)") in '
            f"{took:.0f} s; no object or temporary file left; /readyz 503 naming the free space",
            JOBS,
            0,
        )


def test_space_freed_between_retries_lets_the_jobs_finish(
    voice_dir: Path, queue_name: str, tmp_path: Path, full_volume: TinyVolume
) -> None:
    """Space comes back while jobs are between their attempts: they finish done, and /readyz is
    ready again. Six retries (backoff up to a minute in all) keep every job waiting past the
    moment space returns, however slow the machine."""
    media = full_volume.path
    env = storage_env(voice_dir, queue_name, media, storage_min_free_mb="1", storage_retries="6")
    with running_stack(env, tmp_path) as stack:
        full_volume.fill(free_kb=16)
        not_ready(stack, "/readyz report the full volume")
        retrying = [post(stack, f"공간이 돌아오는 {n}번 문장입니다.") for n in range(5)]
        eventually(
            lambda: f"[{retrying[0]}] retry" in stack.worker.output(),
            "the first job's first retry",
            timeout=120,
        )
        full_volume.release()
        eventually(lambda: readiness(stack).status_code == 200, "/readyz ready again", timeout=15)
        recovered = [final(stack, job_id) for job_id in retrying]
        assert [v["status"] for v in recovered] == ["done"] * 5, recovered
        for view in recovered:
            played = requests.get(view["url"], timeout=10)
            assert played.status_code == 200 and played.content[:4] == b"RIFF"
        assert not [name for name in leftovers(media) if ".upload-" in name]
    report.record(
        "storage",
        "local volume full, then space freed while 5 jobs were between retries",
        "the 5 jobs finished done with playable URLs; /readyz ready again within its 5 s cache",
        5,
        0,
    )


def test_write_refused_fails_with_storage_unavailable_then_recovers(
    voice_dir: Path, queue_name: str, tmp_path: Path
) -> None:
    """The storage root refuses writes (``chattr +i``: root is refused too, where permission
    bits would not stop it): the job retries, then fails ``storage_unavailable`` with the
    reason; ``/readyz`` is 503; writable again, the same text is done."""
    media = tmp_path / "media"
    media.mkdir()
    env = storage_env(voice_dir, queue_name, media)
    text = "쓰기가 막힌 저장소입니다."
    with running_stack(env, tmp_path) as stack:
        with immutable(media):
            job_id = post(stack, text)
            view = final(stack, job_id)
            message = not_ready(stack, "/readyz report the refused writes")
        assert view["status"] == "failed" and view["error_code"] == "storage_unavailable", view
        assert view["error"].startswith("Storage is unavailable"), view
        assert "Operation not permitted" in view["error"] and "Errno" not in view["error"]
        # Without an API key /readyz names the failed check only (its reason is in the logs).
        assert "storage" in message and "Operation not permitted" not in message, message
        assert leftovers(media) == []
        again = requests.post(
            f"{stack.base}/api/texts?wait=60", json={"member_id": 1, "text": text}, timeout=90
        ).json()
        assert again["status"] == "done", again
    report.record(
        "storage",
        "local storage refuses writes (chattr +i on the root, which stops root too)",
        f'job retried twice, then failed code storage_unavailable ("{view["error"][:70]}…"); '
        "/readyz 503; the same text done once writable again",
        2,
        0,
    )
