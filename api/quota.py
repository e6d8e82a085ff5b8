"""How many jobs each client has queued or running (``MOKSORI_MAX_QUEUED_PER_CLIENT``).

A client holds one slot per job it caused to be sent to a worker: cache hits and requests that
join an identical job in flight take none. A slot is taken just before the job is published and
given back when the job is not published after all. It ends when its job reaches a final state
(read from the result backend, only when the client is at its cap) or, for a job lost without
one, after its deadline (2x ``MOKSORI_TASK_TIME_LIMIT``).

With a Redis result backend the slots live in Redis, one sorted set per client scored by deadline,
and a Lua script takes a slot only below the cap, so the cap holds across every API process and
machine. Otherwise they are per process (the embedded SQLite set-up runs on one machine).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any, Protocol

from common.jobs import job_status, redis_client

_PREFIX = "moksori:queued:"
_SWEEP_ABOVE = 1024

# Take a slot if the client is below the cap. KEYS[1]: the client's set; ARGV: now, the slot's
# deadline, the cap, the job id, the set's own expiry in seconds.
_TAKE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


class Quota(Protocol):
    """Slots of queued-or-running jobs per client."""

    cap: int

    def take(self, client: str, job_id: str) -> bool:
        """Give ``job_id`` a slot of ``client``'s; False when the client is at the cap."""

    def give_back(self, client: str, job_id: str) -> None:
        """Free ``job_id``'s slot (a job that was not published after all)."""


def _live(states: Iterable[str | None]) -> list[bool]:
    return [job_status(state or "PENDING") in {"queued", "running"} for state in states]


class RedisQuota:
    """Slots in Redis, shared by all API processes."""

    def __init__(self, backend: Any, cap: int, ttl_s: int, namespace: str) -> None:
        self.cap = cap
        self._backend = backend
        self._client = backend.client
        self._ttl = max(1, int(ttl_s))
        self._prefix = f"{_PREFIX}{namespace}:"
        self._take = self._client.register_script(_TAKE)

    def _try(self, name: str, job_id: str) -> bool:
        now = time.time()
        args = [now, now + self._ttl, self.cap, job_id, self._ttl]
        return bool(self._take(keys=[name], args=args))

    def take(self, client: str, job_id: str) -> bool:
        if self.cap <= 0:
            return True
        name = self._prefix + client
        if self._try(name, job_id):
            return True
        ended = self._ended(name)
        if ended:
            self._client.zrem(name, *ended)
        # Even with nothing to sweep: a concurrent take may have swept what refused this one.
        return self._try(name, job_id)

    def _ended(self, name: str) -> list[str]:
        """The ids in ``name`` whose job is over (or unknown), read in one round trip."""
        ids = [
            i.decode() if isinstance(i, bytes) else str(i) for i in self._client.zrange(name, 0, -1)
        ]
        if not ids:
            return []
        values = self._backend.mget([self._backend.get_key_for_task(i) for i in ids])
        states = [self._backend.decode_result(v).get("status") if v else None for v in values]
        return [i for i, live in zip(ids, _live(states), strict=True) if not live]

    def give_back(self, client: str, job_id: str) -> None:
        if self.cap > 0:
            self._client.zrem(self._prefix + client, job_id)


class LocalQuota:
    """Slots in this process's memory (for the embedded SQLite result backend)."""

    def __init__(self, backend: Any, cap: int, ttl_s: int) -> None:
        self.cap = cap
        self._backend = backend
        self._ttl = ttl_s
        self._lock = threading.Lock()
        self._slots: dict[str, dict[str, float]] = {}

    def _try(self, client: str, job_id: str) -> bool:
        with self._lock:
            now = time.monotonic()
            if len(self._slots) > _SWEEP_ABOVE:  # forget clients whose slots all expired
                self._slots = {
                    c: s for c, s in self._slots.items() if max(s.values(), default=0) > now
                }
            slots = {i: t for i, t in self._slots.get(client, {}).items() if t > now}
            self._slots[client] = slots
            if len(slots) >= self.cap:
                return False
            slots[job_id] = now + self._ttl
            return True

    def take(self, client: str, job_id: str) -> bool:
        if self.cap <= 0:
            return True
        if self._try(client, job_id):
            return True
        with self._lock:
            ids = list(self._slots.get(client, {}))
        states = [self._backend.get_task_meta(i).get("status") for i in ids]
        ended = [i for i, live in zip(ids, _live(states), strict=True) if not live]
        with self._lock:
            for job in ended:
                self._slots.get(client, {}).pop(job, None)
        # Even with nothing to sweep: a concurrent take may have swept what refused this one.
        return self._try(client, job_id)

    def give_back(self, client: str, job_id: str) -> None:
        with self._lock:
            self._slots.get(client, {}).pop(job_id, None)


def open_quota(backend: Any, cap: int, ttl_s: int, namespace: str) -> Quota:
    """Shared slots when the result backend is Redis, else per-process ones.

    ``namespace`` (the deployment's queue prefix) keeps deployments sharing a Redis apart."""
    if redis_client(backend) is not None:
        return RedisQuota(backend, cap, ttl_s, namespace)
    return LocalQuota(backend, cap, ttl_s)
