"""``GET /readyz``: whether this deployment can take a job now, answered within a second.

Three checks, run side by side in a small thread pool, each with its own timeout:

* ``broker``: a fresh connection to the broker (connect, handshake and replies each bounded;
  not the publishing pool of :mod:`common.fleet`, whose timeouts are ``MOKSORI_PUBLISH_TIMEOUT``);
* ``workers``: at least one worker consumes a member queue (RabbitMQ's consumer count of each
  member's queue, read on that same connection). The embedded filesystem broker keeps no
  consumer list, so there the answer is honestly ``unknown`` (and does not fail readiness);
* ``storage``: a small probe object is written and removed (a local file or a GCS object);
  local storage must also have ``MOKSORI_STORAGE_MIN_FREE_MB`` free, room for a typical object.

A check runs at most once at a time per API process (a request that finds one under way waits
for it instead of starting another) and its result is kept for a few seconds (``TTL_S``), so a
scraper polling ``/readyz`` cannot turn it into a storm of broker connections or storage writes.
A check that has not answered by the deadline counts as failed ("no answer within ..."), while it
finishes in the background. Any error becomes a plain reason, never a 500.

``/readyz`` is open (probes carry no key), so what it says to anyone is only which check
failed, in fixed words; the reason with its internals (a folder, a bucket, the broker's error,
the queue names) is shown only to a request with a valid API key, and logged.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from amqp.exceptions import NotFound
from flask import Response, current_app, jsonify
from flask_openapi3 import APIBlueprint, Tag
from kombu import Connection
from pydantic import BaseModel, ConfigDict, Field

from api.auth import has_valid_key
from api.errors import NOT_READY, error_response
from api.openapi import RETRY_AFTER, MoksoriAPI, error
from common.config import Settings
from common.jobs import member_queue
from common.storage import GCSStorage, LocalStorage

_LOGGER = logging.getLogger(__name__)

bp = APIBlueprint("readiness", __name__, abp_tags=[Tag(name="health")])

ANSWER_WITHIN_S = 0.75
"""The whole answer's budget: every check is started at once and waited for this long."""
CHECK_TIMEOUT_S = 0.7
"""Each check's own bound (connect, handshake, each reply, each storage call)."""
TTL_S = {"broker": 1.0, "storage": 5.0}
"""How long a check's result is reused; storage is probed at most once per 5 s per process."""
RETRY_AFTER_S = 5
_EXTENSION = "moksori.readiness"


@dataclass(frozen=True)
class Check:
    """One check's outcome: ``ok`` True, False (not ready) or None (cannot tell); ``detail``
    in words anyone may read, ``internal`` the same with what only an operator should see
    (paths, bucket, the broker's error), when there is more to say."""

    ok: bool | None
    detail: str
    data: dict[str, Any] = field(default_factory=dict)
    internal: str = ""

    def reason(self, full: bool) -> str:
        return (self.internal or self.detail) if full else self.detail

    def view(self, full: bool) -> dict[str, Any]:
        status = {True: "ok", False: "failed", None: "unknown"}[self.ok]
        return {"status": status, "detail": self.reason(full), **self.data}


@dataclass(frozen=True)
class QueueCounts:
    """What the broker check learned: consumers per member queue (None: the broker can't say)."""

    consumers: dict[int, int] | None


class _Probe:
    """A check run at most once at a time, its result reused for ``ttl`` seconds."""

    def __init__(self, run: Callable[[], Any], ttl: float, pool: ThreadPoolExecutor) -> None:
        self._run = run
        self._ttl = ttl
        self._pool = pool
        self._lock = threading.Lock()
        self._running: Future[Any] | None = None
        self._done: Future[Any] | None = None
        self._expires = 0.0

    def start(self) -> Future[Any]:
        """The current result if still fresh, else the run under way, else a new run."""
        with self._lock:
            if self._done is not None and time.monotonic() < self._expires:
                return self._done
            if self._running is not None:
                return self._running
            future = self._running = self._pool.submit(self._run)
        future.add_done_callback(self._finished)  # outside the lock: it may run right here
        return future

    def _finished(self, future: Future[Any]) -> None:
        with self._lock:
            self._done, self._running = future, None
            self._expires = time.monotonic() + self._ttl


