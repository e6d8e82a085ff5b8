"""Sentence claims on the real Redis (worker/claims.py): one holder at a time, and a job
waiting for a sentence it handed out wakes when the helper announces it, not at its next
look."""

from __future__ import annotations

import threading
import time
import uuid

import redis

from tests.support import BACKEND_URL
from worker.claims import RedisClaims


def claims(namespace: str = "") -> RedisClaims:
    namespace = namespace or f"test-{uuid.uuid4().hex[:8]}"
    return RedisClaims(redis.Redis.from_url(BACKEND_URL), namespace)


def test_one_holder_at_a_time_and_released_after() -> None:
    namespace = f"test-{uuid.uuid4().hex[:8]}"
    first, second = claims(namespace), claims(namespace)  # two processes of one deployment
    with first.holding("wav/1/a.wav") as mine:
        assert mine and first.held("wav/1/a.wav")
        with second.holding("wav/1/a.wav") as theirs:
            assert not theirs
    assert not first.held("wav/1/a.wav")
    with second.holding("wav/1/a.wav") as theirs:
        assert theirs


def test_a_waiting_job_wakes_when_its_helper_announces() -> None:
    shared = claims()
    job = uuid.uuid4().hex
    announced = threading.Timer(0.3, shared.announce, args=(job,))
    started = time.monotonic()
    announced.start()
    shared.wait(job, 5.0)
    woke = time.monotonic() - started
    announced.join()
    assert 0.25 <= woke < 1.0, woke  # the announcement ended the wait, not the 5 s bound


def test_an_announcement_made_before_the_wait_is_not_lost() -> None:
    shared = claims()
    job = uuid.uuid4().hex
    shared.announce(job)
    started = time.monotonic()
    shared.wait(job, 5.0)
    assert time.monotonic() - started < 1.0
    # Read once: the next wait with no news waits its bound, and another job's news is not it.
    shared.announce(uuid.uuid4().hex)
    started = time.monotonic()
    shared.wait(job, 0.3)
    assert time.monotonic() - started >= 0.25
