"""Prometheus metrics against the running service: the API's /metrics under gunicorn with two
worker processes (one of them replaced midway), and a worker's metrics port, both parsed with
prometheus-client's own text-format parser."""

from __future__ import annotations

import itertools
import signal
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import requests
from kombu import Connection
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from common.config import Settings
from common.jobs import TASK_NAME, make_celery, member_queue
from harness.processes import Process, free_port, start_api
from launcher import worker_argv
from tests.support import BROKER_URL, base_env, eventually

MEMBER = 3
Samples = list[Sample]


@dataclass
class MetricsStack:
    base: str
    api: Process
    worker: Process
    api_dir: Path
    worker_dir: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def stack(voice_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MetricsStack]:
    """A worker serving member 3 whose pool process is replaced after every job (so its metrics
    come from several processes) and the API (gunicorn, 2 processes), each with a metrics
    directory of its own that holds a stale file from an 'earlier run'."""
    logs = tmp_path_factory.mktemp("metrics")
    queue = f"moksori-metrics-{uuid.uuid4().hex[:8]}"
    env = base_env(
        voice_dir=str(voice_dir),
        storage_url=f"file://{logs / 'media'}",
        queue=queue,
        members=str(MEMBER),
        torch_threads="1",
        rate_limit="off",
        max_queued_per_client="0",
    )
    dirs = {name: logs / f"prom-{name}" for name in ("api", "worker")}
    for path in dirs.values():
        path.mkdir()
        (path / "counter_999999.db").write_bytes(b"stale")
    worker = start_recycling_worker({**env, "PROMETHEUS_MULTIPROC_DIR": str(dirs["worker"])}, logs)
    try:
        api, base = start_api({**env, "PROMETHEUS_MULTIPROC_DIR": str(dirs["api"])}, logs)
    except BaseException:
        worker.stop()
        raise
    try:
        yield MetricsStack(base, api, worker, dirs["api"], dirs["worker"], env)
    finally:
        api.stop()
        worker.stop()
        with Connection(BROKER_URL) as conn:
            channel = conn.channel()
            for name in (queue, member_queue(queue, MEMBER)):
                channel.queue_delete(name)


def start_recycling_worker(env: dict[str, str], logs: Path) -> Process:
    """harness.processes.start_worker's worker, with a new pool process for every job."""
    port = free_port()
    worker = Process(
        "worker",
        [
            *worker_argv(f"metrics-{uuid.uuid4().hex[:6]}@localhost"),
            *("--max-tasks-per-child", "1", "--without-gossip", "--without-mingle"),
        ],
        {**env, "MOKSORI_WORKER_METRICS_PORT": str(port)},
        logs,
    )
    worker.metrics_port = port
    try:
        worker.wait_for("worker ready on", timeout=180)
        worker.wait_for("ready.", timeout=60)
    except BaseException:
        worker.stop()
        raise
    return worker


def pool_pids(directory: Path, kind: str) -> set[int]:
    """The processes that left ``kind`` files (``counter``, ``gauge_livemax``) in ``directory``."""
    return {int(p.stem.rsplit("_", 1)[1]) for p in directory.glob(f"{kind}_*.db")}


def scrape(url: str, **kwargs: object) -> Samples:
    response = requests.get(url, timeout=10, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    return [s for family in text_string_to_metric_families(response.text) for s in family.samples]


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 when there are none)."""
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def gunicorn_workers(api: Process) -> set[int]:
    return {child.pid for child in psutil.Process(api.proc.pid).children()}


def get_many(url: str, count: int) -> None:
    """``count`` GETs in parallel, each on its own connection."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: requests.get(url, timeout=10).status_code, range(count)))
    assert len(statuses) == count


def test_metrics_dirs_are_emptied_at_start(stack: MetricsStack) -> None:
    """Whoever starts the processes (gunicorn's master, the worker's main process) removes the
    files an earlier run left in its metrics directory."""
    assert not (stack.api_dir / "counter_999999.db").exists()
    assert not (stack.worker_dir / "counter_999999.db").exists()


