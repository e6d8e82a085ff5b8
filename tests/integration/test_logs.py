"""Structured logs: every line JSON, one line per request and per job tied by job and request
id, and no user text at INFO or above (against real gunicorn, a real worker and real models)."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from api.requestlog import request_id
from common import logs
from common.config import Settings
from common.normalize import Normalizer, canonical
from common.repository import scan
from harness.processes import REPO, start_worker
from launcher.__main__ import _pump
from tests import report
from tests.support import base_env, eventually, running_stack
from worker.joblog import job_fields, job_outcome

# A sentence no log line has any business containing, with a number the normalizer spells out.
SENTENCE = "보라색 우산을 쓴 고양이가 2031년에 춤을 춥니다"
API_KEY = "logs-test-key-0123456789"
QUERY_SECRET = "query-secret-5c1e"


def parse_lines(output: str, source: str) -> list[dict[str, Any]]:
    """Every line of a process's output as a JSON object; any other line fails the test."""
    records = []
    for number, line in enumerate(output.splitlines(), 1):
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"{source} line {number} is not JSON: {line!r}")
        assert isinstance(record, dict), f"{source} line {number} is not an object: {line!r}"
        for field in ("time", "level", "logger", "message", "service"):
            assert field in record, f"{source} line {number} has no {field!r}: {line!r}"
        records.append(record)
    return records


def private_fragments(voice_dir: Path) -> list[str]:
    """The sentence, its canonical and normalized forms, and every word of each."""
    characters = scan(voice_dir).voices[1].characters
    normalized = Normalizer().sentences(SENTENCE, characters)
    assert normalized and " ".join(normalized) != SENTENCE
    whole = [SENTENCE, canonical(SENTENCE), *normalized, "".join(normalized)]
    words = {word for form in whole for word in form.split() if len(word) >= 2}
    return [*whole, *sorted(words)]


def json_env(voice_dir: Path, tmp_path: Path, **settings: str) -> dict[str, str]:
    """A child's environment logging JSON at INFO, on a queue and a media root of its own."""
    return base_env(
        voice_dir=str(voice_dir),
        queue=f"moksori-logs-{uuid.uuid4().hex[:8]}",
        storage_url=f"file://{tmp_path / 'media'}",
        log_format="json",
        log_level="INFO",
        **settings,
    )


