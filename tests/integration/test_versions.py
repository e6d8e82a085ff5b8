"""Voice versions and hot reload, against the running service: a real Celery prefork worker and
the API under gunicorn on RabbitMQ and Redis, with tiny real voices in a voice directory of the
test's own. New checkpoints are written the way docs/voices.md tells operators to (new files, then
``os.replace`` of the manifest) and nothing is restarted."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
from celery import Celery

from common.config import Settings
from common.jobs import TASK_NAME, make_celery, member_queue
from common.repository import VoiceCatalog
from harness import voice_factory
from tests.support import Stack, base_env, eventually, running_stack
from worker.voices import LoadedVoice, VoiceBank

ROLLOUT = 1  # fast (HiFi-GAN): rolled out from version 1 to 2
SLOW = 2  # voice_factory.SLOW_GRIFFIN_LIM, about a second a sentence: a job runs while we switch
STEADY = 3  # fast: broken rollouts that must keep version 1 serving
FOLDERS = {ROLLOUT: "rollout", SLOW: "slow", STEADY: "steady"}
RELOAD_INTERVAL_S = 1
LIVE_WITHIN_S = 60  # the bound the tests allow for a new version to show (loaded machine)


def write_version(
    voice_dir: Path, member_id: int, version: str, *, seed: int, corrupt: bool = False
) -> None:
    """Roll out ``version`` of a member: new checkpoint files beside the old ones, then the
    manifest replaced atomically. ``corrupt`` writes a checkpoint no model can load."""
    folder = voice_dir / "voices" / FOLDERS[member_id]
    glow, config = folder / f"glow-{version}.pth", folder / f"glow-{version}.json"
    pace = voice_factory.SLOW_GRIFFIN_LIM if member_id == SLOW else {}
    voice_factory.glow_tts(glow, config, voice_factory.SYLLABLES, step=seed, **pace)
    if corrupt:
        glow.write_bytes(b"this is not a checkpoint")
    manifest = json.loads((folder / "voice.json").read_text(encoding="utf-8"))
    manifest.update(version=version, tts={"checkpoint": glow.name, "config": config.name})
    write_manifest(folder, json.dumps(manifest))


def write_manifest(folder: Path, text: str) -> None:
    tmp = folder / "voice.json.tmp"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, folder / "voice.json")


def build_voices(root: Path) -> Path:
    """Three voices at version 1, all precomposed syllables (see the member constants)."""
    for member_id, folder in FOLDERS.items():
        path = root / "voices" / folder
        voice_factory.glow_tts(
            path / "glow.pth",
            path / "glow.json",
            voice_factory.SYLLABLES,
            **(voice_factory.SLOW_GRIFFIN_LIM if member_id == SLOW else {}),
        )
        manifest: dict[str, Any] = {
            "id": member_id,
            "name": folder,
            "version": "1",
            "tts": {"checkpoint": "glow.pth", "config": "glow.json"},
        }
        if member_id != SLOW:
            voice_factory.hifigan(path / "hifigan.pth", path / "hifigan.json")
            manifest["vocoder"] = {"checkpoint": "hifigan.pth", "config": "hifigan.json"}
        write_manifest(path, json.dumps(manifest))
    return root


@pytest.fixture(scope="module")
def voice_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_voices(tmp_path_factory.mktemp("versioned-voices"))


@pytest.fixture(scope="module")
def quiet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Voices no running worker watches, for the tests of the parts alone."""
    return build_voices(tmp_path_factory.mktemp("quiet-voices"))