def test_api_requests_add_up_across_processes(stack: MetricsStack) -> None:
    """Requests are counted by route template and status, exactly, over both gunicorn processes
    and one that was replaced midway; junk paths and job ids make no new series; the latency
    histogram's buckets are cumulative and end in the count."""
    url = f"{stack.base}/metrics"
    before = scrape(url)
    healthz = {"route": "/healthz", "method": "GET", "status": "200"}
    jobs = {"route": "/api/jobs/<job_id>", "method": "GET", "status": "404"}
    unmatched = {"route": "<unmatched>", "method": "GET", "status": "404"}

    get_many(f"{stack.base}/healthz", 12)
    for _ in range(3):
        assert requests.get(f"{stack.base}/api/jobs/{uuid.uuid4()}", timeout=10).status_code == 404
    for _ in range(2):
        assert requests.get(f"{stack.base}/nope/{uuid.uuid4()}", timeout=10).status_code == 404

    # Replace one gunicorn worker: its counts must survive it.
    old = gunicorn_workers(stack.api)
    assert len(old) == 2
    victim = min(old)
    psutil.Process(victim).send_signal(signal.SIGTERM)
    eventually(lambda: victim not in (now := gunicorn_workers(stack.api)) and len(now) == 2)
    get_many(f"{stack.base}/healthz", 8)

    after = scrape(url)
    total = "moksori_api_requests_total"
    assert value(after, total, **healthz) - value(before, total, **healthz) == 20
    assert value(after, total, **jobs) - value(before, total, **jobs) == 3
    assert value(after, total, **unmatched) - value(before, total, **unmatched) == 2
    routes = {s.labels["route"] for s in after if s.name == total}
    assert not any("nope" in route or "-" in route for route in routes), routes

    # Every process that served requests left its own file, the replaced one's included.
    pids = pool_pids(stack.api_dir, "counter")
    assert victim in pids and len(pids) >= 2, pids

    # Each API process answers /metrics with the same sums.
    again = [value(scrape(url), total, **healthz) for _ in range(4)]
    assert again == [value(after, total, **healthz)] * 4

    hist = "moksori_api_request_duration_seconds"
    labels = {"route": "/healthz", "method": "GET"}
    count = value(after, hist + "_count", **labels)
    assert count - value(before, hist + "_count", **labels) == 20
    buckets = sorted(
        (float(s.labels["le"]), s.value)
        for s in after
        if s.name == hist + "_bucket" and s.labels["route"] == "/healthz"
    )
    assert buckets[-1] == (float("inf"), count)
    assert all(a[1] <= b[1] for a, b in itertools.pairwise(buckets))
    assert value(after, hist + "_sum", **labels) > 0


def post_text(base: str, text: str, wait: int = 0) -> dict:
    response = requests.post(
        f"{base}/api/texts" + (f"?wait={wait}" if wait else ""),
        json={"member_id": MEMBER, "text": text},
        timeout=60,
    )
    assert response.status_code in {200, 202}, response.text
    return response.json()


def job_done(base: str, job_id: str) -> bool:
    status = requests.get(f"{base}/api/jobs/{job_id}", timeout=10).json()["status"]
    assert status != "failed"
    return status == "done"