def test_json_logs_tie_request_and_job_and_keep_the_text_out(
    voice_dir: Path, tmp_path: Path
) -> None:
    """A job with a distinctive sentence: the API's request line and the worker's job line
    carry the same job_id and request_id, every line of both processes is JSON, and neither
    the sentence (raw or normalized), the API key nor the query string is in any line at INFO
    or above."""
    env = json_env(voice_dir, tmp_path, torch_threads="1", api_keys=API_KEY)
    auth = {"Authorization": f"Bearer {API_KEY}"}
    rid = f"logs-{uuid.uuid4().hex}"
    with running_stack(env, tmp_path) as stack:
        response = requests.post(
            f"{stack.base}/api/texts?wait=60&token={QUERY_SECRET}",
            json={"member_id": 1, "text": SENTENCE},
            headers={**auth, "X-Request-ID": rid},
            timeout=70,
        )
        assert response.status_code == 200, response.text
        assert response.headers["X-Request-ID"] == rid
        job_id = response.json()["job_id"]
        status = requests.get(f"{stack.base}/api/jobs/{job_id}", headers=auth, timeout=10)
        assert status.status_code == 200
        status_rid = status.headers["X-Request-ID"]
        assert status_rid != rid  # none sent: the API made one
        refused = requests.get(
            f"{stack.base}/api/members", headers={"X-Request-ID": "a b"}, timeout=10
        )
        assert refused.status_code == 401  # no key: answered by a hook, still logged
        made_rid = refused.headers["X-Request-ID"]
        assert made_rid != "a b" and request_id(made_rid) == made_rid

        deadline = time.monotonic() + 30
        while f'"job_id": "{job_id}"' not in stack.worker.output() or '"outcome"' not in (
            stack.worker.output()
        ):
            assert time.monotonic() < deadline, stack.worker.output()[-3000:]
            time.sleep(0.1)
    # Both processes have stopped: their whole output, shutdown included, is checked.
    api = parse_lines(stack.api.output(), "api")
    worker = parse_lines(stack.worker.output(), "worker")

    requests_seen = [r for r in api if r["logger"] == "api.request"]
    post = [r for r in requests_seen if r.get("request_id") == rid]
    assert len(post) == 1, requests_seen
    assert post[0]["job_id"] == job_id
    assert post[0]["method"] == "POST"
    assert post[0]["route"] == "/api/texts"
    assert post[0]["path"] == "/api/texts"
    assert post[0]["status"] == 200
    assert post[0]["client"] == "127.0.0.1"
    assert post[0]["duration_ms"] > 0
    assert post[0]["service"] == "api"
    (read,) = [r for r in requests_seen if r.get("request_id") == status_rid]
    assert read["job_id"] == job_id and read["route"] == "/api/jobs/<job_id>"
    (early,) = [r for r in requests_seen if r.get("request_id") == made_rid]
    assert early["status"] == 401 and early["route"] == "/api/members"
    assert "job_id" not in early  # nothing leaks from an earlier request on the same thread

    job_lines = [r for r in worker if r["logger"] == "worker.job"]
    assert len(job_lines) == 1, job_lines
    (job,) = job_lines
    assert job["job_id"] == job_id and job["request_id"] == rid
    assert job["outcome"] == "done" and job["member_id"] == 1
    assert job["voice_version"] == scan(voice_dir).voices[1].version
    assert job["characters"] == len(SENTENCE)
    assert job["audio_s"] > 0 and job["seconds"] > 0
    # Every worker line while the job ran names it, Celery's own included.
    during = [r for r in worker if r.get("job_id") == job_id]
    assert any("succeeded" in r["message"] for r in during), during
    (received,) = [r for r in worker if f"[{job_id}] received" in r["message"]]
    assert received["job_id"] == job_id and "data" not in received
    assert any(r["logger"] == "gunicorn.error" for r in api)  # gunicorn's lines, as JSON too

    secrets = [*private_fragments(voice_dir), API_KEY, QUERY_SECRET]
    for source, records in (("api", api), ("worker", worker)):
        for record in records:
            if logging.getLevelName(record["level"]) < logging.INFO:
                continue
            line = json.dumps(record, ensure_ascii=False)
            leaked = [s for s in secrets if s in line]
            assert not leaked, f"{source} logged {leaked} at {record['level']}: {line}"


