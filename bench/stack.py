"""The service under test: workers and the API as ``make run`` starts them, on RabbitMQ + Redis,
with a queue prefix, a Redis database and a media folder of the run's own; from this checkout,
or from the code of an earlier git revision (:func:`code_at`) to compare with."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import shutil
import subprocess
import tarfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import requests
from amqp.exceptions import NotFound
from kombu import Connection

from common.config import Settings
from common.jobs import TASK_NAME, make_celery, member_queue
from common.repository import MANIFEST_NAME, scan
from harness.processes import REPO, Process, start_api, start_worker

_LOGGER = logging.getLogger("bench")

BROKER_URL = os.environ.get("BENCH_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
BACKEND_URL = os.environ.get("BENCH_RESULT_BACKEND", "redis://127.0.0.1:6379/13")


@dataclass
class WorkerStart:
    """How long a worker took to serve, and what its processes hold in memory."""

    seconds: float
    loaded_in: float
    main_rss_mb: float
    pool_rss_mb: float


@dataclass(frozen=True)
class Streamed:
    """A job followed through its audio stream, timed from the POST that queued it."""

    job_id: str
    first_s: float
    """Until the first bytes of ``GET /api/jobs/<id>/audio`` (the first sentence's audio)."""
    total_s: float
    """Until the stream's end, which comes once the job is done (its record says so)."""
    size: int
    """Bytes streamed."""


@dataclass
class Stack:
    voice_dir: Path
    workdir: Path
    threads: int
    queue: str
    members: list[int]
    batch_size: int = 1
    code: Path = REPO
    """The checkout whose code the processes run."""
    workers: list[Process] = field(default_factory=list)
    api: Process | None = None
    base: str = ""
    closed: bool = False
    _local: threading.local = field(default_factory=threading.local)

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOKSORI_")}
        env.update(
            PYTHONPATH=str(self.code),
            PYTHONUNBUFFERED="1",
            OMP_NUM_THREADS=str(self.threads),
            MOKSORI_BROKER_URL=BROKER_URL,
            MOKSORI_RESULT_BACKEND=BACKEND_URL,
            MOKSORI_STORAGE_URL=f"file://{self.workdir / 'media'}",
            MOKSORI_VOICE_DIR=str(self.voice_dir),
            MOKSORI_QUEUE=self.queue,
            MOKSORI_DEVICE="cpu",
            MOKSORI_TORCH_THREADS=str(self.threads),
            MOKSORI_BATCH_SIZE=str(self.batch_size),
            # One client floods the service on purpose here: per-client limits would cut it off.
            MOKSORI_RATE_LIMIT="off",
            MOKSORI_MAX_QUEUED_PER_CLIENT="0",
            # The bench's bursts (100 concurrent ?wait) measure waits, not their bound: every
            # request may wait, however gunicorn shares the connections between its processes.
            MOKSORI_API_THREADS="128",
            MOKSORI_MAX_WAITING="120",
        )
        return env

    def add_worker(self) -> WorkerStart:
        """Start one more worker process and wait until it consumes its queues."""
        started = time.monotonic()
        worker = start_worker(
            self.env, self.workdir, name=f"worker{len(self.workers) + 1}", cwd=self.code
        )
        seconds = time.monotonic() - started
        self.workers.append(worker)
        match = re.search(r"loaded in ([0-9.]+) s", worker.output())
        main = psutil.Process(worker.proc.pid)
        return WorkerStart(
            seconds=seconds,
            loaded_in=float(match.group(1)) if match else float("nan"),
            main_rss_mb=main.memory_info().rss / 2**20,
            pool_rss_mb=sum(c.memory_info().rss for c in main.children(recursive=True)) / 2**20,
        )

    def stop_workers(self, keep: int = 0) -> None:
        """Stop every worker process after the first ``keep``."""
        for worker in self.workers[keep:]:
            worker.stop()
        del self.workers[keep:]

    def scale_to(self, count: int) -> None:
        """Exactly ``count`` worker processes, consuming."""
        self.stop_workers(keep=count)
        while len(self.workers) < count:
            self.add_worker()
        self.wait_served(count)

    def start_api(self) -> None:
        self.api, self.base = start_api(self.env, self.workdir, cwd=self.code)

    def wait_served(self, count: int, timeout: float = 60) -> None:
        """Until RabbitMQ shows ``count`` consumers on every member queue we use."""
        deadline = time.monotonic() + timeout
        with Connection(BROKER_URL) as conn:
            while time.monotonic() < deadline:
                counts = [_consumers(conn, member_queue(self.queue, m)) for m in self.members]
                if min(counts) >= count:
                    return
                time.sleep(0.2)
        raise RuntimeError(
            f"workers on {self.queue} did not start consuming within {timeout:.0f} s; "
            f"the last worker's output:\n{self.workers[-1].output()[-2000:]}"
        )

    def session(self) -> requests.Session:
        """One keep-alive HTTP session per client thread."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def post(self, body: Any, query: str = "", **kwargs: Any) -> tuple[float, requests.Response]:
        if body is not None:
            kwargs["json"] = body
        started = time.perf_counter()
        response = self.session().post(f"{self.base}/api/texts{query}", timeout=120, **kwargs)
        return time.perf_counter() - started, response

    def status(self, job_id: str) -> dict[str, Any]:
        return self.session().get(f"{self.base}/api/jobs/{job_id}", timeout=30).json()

    def stream(self, body: Any) -> Streamed:
        """POST a new text (no wait), then read its job's audio stream to the end; RuntimeError
        when the text is not queued or the stream is refused."""
        started = time.perf_counter()
        _, response = self.post(body)
        if response.status_code != 202:
            raise RuntimeError(f"new text not queued: {response.status_code} {response.text}")
        job_id = response.json()["job_id"]
        url = f"{self.base}/api/jobs/{job_id}/audio"
        with self.session().get(url, stream=True, timeout=120) as audio:
            if audio.status_code != 200:
                raise RuntimeError(f"stream refused: {audio.status_code} {audio.text}")
            parts = audio.iter_content(chunk_size=None)
            size = len(next(parts, b""))
            first_s = time.perf_counter() - started
            size += sum(len(part) for part in parts)
        return Streamed(job_id, first_s, time.perf_counter() - started, size)

    def worker_seconds(self, job_id: str) -> tuple[float, float]:
        """(model, whole pipeline) seconds the worker recorded for a job (``SynthesisResult``)."""
        celery = make_celery(Settings.from_env(self.env), main="bench")
        try:
            result = celery.backend.get_task_meta(job_id).get("result") or {}
        finally:
            celery.close()
        return float(result.get("synthesis_s", "nan")), float(result.get("pipeline_s", "nan"))

    def tasks_run(self) -> int:
        """Tasks the workers have executed, from ``celery inspect stats``."""
        celery = make_celery(Settings.from_env(self.env), main="bench")
        try:
            stats = celery.control.inspect([w.hostname for w in self.workers], timeout=5).stats()
        finally:
            celery.close()
        return sum(s["total"].get(TASK_NAME, 0) for s in (stats or {}).values())

    def api_rss_mb(self) -> tuple[float, bool]:
        """The API's resident memory (gunicorn master and workers) and whether torch is mapped."""
        assert self.api is not None
        procs = [psutil.Process(self.api.proc.pid)]
        procs += procs[0].children(recursive=True)
        torch = any("libtorch" in m.path for p in procs for m in p.memory_maps())
        return sum(p.memory_info().rss for p in procs) / 2**20, torch

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) used so far by each part of the system on this machine."""
        groups: dict[str, list[psutil.Process]] = {"API": [], "workers": []}
        if self.api is not None:
            groups["API"] = _tree(self.api.proc.pid)
        for worker in self.workers:
            groups["workers"] += _tree(worker.proc.pid)
        groups["RabbitMQ"] = [
            p for p in psutil.process_iter(["name"]) if p.info["name"] == "beam.smp"
        ]
        groups["Redis"] = [
            p for p in psutil.process_iter(["name"]) if p.info["name"] == "redis-server"
        ]
        groups["client (this process)"] = [psutil.Process()]
        out = {}
        for name, procs in groups.items():
            total = 0.0
            for proc in procs:
                try:
                    times = proc.cpu_times()
                except psutil.NoSuchProcess:
                    continue
                total += times.user + times.system
            out[name] = total
        # Everything else busy on the machine (another engineer's tests, a niced training):
        # what a shared machine takes from the figures above.
        machine = psutil.cpu_times()._asdict()
        busy = sum(machine.get(k, 0.0) for k in ("user", "nice", "system", "irq", "softirq"))
        out["other processes"] = busy - sum(out.values())
        return out

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.api is not None:
            self.api.stop()
        self.stop_workers()
        # The workers declared a queue for every voice they serve, not only the measured one.
        served = set(scan(self.voice_dir).voices) | set(self.members)
        with Connection(BROKER_URL) as conn:
            for m in sorted(served):
                conn.default_channel.queue_delete(member_queue(self.queue, m))


def _consumers(conn: Connection, queue: str) -> int:
    channel = conn.channel()  # its own: a 404 closes the channel it happens on
    try:
        return int(channel.queue_declare(queue, passive=True)[2])
    except NotFound:
        return 0  # not declared yet: its worker is still loading its voices
    finally:
        with contextlib.suppress(Exception):
            channel.close()


def self_contained(voice_dir: Path, into: Path) -> Path:
    """A copy of ``voice_dir`` in which each manifest names files inside its own folder only
    (copies of any it shares), as revisions from before shared vocoders require. Such a
    revision also ignores ``vocoder.refine`` and runs the generator alone: compare its serving
    overhead (each job's wait minus its own model time), not its model time."""
    shutil.copytree(voice_dir, into, ignore=shutil.ignore_patterns(".train", "__pycache__"))
    for manifest in sorted((into / "voices").glob(f"*/{MANIFEST_NAME}")):
        data = json.loads(manifest.read_text(encoding="utf-8"))
        for part in ("tts", "vocoder"):
            files = data.get(part)
            if not isinstance(files, dict):
                continue
            for role in ("checkpoint", "config"):
                source = (manifest.parent / files[role]).resolve()
                if source.parent != manifest.parent.resolve():
                    shutil.copyfile(source, manifest.parent / source.name)
                    files[role] = source.name
        manifest.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    return into


def code_at(rev: str, into: Path) -> Path | None:
    """The service's code (``api``, ``common``, ``worker``, ``launcher``) at git revision
    ``rev``, extracted into ``into``; None when git cannot give it (no repository, a shallow
    clone). Run with this checkout's venv, so it measures that revision's code alone."""
    try:
        archive = subprocess.run(
            ["git", "archive", "--format=tar", rev, "api", "common", "worker", "launcher"],
            cwd=REPO,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        _LOGGER.warning("git cannot give revision %s (%s); no comparison with it", rev, exc)
        return None
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def _tree(pid: int) -> list[psutil.Process]:
    proc = psutil.Process(pid)
    return [proc, *proc.children(recursive=True)]
