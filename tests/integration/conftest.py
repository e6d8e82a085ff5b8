"""Integration tests drive real processes against the local services: every test here needs
RabbitMQ and Redis, and a ``@pytest.mark.needs(...)`` names anything more (Chromium, a
``rabbitmq-server`` to start private nodes, ...; the names of :data:`tests.support.SERVICES`).

A test whose services are missing is skipped with a message naming them, or fails when
``MOKSORI_REQUIRE_SERVICES=1`` (as ``.ci/run`` sets), so CI never passes by skipping."""

from __future__ import annotations

import pytest

from tests.support import REQUIRE_SERVICES, missing_services

ALWAYS = ("RabbitMQ", "Redis")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.integration)


def pytest_runtest_setup(item: pytest.Item) -> None:
    wanted = list(ALWAYS)
    for mark in item.iter_markers("needs"):
        wanted.extend(name for name in mark.args if name not in wanted)
    missing = missing_services(tuple(wanted))
    if not missing:
        return
    names = ", ".join(missing[:-1]) + " and " + missing[-1] if len(missing) > 1 else missing[0]
    message = f"needs {names}, not found on this machine"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} (MOKSORI_REQUIRE_SERVICES=1: integration tests must run)")
    pytest.skip(message)
