"""Korean text normalization: g2pK rules, then the voice's character set."""

from __future__ import annotations

import pytest

from common.normalize import Normalizer, decompose, pronounceable, split_sentences, to_charset
from harness.voice_factory import COMPAT, CONJOINING, PUNCTUATION, SYLLABLES

SYL = SYLLABLES + PUNCTUATION


@pytest.fixture(scope="module")
def normalizer() -> Normalizer:
    return Normalizer()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("안녕하세요!", ["안녕하세요!"]),
        # Numbers with counters (Sino-Korean and native), dates, money.
        ("오늘은 2024년 3월 15일입니다.", ["오느르 니처니십싸년 사뭘 시보이림니다."]),
        ("2024-03-15", ["이처니십싸년 사뭘 시보일"]),
        ("사과 3개", ["사과 세개"]),
        ("12시 30분", ["열두시 삼십뿐"]),
        ("1,000원", ["처눤"]),
        ("가격은 12,500 입니다", ["가겨근 마니처노배 김니다"]),
        ("50% 할인", ["오십 퍼센트 하린"]),
        # A phone number is read digit by digit, 0 as 공, its groups apart.
        ("010-1234-5678", ["공일공 이리삼사 오육칠팔"]),
        # Latin: loanwords as Korean writes them, acronyms letter by letter, accents stripped.
        ("Hello 세계", ["헬로 세계"]),
        ("AI 기술과 GPU", ["에이아이 기술과 지피유"]),
        ("café", ["카페"]),
        # Full-width forms, emoji and other scripts.
        ("ＡＢＣ 123", ["에이비씨 배기십쌈"]),
        ("😀 안녕!", ["안녕!"]),
        ("漢字 テスト 안녕", ["한자 안녕"]),
        # Several sentences.
        (
            "안녕하세요! 반갑습니다. 오늘 날씨가 좋네요?",
            ["안녕하세요!", "반갑씀니다.", "오늘 랄씨가 존네요?"],
        ),
        # Nothing speakable.
        ("🙂🙂", []),
        ("!!! ...", []),
        ("", []),
    ],
)
def test_table_for_a_syllable_voice(normalizer: Normalizer, text: str, expected: list[str]) -> None:
    """It turns numbers, dates and Latin into Hangul and drops what the voice cannot say."""
    assert normalizer.sentences(text, SYL) == expected


def test_conjoining_jamo_voice(normalizer: Normalizer) -> None:
    """A voice trained on conjoining jamo gets every syllable decomposed (U+1100..U+11FF)."""
    (sentence,) = normalizer.sentences("한국어 3개", CONJOINING + PUNCTUATION)
    assert sentence == "".join(decompose("한")) + "".join(decompose("구")) + "".join(
        decompose("거")
    ) + " " + "".join(decompose("세")) + "".join(decompose("개"))
    assert all(0x1100 <= ord(ch) <= 0x11FF or ch == " " for ch in sentence)


def test_compatibility_jamo_voice(normalizer: Normalizer) -> None:
    """A voice trained on compatibility jamo gets U+3131..U+318E letters."""
    (sentence,) = normalizer.sentences("한글!", COMPAT + PUNCTUATION)
    assert sentence == "ㅎㅏㄴㄱㅡㄹ!"


def test_only_voice_characters_come_out(normalizer: Normalizer) -> None:
    """Whatever the input, the output holds only the voice's characters."""
    charset = set(COMPAT + PUNCTUATION)
    for text in ("Mixed 한국어 and English 123!", "../../etc/passwd", "\x00\t\n☃ 가나다"):
        for sentence in normalizer.sentences(text, COMPAT + PUNCTUATION):
            assert set(sentence) <= charset


def test_long_text_is_split() -> None:
    """Long sentences are cut at commas or spaces into pieces of bounded length."""
    text = ("가나다라 마바사, " * 60).strip()
    pieces = split_sentences(text, limit=100)
    assert len(pieces) > 5
    assert all(len(p) <= 100 for p in pieces)
    assert "".join(pieces).replace(" ", "") == text.replace(" ", "")


def test_unknown_separators_keep_words_apart() -> None:
    """A symbol the voice lacks becomes a space rather than gluing words together."""
    assert to_charset("가/나", frozenset("가나 ")) == "가 나"


@pytest.mark.parametrize(
    "text",
    [
        "🙂🙂",
        "!!! ...",
        "漢字 テスト",
        "ㅋㅋㅋ",
        "\u200b\u00a0",
        "①②③",
        "ＡＢＣ",
        "café",
        "안녕",
        "\u1100\u1161",
        "x",
        "7",
        "Привет",
        "½",
    ],
)
def test_cheap_pronounceable_check_never_refuses_what_g2pk_could_say(
    normalizer: Normalizer, text: str
) -> None:
    """The API's g2pK-free check: whenever it says no, the normalizer has nothing for any
    voice (so a 422 is never wrong); when it says yes, some voice can say something."""
    outputs = [normalizer.sentences(text, chars) for chars in (SYL, CONJOINING + PUNCTUATION)]
    outputs.append(normalizer.sentences(text, COMPAT + PUNCTUATION))
    if not pronounceable(text):
        assert outputs == [[], [], []]
    else:
        assert any(outputs), text
