"""Probes under hostile clients: the API under gunicorn with a real, slow worker takes 200
concurrent ``?wait`` POSTs and 50 slow clients (headers sent a byte at a time, bodies that stop
halfway) while ``/healthz`` and ``/readyz`` are probed every 0.2 s. Every probe must answer
within a second, every POST must be answered (200 or 202, the surplus at once with
``Moksori-Wait: declined``), every slow client must be cut off after
``MOKSORI_REQUEST_READ_TIMEOUT``, and no accepted job may be lost.

The load runs on one asyncio loop (raw sockets, so slow clients can be really slow) in a thread
of its own; the probes run in another, so their timings are not the load's.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import requests
from kombu import Connection

from common.jobs import member_queue
from harness import voice_factory
from tests import report
from tests.support import BROKER_URL, Stack, eventually, stack_on

SLOW = 2  # the fault repository's Griffin-Lim voice: about a second a sentence
WAITERS = 200
SLOW_CLIENTS = 50
WAIT_S = 10
READ_TIMEOUT_S = 3
MAX_WAITING = 8
PROBE_EVERY_S = 0.2
PROBE_WITHIN_S = 1.0
TIMEOUT_LINE = "HTTP/1.1 408 Request Timeout"
CUT_MARGIN_S = 2.0
"""Past the read deadline a slow client may still be connected: the worker's event loop looks
at deadlines at least once a second, and the machine is shared."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A worker with the slow voice and the API on a queue of their own."""
    logs = tmp_path_factory.mktemp("probes")
    voices = voice_factory.build_fault_repository(logs / "voices")
    with stack_on(  # 200 POSTs from one address: no rate limit, no queue cap
        voices,
        logs,
        "probes",
        rate_limit="off",
        max_queued_per_client="0",
        max_waiting=str(MAX_WAITING),
        request_read_timeout=str(READ_TIMEOUT_S),
    ) as stack:
        yield stack


@dataclass
class Answer:
    """One ``?wait`` POST: its status, job id, ``Moksori-Wait`` header and time to answer."""

    status: int
    job_id: str | None
    declined: bool
    took: float


@dataclass
class Load:
    """What the load saw: the POSTs' answers and how long each slow client stayed connected."""

    answers: list[Answer] = field(default_factory=list)
    unanswered: list[str] = field(default_factory=list)
    slow_held: list[float] = field(default_factory=list)
    slow_answers: Counter[str] = field(default_factory=Counter)