class Readiness:
    """The checks of one API process (kept in ``app.extensions``)."""

    def __init__(
        self, settings: Settings, storage: LocalStorage | GCSStorage, members: list[int]
    ) -> None:
        self._settings = settings
        self._storage = storage
        self._members = sorted(members)
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="readyz")
        self._broker = _Probe(self._probe_broker, TTL_S["broker"], self._pool)
        self._storage_probe = _Probe(self._probe_storage, TTL_S["storage"], self._pool)
        self._log_lock = threading.Lock()
        self._last_problem: str | None = None

    def checks(self, budget_s: float = ANSWER_WITHIN_S) -> dict[str, Check]:
        """Every check's outcome within ``budget_s`` seconds, whatever the dependencies do."""
        broker, storage = self._broker.start(), self._storage_probe.start()
        wait([broker, storage], timeout=budget_s)
        broker_check, fleet = _outcome(broker, "the broker", budget_s)
        storage_check, _ = _outcome(storage, "storage", budget_s)
        return {
            "broker": broker_check,
            "workers": self._workers(fleet),
            "storage": storage_check,
        }

    def report(self, problem: str) -> None:
        """Log a change of readiness once, not at every probe (a scraper polls every second)."""
        with self._log_lock:
            if problem == self._last_problem:
                return
            self._last_problem = problem
        if problem:
            _LOGGER.warning("not ready: %s", problem)
        else:
            _LOGGER.info("ready")

    def _workers(self, fleet: QueueCounts | None) -> Check:
        if fleet is None:
            return Check(None, "cannot tell without the broker")
        if fleet.consumers is None:
            return Check(
                None,
                "cannot tell: the embedded filesystem broker keeps no list of consumers "
                "(use RabbitMQ to have this checked)",
            )
        if not self._members:
            voice_dir = self._settings.voice_dir
            return Check(False, "no voices: nothing to serve", internal=f"no voices in {voice_dir}")
        served = {m: n for m, n in fleet.consumers.items() if n > 0}
        unserved = [m for m in self._members if m not in served]
        data = {"consumers": {str(m): fleet.consumers.get(m, 0) for m in self._members}}
        if not served:
            return Check(
                False,
                "no worker consumes any member queue: start a worker",
                data,
                internal=f"no worker consumes any member queue ({self._settings.queue}.<member>)"
                ": start a worker",
            )
        detail = f"{len(served)} of {len(self._members)} members served"
        if unserved:
            detail += f"; no worker for member(s) {', '.join(map(str, unserved))}"
        return Check(True, detail, data)

    def _probe_broker(self) -> tuple[Check, QueueCounts]:
        url = self._settings.broker_url
        if url.startswith("filesystem"):
            folder = self._settings.broker_dir / "queue"
            if folder.is_dir() and os.access(folder, os.W_OK | os.X_OK):
                found = Check(
                    True, "embedded filesystem broker", internal=f"embedded broker in {folder}"
                )
                return found, QueueCounts(None)
            lost = Check(
                False,
                "the embedded broker's folder is not writable",
                internal=f"the embedded broker's folder {folder} is not writable",
            )
            return lost, QueueCounts(None)
        timeout = CHECK_TIMEOUT_S
        options = {"read_timeout": timeout, "write_timeout": timeout}
        amqp = url.startswith(("amqp", "pyamqp"))
        with Connection(
            url, connect_timeout=timeout, transport_options=options if amqp else {}
        ) as conn:
            conn.ensure_connection(max_retries=0, timeout=timeout)
            if not amqp:
                return Check(True, "connected"), QueueCounts(None)
            queues = {m: member_queue(self._settings.queue, m) for m in self._members}
            consumers = {m: _consumers(conn, queue) for m, queue in queues.items()}
        return Check(True, "connected"), QueueCounts(consumers)

    def _probe_storage(self) -> tuple[Check, None]:
        if isinstance(self._storage, GCSStorage):
            self._storage.probe(timeout=CHECK_TIMEOUT_S)
            where = f"gs://{self._storage.bucket_name}"
        else:
            self._storage.probe()  # first: it makes the root if need be
            free_mb = self._storage.free_bytes() / 2**20
            wanted_mb = self._settings.storage_min_free_mb
            if free_mb < wanted_mb:
                reason = (
                    f"only {free_mb:.1f} MB free, under MOKSORI_STORAGE_MIN_FREE_MB "
                    f"({wanted_mb} MB): a typical object may not fit"
                )
                return Check(False, reason), None
            where = str(self._storage.root)
        done = "a probe object was written and removed"
        return Check(True, done, internal=f"{done} ({where})"), None


