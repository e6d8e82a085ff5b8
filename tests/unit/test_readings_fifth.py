"""The fifth reading set (tests/data/readings_fifth.tsv), written blind like the third and
fourth and scored blind at 90.8 % (317 of 349); the general rules its misses showed were then
added to the reader, so it guards them and is no longer a held-out measure. Its remaining
misses are single words ('88 팔팔, 9.11 구일일, 更新 경신 of a record, yes24) and two fused
ranges (1~2L, 40~50km) that the reader fuses as the other sets expect."""

from __future__ import annotations

from bench.reading import Scorer
from harness.processes import REPO
from tests.support import assert_reads_held_out

FIFTH = REPO / "tests" / "data" / "readings_fifth.tsv"

# 340 of 349 once its general misses were fixed; rounded down to the percent.
MINIMUM = 0.97


def test_moksori_reads_the_fifth_set(scorer: Scorer) -> None:
    """At least the share measured once its misses were fixed; failures listed."""
    assert_reads_held_out(scorer, FIFTH, 349, MINIMUM)
