"""Texts of several sentences made sentence by sentence (worker/paragraph.py), in-process with
the tiny test voices and real storage; claims are stood in for where another process is meant."""

from __future__ import annotations

import io
import threading
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from common.jobs import Progress, SynthesisError
from common.normalize import Normalizer
from common.storage import LocalStorage
from tests.support import TEST_SECRET
from worker import paragraph
from worker.paragraph import Hooks, Sentence
from worker.synthesis import Pipeline, SpeechJob
from worker.voices import VoiceBank

MEMBER = 3
TEXT = "오늘은 바다를 봅니다. 바람이 시원해요! 내일 다시 만나요."


@pytest.fixture
def pipeline(bank: VoiceBank, tmp_path: Path) -> Pipeline:
    return Pipeline(
        bank=bank, storage=LocalStorage(tmp_path), normalizer=Normalizer(), secret=TEST_SECRET
    )


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The sentences synthesized, in the order they were (a spy on the real function)."""
    seen: list[str] = []
    real = paragraph.make_sentence

    def spy(pipeline: Pipeline, voice, sentence: Sentence, speed: float) -> np.ndarray:
        seen.append(sentence.text)
        return real(pipeline, voice, sentence, speed)

    monkeypatch.setattr(paragraph, "make_sentence", spy)
    return seen


def frames(data: bytes) -> tuple[int, np.ndarray]:
    with wave.open(io.BytesIO(data)) as wav:
        return wav.getframerate(), np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")


def test_sentences_are_objects_and_the_text_is_them_joined(
    pipeline: Pipeline, made: list[str]
) -> None:
    """Each sentence is stored on its own, in order, with progress reported after each; the
    text's WAV is exactly the sentences' samples joined by the voice's pause."""
    reports: list[Progress] = []
    result = paragraph.speak(pipeline, SpeechJob(MEMBER, TEXT), Hooks(report=reports.append))
    assert made == ["오늘은 바다를 봅니다.", "바람이 시원해요!", "내일 다시 만나요."]
    keys = result["sentences"]
    assert len(keys) == 3 and len(set(keys)) == 3
    assert [sum(k is not None for k in r["ready"]) for r in reports] == [0, 1, 2, 3]
    assert reports[-1]["ready"] == keys and reports[-1]["total"] == 3

    rate, whole = frames(pipeline.storage.read(result["key"]))
    pause = np.zeros(round(pipeline.sentence_pause * rate), dtype="<i2")
    parts = [frames(pipeline.storage.read(k))[1] for k in keys]
    expected = np.concatenate([parts[0], pause, parts[1], pause, parts[2]])
    assert np.array_equal(whole, expected)
    assert result["duration_s"] == pytest.approx(whole.size / rate, abs=0.001)


def test_sentences_are_reused_across_texts(pipeline: Pipeline, made: list[str]) -> None:
    """A new text sharing all but one sentence makes that one only; a text of one of those
    sentences alone is the sentence's own object, found stored."""
    first = paragraph.speak(pipeline, SpeechJob(MEMBER, TEXT), Hooks())
    made.clear()
    second = paragraph.speak(
        pipeline,
        SpeechJob(MEMBER, "오늘은 바다를 봅니다. 바람이 차가워요! 내일 다시 만나요."),
        Hooks(),
    )
    assert made == ["바람이 차가워요!"]
    assert second["sentences"][0] == first["sentences"][0]
    assert second["sentences"][2] == first["sentences"][2]
    alone = paragraph.speak(pipeline, SpeechJob(MEMBER, "  바람이 시원해요!"), Hooks())
    assert alone["key"] == first["sentences"][1]
    assert alone["synthesis_s"] == 0  # found, not made
    assert made == ["바람이 차가워요!"]


def test_a_failed_sentence_fails_the_job_with_its_index(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job fails naming the sentence; the sentences made before it stay stored."""
    real = paragraph.make_sentence

    def failing(pipeline: Pipeline, voice, sentence: Sentence, speed: float) -> np.ndarray:
        if sentence.index == 1:
            raise SynthesisError("The model failed on sentence 1 of 1: RuntimeError")
        return real(pipeline, voice, sentence, speed)

    monkeypatch.setattr(paragraph, "make_sentence", failing)
    with pytest.raises(SynthesisError, match="Sentence 2 of 3 failed: The model failed"):
        paragraph.speak(pipeline, SpeechJob(MEMBER, TEXT), Hooks())
    voice = pipeline.voice(MEMBER)
    sentences = paragraph.plan(pipeline, voice, SpeechJob(MEMBER, TEXT))
    assert pipeline.storage.lookup(sentences[0].key) is not None
    assert pipeline.storage.lookup(sentences[1].key) is None


class OtherProcess:
    """Claims where sentence 2 is being made by another process, which stores it only once the
    job has made sentence 3 and waits; the job must wait for 2 rather than make it twice."""

    shared = True

    def __init__(self, pipeline: Pipeline, sentence: Sentence) -> None:
        self.pipeline, self.sentence = pipeline, sentence
        self.handed_out: list[int] = []
        self.asked = threading.Event()
        self.done = threading.Event()

    def held(self, key: str) -> bool:
        return key == self.sentence.key and not self.done.is_set()

    @contextmanager
    def holding(self, key: str) -> Iterator[bool]:
        yield not self.held(key)

    def make_when_waited_for(self) -> None:
        # Only then: made sooner, it could be stored before the job looks, and nothing waits.
        self.asked.wait(30)
        voice = self.pipeline.voice(MEMBER)
        paragraph.make_sentence(self.pipeline, voice, self.sentence, 1.0)
        self.done.set()


def test_a_sentence_another_process_makes_is_waited_for_not_made(
    pipeline: Pipeline, made: list[str]
) -> None:
    voice = pipeline.voice(MEMBER)
    sentences = paragraph.plan(pipeline, voice, SpeechJob(MEMBER, TEXT))
    other = OtherProcess(pipeline, sentences[1])
    handed: list[list[int]] = []
    waits: list[float] = []

    def wait(seconds: float) -> None:  # what the task's hook does: block until news, bounded
        waits.append(seconds)
        other.asked.set()
        other.done.wait(seconds)

    helper = threading.Thread(target=other.make_when_waited_for)
    helper.start()
    try:
        result = paragraph.speak(
            pipeline,
            SpeechJob(MEMBER, TEXT),
            Hooks(
                claims=other,
                hand_out=lambda out: handed.append([s.index for s in out]),
                wait=wait,
            ),
        )
    finally:
        helper.join()
    # All but the first, which the job starts on at once; the longer one first.
    assert len(sentences[2].spoken) > len(sentences[1].spoken)
    assert handed == [[2, 1]]
    assert made == [sentences[0].text, sentences[2].text, sentences[1].text]  # 2nd by "other"
    assert waits and set(waits) == {paragraph.WAIT_STEP_S}  # through the hook, never a bare sleep
    assert result["sentences"][1] == sentences[1].key
