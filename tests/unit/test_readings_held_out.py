"""The reading sets written blind after the first (tests/data/readings_*.tsv): each by a session
that had read neither the reading rules nor the other sets, scored once as written, and (all
but the sixth) then tuned to. Each is guarded at the share it reached once its last fixes were
in, rounded down to the percent; the sixth is the held-out measure of issue 14 and no rule was
changed for it. Their history is in docs/voices.md ("How well it reads")."""

from __future__ import annotations

import pytest

from bench.reading import Scorer, load_cases
from harness.processes import REPO
from tests.support import assert_reads_held_out

DATA = REPO / "tests" / "data"

SETS = [
    # file, cases, at least: how the minimum was measured
    ("readings_unseen.tsv", 200, 0.91),  # 183 once 9 of its own expectations were corrected
    ("readings_blind.tsv", 322, 0.93),  # 301 on the blind run, before any rule changed for it
    ("readings_fresh.tsv", 360, 1.0),  # 325 blind; every case once its misses were fixed
    ("readings_fifth.tsv", 349, 0.97),  # 317 blind; 340 once its general misses were fixed
    ("readings_sixth.tsv", 360, 0.95),  # 343 on its only run: held out, do not tune to it
]


@pytest.mark.parametrize(("name", "count", "minimum"), SETS)
def test_moksori_reads_the_held_out_sets(
    scorer: Scorer, name: str, count: int, minimum: float
) -> None:
    """At least the measured share of each set is read as expected; failures listed."""
    assert_reads_held_out(scorer, DATA / name, count, minimum)


def test_a_case_may_accept_several_readings(scorer: Scorer) -> None:
    """Where usage is split the set lists both readings; either passes, nothing else does."""
    cases = [
        c
        for c in load_cases(DATA / "readings_blind.tsv")
        if c.text == "매일 10~20명이 상담을 받는다."
    ]
    assert len(cases) == 1 and len(cases[0].readings) == 2
    for reading in cases[0].readings:
        assert scorer.passes(cases[0], scorer.g2p(reading))
    assert not scorer.passes(cases[0], scorer.g2p("매일 십에서 이십 명이 상담을 받는다."))
