"""Long texts sentence by sentence, against RabbitMQ, Redis, real worker processes and the API
under gunicorn: the first audio of a text streams while its later sentences are still being
made, sentences are reused across texts, two workers share a text, a sentence that fails fails
its job by index, and a worker killed mid-text loses no sentence."""

from __future__ import annotations

import io
import os
import re
import signal
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from kombu import Connection

from common.jobs import member_queue
from harness import voice_factory
from harness.processes import Process, start_worker
from tests import report
from tests.support import BROKER_URL, Stack, eventually, stack_on

SLOW, FRAGILE = 2, 3  # the fault repository's Griffin-Lim voice (~1 s a sentence), NaN on ㅎ
SENTENCES = 6


def text(place: str) -> str:
    """Six sentences, every one naming ``place``, so texts about other places share none."""
    return (
        f"{place}가 보입니다. 오늘은 {place}가 좋아요. 우리는 {place}에서 만나요. "
        f"저녁에 {place}를 봅니다. 모두 {place}를 좋아해요. 내일도 {place}에 가요."
    )


TEXT = text("바다")
MADE = re.compile(r"sentence (\d+) \([\d.]+ s of audio\) made in")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("streaming")
    voices = voice_factory.build_fault_repository(logs / "voices")
    with stack_on(voices, logs, "streaming") as stack:
        yield stack


def post(stack: Stack, member: int, text: str) -> dict:
    response = requests.post(
        f"{stack.base}/api/texts", json={"member_id": member, "text": text}, timeout=30
    )
    assert response.status_code in {200, 202}, response.text
    return response.json()


def status(stack: Stack, job_id: str) -> dict:
    return requests.get(f"{stack.base}/api/jobs/{job_id}", timeout=10).json()


def done(stack: Stack, job_id: str, timeout: float = 120) -> dict:
    return eventually(
        lambda: (view := status(stack, job_id))["status"] in {"done", "failed"} and view,
        f"job {job_id} ending",
        timeout=timeout,
    )


def made(worker: Process, since: int = 0) -> int:
    """Sentences the worker has made (synthesized and stored) since ``since`` of its log."""
    return len(MADE.findall(worker.output()[since:]))


def waiting(stack: Stack) -> int:
    """Messages ready in the slow member's queue (jobs and handed-out sentences)."""
    with Connection(BROKER_URL, connect_timeout=5) as conn:
        queue = member_queue(stack.env["MOKSORI_QUEUE"], SLOW)
        return conn.channel().queue_declare(queue, passive=True).message_count


def frames(data: bytes) -> bytes:
    with wave.open(io.BytesIO(data)) as wav:
        return wav.readframes(wav.getnframes())


def test_first_audio_streams_while_later_sentences_are_made(stack: Stack) -> None:
    """The stream's first bytes come once the first sentence is stored, while the job still
    has sentences to make; the job's status lists each stored sentence's URL as it goes; the
    stream, read to its end, is the job's own WAV."""
    job = post(stack, SLOW, TEXT)
    started = time.monotonic()
    with requests.get(f"{stack.base}/api/jobs/{job['job_id']}/audio", stream=True, timeout=60) as r:
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"] == "audio/wav"
        assert "Content-Length" not in r.headers
        parts = r.iter_content(chunk_size=None)
        first = next(parts)
        first_s = time.monotonic() - started
        running = status(stack, job["job_id"])
        body = first + b"".join(parts)
    total_s = time.monotonic() - started

    assert running["status"] == "running", running
    assert running["sentences_total"] == SENTENCES
    assert 1 <= running["sentences_done"] < SENTENCES, running
    assert [s["index"] for s in running["sentences"]] == list(range(running["sentences_done"]))
    sentence = requests.get(running["sentences"][0]["url"], timeout=10)
    assert sentence.status_code == 200 and sentence.headers["Content-Type"] == "audio/wav"

    assert body[:4] == b"RIFF" and body[36:40] == b"data"
    view = done(stack, job["job_id"])
    assert view["status"] == "done" and view["sentences_done"] == SENTENCES
    whole = requests.get(view["url"], timeout=10).content
    assert body[44:] == frames(whole)
    # One worker of one process: nobody else could take a sentence, so none is handed out.
    assert "moksori.sentence" not in stack.worker.output()
    assert made(stack.worker) == SENTENCES
    assert first_s < total_s / 2, (first_s, total_s)
    report.record(
        "streaming",
        f"GET /api/jobs/<id>/audio of a {SENTENCES}-sentence text (slow test voice, 1 worker)",
        f"first bytes after {first_s:.2f} s ({running['sentences_done']} of {SENTENCES} "
        f"sentences stored), whole text after {total_s:.2f} s; stream == the job's WAV",
        1,
        0,
    )


