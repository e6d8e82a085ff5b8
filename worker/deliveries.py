"""A limit on how often one job is started, so a poison job cannot loop forever.

With late acks and ``task_reject_on_worker_lost``, a job whose worker process dies (killed,
out of memory, a segfault in native code) goes back to its queue: that is what keeps accepted
jobs from being lost. A job that *causes* the death would come back forever, taking one worker
down each time. Classic queues do not count deliveries, and RabbitMQ's ``redelivered`` flag is
also set on a message the worker gave back on purpose (:mod:`worker.backend` does so when the
result backend is down before the job could start): an outage must not make good jobs look
poisonous. So what is counted is the number of times the task's body started on one message
(one pipelined Redis round trip per job, in the result backend next to the job's state): a
give-back before the body never counts, a crash during it always does.
"""

from __future__ import annotations

import logging
from typing import Any

from common.jobs import SynthesisError, redis_client

_LOGGER = logging.getLogger(__name__)

_PREFIX = "moksori:deliveries:"
_COUNTING = "DELIVERIES"


def _attempt_id(job_id: str, retries: int) -> str:
    return job_id if not retries else f"{job_id}.retry{retries}"


def starts(backend: Any, job_id: str, retries: int = 0) -> int:
    """How many times ``job_id``'s body has started on its message (0: never), as read by
    anyone with the result backend (operators, tests)."""
    attempt_id = _attempt_id(job_id, retries)
    client = redis_client(backend)
    if client is not None:
        return int(client.get(_PREFIX + attempt_id) or 0)
    previous = backend.get_task_meta(f"{attempt_id}.deliveries").get("result")
    return previous if isinstance(previous, int) else 0


def count_start(backend: Any, attempt_id: str, ttl_s: int) -> int:
    """Record one more start of the task's body for ``attempt_id``; returns how many there
    have been, this one included (1 on a first delivery)."""
    client = redis_client(backend)
    if client is not None:  # Redis: one atomic round trip
        key = _PREFIX + attempt_id
        with client.pipeline() as pipe:
            pipe.incr(key)
            pipe.expire(key, max(1, ttl_s))
            count, _ = pipe.execute()
        return int(count)
    # Any other backend: a record of its own beside the job's, in a state Celery does not treat
    # as final (final states are cached by the backend and would never be read again).
    record_id = f"{attempt_id}.deliveries"
    previous = backend.get_task_meta(record_id).get("result")
    count = (previous if isinstance(previous, int) else 0) + 1
    backend.store_result(record_id, count, _COUNTING)
    return count


def guard(backend: Any, job_id: str, max_deliveries: int, ttl_s: int, retries: int = 0) -> None:
    """Count this start of ``job_id``'s body and fail the job if it has now started more than
    ``max_deliveries`` times on one message (a retry is a message of its own: ``retries``).

    Inside a job, a result backend that waits out outages (:class:`worker.backend.
    PatientRedisBackend`) makes this call wait too, or give the message back."""
    attempt_id = _attempt_id(job_id, retries)
    patiently = getattr(backend, "patiently", None)
    if patiently is not None:
        starts = patiently(
            f"count the start of job {job_id}", lambda: count_start(backend, attempt_id, ttl_s)
        )
    else:
        starts = count_start(backend, attempt_id, ttl_s)
    if starts > 1:
        _LOGGER.warning("job %s delivered again (delivery %d)", job_id, starts)
    if starts > max_deliveries:
        raise SynthesisError(
            f"The worker stopped {starts - 1} times while running this job (crashed or was "
            "killed), so it is not tried again."
        )
