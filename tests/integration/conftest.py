"""Integration tests drive real processes against the local services: every test here needs
RabbitMQ and Redis (on top of what its own ``@pytest.mark.needs(...)`` names, see
tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The hook sees the whole session's items, not only this folder's.
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.needs("RabbitMQ", "Redis"))