def _consumers(conn: Connection, queue: str) -> int:
    """Consumers of ``queue`` (0 when it was never declared), on a channel of its own."""
    channel = conn.channel()
    try:
        _, _, consumers = channel.queue_declare(queue=queue, passive=True)
        return int(consumers)
    except NotFound:
        return 0  # no worker ever declared it
    finally:
        try:
            channel.close()
        except Exception:  # a channel closed by the 404 needs no closing
            _LOGGER.debug("closing the probe channel of %s failed", queue)


def _outcome(future: Future[Any], what: str, budget_s: float) -> tuple[Check, Any]:
    """A finished probe's (check, extra), or a failed check saying why it has none."""
    if not future.done():
        return Check(False, f"{what} did not answer within {budget_s:g} s"), None
    exc = future.exception()
    if exc is not None:
        public = f"{what} is unreachable"
        if _timed_out(exc):
            public += f": no answer within {CHECK_TIMEOUT_S:g} s"
        return Check(False, public, internal=f"{what} is unreachable: {_plain(exc)}"), None
    result: tuple[Check, Any] = future.result()
    return result


def _timed_out(exc: BaseException) -> bool:
    return isinstance(exc, TimeoutError) or "timed out" in str(exc).lower()


def _plain(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if _timed_out(exc):
        return f"no answer within {CHECK_TIMEOUT_S:g} s ({text})"
    return text


class ReadyCheck(BaseModel):
    """One check of a ready deployment."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["ok", "unknown"] = Field(
        description="`unknown`: cannot be told (the workers on the embedded filesystem broker); "
        "not a failure."
    )
    detail: str = Field(description="What was found, in plain words.")
    consumers: dict[str, Annotated[int, Field(ge=0)]] | None = Field(
        default=None,
        description="`workers` on RabbitMQ: consumers of each member's queue, by member id.",
    )


class ReadyChecks(BaseModel):
    model_config = ConfigDict(extra="forbid")

    broker: ReadyCheck
    workers: ReadyCheck
    storage: ReadyCheck


class Ready(BaseModel):
    """``GET /readyz`` when every check passes."""

    model_config = ConfigDict(
        extra="forbid", openapi_extra={"description": "Broker, workers and storage are fine."}
    )

    status: Literal["ready"]
    checks: ReadyChecks


NOT_READY_ERRORS = error(
    "A check failed; `error.message` names each failed check and why, in plain words",
    NOT_READY,
    headers=RETRY_AFTER,
)


def init_app(
    app: MoksoriAPI, settings: Settings, storage: LocalStorage | GCSStorage, members: list[int]
) -> None:
    """Register ``/readyz`` with this process's checks."""
    app.extensions[_EXTENSION] = Readiness(settings, storage, members)
    app.register_api(bp)


@bp.get(
    "/readyz",
    operation_id="ready",
    summary="Broker reachable, a worker consuming, storage writable",
    description="Answered within a second: each check has its own timeout, and results are "
    "reused for a moment (the storage probe for 5 s). `workers` is `unknown` on the embedded "
    "filesystem broker, which keeps no list of consumers; unknown is not a failure.",
    responses={200: Ready, 503: NOT_READY_ERRORS},
)
def readyz() -> Response:
    """200 with every check, or 503 (``Retry-After``) naming each failed check and why (with
    internals only for a request with a valid API key)."""
    readiness: Readiness = current_app.extensions[_EXTENSION]
    try:
        checks = readiness.checks()
    except Exception as exc:  # a readiness answer is never a 500
        _LOGGER.exception("readiness checks failed unexpectedly")
        checks = {
            "readiness": Check(
                False,
                "the checks themselves failed",
                internal=f"the checks themselves failed: {_plain(exc)}",
            )
        }
    full = has_valid_key()
    failed = {name: check for name, check in checks.items() if check.ok is False}
    if not failed:
        readiness.report("")
        checks_view = {name: check.view(full) for name, check in checks.items()}
        return jsonify({"status": "ready", "checks": checks_view})
    readiness.report("; ".join(f"{name}: {c.reason(True)}" for name, c in failed.items()))
    problem = "; ".join(f"{name}: {check.reason(full)}" for name, check in failed.items())
    response = error_response(NOT_READY, f"Not ready: {problem}.")
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response
