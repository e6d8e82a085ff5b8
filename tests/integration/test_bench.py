"""The benchmark's smoke run: the real service on RabbitMQ with tiny voices, a few requests per
phase. Its numbers are not checked here (the latest run is in docs/performance.md); its correctness
checks are (exit status 1 on a 5xx, a lost job, a repeat that sent a task, twins that did not
share one, a long text not streamed to its end or not done)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness.processes import REPO
from tests.support import base_env


def test_bench_smoke_prints_the_table(tmp_path: Path) -> None:
    env = base_env()
    output = tmp_path / "not-yet" / "bench.md"  # as `make bench`'s var/ on a fresh clone
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--voices", "tiny", "--output", str(output)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-6000:]
    table = result.stdout
    assert output.read_text(encoding="utf-8") == table
    assert "Voices: **tiny**" in table
    assert "| measure | result | in-process floor | vs floor | target | met |" in table
    for measure in (
        "new text, 1 sentence",
        "new text, 5 sentences",
        "repeat of a stored text",
        "202 for new text",
        "malformed requests/s mixed in",
        "concurrent requests over",
        "worker processes",
        "worker start-up",
        "API resident memory",
    ):
        assert measure in table, measure
    long = table.split("### Long text", 1)[1]
    assert "| measure | value | reference | ratio | target | met |" in long
    for measure in (
        "time to first audio byte",
        "job done (the stream's end), 1 worker process",
        "job done (the stream's end), 2 worker processes",
        "sharing all but one sentence",
        "short text (1 sentence): serving overhead p50",
    ):
        assert measure in long, measure
