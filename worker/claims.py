"""Which worker process is making a sentence right now, so that a sentence is made once even
when several jobs in flight contain it or its job handed it to other processes.

A claim is a Redis key (``SET NX`` with a short expiry) that its holder renews while it works;
a killed holder's claim lapses within :data:`CLAIM_TTL_S` and anyone may take the sentence
over. Claims only decide who makes a sentence: whether it is made is read from storage, which
stays the one source of truth. Without a Redis result backend every claim is granted, nothing is
shared across processes, and a job makes its sentences itself.

A process that made (or gave up) a sentence a job handed out tells that job so
(:meth:`RedisClaims.announce`, a Redis list the job blocks on), so the job goes on at once
instead of finding out at its next look.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from redis.exceptions import RedisError

from common.jobs import DELETE_IF_OWNER, redis_client

_LOGGER = logging.getLogger(__name__)

_PREFIX = "moksori:making:"
_NEWS_PREFIX = "moksori:made:"
NEWS_TTL_S = 60.0
"""How long an announcement waits for its job to read it."""
CLAIM_TTL_S = 6.0
"""How long a claim outlives its last renewal (renewed every third of it): the longest a
sentence waits for a process that died while making it."""

# Renew a claim only while it is still ours (it may have lapsed and been taken).
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


class Claims(Protocol):
    """Claims on sentences, by storage key."""

    shared: bool
    """True when claims are seen by every worker process (then a job may hand sentences out)."""

    def holding(self, key: str) -> Any:
        """A context manager giving True when this process now makes ``key`` (the claim is
        renewed for the block and released after it), False when another process holds it."""

    def held(self, key: str) -> bool:
        """Whether some process holds a live claim on ``key``."""

    def announce(self, job_id: str) -> None:
        """Tell job ``job_id`` that one of its handed-out sentences is stored or free again."""

    def wait(self, job_id: str, seconds: float) -> None:
        """Block until an announcement to ``job_id`` (at once if one is pending), at most
        ``seconds``: a claim another job holds is never announced to this one."""


class RedisClaims:
    """Claims in the result backend's Redis, seen by every worker process."""

    shared = True

    def __init__(self, client: Any, namespace: str, ttl_s: float = CLAIM_TTL_S) -> None:
        self._client = client
        self._prefix = f"{_PREFIX}{namespace}:"
        self._news_prefix = f"{_NEWS_PREFIX}{namespace}:"
        self._ttl_ms = int(ttl_s * 1000)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(DELETE_IF_OWNER)

    def held(self, key: str) -> bool:
        try:
            return bool(self._client.exists(self._prefix + key))
        except RedisError as exc:  # cannot tell: treat as free, storage dedupes the upload
            _LOGGER.warning("sentence claims unavailable: %s", exc)
            return False

    @contextmanager
    def holding(self, key: str) -> Iterator[bool]:
        name, token = self._prefix + key, uuid.uuid4().hex
        try:
            taken = bool(self._client.set(name, token, nx=True, px=self._ttl_ms))
        except RedisError as exc:  # no claims without Redis: make it; the upload is create-only
            _LOGGER.warning("sentence claims unavailable, making %s unclaimed: %s", key, exc)
            yield True
            return
        if not taken:
            yield False
            return
        stop = threading.Event()
        renewer = threading.Thread(
            target=self._keep, args=(name, token, stop), name="claim-renewer", daemon=True
        )
        renewer.start()
        try:
            yield True
        finally:
            stop.set()
            renewer.join()
            try:
                self._release(keys=[name], args=[token])
            except RedisError as exc:  # it lapses on its own
                _LOGGER.warning("could not release the claim on %s: %s", key, exc)

    def announce(self, job_id: str) -> None:
        name = self._news_prefix + job_id
        try:
            self._client.pipeline().rpush(name, 1).pexpire(name, int(NEWS_TTL_S * 1000)).execute()
        except RedisError as exc:  # the job finds out at its next look
            _LOGGER.warning("could not tell job %s about its sentence: %s", job_id, exc)

    def wait(self, job_id: str, seconds: float) -> None:
        try:
            self._client.blpop([self._news_prefix + job_id], timeout=seconds)
        except RedisError as exc:
            _LOGGER.warning("cannot wait for news of job %s: %s", job_id, exc)
            time.sleep(seconds)

    def _keep(self, name: str, token: str, stop: threading.Event) -> None:
        while not stop.wait(self._ttl_ms / 3000):
            try:
                self._renew(keys=[name], args=[token, self._ttl_ms])
            except RedisError as exc:
                _LOGGER.warning("could not renew a sentence claim: %s", exc)


class LocalClaims:
    """Every claim granted: for result backends other than Redis, where nothing is shared."""

    shared = False

    def held(self, key: str) -> bool:
        return False

    @contextmanager
    def holding(self, key: str) -> Iterator[bool]:
        yield True

    def announce(self, job_id: str) -> None:
        pass  # nothing is handed out without shared claims

    def wait(self, job_id: str, seconds: float) -> None:
        time.sleep(seconds)


def open_claims(backend: Any, namespace: str) -> Claims:
    """Shared claims when the result backend is Redis, else :class:`LocalClaims`.
    ``namespace`` (the deployment's queue prefix) keeps deployments sharing a Redis apart."""
    client = redis_client(backend)
    if client is not None:
        return RedisClaims(client, namespace)
    return LocalClaims()