async def post_wait(port: int, n: int, load: Load) -> None:
    """One ``POST /api/texts?wait=WAIT_S`` of a distinct slow sentence, read to the end."""
    body = json.dumps({"member_id": SLOW, "text": f"{uuid.uuid4().hex[:6]} {n}번 바다를 봅니다."})
    data = body.encode()
    head = (
        f"POST /api/texts?wait={WAIT_S} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    sent = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head + data)
        raw = await asyncio.wait_for(reader.read(), timeout=WAIT_S + 20)
        writer.close()
    except (OSError, TimeoutError) as exc:
        load.unanswered.append(f"POST {n}: {exc!r}")
        return
    took = time.monotonic() - sent
    head_bytes, _, payload = raw.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/1.1 "):
        load.unanswered.append(f"POST {n}: {raw[:200]!r}")
        return
    status = int(lines[0].split()[1])
    declined = any(line.lower() == "moksori-wait: declined" for line in lines[1:])
    job_id = json.loads(payload).get("job_id") if status in {200, 202} else None
    load.answers.append(Answer(status, job_id, declined, took))


async def slow_client(port: int, n: int, until: float, load: Load) -> None:
    """A client that never finishes its request, reconnecting each time it is cut off: even ones
    send headers a byte every 0.3 s, odd ones a whole head and half the body it announced."""
    request = (
        b"POST /api/texts HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"member_id": 2, "text": "'
    )
    while time.monotonic() < until:
        opened = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            if n % 2:
                writer.write(request)
                answer = await reader.read()
            else:
                reading = asyncio.ensure_future(reader.read())
                for byte in request:
                    if reading.done():
                        break
                    writer.write(bytes([byte]))
                    await asyncio.wait([reading], timeout=0.3)
                answer = await reading
        except OSError:
            answer = b"reset"
        finally:
            writer.close()
        load.slow_held.append(time.monotonic() - opened)
        load.slow_answers[answer.split(b"\r\n")[0].decode("latin-1") or "closed"] += 1


async def run_load(port: int, load: Load) -> None:
    until = time.monotonic() + WAIT_S
    slow = [slow_client(port, n, until, load) for n in range(SLOW_CLIENTS)]
    waits = [post_wait(port, n, load) for n in range(WAITERS)]
    await asyncio.gather(*slow, *waits)


@dataclass
class Probes:
    """``/healthz`` and ``/readyz`` in turn every ``PROBE_EVERY_S`` from a thread of its own."""

    base: str
    seen: list[tuple[str, int, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        session = requests.Session()
        n = 0
        while not self._stop.is_set():
            path = ("/healthz", "/readyz")[n % 2]
            n += 1
            started = time.monotonic()
            try:
                status = session.get(f"{self.base}{path}", timeout=10).status_code
            except requests.RequestException:
                status = 0
            self.seen.append((path, status, time.monotonic() - started))
            self._stop.wait(max(0.0, started + PROBE_EVERY_S - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()


def waiting_messages(stack: Stack) -> int:
    """Messages ready in the slow member's queue (the jobs no worker has taken yet)."""
    with Connection(BROKER_URL, connect_timeout=5) as conn:
        declared = conn.channel().queue_declare(
            member_queue(stack.env["MOKSORI_QUEUE"], SLOW), passive=True
        )
        return declared.message_count


def test_probes_answer_under_waits_and_slow_clients(stack: Stack) -> None:
    """Under 200 concurrent ?wait POSTs and 50 slow clients, with a slow worker: every probe
    answers within a second, every POST gets a 200 or 202 (the ones over the waiting slots at
    once, marked declined), every slow client is cut off with a 408 after the read deadline,
    and every accepted job is done or still queued with its message in the queue."""
    port = int(stack.base.rsplit(":", 1)[1])
    eventually(lambda: requests.get(f"{stack.base}/readyz", timeout=5).ok, "the API ready")
    probes = Probes(stack.base)
    prober = threading.Thread(target=probes.run, name="probes", daemon=True)
    prober.start()
    load = Load()
    started = time.monotonic()
    try:
        asyncio.run(run_load(port, load))
    finally:
        probes.stop()
        prober.join(timeout=15)
    took = time.monotonic() - started

    slowest = max(seconds for _path, _status, seconds in probes.seen)
    late = [p for p in probes.seen if p[2] > PROBE_WITHIN_S or p[1] not in {200, 503}]
    assert not late, f"{late} of {len(probes.seen)} probes"
    assert all(status == 200 for path, status, _s in probes.seen if path == "/healthz")
    assert len(probes.seen) >= took / PROBE_EVERY_S / 2  # the prober kept going

    assert not load.unanswered, load.unanswered[:5]
    statuses = Counter(a.status for a in load.answers)
    assert set(statuses) <= {200, 202}, statuses
    assert len(load.answers) == WAITERS
    declined = [a for a in load.answers if a.declined]
    # Two processes of MAX_WAITING slots each, a slot freed when its job ends: the rest could
    # not wait, and were answered without waiting.
    assert WAITERS - len(declined) <= 2 * MAX_WAITING + statuses[200], statuses
    assert all(a.status == 202 and a.took < WAIT_S for a in declined)
    declined_took = sorted(a.took for a in declined)

    assert load.slow_held, "no slow client ran"
    assert max(load.slow_held) <= READ_TIMEOUT_S + CUT_MARGIN_S, max(load.slow_held)
    assert min(load.slow_held) >= READ_TIMEOUT_S - 0.5, min(load.slow_held)
    # A byte sent just as the server closes can make it reset the connection instead.
    assert set(load.slow_answers) <= {TIMEOUT_LINE, "reset"}, load.slow_answers
    assert load.slow_answers[TIMEOUT_LINE] >= len(load.slow_held) / 2, load.slow_answers

    # No accepted job lost: each is done, or running, or waiting in the queue. The queue only
    # shrinks from here (every POST is answered), so its length now bounds the queued jobs the
    # sweep below can see; the sweep takes a while, so a job may finish and the next start
    # during it, and a running job is checked by seeing it finish instead of by a count.
    waiting = waiting_messages(stack)
    views = {
        a.job_id: requests.get(f"{stack.base}/api/jobs/{a.job_id}", timeout=10).json()
        for a in load.answers
    }
    outcome = Counter(v["status"] for v in views.values())
    assert set(outcome) <= {"done", "queued", "running"}, outcome
    assert outcome["queued"] <= waiting + 1, (outcome, waiting)  # +1: prefetched
    running = [job for job, view in views.items() if view["status"] == "running"]
    eventually(
        lambda: all(
            requests.get(f"{stack.base}/api/jobs/{job}", timeout=10).json()["status"] == "done"
            for job in running
        ),
        "the jobs seen running finish",
    )
    report.record(
        "probes",
        f"{WAITERS} concurrent POST ?wait={WAIT_S} (slow worker, MOKSORI_MAX_WAITING="
        f"{MAX_WAITING} x 2 processes) and {SLOW_CLIENTS} slow clients (headers a byte per "
        f"0.3 s, bodies stopped halfway; MOKSORI_REQUEST_READ_TIMEOUT={READ_TIMEOUT_S}), "
        f"/healthz and /readyz probed every {PROBE_EVERY_S} s",
        f"all {len(probes.seen)} probes answered, slowest in {slowest:.2f} s; POSTs: "
        f"{statuses[200]} 200 done, {statuses[202]} 202 ({len(declined)} declined, answered "
        f"in {declined_took[len(declined_took) // 2]:.2f} s median); "
        f"{len(load.slow_held)} slow connections cut with 408 after "
        f"{min(load.slow_held):.1f}-{max(load.slow_held):.1f} s",
        WAITERS,
        0,
    )
