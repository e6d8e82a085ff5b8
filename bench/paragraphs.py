"""The long text of the benchmark: a fan message of nine sentences (~510 characters) after a
concert tour, each sentence naming a city. Every paragraph this module gives out names other
cities in each sentence (all of two syllables, so every paragraph is as long as the first), so
neither the text cache nor the sentence cache answers any of it: each measurement makes it."""

from __future__ import annotations

TEMPLATES = [
    "여러분, 지난 토요일 {}에서 열린 마지막 공연에 와 주셔서 진심으로 고맙다는 말을 먼저 "
    "전하고 싶어요.",
    "석 달 전 {}에서 시작한 이번 투어는 길고 힘들었지만, 매일 밤 객석을 채워 준 함성 덕분에 "
    "지칠 틈이 없었어요.",
    "특히 {}의 작은 공연장에 비가 쏟아지던 날, 우산도 없이 끝까지 노래를 따라 불러 주던 모습은 "
    "절대 잊지 못할 거예요.",
    "{}에 도착했을 때는 목이 많이 아파서 걱정했는데, 여러분이 보내 준 따뜻한 편지를 읽으며 다시 "
    "힘을 냈습니다.",
    "{}에서는 처음으로 새 노래를 들려드렸는데, 가사를 벌써 외워 오신 분들이 있어서 무대 위에서 "
    "깜짝 놀랐어요.",
    "공연이 끝난 뒤에는 멤버들과 {}의 바닷가를 걸으며 다음 앨범에 담고 싶은 이야기를 밤늦게까지 "
    "나눴답니다.",
    "멀리 {}까지 비행기를 타고 찾아와 주신 해외 팬분들께도 꼭 감사 인사를 드리고 싶었어요.",
    "이제 잠시 쉬면서 더 좋은 음악을 준비할 테니, {}에서 다시 만나는 날까지 건강하게 잘 지내 "
    "주세요.",
    "사랑합니다, 그리고 {}에서 꼭 다시 만나요!",
]

PLACES = [
    "서울", "부산", "대구", "인천", "광주", "대전", "울산", "수원", "전주", "춘천",
    "강릉", "여수", "목포", "포항", "경주", "안동", "제주", "속초", "통영", "군산",
    "원주", "청주", "천안", "순천", "김해", "창원", "구미", "진주", "평택", "익산",
]  # fmt: skip

EDITED = 4
"""The sentence an edited paragraph changes: the fifth of nine, near the median in length."""


def shape() -> tuple[int, int]:
    """How many sentences and characters every paragraph has."""
    return len(TEMPLATES), len(" ".join(t.format(PLACES[0]) for t in TEMPLATES))


class Paragraphs:
    """Paragraphs (as lists of sentences) whose every sentence is new in this run."""

    def __init__(self) -> None:
        self.used: set[str] = set()
        self.count = 0

    def new(self) -> list[str]:
        """A paragraph none of whose sentences was given out before."""
        self.count += 1
        return [self._fresh(i, self.count + i) for i in range(len(TEMPLATES))]

    def edited(self, sentences: list[str]) -> list[str]:
        """``sentences`` with sentence :data:`EDITED` alone naming another city (new in this
        run): a text that shares all but one sentence with an earlier one."""
        out = list(sentences)
        out[EDITED] = self._fresh(EDITED, self.count + len(PLACES) // 2)
        return out

    def _fresh(self, index: int, start: int) -> str:
        """Sentence ``index`` naming the first city from ``start`` on that makes it new."""
        for step in range(len(PLACES)):
            sentence = TEMPLATES[index].format(PLACES[(start + step) % len(PLACES)])
            if sentence not in self.used:
                self.used.add(sentence)
                return sentence
        raise RuntimeError(f"every city has been used in sentence {index + 1}")
