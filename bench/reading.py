"""``python -m bench.reading [--cases FILE] [--old-rev REV] [--failures]``: how well each reader
says the reading test set (``tests/data/readings.tsv``), per class, as a markdown table.

Readers, measured in the same run on the same cases:

- **moksori**: :class:`common.normalize.Normalizer` (spelled out by :mod:`common.reading`, then
  g2pK's pronunciation rules);
- **g2pK alone**: ``ko_speech_tools.G2p`` on the raw text, what the original deployment ran;
- **moksori v1**: the normalizer of git revision ``--old-rev`` (default ``main``), when git
  can show it, to count the cases whose reading changed.

The test set writes the spelled-out reading ("학생 열두 명이 왔습니다"); a reader passes a case
when its output equals that reading passed through the same g2pK pronunciation step, both
compared as Hangul syllables only (spaces, punctuation and anything unreadable ignored). So
every reader is judged on what the listener would hear, and spacing never decides a case.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common.config import REPO_ROOT
from common.normalize import Normalizer, expand

_LOGGER = logging.getLogger("bench")

CASES = REPO_ROOT / "tests" / "data" / "readings.tsv"


@dataclass(frozen=True)
class Case:
    """One line of the test set: its class, the text as written, the reading expected."""

    kind: str
    text: str
    expected: str


def load_cases(path: Path = CASES) -> list[Case]:
    """The cases of a tab-separated test set; lines starting with # are comments."""
    cases = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            kind, text, expected = line.split("\t")
            cases.append(Case(kind, text, expected))
    return cases


def syllables(text: str) -> str:
    """Only the Hangul syllables: what two readings are compared on."""
    return "".join(ch for ch in text if "\uac00" <= ch <= "\ud7a3")


class Scorer:
    """Judges readings against the test set with one g2pK instance (its dictionary loads once)."""

    def __init__(self, normalizer: Normalizer | None = None) -> None:
        self.normalizer = normalizer or Normalizer()
        self._heard: dict[str, str] = {}

    def heard(self, expected: str) -> str:
        """The expected reading as g2pK pronounces it."""
        if expected not in self._heard:
            self._heard[expected] = syllables(self.normalizer.reading(expected))
        return self._heard[expected]

    def passes(self, case: Case, output: str) -> bool:
        return syllables(output) == self.heard(case.expected)


def g2pk_alone() -> Callable[[str], str]:
    """The baseline: g2pK on the raw text, as the original deployment ran it."""
    from ko_speech_tools import G2p

    return G2p()


def old_moksori(rev: str) -> Callable[[str], str] | None:
    """The normalizer at git revision ``rev`` (its ``reading`` of a sentence), or None when git
    cannot show it. Loaded from a temporary file as a module of its own."""
    try:
        source = subprocess.run(
            ["git", "show", f"{rev}:common/normalize.py"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        _LOGGER.warning("git cannot show %s:common/normalize.py; no old column", rev)
        return None
    path = Path(tempfile.mkdtemp(prefix="moksori-old-")) / "old_normalize.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("old_normalize", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    old = module.Normalizer()
    return lambda text: module.spell_latin(old._read(text))


def run(cases: list[Case], readers: dict[str, Callable[[str], str]], scorer: Scorer) -> dict:
    """Each reader's output for every case, and whether it passed."""
    return {
        name: [(case, out, scorer.passes(case, out)) for case in cases for out in [read(case.text)]]
        for name, read in readers.items()
    }


def table(results: dict) -> str:
    """Accuracy per class and overall, one column per reader, as markdown."""
    names = list(results)
    kinds = list(dict.fromkeys(case.kind for case, _, _ in results[names[0]]))
    lines = [
        "| class | cases | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for kind in [*kinds, None]:
        cells = []
        for name in names:
            rows = [ok for case, _, ok in results[name] if kind is None or case.kind == kind]
            cells.append(f"{100 * sum(rows) / len(rows):.1f} %")
        count = sum(1 for case, _, _ in results[names[0]] if kind is None or case.kind == kind)
        label = "**overall**" if kind is None else kind
        lines.append(f"| {label} | {count} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def timing(normalizer: Normalizer, cases: list[Case], rounds: int = 3) -> tuple[float, float]:
    """Median milliseconds per sentence: the spelling-out stage alone, and the whole reading."""
    spelled, whole = [], []
    for _ in range(rounds):
        for case in cases:
            started = time.perf_counter()
            expand(case.text)
            spelled.append(time.perf_counter() - started)
            started = time.perf_counter()
            normalizer.reading(case.text)
            whole.append(time.perf_counter() - started)
    return statistics.median(spelled) * 1000, statistics.median(whole) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reading", description=__doc__)
    parser.add_argument("--cases", type=Path, default=CASES)
    parser.add_argument("--old-rev", default="main", help="git revision of the old normalizer")
    parser.add_argument("--failures", action="store_true", help="list moksori's failed cases")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="bench | %(message)s", stream=sys.stderr)
    cases = load_cases(args.cases)
    normalizer = Normalizer()
    normalizer.warm_up()
    scorer = Scorer(normalizer)
    readers: dict[str, Callable[[str], str]] = {
        "moksori": normalizer.reading,
        "g2pK alone": g2pk_alone(),
    }
    old = old_moksori(args.old_rev)
    if old is not None:
        readers[f"moksori v1 ({args.old_rev})"] = old
    results = run(cases, readers, scorer)
    spelled_ms, whole_ms = timing(normalizer, cases)
    out = [table(results), ""]
    if old is not None:
        new, before = results["moksori"], results[f"moksori v1 ({args.old_rev})"]
        changed = sum(syllables(a[1]) != syllables(b[1]) for a, b in zip(new, before, strict=True))
        out.append(
            f"Cases whose reading changed from the old normalizer: {changed} of {len(cases)}."
        )
    out.append(
        f"p50 per sentence: spelling out {spelled_ms:.2f} ms, whole reading with g2pK "
        f"{whole_ms:.2f} ms ({len(cases)} sentences x 3)."
    )
    if args.failures:
        failed = [(c, o) for c, o, ok in results["moksori"] if not ok]
        out.append(f"\nmoksori's failures ({len(failed)}):")
        out += [
            f"- [{c.kind}] {c.text} -> {o} (expected {scorer.heard(c.expected)})" for c, o in failed
        ]
    kinds = Counter(case.kind for case in cases)
    _LOGGER.info("%d cases in %d classes", len(cases), len(kinds))
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
