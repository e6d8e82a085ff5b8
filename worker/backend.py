"""The worker's result backend: Celery's Redis backend, except that a job waits out a Redis
outage instead of failing, and gives its message back if the outage outlasts what it can wait.

Why: with late acks, Celery's tracer stores the STARTED state after taking a message and before
the body runs. When Redis is down that write raises; Celery reports it as an error "outside
body" and acknowledges the message, so the job is gone while its record reads ``queued`` (or
``running``, when the SUCCESS write after the body is the one that failed). Here every write a
job makes (STARTED, SUCCESS, FAILURE, RETRY, and :mod:`worker.deliveries`' count) is retried
with backoff while the job has time left; then, rather than failing the job, it raises
``Reject(requeue=True)``, which Celery's tracer lets through and the worker turns into a
requeue of the unacknowledged message. While a pool process waits it holds its one prefetched
message, so the worker takes no further work: jobs stay in RabbitMQ until Redis is back.

Waiting happens only inside a job (between ``task_prerun`` and ``task_postrun``, in the pool
process): the worker's main process, which runs the event loop and the broker heartbeats,
keeps Celery's fail-fast behaviour. The worker names this class in :func:`common.jobs.make_celery`;
the API keeps the plain backend, since a request must answer 503 at once, not wait.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any, TypeVar

from celery import states
from celery.backends.redis import RedisBackend
from celery.exceptions import Reject
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

_LOGGER = logging.getLogger(__name__)

T = TypeVar("T")

CLASS_PATH = "worker.backend:PatientRedisBackend"
"""What :func:`common.jobs.make_celery` names for the worker's Redis result backend."""
FIRST_RETRY_S = 0.5
MAX_RETRY_S = 1.0
MARGIN_S = 10.0
"""Time kept between giving a message back and the job's soft time limit: one last write
attempt (a connect timeout and redis-py's own retries) must not run into the limit."""

UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)
"""What "Redis cannot be reached" raises (BusyLoadingError, a Redis still loading its AOF, is a
ConnectionError); anything else is a real error and fails as Celery would."""

_deadline: float | None = None
"""When the job this process runs must stop waiting (monotonic), or None outside a job."""


def job_started(soft_limit_s: float | None, hard_limit_s: float | None) -> None:
    """Start the wait budget of the job this process is about to run: its soft time limit
    (else its hard one) minus a margin, since the limits' clocks run while it waits."""
    global _deadline
    limit = soft_limit_s or hard_limit_s
    if not limit:
        _deadline = math.inf  # nothing will stop the job: it may wait as long as it takes
        return
    _deadline = time.monotonic() + max(limit - min(MARGIN_S, limit / 4), 0.0)


def job_ended() -> None:
    """Leave the job: writes outside one fail fast again."""
    global _deadline
    _deadline = None


class PatientRedisBackend(RedisBackend):
    """A Redis result backend whose writes, inside a job, wait for Redis to come back."""

    def store_result(
        self,
        task_id: str,
        result: Any,
        state: str,
        traceback: Any = None,
        request: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Store a job's state; inside a job, wait out an outage (then give the message back).

        A STARTED record gets the time it was written (``started_at``, Unix seconds), so the
        API can tell a job that can no longer be running from a long one."""
        if state == states.STARTED and isinstance(result, dict):
            result = {**result, "started_at": time.time()}
        store = super().store_result
        # A retry is already published as a message of its own; giving this one back as well
        # would run the job twice. Its record says STARTED until the retry starts.
        return self.patiently(
            f"store {state} of job {task_id}",
            lambda: store(task_id, result, state, traceback, request, **kwargs),
            give_back=state != states.RETRY,
        )

    def patiently(self, what: str, call: Callable[[], T], give_back: bool = True) -> T | None:
        """``call()``, retried every 0.5-1 s while Redis cannot be reached and the running job
        has time left; then ``Reject(requeue=True)`` (or, with ``give_back`` false, None: the
        write is skipped). Outside a job, one attempt, as Celery would make."""
        deadline = _deadline
        if deadline is None:
            return call()
        waiting_since: float | None = None
        delay = FIRST_RETRY_S
        while True:
            try:
                answer = call()
            except UNREACHABLE as exc:
                now = time.monotonic()
                if waiting_since is None:
                    waiting_since = now
                    _LOGGER.warning(
                        "result backend unreachable (%s); waiting to %s, up to %.0f s",
                        exc,
                        what,
                        deadline - now,
                    )
                if now + delay >= deadline:
                    waited = now - waiting_since
                    if not give_back:
                        _LOGGER.warning(
                            "result backend still unreachable after %.0f s; did not %s",
                            waited,
                            what,
                        )
                        return None
                    _LOGGER.warning(
                        "result backend still unreachable after %.0f s; giving the message "
                        "back to the queue instead (could not %s)",
                        waited,
                        what,
                    )
                    raise Reject(exc, requeue=True) from exc
                time.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_S)
            else:
                if waiting_since is not None:
                    _LOGGER.warning(
                        "result backend reachable again after %.1f s; did %s",
                        time.monotonic() - waiting_since,
                        what,
                    )
                return answer