def test_sentences_are_reused_across_texts(stack: Stack) -> None:
    """A text sharing all but one sentence with an earlier one makes that one sentence only;
    each sentence alone is answered from storage at once."""
    first = post(stack, SLOW, "바람이 불어요. 하늘이 맑아요. 새가 날아요.")
    assert done(stack, first["job_id"])["status"] == "done"
    mark = len(stack.worker.output())
    second = post(stack, SLOW, "바람이 불어요. 구름이 많아요. 새가 날아요.")
    view = done(stack, second["job_id"])
    assert view["status"] == "done" and view["sentences_total"] == 3
    assert made(stack.worker, mark) == 1
    alone = post(stack, SLOW, "새가 날아요.")
    assert alone["cached"] is True and alone["status"] == "done"
    assert alone["url"] == view["sentences"][2]["url"]


def test_a_failing_sentence_fails_the_job_by_index_and_keeps_the_others(stack: Stack) -> None:
    """The fragile voice cannot say "하늘": the job fails naming sentence 3 of 3, and the two
    sentences made before it stay stored (sent again alone, they are answered at once)."""
    job = post(stack, FRAGILE, "바다를 봅니다. 바다가 좋아요. 하늘이 파래요.")
    view = done(stack, job["job_id"])
    assert view["status"] == "failed" and view["error_code"] == "synthesis_failed", view
    assert view["error"].startswith("Sentence 3 of 3 failed"), view
    stream = requests.get(f"{stack.base}/api/jobs/{job['job_id']}/audio", timeout=10)
    assert stream.status_code == 409, stream.text
    assert stream.json()["error"]["code"] == "job_failed"
    assert "(synthesis_failed): Sentence 3 of 3 failed" in stream.json()["error"]["message"]
    for sentence in ("바다를 봅니다.", "바다가 좋아요."):
        assert post(stack, FRAGILE, sentence)["cached"] is True


def test_two_workers_share_a_text(stack: Stack, tmp_path: Path) -> None:
    """With a second worker, the job hands sentences out: both make some, the text is whole,
    and the ones the job made first cost the other worker a lookup, not a synthesis. Two texts
    sharing a sentence, sent at once, make that sentence once between them."""
    other = start_worker(stack.env, tmp_path, "second-worker")
    try:
        mark = len(stack.worker.output())
        job = post(stack, SLOW, text("나무"))
        view = done(stack, job["job_id"])
        assert view["status"] == "done" and view["sentences_total"] == SENTENCES, view
        eventually(lambda: waiting(stack) == 0, "the handed-out sentences taken")
        here, there = made(stack.worker, mark), made(other)
        assert here + there == SENTENCES and here >= 1 and there >= 1, (here, there)
        # Each process's log names the sentences it made by their place in the text.
        places = MADE.findall(stack.worker.output()[mark:]) + MADE.findall(other.output())
        assert sorted(map(int, places)) == list(range(1, SENTENCES + 1)), places

        mark, other_mark = len(stack.worker.output()), len(other.output())
        shared = "우리 함께 노래해요."
        jobs = [post(stack, SLOW, f"{shared} {text(place)}") for place in ("강물", "들판")]
        views = [done(stack, j["job_id"]) for j in jobs]
        assert all(v["status"] == "done" for v in views), views
        assert views[0]["sentences"][0]["url"] == views[1]["sentences"][0]["url"]
        eventually(lambda: waiting(stack) == 0, "the handed-out sentences taken")
        both = made(stack.worker, mark) + made(other, other_mark)
    finally:
        other.stop()
    assert both == 1 + 2 * SENTENCES, both  # the shared sentence once


def test_worker_killed_mid_text_loses_no_sentence(stack: Stack, tmp_path: Path) -> None:
    """kill -9 of the whole worker once some sentences are stored: a new worker finishes the
    job and makes only the sentences that were not stored. (Last in this file: it leaves the
    module's stack without its worker.)"""
    job = post(stack, SLOW, text("마을"))
    stored = eventually(
        lambda: (view := status(stack, job["job_id"])).get("sentences_done", 0) >= 2 and view,
        "two sentences stored",
        timeout=60,
    )["sentences_done"]
    os.killpg(stack.worker.proc.pid, signal.SIGKILL)
    stack.worker.proc.wait()
    replacement = start_worker(stack.env, tmp_path, "replacement")
    try:
        view = done(stack, job["job_id"], timeout=180)
        remade = made(replacement)
    finally:
        replacement.stop()
    assert view["status"] == "done" and view["sentences_done"] == SENTENCES, view
    assert remade <= SENTENCES - stored, (remade, stored)
    report.record(
        "kill-mid-text",
        f"kill -9 of the whole worker once {stored} of {SENTENCES} sentences were stored, "
        "then a new worker",
        f"job done with all {SENTENCES} sentences; the new worker made {remade}",
        1,
        0,
    )
