"""A machine without the services still runs ``make test``: each test that needs a missing
service is skipped with a message naming it, and ``MOKSORI_REQUIRE_SERVICES=1`` (CI) turns that
skip into a failure."""

from __future__ import annotations

import os
import subprocess
import sys

from harness.processes import REPO, free_port

PAGE_TEST = "tests/integration/test_web.py::test_page_and_assets_are_served"


def run_without_services(require: bool) -> subprocess.CompletedProcess[str]:
    """The page test, with the broker and Redis on closed ports and no Chromium."""
    closed = free_port()
    env = {k: v for k, v in os.environ.items() if k != "MOKSORI_REQUIRE_SERVICES"}
    env.update(
        TEST_BROKER_URL=f"amqp://guest:guest@127.0.0.1:{closed}//",
        TEST_RESULT_BACKEND=f"redis://127.0.0.1:{closed}/15",
        TEST_CHROMIUM="/nonexistent/chromium",
    )
    if require:
        env["MOKSORI_REQUIRE_SERVICES"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", PAGE_TEST],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_missing_services_are_named_in_the_skip() -> None:
    result = run_without_services(require=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout
    assert "needs RabbitMQ, Redis and Chromium, not found on this machine" in result.stdout


def test_required_services_fail_instead() -> None:
    result = run_without_services(require=True)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "MOKSORI_REQUIRE_SERVICES=1: every test must run" in result.stdout