def _record(message: str, **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("celery.app.trace", logging.INFO, __file__, 1, message, (), None)
    record.__dict__.update(extra)
    return record


def test_filter_adds_the_bound_ids_and_drops_task_arguments() -> None:
    """While bound, a line carries job_id and request_id; Celery's ``data`` extra (the task's
    arguments) never reaches the output; outside the block nothing is added."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.formatter("json", "worker"))
    handler.addFilter(logs.ContextFilter())
    with logs.bound(job_id="j-1", request_id="r-1"):
        handler.handle(_record("Task x received", data={"kwargs": f"{{'text': '{SENTENCE}'}}"}))
    handler.handle(_record("later"))
    handler.handle(_record("Task y received", data={"id": "j-3", "kwargs": "{'text': '...'}"}))
    first, second, third = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["job_id"] == "j-1" and first["request_id"] == "r-1"
    assert first["level"] == "INFO" and first["logger"] == "celery.app.trace"
    assert first["service"] == "worker" and "time" in first
    assert "data" not in first and SENTENCE not in stream.getvalue()
    assert "job_id" not in second and "request_id" not in second
    assert third["job_id"] == "j-3" and "data" not in third  # Celery's task id, kept


def test_job_fields_count_the_text_and_name_the_outcome() -> None:
    """The job line's fields for a failed and a retried job: characters, never the text."""
    kwargs = {"member_id": 2, "text": SENTENCE}
    failed = job_fields(kwargs, RuntimeError("boom"), "FAILURE", time.perf_counter())
    assert failed["outcome"] == "failed" and failed["characters"] == len(SENTENCE)
    assert failed["member_id"] == 2 and failed["audio_s"] is None and failed["seconds"] >= 0
    assert SENTENCE not in json.dumps(failed, ensure_ascii=False)
    assert job_outcome("RETRY") == "retry" and job_outcome("SUCCESS") == "done"
    odd = job_fields({"member_id": True, "text": 5}, None, None, None)
    assert odd["member_id"] is None and odd["characters"] is None and odd["seconds"] is None


def test_text_format_shows_the_same_fields() -> None:
    """``MOKSORI_LOG_FORMAT=text``: one readable line with the context as key=value."""
    text = logs.formatter("text", "api")
    with logs.bound(job_id="j-2"):
        record = _record("GET /x 200", status=200)
        logs.ContextFilter().filter(record)
    line = text.format(record)
    assert line.endswith("INFO celery.app.trace: GET /x 200 status=200 job_id=j-2")


def test_request_ids_from_clients_are_plain_tokens() -> None:
    """A client's X-Request-ID is kept when it is a plain token, else replaced."""
    assert request_id("abc-123_X.y:z") == "abc-123_X.y:z"
    for bad in (None, "", "a b", "x" * 129, "../etc", "id\n{}", "é"):
        made = request_id(bad)
        assert made != bad and len(made) == 32


def test_log_settings_are_checked() -> None:
    assert Settings.from_env({}).log_format == "json"
    with pytest.raises(ValueError, match="MOKSORI_LOG_FORMAT='xml'"):
        Settings.from_env({"MOKSORI_LOG_FORMAT": "xml"})
    with pytest.raises(ValueError, match="MOKSORI_LOG_LEVEL='loud'"):
        Settings.from_env({"MOKSORI_LOG_LEVEL": "loud"})


def test_launcher_keeps_json_lines_and_wraps_stray_output(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """In JSON mode the launcher passes a child's JSON lines through and wraps anything else
    it prints (a crash before its logging started) in a JSON line of its own."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.formatter("json", "launcher"))
    stray_logger = logging.getLogger("launcher.api")
    stray_logger.addHandler(handler)
    try:
        child = b'{"message": "hi", "level": "INFO"}\nTraceback (most recent call last):\n'
        _pump("api", io.BytesIO(child), as_json=True)
    finally:
        stray_logger.removeHandler(handler)
    assert json.loads(capsys.readouterr().out) == {"message": "hi", "level": "INFO"}
    stray = json.loads(stream.getvalue())
    assert stray["logger"] == "launcher.api"
    assert stray["message"] == "Traceback (most recent call last):"


def test_every_worker_line_is_json_when_its_pool_process_dies(
    voice_dir: Path, tmp_path: Path
) -> None:
    """A real worker whose pool process is killed (billiard's "Process ... exited with ..."
    was a plain-text line), then asked for its threads' stacks (SIGUSR1, Celery's "cry") and
    stopped: every line it wrote is a JSON object."""
    env = json_env(voice_dir, tmp_path)
    worker = start_worker(env, tmp_path)
    try:
        parent = psutil.Process(worker.proc.pid)
        first = parent.children()[0]
        first.kill()
        worker.wait_for("exited with", timeout=30)
        eventually(
            lambda: [c for c in parent.children() if c.pid != first.pid],
            "a new pool process",
            timeout=120,
        )
        os.kill(worker.proc.pid, signal.SIGUSR1)
        worker.wait_for("MainThread", timeout=30)
    finally:
        worker.stop()
    records = parse_lines(worker.output(), "worker")
    exits = [r for r in records if "exited with" in r["message"]]
    assert exits and exits[0]["level"] == "ERROR", exits
    report.record(
        "logs",
        "the worker's pool process killed (SIGKILL), then SIGUSR1 (stack dump) and a stop",
        f"all {len(records)} lines the worker wrote are JSON, the pool exit an ERROR line",
    )


STRAY = """
import sys, threading, traceback
from worker import joblog
joblog._configure()
print("printed to stdout")
threading.Thread(target=lambda: 1 / 0, name="callback").start()
try:
    raise RuntimeError("printed traceback")
except RuntimeError:
    traceback.print_exc()
"""


def test_stray_worker_output_becomes_json_lines(tmp_path: Path) -> None:
    """What a worker process prints outside logging once its logging is set up (a thread's
    uncaught exception, which Python prints as a traceback; ``traceback.print_exc()``; a
    ``print``) comes out as JSON lines: Celery redirects stdout and stderr into logging only
    when it configures logging itself, which the worker's own setup replaces."""
    env = base_env(log_format="json", log_level="INFO")
    done = subprocess.run(
        [sys.executable, "-c", STRAY],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    records = parse_lines(done.stdout + done.stderr, "worker")
    messages = "\n".join(r["message"] for r in records)
    for wanted in ("printed to stdout", "ZeroDivisionError", "RuntimeError: printed traceback"):
        assert wanted in messages, (wanted, messages)
