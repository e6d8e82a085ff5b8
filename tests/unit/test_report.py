"""The committed robustness report (docs/robustness.md) covers every kind of fault the suite
tries, and each row says no accepted job was lost."""

from __future__ import annotations

from tests.support import REPO

AREAS = {
    "worker crash", "poison job", "duplicate delivery", "storage", "broker", "resource limits",
    "fuzzing", "storage privacy", "bad input", "auth", "cors", "limits",
}  # fmt: skip


def test_committed_report_covers_every_area_and_loses_nothing() -> None:
    rows = [
        [cell.strip() for cell in line.strip("|").split(" | ")]
        for line in (REPO / "docs" / "robustness.md").read_text(encoding="utf-8").splitlines()
        if line.startswith("| ") and not line.startswith("| area")
    ]
    assert {row[0] for row in rows} >= AREAS
    assert {row[-1] for row in rows} <= {"0", "-"}
