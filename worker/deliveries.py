"""A limit on how often one job is handed to a worker, so a poison job cannot loop forever.

With late acks and ``task_reject_on_worker_lost``, a job whose worker process dies (killed,
out of memory, a segfault in native code) goes back to its queue: that is what keeps accepted
jobs from being lost. A job that *causes* the death would come back forever, taking one worker
down each time. RabbitMQ marks a message ``redelivered`` when it returns after its consumer went
away, but classic queues do not count deliveries, so the count is kept in the result backend,
next to the job's state, and only on redeliveries: a first delivery pays nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from common.jobs import SynthesisError, redis_client

_LOGGER = logging.getLogger(__name__)

_PREFIX = "moksori:deliveries:"
_COUNTING = "DELIVERIES"


def count_redelivery(backend: Any, job_id: str, ttl_s: int) -> int:
    """Record one more delivery of ``job_id`` (which was delivered before); returns how many
    deliveries it has had, this one included (2 on the first redelivery)."""
    client = redis_client(backend)
    if client is not None:  # Redis: one atomic round trip
        key = _PREFIX + job_id
        with client.pipeline() as pipe:
            pipe.incr(key)
            pipe.expire(key, max(1, ttl_s))
            count, _ = pipe.execute()
        return int(count) + 1
    # Any other backend: a record of its own beside the job's, in a state Celery does not treat
    # as final (final states are cached by the backend and would never be read again).
    record_id = f"{job_id}.deliveries"
    previous = backend.get_task_meta(record_id).get("result")
    count = (previous if isinstance(previous, int) else 0) + 1
    backend.store_result(record_id, count, _COUNTING)
    return count + 1


def guard(backend: Any, job_id: str, max_deliveries: int, ttl_s: int) -> None:
    """Fail a redelivered job that has now been delivered more than ``max_deliveries`` times."""
    deliveries = count_redelivery(backend, job_id, ttl_s)
    _LOGGER.warning("job %s delivered again (delivery %d)", job_id, deliveries)
    if deliveries > max_deliveries:
        raise SynthesisError(
            f"The worker stopped {deliveries - 1} times while running this job (crashed or was "
            "killed), so it is not tried again."
        )
