"""The Dockerfiles and compose file stay in step with the code (Docker itself cannot run here)."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from common.config import Settings
from tests.support import REPO

SETTINGS = {f"MOKSORI_{name.upper()}" for name in Settings.model_fields}


def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))


def test_compose_uses_only_known_settings() -> None:
    """Every MOKSORI_* variable the deployment files set is one the code reads."""
    text = "".join(
        (REPO / name).read_text(encoding="utf-8")
        for name in ("docker-compose.yml", "Dockerfile.api", "Dockerfile.worker")
    )
    used = set(re.findall(r"MOKSORI_[A-Z_]+", text))
    assert used and used <= SETTINGS, used - SETTINGS


def test_compose_services() -> None:
    """RabbitMQ with its UI, Redis, api and a GPU worker, all with healthchecks and restarts;
    the GCS emulator only in its profile."""
    services = compose()["services"]
    assert {"rabbitmq", "redis", "api", "worker", "gcs"} <= set(services)
    assert "management" in services["rabbitmq"]["image"]
    for name in ("rabbitmq", "redis", "api", "worker"):
        assert services[name]["healthcheck"]["test"], name
        assert services[name]["restart"] == "unless-stopped", name
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert services["gcs"]["profiles"] == ["gcs"]


@pytest.mark.parametrize("dockerfile", ["Dockerfile.api", "Dockerfile.worker"])
def test_dockerfiles_copy_what_exists(dockerfile: str) -> None:
    """Every COPY source exists and the API image installs no torch."""
    text = (REPO / dockerfile).read_text(encoding="utf-8")
    for line in re.findall(r"^COPY (.+)$", text, flags=re.M):
        for source in line.split()[:-1]:
            assert (REPO / source).exists(), f"{dockerfile}: {source} is missing"
    if dockerfile == "Dockerfile.api":
        assert "requirements-worker" not in text
        requirements = (REPO / "requirements-api.txt").read_text(encoding="utf-8")
        assert not re.search(r"^torch", requirements, flags=re.M)


@pytest.mark.needs("docker-compose")
def test_compose_config_validates() -> None:
    result = subprocess.run(
        ["docker-compose", "--profile", "gcs", "config", "-q"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_broker_consumer_timeout_outlasts_a_synthesis() -> None:
    """RabbitMQ's delivery-ack timeout in the compose file is longer than the hard time limit of
    a synthesis plus ten minutes of worker start-up (tests/test_faults.py shows what happens
    when it is not)."""
    env = compose()["services"]["rabbitmq"]["environment"]
    match = re.search(r"-rabbit consumer_timeout (\d+)", env["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"])
    assert match is not None
    assert int(match.group(1)) >= (Settings().task_time_limit + 600) * 1000
