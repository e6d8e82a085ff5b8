"""The fault and bad-input report: tests record what they tried and what the service did.

Each row is written by the test that exercised the case, after its assertions passed, so the
table holds only what was really observed. ``pytest`` writes it to ``var/reports/robustness.md``
at the end of the session (see ``conftest.py``); ``docs/robustness.md`` is a committed copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path


@dataclass(frozen=True)
class Row:
    area: str
    case: str
    outcome: str
    accepted: str
    lost: str


_ROWS: list[Row] = []


def record(
    area: str, case: str, outcome: str, accepted: int | str = "-", lost: int | str = "-"
) -> None:
    """Add one observed case: what was done to the service and what it did.

    ``accepted`` is how many jobs had been accepted (202/200) when the fault hit, ``lost`` how
    many of those never reached a final state; use "-" where no job was involved."""
    _ROWS.append(Row(area, case, outcome, str(accepted), str(lost)))


def rows() -> list[Row]:
    return list(_ROWS)


def write(path: Path) -> None:
    """The recorded rows as a markdown table, grouped by area in the order they ran."""
    if not _ROWS:
        return
    areas: dict[str, list[Row]] = {}
    for row in _ROWS:
        areas.setdefault(row.area, []).append(row)
    lines = [
        "# Faults and bad input tried",
        "",
        f"Written by the test suite (`make test`) on {date.today().isoformat()}: each row by the "
        "test that exercised the case, after its checks passed. `jobs lost` counts accepted "
        "jobs that never reached `done` or `failed`.",
        "",
        "| area | fault or bad input | what the service did | jobs accepted | jobs lost |",
        "|---|---|---|---|---|",
    ]
    for area, area_rows in areas.items():
        for row in area_rows:
            cells = [area, row.case, row.outcome, row.accepted, row.lost]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