def test_jobs_cache_hits_joins_and_worker_metrics(stack: MetricsStack) -> None:
    """The API counts queued jobs, cache hits and joins by member; the worker's port counts the
    jobs done, run by two pool processes in turn, with their audio seconds, synthesis time,
    real-time factor and voice load time; a pool process that exited has no live gauge left."""
    api_url = f"{stack.base}/metrics"
    worker_url = f"http://127.0.0.1:{stack.worker.metrics_port}/metrics"
    member = {"member": str(MEMBER)}
    before, worker_before = scrape(api_url), scrape(worker_url)

    text = f"안녕하세요 {uuid.uuid4().hex[:6]}."
    first = post_text(stack.base, text, wait=60)
    assert first["status"] == "done" and not first["cached"]
    assert post_text(stack.base, text)["cached"]

    # A long text, twice at once: the second joins the first while it is queued or running.
    long_text = " ".join(f"목소리 {uuid.uuid4().hex[:4]} 점검 중입니다." for _ in range(12))
    leader = post_text(stack.base, long_text)
    follower = post_text(stack.base, long_text)
    assert follower["job_id"] == leader["job_id"]
    eventually(lambda: job_done(stack.base, leader["job_id"]), timeout=120)

    after = scrape(api_url)
    for name, delta in (
        ("moksori_api_jobs_queued_total", 2),
        ("moksori_api_cache_hits_total", 1),
        ("moksori_api_jobs_joined_total", 1),
    ):
        assert value(after, name, **member) - value(before, name, **member) == delta, name

    done = {"member": str(MEMBER), "outcome": "done"}
    jobs = "moksori_worker_jobs_total"
    eventually(
        lambda: value(scrape(worker_url), jobs, **done) - value(worker_before, jobs, **done) == 2
    )
    worker = scrape(worker_url)
    # One synthesis for the short text, one per sentence of the long one (each made once).
    for name in ("moksori_worker_synthesis_seconds_count", "moksori_worker_real_time_factor_count"):
        assert value(worker, name, **member) - value(worker_before, name, **member) == 13, name
    audio = "moksori_worker_audio_seconds_total"
    assert value(worker, audio, **member) - value(worker_before, audio, **member) > 1.0
    rtf = value(worker, "moksori_worker_real_time_factor_sum", **member)
    assert rtf > 0
    loads = [s for s in worker if s.name == "moksori_worker_voice_load_seconds"]
    assert [(s.labels["member"], s.value > 0) for s in loads] == [(str(MEMBER), True)]
    assert loads[0].labels["version"]
    assert value(worker, jobs, outcome="failed") == 0

    # Two jobs, two pool processes (each exits after its job), one sum; the exited ones were
    # marked dead: only live pool processes count as holding the voice.
    ran_jobs = pool_pids(stack.worker_dir, "counter")
    assert len(ran_jobs) >= 2, ran_jobs
    loaded = "moksori_worker_voices_loaded"
    eventually(lambda: value(scrape(worker_url), loaded, **member) == 1)
    live = {child.pid for child in psutil.Process(stack.worker.proc.pid).children()}
    assert pool_pids(stack.worker_dir, "gauge_livesum") <= live


def test_metrics_auth(voice_dir: Path, tmp_path: Path) -> None:
    """With MOKSORI_METRICS_AUTH and keys, /metrics without a key is a 401 in the JSON error
    shape and with one is the text format; a POST is a JSON 405."""
    key = "metrics-test-key-0123456789"
    env = base_env(
        voice_dir=str(voice_dir),
        storage_url=f"file://{tmp_path / 'media'}",
        queue=f"moksori-metrics-{uuid.uuid4().hex[:8]}",
        api_keys=key,
        metrics_auth="true",
    )
    api, base = start_api(env, tmp_path)
    try:
        response = requests.get(f"{base}/metrics", timeout=10)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
        wrong = requests.get(
            f"{base}/metrics", headers={"Authorization": "Bearer " + "x" * 20}, timeout=10
        )
        assert wrong.status_code == 401
        assert wrong.json()["error"]["code"] == "invalid_api_key"
        samples = scrape(f"{base}/metrics", headers={"Authorization": f"Bearer {key}"})
        assert value(samples, "moksori_api_requests_total", route="/metrics", status="401") == 2
        refused = requests.post(f"{base}/metrics", timeout=10)
        assert refused.status_code in {401, 405}
        assert "error" in refused.json()
    finally:
        api.stop()


