"""Fixtures the in-process unit tests share."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.reading import Scorer
from common.repository import scan
from worker.voices import VoiceBank, load_bank


@pytest.fixture(scope="module")
def bank(voice_dir: Path) -> VoiceBank:
    """The tiny test voices (tests/conftest.py's ``voice_dir``), loaded on the CPU."""
    return load_bank(scan(voice_dir), "cpu")


@pytest.fixture(scope="session")
def scorer() -> Scorer:
    """The reading tests' judge (its g2pK dictionary loads once for every reading test set)."""
    return Scorer()
