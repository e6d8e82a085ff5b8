"""The delivery limit (worker/deliveries.py) on the real result backends: Redis and SQLite."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from common.config import Settings
from common.jobs import SynthesisError, make_celery
from tests.support import BACKEND_URL
from worker import deliveries


@pytest.fixture(params=["redis", "sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path):
    url = BACKEND_URL if request.param == "redis" else f"db+sqlite:///{tmp_path / 'results.sqlite'}"
    app = make_celery(Settings.from_env({}, result_backend=url), main="deliveries-test")
    yield app.backend
    app.close()


def test_starts_are_counted_per_job_and_message(backend) -> None:
    """Each start adds one; jobs are counted apart, and so are a job's retries (each retry is
    a message of its own, not a crash)."""
    job, other = str(uuid.uuid4()), str(uuid.uuid4())
    assert deliveries.count_start(backend, job, 60) == 1
    assert deliveries.count_start(backend, job, 60) == 2
    assert deliveries.count_start(backend, other, 60) == 1
    deliveries.guard(backend, job, max_deliveries=2, ttl_s=60, retries=1)  # a fresh count


def test_guard_fails_a_job_past_the_limit(backend) -> None:
    """Starts up to the limit pass; the next one fails the job with a plain reason."""
    job = str(uuid.uuid4())
    deliveries.guard(backend, job, max_deliveries=3, ttl_s=60)  # delivery 1
    deliveries.guard(backend, job, max_deliveries=3, ttl_s=60)  # delivery 2
    deliveries.guard(backend, job, max_deliveries=3, ttl_s=60)  # delivery 3
    with pytest.raises(SynthesisError, match="stopped 3 times"):
        deliveries.guard(backend, job, max_deliveries=3, ttl_s=60)