def test_failed_jobs_count_under_one_member_label(stack: MetricsStack) -> None:
    """A job for a member this worker does not serve (sent straight to its queue) counts as
    failed under ``member="other"``: message contents make no new series."""
    worker_url = f"http://127.0.0.1:{stack.worker.metrics_port}/metrics"
    failed = {"member": "other", "outcome": "failed"}
    jobs = "moksori_worker_jobs_total"
    before = value(scrape(worker_url), jobs, **failed)
    celery = make_celery(Settings.from_env(stack.env), main="test-client")
    try:
        job = celery.send_task(
            TASK_NAME,
            kwargs={"member_id": 987654, "text": "안녕하세요"},
            queue=member_queue(stack.env["MOKSORI_QUEUE"], MEMBER),
        )
        job.get(timeout=120, propagate=False)
        assert job.state == "FAILURE"
    finally:
        celery.close()
    eventually(lambda: value(scrape(worker_url), jobs, **failed) - before == 1)
    members = {s.labels["member"] for s in scrape(worker_url) if s.name == jobs}
    assert members <= {str(MEMBER), "other"}, members


def test_killed_pool_process_is_forgotten(stack: MetricsStack) -> None:
    """A pool process killed outright (as the OOM killer would) runs no exit hook; the next
    scrape forgets its live gauges, so the voice counts as held once, by its replacement."""
    worker_url = f"http://127.0.0.1:{stack.worker.metrics_port}/metrics"
    loaded = "moksori_worker_voices_loaded"
    main = psutil.Process(stack.worker.proc.pid)
    ready: list[psutil.Process] = []

    def settled() -> bool:
        """One pool process, done loading (the one before it may still be on its way out)."""
        ready[:] = main.children()
        holding = pool_pids(stack.worker_dir, "gauge_livesum")
        return len(ready) == 1 and ready[0].pid in holding

    eventually(settled, timeout=120)
    victim = ready[0]
    victim.send_signal(signal.SIGKILL)
    replacement: list[int] = []

    def replaced() -> bool:
        replacement[:] = [c.pid for c in main.children() if c.pid != victim.pid]
        return bool(replacement)

    eventually(replaced, timeout=60)
    eventually(lambda: replacement[0] in pool_pids(stack.worker_dir, "gauge_livesum"), timeout=120)
    assert victim.pid in pool_pids(stack.worker_dir, "gauge_livesum")  # until a scrape
    assert value(scrape(worker_url), loaded, member=str(MEMBER)) == 1
    assert victim.pid not in pool_pids(stack.worker_dir, "gauge_livesum")


def test_labelled_counters_start_at_zero(stack: MetricsStack) -> None:
    """Each known member's job counters are series from the start, at 0 until their first
    event: the API's queued, cache hits and joins for every member it lists, and the worker's
    jobs by outcome for the member it serves (no job in this module is ever retried)."""
    members = requests.get(f"{stack.base}/api/members", timeout=10).json()["members"]
    known = {str(m["id"]) for m in members}
    assert len(known) >= 3
    api = scrape(f"{stack.base}/metrics")
    for name in (
        "moksori_api_jobs_queued_total",
        "moksori_api_cache_hits_total",
        "moksori_api_jobs_joined_total",
    ):
        series = {s.labels["member"]: s.value for s in api if s.name == name}
        assert known <= set(series), (name, series)
        assert all(series[m] == 0 for m in known - {str(MEMBER)}), (name, series)
    worker = scrape(f"http://127.0.0.1:{stack.worker.metrics_port}/metrics")
    jobs = {
        (s.labels["member"], s.labels["outcome"]): s.value
        for s in worker
        if s.name == "moksori_worker_jobs_total"
    }
    for outcome in ("done", "failed", "retried"):
        assert (str(MEMBER), outcome) in jobs, jobs
    assert jobs[(str(MEMBER), "retried")] == 0
