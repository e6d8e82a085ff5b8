"""Fixtures every test may use: tiny real voices, a queue name of its own, a service-account
key and the storage emulator; and the robustness report written at the end of the session.

``tests/unit/`` needs nothing but this repository's requirements; ``tests/integration/`` needs
the local services (see its conftest). A test that needs more says so with
``@pytest.mark.needs(...)`` (the names of :data:`tests.support.SERVICES`): where one is missing
the test is skipped with a message naming it, or fails when ``MOKSORI_REQUIRE_SERVICES=1`` (as
``.ci/run`` sets), so CI never passes by skipping. Plain helpers are in :mod:`tests.support`."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import voice_factory
from harness.processes import REPO, Process, free_port
from tests import report
from tests.support import (
    REQUIRE_SERVICES,
    SERVICE_ACCOUNT,
    missing_services,
    start_gcs_emulator,
)


@pytest.fixture(scope="session")
def voice_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A voice repository with three tiny real voices (both layouts) and one broken one."""
    return voice_factory.build_repository(tmp_path_factory.mktemp("voices"))


@pytest.fixture
def queue_name() -> str:
    """A queue of the test's own, so parallel runs and leftovers never mix."""
    return f"moksori-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def service_account_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A service-account key file made here (a fresh RSA key, as Google's JSON key format has
    it): what GOOGLE_APPLICATION_CREDENTIALS names so signed URLs are signed for real. The
    storage emulator checks no signature, so any key works against it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "moksori-local",
        "private_key_id": uuid.uuid4().hex,
        "private_key": pem,
        "client_email": SERVICE_ACCOUNT,
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    path = tmp_path_factory.mktemp("gcp") / "service-account.json"
    path.write_text(json.dumps(info), encoding="utf-8")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="session")
def gcs_emulator(gcs_emulator_process: Process) -> str:
    """The storage emulator's host URL (for STORAGE_EMULATOR_HOST); bucket ``moksori-test``."""
    return gcs_emulator_process.hostname


@pytest.fixture(scope="session")
def gcs_emulator_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    """gcp-storage-emulator on a free port with a bucket ``moksori-test``; its ``hostname`` is
    its URL and its log shows every request it was sent."""
    emulator = start_gcs_emulator(free_port(), tmp_path_factory.mktemp("gcs"))
    yield emulator
    emulator.stop()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write the fault and bad-input report the tests recorded (tests/report.py)."""
    report.write(REPO / "var" / "reports" / "robustness.md")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip (or, under MOKSORI_REQUIRE_SERVICES=1, fail) a test whose services are missing."""
    wanted: list[str] = []
    for mark in item.iter_markers("needs"):
        wanted.extend(name for name in mark.args if name not in wanted)
    missing = missing_services(tuple(wanted))
    if not missing:
        return
    names = ", ".join(missing[:-1]) + " and " + missing[-1] if len(missing) > 1 else missing[0]
    message = f"needs {names}, not found on this machine"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} (MOKSORI_REQUIRE_SERVICES=1: every test must run)")
    pytest.skip(message)
