"""Which members some worker serves right now, read from RabbitMQ's consumer count per queue.

A worker consumes exactly the queues of the members it serves (``MOKSORI_MEMBERS``), so a member
queue with no consumer is a member nobody would synthesize: the API answers 503 at once instead
of letting the job wait forever; a worker leading a long text hands sentences out only when
another worker shares its member's queue. A passive ``queue.declare`` costs one round trip; a
positive answer is remembered for a couple of seconds so the request path rarely pays even that.
Transports without consumer counts (the embedded filesystem broker) report ``None``: unknown.
"""

from __future__ import annotations

import contextlib
import threading
import time

from amqp.exceptions import NotFound
from celery import Celery

from common.jobs import member_queue

POSITIVE_TTL_S = 2.0


class Fleet:
    """Consumer counts of the member queues, cached briefly when positive."""

    def __init__(self, celery: Celery, queue_prefix: str, timeout_s: float) -> None:
        self._celery = celery
        self._prefix = queue_prefix
        self._timeout = timeout_s
        url = str(celery.conf.broker_url or "")
        self.observable = url.startswith(("amqp:", "amqps:", "pyamqp:"))
        self._lock = threading.Lock()
        self._seen: dict[int, tuple[int, float]] = {}

    def consumers(self, member_id: int) -> int | None:
        """How many workers consume member ``member_id``'s queue; None if the broker can't say.

        Raises the broker's connection errors (the caller turns them into a 503)."""
        if not self.observable:
            return None
        now = time.monotonic()
        with self._lock:
            cached = self._seen.get(member_id)
        if cached is not None and cached[1] > now:
            return cached[0]
        count = self._count(member_queue(self._prefix, member_id))
        if count > 0:
            with self._lock:
                self._seen[member_id] = (count, now + POSITIVE_TTL_S)
        return count

    def waiting(self, member_id: int) -> int | None:
        """How many messages wait (ready, not taken by a worker) in member ``member_id``'s
        queue, never cached; None if the broker can't say. Raises the broker's connection
        errors."""
        if not self.observable:
            return None
        return self._declare(member_queue(self._prefix, member_id))[0]

    def _count(self, queue: str) -> int:
        return self._declare(queue)[1]

    def _declare(self, queue: str) -> tuple[int, int]:
        """The queue's ready messages and consumers (0, 0 when it was never declared).

        A pooled connection can be dead without knowing it (the broker restarted while this
        process was idle): kombu's ``ensure`` then reconnects once and declares again, as
        Celery's publish does with its retry policy, so the first request after a broker
        restart is answered rather than refused."""
        with self._celery.pool.acquire(block=True, timeout=self._timeout) as conn:
            conn.ensure_connection(max_retries=1, timeout=self._timeout)

            def declare() -> tuple[int, int]:
                channel = conn.channel()  # its own: a 404 closes the channel it happens on
                try:
                    _, messages, consumers = channel.queue_declare(queue=queue, passive=True)
                except NotFound:
                    return 0, 0  # never declared: no worker has ever served this member
                finally:
                    with contextlib.suppress(Exception):  # a channel the 404 closed is fine
                        channel.close()
                return int(messages), int(consumers)

            # The connection is the object revived: a reconnection leaves it nothing to rebuild.
            return conn.ensure(conn, declare, max_retries=1, interval_start=0)()
