"""``python -m bench.reading [--cases FILE] [--old-rev REV] [--failures]``: how well each reader
says the reading test set (``tests/data/readings.tsv``), per class, as a markdown table.

Readers, measured in the same run on the same cases:

- **moksori**: :class:`common.normalize.Normalizer` (spelled out by :mod:`common.reading`, then
  g2pK's pronunciation rules);
- **g2pK alone**: ``ko_speech_tools.G2p`` on the raw text, what the original deployment ran;
- **moksori v1**: the normalizer of git revision ``--old-rev`` (default ``56a22e2``, the last
  with normalizer version 1), when git can show it, to count the cases whose reading changed;
- **NeMo + g2pK**: with ``--nemo-python PATH``, NVIDIA's ``nemo-text-processing`` Korean
  normalizer (WFST grammars) run by that interpreter (a separate venv: it needs pynini and is
  no dependency of moksori), its text then through the same g2pK.

The test set writes the spelled-out reading ("학생 열두 명이 왔습니다"), or several separated by
``|`` where usage is disputed; a reader passes a case when its output equals one of them passed
through the same g2pK pronunciation step, both compared as Hangul syllables only (spaces,
punctuation and anything unreadable ignored). So every reader is judged on what the listener
would hear, and spacing never decides a case.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
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
    """One line of the test set: its class, the text as written, the reading expected. Where
    usage is disputed a set may accept more than one reading, separated by ``|``."""

    kind: str
    text: str
    expected: str

    @property
    def readings(self) -> list[str]:
        return self.expected.split("|")


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
    """Judges readings against the test set. One g2pK instance (its dictionary loads once)
    pronounces the expected readings, is the g2pK-alone baseline and moksori's last stage."""

    def __init__(self) -> None:
        from ko_speech_tools import G2p

        self.g2p: Callable[[str], str] = G2p()
        self.normalizer = Normalizer(self.g2p)
        self._heard: dict[str, str] = {}

    def heard(self, expected: str) -> str:
        """The expected reading as g2pK pronounces it."""
        if expected not in self._heard:
            self._heard[expected] = syllables(self.g2p(expected))
        return self._heard[expected]

    def passes(self, case: Case, output: str) -> bool:
        said = syllables(output)
        return any(said == self.heard(reading) for reading in case.readings)

    def score(self, cases: list[Case]) -> tuple[float, str]:
        """The share of ``cases`` moksori reads as expected, and its failures, one a line."""
        failed = self.failures(cases)
        return 1 - len(failed) / len(cases), "\n".join(failed)

    def failures(self, cases: list[Case]) -> list[str]:
        """moksori's misread cases, one line each (class, input, output, expected): what the
        reading tests assert on and print."""
        failed = []
        for case in cases:
            output = self.normalizer.reading(case.text)
            if not self.passes(case, output):
                expected = case.expected
                failed.append(f"[{case.kind}] {case.text!r} -> {output!r}, expected {expected!r}")
        return failed


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


# Run by the NeMo venv's interpreter: JSON lines of text in, JSON lines of normalized text out.
_NEMO_SCRIPT = """
import json, sys
from nemo_text_processing.text_normalization.normalize import Normalizer
normalizer = Normalizer(input_case="cased", lang="ko", cache_dir=sys.argv[1])
for line in sys.stdin:
    print(json.dumps(normalizer.normalize(json.loads(line), punct_post_process=True)))
"""


def nemo(python: Path, cases: list[Case], g2p: Callable[[str], str]) -> Callable[[str], str]:
    """NeMo's readings of every case (one process; its grammars take ~30 s to load, cached
    after), each then pronounced by g2pK, looked up by text."""
    cache = Path(tempfile.gettempdir()) / "moksori-nemo-cache"
    texts = list(dict.fromkeys(case.text for case in cases))
    done = subprocess.run(
        [str(python), "-c", _NEMO_SCRIPT, str(cache)],
        input="".join(json.dumps(text) + "\n" for text in texts),
        capture_output=True,
        text=True,
        check=True,
    )
    spelled = [json.loads(line) for line in done.stdout.splitlines()]
    readings = {text: g2p(out) for text, out in zip(texts, spelled, strict=True)}
    return readings.__getitem__


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
    parser.add_argument("--old-rev", default="56a22e2", help="git revision of the old normalizer")
    parser.add_argument("--failures", action="store_true", help="list moksori's failed cases")
    parser.add_argument("--nemo-python", type=Path, help="a python with nemo-text-processing")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="bench | %(message)s", stream=sys.stderr)
    cases = load_cases(args.cases)
    scorer = Scorer()
    normalizer = scorer.normalizer
    normalizer.warm_up()
    readers: dict[str, Callable[[str], str]] = {
        "moksori": normalizer.reading,
        "g2pK alone": scorer.g2p,  # the raw text, as the original deployment ran it
    }
    old = old_moksori(args.old_rev)
    if old is not None:
        readers[f"moksori v1 ({args.old_rev})"] = old
    if args.nemo_python:
        readers["NeMo + g2pK"] = nemo(args.nemo_python, cases, scorer.g2p)
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
            f"- [{c.kind}] {c.text} -> {o} (expected {' | '.join(map(scorer.heard, c.readings))})"
            for c, o in failed
        ]
    kinds = Counter(case.kind for case in cases)
    _LOGGER.info("%d cases in %d classes", len(cases), len(kinds))
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
