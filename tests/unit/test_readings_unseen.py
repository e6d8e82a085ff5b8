"""The held-out reading set (tests/data/readings_unseen.tsv), written blind by a session that had
not read the reading rules nor their cases: the honest measure of issue 14's "95 % on sentences
its authors have not seen". Not a target to tune to; this guards against a regression below the
figure measured when the set was written."""

from __future__ import annotations

from bench.reading import Scorer
from harness.processes import REPO
from tests.support import assert_reads_held_out

UNSEEN = REPO / "tests" / "data" / "readings_unseen.tsv"

# 183 of 200 (91.5 %) on the blind run, once 9 of the set's own expectations were corrected;
# rounded down to the percent.
MINIMUM = 0.91


def test_moksori_reads_the_unseen_set(scorer: Scorer) -> None:
    """At least the measured share of the held-out cases is read as expected; failures listed."""
    assert_reads_held_out(scorer, UNSEEN, 200, MINIMUM)