@pytest.fixture(scope="module")
def stack(voice_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("versions-stack")
    env = base_env(
        storage_url=f"file://{logs / 'media'}",
        voice_dir=str(voice_dir),
        queue=f"moksori-versions-{logs.name}",
        voice_reload_interval=str(RELOAD_INTERVAL_S),
        keep_versions="1",
        torch_threads="1",
        rate_limit="off",
        max_queued_per_client="0",
    )
    with running_stack(env, logs) as stack:
        yield stack


@pytest.fixture(scope="module")
def celery(stack: Stack) -> Iterator[Celery]:
    """A client of the stack's broker and result backend, to read results and send old-style
    and pinned messages."""
    app = make_celery(Settings.from_env(stack.env), main="versions-test")
    yield app
    app.close()


@pytest.fixture(scope="module")
def worker_pids(stack: Stack) -> Iterator[set[int]]:
    """The worker's main and pool process ids at the start; the same at the end (no restart)."""
    pids = pool_pids(stack)
    yield pids
    assert pool_pids(stack) == pids, "a worker process was restarted"


def pool_pids(stack: Stack) -> set[int]:
    main = psutil.Process(stack.worker.proc.pid)
    return {main.pid, *(child.pid for child in main.children(recursive=True))}


def member_version(stack: Stack, member_id: int) -> str:
    members = requests.get(f"{stack.base}/api/members", timeout=10).json()["members"]
    return next(m["version"] for m in members if m["id"] == member_id)


def post(stack: Stack, member_id: int, text: str, wait: int = 0) -> dict[str, Any]:
    query = f"?wait={wait}" if wait else ""
    response = requests.post(
        f"{stack.base}/api/texts{query}", json={"member_id": member_id, "text": text}, timeout=90
    )
    assert response.status_code in {200, 202}, response.text
    return response.json()


def result_of(celery: Celery, job_id: str, timeout: float = 90) -> dict[str, Any]:
    """The job's result as the worker stored it (``voice_version`` says which made the audio)."""
    meta = eventually(
        lambda: (
            (m := celery.backend.get_task_meta(job_id))["status"] in {"SUCCESS", "FAILURE"} and m
        ),
        f"job {job_id} ends",
        timeout=timeout,
        interval=0.1,
    )
    assert meta["status"] == "SUCCESS", meta
    return meta["result"]


def test_members_show_the_version(stack: Stack) -> None:
    """GET /api/members names each member's version, in the shape it always had."""
    members = requests.get(f"{stack.base}/api/members", timeout=10).json()["members"]
    assert {m["id"]: m["version"] for m in members} == {ROLLOUT: "1", SLOW: "1", STEADY: "1"}
    assert set(members[0]) == {"id", "name", "sample_rate", "version", "vocoder", "served"}


def test_new_checkpoint_goes_live_without_restart(
    stack: Stack, voice_dir: Path, celery: Celery, worker_pids: set[int]
) -> None:
    """v1 audio, then a v2 manifest: /api/members and new jobs use v2 (another storage key);
    jobs pinned to the kept v1 still get v1, older messages the current one, a version no longer
    held fails saying so."""
    text = "새 목소리를 시험합니다."
    first = post(stack, ROLLOUT, text, wait=60)
    assert first["status"] == "done", first
    v1 = result_of(celery, first["job_id"])
    assert v1["voice_version"] == "1"
    assert f"/{ROLLOUT}/1/" in v1["key"]

    write_version(voice_dir, ROLLOUT, "2", seed=2)
    eventually(
        lambda: member_version(stack, ROLLOUT) == "2",
        "members show v2",
        timeout=LIVE_WITHIN_S,
        interval=0.1,
    )
    second = post(stack, ROLLOUT, text, wait=60)
    assert second["status"] == "done", second
    assert second["cached"] is False
    v2 = result_of(celery, second["job_id"])
    assert v2["voice_version"] == "2"
    assert v2["key"] != v1["key"] and f"/{ROLLOUT}/2/" in v2["key"]
    stack.worker.wait_for(f"member {ROLLOUT} now serves version 2", timeout=LIVE_WITHIN_S)

    def send(**kwargs: Any) -> Any:
        return celery.send_task(
            TASK_NAME,
            kwargs={"member_id": ROLLOUT, "text": "고정된 버전입니다.", **kwargs},
            queue=member_queue(stack.env["MOKSORI_QUEUE"], ROLLOUT),
        )

    pinned = send(voice_version="1").get(timeout=60)
    assert pinned["voice_version"] == "1" and f"/{ROLLOUT}/1/" in pinned["key"]
    assert send().get(timeout=60)["voice_version"] == "2"  # a message from before versions
    gone = send(voice_version="0")
    with pytest.raises(Exception, match="Version 0 of member 1's voice is no longer loaded"):
        gone.get(timeout=60)


def test_running_and_queued_jobs_finish_on_their_version(
    stack: Stack, voice_dir: Path, celery: Celery, worker_pids: set[int]
) -> None:
    """A job synthesizing when v2 goes live finishes on v1; one queued behind it with v1 pinned
    and taken after the switch runs on the kept v1; a job sent after the switch gets v2."""
    long_text = " ".join(f"{n}번째 문장을 천천히 읽습니다." for n in range(1, 13))
    running = post(stack, SLOW, long_text)
    eventually(
        lambda: celery.backend.get_task_meta(running["job_id"])["status"] == "STARTED",
        "the long job starts",
        timeout=60,
        interval=0.1,
    )
    queued = post(stack, SLOW, "뒤에서 기다리는 문장입니다.")
    write_version(voice_dir, SLOW, "2", seed=3)
    stack.worker.wait_for(f"member {SLOW} now serves version 2", timeout=LIVE_WITHIN_S)
    assert celery.backend.get_task_meta(running["job_id"])["status"] == "STARTED", (
        "the long job ended before the switch: the test proves nothing"
    )
    assert result_of(celery, running["job_id"])["voice_version"] == "1"
    assert result_of(celery, queued["job_id"])["voice_version"] == "1"
    eventually(
        lambda: member_version(stack, SLOW) == "2",
        "members show v2",
        timeout=LIVE_WITHIN_S,
        interval=0.1,
    )
    after = post(stack, SLOW, "바뀐 뒤의 문장입니다.", wait=60)
    assert result_of(celery, after["job_id"])["voice_version"] == "2"


def test_broken_rollouts_keep_the_old_version_serving(
    stack: Stack, voice_dir: Path, celery: Celery, worker_pids: set[int]
) -> None:
    """A manifest that does not parse keeps v1 listed and serving; a v2 whose checkpoint does
    not load is logged with the reason and v1 keeps making the audio."""
    folder = voice_dir / "voices" / FOLDERS[STEADY]
    good = (folder / "voice.json").read_text(encoding="utf-8")
    write_manifest(folder, '{"id": 3, "version": ')  # a half-written manifest
    stack.worker.wait_for(f"member {STEADY} is no longer readable", timeout=LIVE_WITHIN_S)
    # the API has read the broken manifest too, and still lists v1
    eventually(
        lambda: (
            member_version(stack, STEADY) == "1"
            and f"member {STEADY} is no longer readable" in stack.api.output()
        ),
        "the API rescans",
        timeout=LIVE_WITHIN_S,
        interval=0.1,
    )
    job = post(stack, STEADY, "그대로 들립니다.", wait=60)
    assert result_of(celery, job["job_id"])["voice_version"] == "1"

    write_manifest(folder, good)
    write_version(voice_dir, STEADY, "2", seed=4, corrupt=True)
    stack.worker.wait_for(
        f"member {STEADY}: version 2 failed to load, still serving version 1",
        timeout=LIVE_WITHIN_S,
    )
    # The API lists what the repository says; the result names the version that spoke.
    eventually(
        lambda: member_version(stack, STEADY) == "2",
        "members show v2",
        timeout=LIVE_WITHIN_S,
        interval=0.1,
    )
    job = post(stack, STEADY, "고장 난 버전 대신 들립니다.", wait=60)
    assert job["status"] == "done", job
    assert result_of(celery, job["job_id"])["voice_version"] == "1"


def test_catalog_rescans_only_after_its_interval_and_keeps_the_last_good_spec(
    quiet_dir: Path,
) -> None:
    """The API's and workers' view: a changed manifest shows after the interval, not before; a
    broken one keeps the member at its last good version."""
    folder = quiet_dir / "voices" / FOLDERS[ROLLOUT]
    catalog = VoiceCatalog(quiet_dir, interval=3600)
    before = catalog.current()[ROLLOUT].version
    manifest = json.loads((folder / "voice.json").read_text(encoding="utf-8"))
    good = json.dumps(manifest)
    try:
        write_manifest(folder, json.dumps({**manifest, "version": "next"}))
        assert catalog.current()[ROLLOUT].version == before  # within the interval: no look
        assert catalog.refresh() is True
        assert catalog.current()[ROLLOUT].version == "next"
        assert catalog.refresh() is False  # nothing changed since: no rescan
        write_manifest(folder, "{")
        assert catalog.refresh() is False
        assert catalog.current()[ROLLOUT].version == "next"
    finally:
        write_manifest(folder, good)


def test_bank_keeps_a_bounded_number_of_old_versions(quiet_dir: Path) -> None:
    """After each swap the new version is current, the replaced ones are held newest first, and
    no more than ``keep`` of them."""
    spec = VoiceCatalog(quiet_dir, interval=0).voices[STEADY]
    versions = [
        LoadedVoice(spec=replace(spec, version=v), synthesizer=None, load_seconds=0) for v in "abc"
    ]
    bank = VoiceBank(voices={STEADY: versions[0]})
    bank.swap(versions[1], keep=1)
    assert bank.held(STEADY, "a") is versions[0] and bank.held(STEADY, "b") is versions[1]
    bank.swap(versions[2], keep=1)
    assert bank.voices[STEADY] is versions[2]
    assert [v.spec.version for v in bank.previous[STEADY]] == ["b"]
    assert bank.held(STEADY, "a") is None
    bank.swap(versions[0], keep=0)
    assert bank.previous[STEADY] == [] and bank.held(STEADY, "a") is versions[0]
