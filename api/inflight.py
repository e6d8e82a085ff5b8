"""Which job is already rendering a cache key, so identical requests in flight share one synthesis.

With a Redis result backend the registry lives in Redis (``SET NX``), shared by every API process
and machine; otherwise it is per process, and the worker's own "already stored?" check catches
what slips through. An entry only names a job: whether that job is still alive is read from the
result backend by the caller, so a crashed or failed leader never blocks its key.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Protocol

from common.jobs import DELETE_IF_OWNER, redis_client

_PREFIX = "moksori:inflight:"

# Compare-and-set: take over ``key`` from a dead leader only if nobody else did in the meantime.
_REPLACE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""


class Inflight(Protocol):
    """A registry of cache key -> the job rendering it."""

    def claim(self, key: str, job_id: str) -> str | None:
        """Register ``job_id`` as the renderer of ``key``; returns the current leader's job id
        instead when there already is one."""

    def replace(self, key: str, old: str, new: str) -> bool:
        """Make ``new`` the leader if ``old`` still is; False when someone else got there."""

    def release(self, key: str, job_id: str) -> None:
        """Forget ``key`` if ``job_id`` leads it (a job that could not be queued)."""


class RedisInflight:
    """The registry in Redis, shared by all API processes."""

    def __init__(self, client: Any, ttl_s: int, namespace: str) -> None:
        self._client = client
        self._ttl = max(1, int(ttl_s))
        self._prefix = f"{_PREFIX}{namespace}:"
        self._replace = client.register_script(_REPLACE)
        self._release = client.register_script(DELETE_IF_OWNER)

    def claim(self, key: str, job_id: str) -> str | None:
        name = self._prefix + key
        if self._client.set(name, job_id, nx=True, ex=self._ttl):
            return None
        leader = self._client.get(name)
        if leader is None:  # expired between the two calls: try once more
            return None if self._client.set(name, job_id, nx=True, ex=self._ttl) else job_id
        return leader.decode() if isinstance(leader, bytes) else str(leader)

    def replace(self, key: str, old: str, new: str) -> bool:
        return bool(self._replace(keys=[self._prefix + key], args=[old, new, self._ttl]))

    def release(self, key: str, job_id: str) -> None:
        self._release(keys=[self._prefix + key], args=[job_id])


class LocalInflight:
    """The registry in this process's memory (for the embedded SQLite result backend)."""

    def __init__(self, ttl_s: int) -> None:
        self._ttl = ttl_s
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[str, float]] = {}

    def _leader(self, key: str) -> str | None:
        entry = self._entries.get(key)
        if entry is None or entry[1] < time.monotonic():
            self._entries.pop(key, None)
            return None
        return entry[0]

    def claim(self, key: str, job_id: str) -> str | None:
        with self._lock:
            leader = self._leader(key)
            if leader is None:
                self._entries[key] = (job_id, time.monotonic() + self._ttl)
            return leader

    def replace(self, key: str, old: str, new: str) -> bool:
        with self._lock:
            if self._leader(key) != old:
                return False
            self._entries[key] = (new, time.monotonic() + self._ttl)
            return True

    def release(self, key: str, job_id: str) -> None:
        with self._lock:
            if self._leader(key) == job_id:
                del self._entries[key]


def open_inflight(backend: Any, ttl_s: int, namespace: str) -> Inflight:
    """The shared registry when the result backend is Redis, else a per-process one.

    ``namespace`` (the deployment's queue prefix) keeps deployments sharing a Redis apart.
    ``ttl_s`` bounds how long a lost job can hold its key: after it, an identical request
    queues anew (the worker's storage check keeps that from costing a second synthesis)."""
    client = redis_client(backend)
    if client is not None:
        return RedisInflight(client, ttl_s, namespace)
    return LocalInflight(ttl_s)
