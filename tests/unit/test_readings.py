"""The reading test set (tests/data/readings.tsv): moksori reads numbers, dates, counters,
units, Latin and Hanja the way a Korean speaker does (issue 14; ``python -m bench.reading``
prints the same score per class next to g2pK alone)."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from bench.reading import Scorer, load_cases
from common.reading import spell_out
from harness.processes import REPO

MINIMUM = 0.95


def test_the_set_covers_every_class() -> None:
    """At least 300 cases, each class of the issue represented."""
    cases = load_cases()
    kinds = Counter(case.kind for case in cases)
    assert len(cases) >= 300
    assert min(kinds.values()) >= 10, kinds


def test_moksori_reads_the_set(scorer: Scorer) -> None:
    """Every case is read as expected (at least 95 % must be); failures are listed."""
    cases = load_cases()
    failed = scorer.failures(cases)
    score = 1 - len(failed) / len(cases)
    assert score >= MINIMUM, f"{100 * score:.1f} % read as expected:\n" + "\n".join(failed)
    # Every case passes today, so any failure is a regression: it is named, not averaged away.
    assert not failed, "\n".join(failed)


@pytest.mark.parametrize(
    ("text", "spelled"),
    [
        ("학생 12명이 왔습니다", "학생 열두명이 왔습니다"),
        ("마감은 2025-12-10입니다", "마감은 이천이십오년 십이월 십일입니다"),
        ("약 100만 명", "약 백만 명"),
        ("$20를 냈다", "이십 달러를 냈다"),
        ("14:30에", "열네시 삼십분에"),
        ("3:2", "삼 대 이"),
        ("010-1234-5678", "공일공 일이삼사 오육칠팔"),
        ("-2.5°C", "영하 이 점 오 도"),
        ("AI", "에이아이"),
        ("6월", "유월"),
        ("50대", "오십대"),
        ("大韓民國 만세", "대한민국 만세"),
    ],
)
def test_the_issue_examples_are_spelled_out(text: str, spelled: str) -> None:
    """The misreadings the issue lists, at the spelled-out stage before g2pK."""
    assert spell_out(text) == spelled


def test_the_api_never_loads_the_reader() -> None:
    """The API imports the normalizer only for its cheap pronounceable test: the reading
    module, its patterns and its Hanja table stay out of the API process."""
    probe = (
        "import sys, api.service, common.normalize; "
        "assert common.normalize.pronounceable('大韓民國'); "
        "print('common.reading' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("text", "spelled"),
    [
        ("코로나19 방역", "코로나 일구 방역"),
        ("코로나 19명 확진", "코로나 열아홉명 확진"),
        ("대기 번호 27번", "대기 번호 이십칠번"),
        ("인증번호는 482913", "인증번호는 사팔이구일삼"),
        ("G20 정상회의", "지이십 정상회의"),
        ("20 정도", "이십 정도"),
        ("1정씩, 하루 4정까지", "한정씩, 하루 네정까지"),
        ("A4 용지", "에이포 용지"),
        ("規律과 確率", "규율과 확률"),
    ],
)
def test_rules_at_their_edges(text: str, spelled: str) -> None:
    """Rules that read a number another way stop where its usual reading takes over again: a
    count after 코로나, a queue number after 번호, two digits after capitals, 률 after a coda,
    a word after a number that only starts like a counter (정도 and 정상 are no 정 of pills)."""
    assert spell_out(text) == spelled
