"""Issue 14's examples read correctly end to end: POSTing the raw text gives the very samples
that POSTing its correct Hangul reading gives, through the API under gunicorn, RabbitMQ, Redis
and a real worker. The voice (voice_factory.build_reading_repository) is deterministic and
knows only syllables, so two WAVs are equal exactly when the syllables read are; a wrong
reading gives other samples, so the comparison can fail."""

from __future__ import annotations

import io
import wave
from collections.abc import Iterator

import pytest
import requests

from harness import voice_factory
from tests.support import Stack, stack_on

# The misreadings the issue lists, each one sentence (a text of several is made sentence by
# sentence), and the reading a Korean speaker gives.
EXAMPLES = [
    ("학생 12명이 왔습니다", "학생 열두 명이 왔습니다"),
    ("2시간 동안 기다렸다", "두 시간 동안 기다렸다"),
    ("커피 2잔 주세요", "커피 두 잔 주세요"),
    ("마감은 2025-12-10입니다", "마감은 이천이십오 년 십이 월 십 일입니다"),
    ("약 100만 명", "약 백만 명"),
    ("$20를 냈다", "이십 달러를 냈다"),
    ("14:30에 만나요", "열네 시 삼십 분에 만나요"),
    ("3:2로 이겼다", "삼 대 이로 이겼다"),
    ("010-1234-5678", "공일공 일이삼사 오육칠팔"),
    ("-2.5°C", "영하 이 점 오 도"),
    ("AI", "에이아이"),
    ("6월", "유월"),
    ("50대", "오십 대"),
    ("大韓民國 만세", "대한민국 만세"),
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A worker with the two reader voices and the API (rate limit off: one address posts
    some thirty texts), on a queue of their own."""
    logs = tmp_path_factory.mktemp("reading")
    voices = voice_factory.build_reading_repository(logs / "voices")
    with stack_on(voices, logs, "reading", rate_limit="off") as stack:
        yield stack


def samples(stack: Stack, text: str, member: int = 1) -> bytes:
    """The PCM frames of ``text`` said by ``member``: POST ?wait, then the WAV at its URL."""
    response = requests.post(
        f"{stack.base}/api/texts?wait=30", json={"member_id": member, "text": text}, timeout=60
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "done", body
    audio = requests.get(body["url"], timeout=10)
    assert audio.status_code == 200, audio.text
    with wave.open(io.BytesIO(audio.content)) as wav:
        return wav.readframes(wav.getnframes())


def test_the_voice_is_deterministic(stack: Stack) -> None:
    """Two syntheses of one text (two members with the same weights, so neither is a cache hit
    of the other) give the same samples: equal WAVs below mean equal readings."""
    first = samples(stack, "오늘은 바다가 좋아요", member=1)
    assert first.strip(b"\x00"), "the voice says nothing"
    assert samples(stack, "오늘은 바다가 좋아요", member=2) == first


def test_a_wrong_reading_sounds_different(stack: Stack) -> None:
    """십이 명 is not 열두 명: a misreading changes the samples, so the test below can fail."""
    assert samples(stack, "학생 십이 명이 왔습니다") != samples(stack, "학생 12명이 왔습니다")


@pytest.mark.parametrize(("text", "reading"), EXAMPLES, ids=[raw for raw, _ in EXAMPLES])
def test_the_issue_examples_are_read_correctly(stack: Stack, text: str, reading: str) -> None:
    """The raw text and its correct reading, each POSTed, give identical samples."""
    assert samples(stack, text) == samples(stack, reading)
