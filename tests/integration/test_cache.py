"""The cache key and the in-flight registry that make repeats and twins cost no synthesis."""

from __future__ import annotations

import unicodedata
import uuid

import pytest
import redis

from api.inflight import LocalInflight, RedisInflight
from common import jobs
from tests.support import BACKEND_URL, TEST_SECRET

TEXT = "안녕하세요. 반갑습니다!"


def test_key_changes_with_everything_that_changes_the_audio(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Member, voice version, normalizer version, pause and text each change the key; spacing
    and Unicode composition do not."""
    base = jobs.speech_key(1, "v1", TEXT, 0.25, secret=TEST_SECRET)
    assert base == jobs.speech_key(
        1, "v1", f"  {TEXT.replace(' ', chr(10) + ' ')}\t", 0.25, secret=TEST_SECRET
    )
    decomposed = unicodedata.normalize("NFD", TEXT)
    assert decomposed != TEXT and base == jobs.speech_key(
        1, "v1", decomposed, 0.25, secret=TEST_SECRET
    )
    assert base != jobs.speech_key(2, "v1", TEXT, 0.25, secret=TEST_SECRET)
    assert base != jobs.speech_key(1, "v2", TEXT, 0.25, secret=TEST_SECRET)
    assert base != jobs.speech_key(1, "v1", TEXT, 0.5, secret=TEST_SECRET)
    assert base != jobs.speech_key(1, "v1", TEXT + "?", 0.25, secret=TEST_SECRET)
    monkeypatch.setattr(jobs, "NORMALIZER_VERSION", "next")
    assert base != jobs.speech_key(1, "v1", TEXT, 0.25, secret=TEST_SECRET)


@pytest.fixture(params=["local", "redis"])
def registry(request: pytest.FixtureRequest) -> LocalInflight | RedisInflight:
    if request.param == "local":
        return LocalInflight(ttl_s=60)
    client = redis.Redis.from_url(BACKEND_URL)
    request.addfinalizer(client.close)
    return RedisInflight(client, ttl_s=60, namespace=f"test-{uuid.uuid4().hex[:8]}")


def test_first_claim_leads_later_ones_follow(registry: LocalInflight | RedisInflight) -> None:
    assert registry.claim("k", "job-a") is None
    assert registry.claim("k", "job-b") == "job-a"
    assert registry.claim("other", "job-c") is None


def test_a_dead_leader_is_replaced_once(registry: LocalInflight | RedisInflight) -> None:
    """Two followers finding the same dead leader: only one takes over."""
    registry.claim("k", "dead")
    assert registry.replace("k", "dead", "b") is True
    assert registry.replace("k", "dead", "c") is False
    assert registry.claim("k", "d") == "b"


def test_release_only_by_the_leader(registry: LocalInflight | RedisInflight) -> None:
    registry.claim("k", "a")
    registry.release("k", "someone-else")
    assert registry.claim("k", "b") == "a"
    registry.release("k", "a")
    assert registry.claim("k", "b") is None


def test_namespaces_keep_deployments_apart() -> None:
    client = redis.Redis.from_url(BACKEND_URL)
    try:
        one = RedisInflight(client, 60, namespace=f"one-{uuid.uuid4().hex[:8]}")
        two = RedisInflight(client, 60, namespace=f"two-{uuid.uuid4().hex[:8]}")
        assert one.claim("k", "a") is None
        assert two.claim("k", "b") is None
    finally:
        client.close()


def test_local_entries_expire() -> None:
    registry = LocalInflight(ttl_s=0)
    registry.claim("k", "a")
    assert registry.claim("k", "b") is None


def test_wav_at_speed_one_keeps_its_key_and_formats_and_speeds_have_their_own() -> None:
    """Objects stored before formats and speeds existed are still found: a WAV at 1.0 has the
    key it always had; every other format or speed is a key of its own."""
    from common.normalize import NORMALIZER_VERSION, canonical
    from common.storage import audio_key

    identity = "\x00".join((f"normalizer={NORMALIZER_VERSION}", "pause=0.25", canonical(TEXT)))
    before = audio_key(1, "v1", identity, secret=TEST_SECRET)
    assert jobs.speech_key(1, "v1", TEXT, 0.25, secret=TEST_SECRET) == before
    assert jobs.speech_key(1, "v1", TEXT, 0.25, "wav", 1.0, secret=TEST_SECRET) == before
    keys = {
        jobs.speech_key(1, "v1", TEXT, 0.25, fmt, speed, secret=TEST_SECRET)
        for fmt in ("wav", "mp3", "flac", "opus", "pcm")
        for speed in (0.5, 1.0, 2.0)
    }
    assert len(keys) == 15 and before in keys
    assert jobs.speech_key(1, "v1", TEXT, 0.25, "mp3", secret=TEST_SECRET).endswith(".mp3")
