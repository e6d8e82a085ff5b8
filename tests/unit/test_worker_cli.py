"""The operator CLI: python -m worker voices list|check."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.support import REPO, base_env


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", "voices", *args],
        env=base_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_list_shows_voices_and_broken_ones(voice_dir: Path) -> None:
    result = run("list", "--voice-dir", str(voice_dir))
    assert result.returncode == 1  # the repository has a broken manifest
    assert "| 2 | Minji | 2026.11.1 | griffin-lim | 16000 | manifest |" in result.stdout
    assert "BROKEN voices/broken/voice.json" in result.stdout


def test_check_reports_timings_and_fails_on_a_broken_voice(voice_dir: Path) -> None:
    """Every loadable voice gets load time, memory and RTF; a corrupt checkpoint fails the run."""
    result = run("check", "--voice-dir", str(voice_dir))
    assert result.returncode == 1, result.stdout + result.stderr
    rows = [
        line for line in result.stdout.splitlines() if line.startswith("| ") and "|---" not in line
    ]
    assert [row.split("|")[1].strip() for row in rows[1:]] == ["1", "2", "3"]
    assert "BROKEN member 4 (Corrupt)" in result.stdout


def test_check_passes_on_healthy_voices(voice_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(voice_dir / "voices" / "minji", tmp_path / "voices" / "minji")
    result = run("check", "--voice-dir", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "| 2 | Minji |" in result.stdout
