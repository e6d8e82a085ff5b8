"""``POST /v1/audio/speech`` with the official ``openai`` client, against a real worker and the
API under gunicorn on RabbitMQ and Redis, with a tiny voice whose durations follow ``speed``.

Plus the pipeline's own side in-process: formats, speed through the batched path, and a speed
that never outlives its job.
"""

from __future__ import annotations

import io
import json
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import openai
import psutil
import pytest
import requests
import soundfile

from common.audio_formats import FORMATS
from common.encoding import STREAMED_FORMATS, encode_audio
from common.normalize import Normalizer
from common.repository import scan
from common.storage import LocalStorage
from harness import voice_factory
from harness.processes import start_api
from tests import report
from tests.integration.test_api import build_app
from tests.integration.test_streaming import SENTENCES, frames, text
from tests.support import TEST_SECRET, Stack, base_env, eventually, running_stack, stack_on
from worker.synthesis import Pipeline, speaking_rate
from worker.voices import load_bank

API_KEY = "openai-test-key-0123456789abcdef"
FRAMES_PER_TOKEN = 12.5  # 13 frames a token at speed 1, 7 at speed 2
TEXT = "가나다라마바사아자차카타파하 거너더러머버서"  # 21 syllables: one token each


def speech_repository(root: Path) -> Path:
    """Member 5 ("Nari", HiFi-GAN) whose every token lasts FRAMES_PER_TOKEN x length_scale
    frames, and member 6 ("Dal", Griffin-Lim) that no worker serves in the stack below."""
    nari = root / "voices" / "nari"
    voice_factory.glow_tts(
        nari / "glow.pth",
        nari / "glow.json",
        voice_factory.SYLLABLES,
        frames_per_token=FRAMES_PER_TOKEN,
    )
    voice_factory.hifigan(nari / "hifigan.pth", nari / "hifigan.json")
    voice_factory._manifest(
        nari,
        {
            "id": 5,
            "name": "Nari",
            "version": "1",
            "tts": {"checkpoint": "glow.pth", "config": "glow.json"},
            "vocoder": {"checkpoint": "hifigan.pth", "config": "hifigan.json"},
        },
    )
    dal = root / "voices" / "dal"
    voice_factory.glow_tts(dal / "glow.pth", dal / "glow.json", voice_factory.SYLLABLES)
    voice_factory._manifest(
        dal,
        {"id": 6, "name": "Dal", "tts": {"checkpoint": "glow.pth", "config": "glow.json"}},
    )
    return root


@pytest.fixture(scope="module")
def voices(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return speech_repository(tmp_path_factory.mktemp("speech-voices"))


@pytest.fixture(scope="module")
def stack(voices: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("openai-stack")
    env = base_env(
        storage_url=f"file://{logs / 'media'}",
        voice_dir=str(voices),
        members="5",
        queue=f"moksori-openai-{logs.name}",
        api_keys=API_KEY,
        rate_limit="off",
        torch_threads="1",
        speech_timeout="30",
    )
    with running_stack(env, logs) as running:
        yield running


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{stack.base}/v1", api_key=API_KEY, max_retries=0) as c:
        yield c


def storage_root(stack: Stack) -> Path:
    return Path(stack.env["MOKSORI_STORAGE_URL"].removeprefix("file://"))


def media(stack: Stack) -> set[Path]:
    root = storage_root(stack)
    return {p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")}


def stored_object(stack: Stack, url: str) -> bytes:
    """The object a job's ``url`` names, read from storage (``/media`` serves WAVs only)."""
    return (storage_root(stack) / url.split("/media/", 1)[1]).read_bytes()


def syntheses(stack: Stack) -> int:
    """Syntheses the worker ran (it logs each with its real-time factor)."""
    return sum(1 for line in stack.worker.output().splitlines() if "RTF" in line)


class Spoken:
    """What ``client.audio.speech.create`` gave: the audio's bytes and the HTTP headers."""

    def __init__(self, content: Any) -> None:
        self.data: bytes = content.content
        self.headers = content.response.headers

    def read(self) -> bytes:
        return self.data


def speak(client: openai.OpenAI, **fields: Any) -> Spoken:
    """``client.audio.speech.create``, model tts-1 and member 5 unless given."""
    fields.setdefault("model", "tts-1")
    fields.setdefault("voice", "5")
    return Spoken(client.audio.speech.create(**fields))


def decoded(data: bytes) -> tuple[np.ndarray, int]:
    samples, rate = soundfile.read(io.BytesIO(data), dtype="float32")
    return samples, rate


MAGIC = {
    "wav": (b"RIFF", "audio/wav"),
    "flac": (b"fLaC", "audio/flac"),
    "opus": (b"OggS", "audio/ogg"),
}


@pytest.mark.parametrize("fmt", ["mp3", "wav", "flac", "opus", "pcm"])
def test_every_format_is_audio_of_its_kind(client: openai.OpenAI, fmt: str) -> None:
    """Each response_format comes back as that format, with its content type, decodes to
    sound at the rate X-Sample-Rate states (the voice's 16 kHz; 24 kHz for opus and pcm)."""
    raw = speak(client, input=f"{TEXT} {fmt}", response_format=fmt)
    data = raw.read()
    rate = int(raw.headers["X-Sample-Rate"])
    if fmt == "pcm":
        assert raw.headers["Content-Type"] == "audio/pcm"
        assert rate == 24000 and len(data) % 2 == 0
        samples = np.frombuffer(data, dtype="<i2")
        assert np.abs(samples).max() > 0
        assert len(samples) / rate > 1.0
        return
    if fmt == "mp3":
        assert raw.headers["Content-Type"] == "audio/mpeg"
        assert data[:3] == b"ID3" or (data[0] == 0xFF and data[1] & 0xE0 == 0xE0)  # frame sync
    else:
        magic, content_type = MAGIC[fmt]
        assert raw.headers["Content-Type"] == content_type
        assert data.startswith(magic)
        if fmt == "opus":
            assert b"OpusHead" in data[:200]
    samples, decoded_rate = decoded(data)
    assert decoded_rate == rate == (24000 if fmt == "opus" else 16000)
    assert samples.ndim == 1 and len(samples) / rate > 1.0
    assert np.abs(samples).max() > 0


def test_default_format_is_mp3(stack: Stack) -> None:
    """Without response_format the answer is MP3, as OpenAI's; plain HTTP works too (curl)."""
    response = requests.post(
        f"{stack.base}/v1/audio/speech",
        headers={"Authorization": f"Bearer {API_KEY}"},
        json={"model": "moksori", "voice": 5, "input": "마바사 기본"},
        timeout=40,
    )
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "audio/mpeg"
    assert decoded(response.content)[1] == 16000


def length_s(client: openai.OpenAI, text: str, speed: float) -> float:
    raw = speak(client, input=text, response_format="pcm", speed=speed)
    return len(raw.read()) / 2 / int(raw.headers["X-Sample-Rate"])


def test_speed_changes_the_length_for_that_job_only(client: openai.OpenAI) -> None:
    """speed 2.0 is clearly shorter than 1.0 and 0.5 longer; a new text after a fast job is as
    long as its twin at 1.0 (same token count), so the rate never leaks into the next job."""
    normal = length_s(client, TEXT, 1.0)
    fast = length_s(client, TEXT, 2.0)
    slow = length_s(client, TEXT, 0.5)
    assert fast < 0.7 * normal
    assert slow > 1.4 * normal
    twin = "하파타카차자아사바마라다나가 서버머러더너거"  # the same 21 syllables, reversed
    assert length_s(client, twin, 1.0) == pytest.approx(normal, abs=0.01)


def test_repeat_is_a_cache_hit(client: openai.OpenAI, stack: Stack) -> None:
    """The same request again: the same bytes, X-Moksori-Cached, no synthesis, no new object;
    another format or speed of the same text is a new object."""
    first = speak(client, input="캐시 확인 문장", response_format="flac", speed=1.5)
    assert first.headers["X-Moksori-Cached"] == "false"
    audio = first.read()
    objects, done = media(stack), syntheses(stack)
    again = speak(client, input="캐시 확인 문장", response_format="flac", speed=1.5)
    assert again.headers["X-Moksori-Cached"] == "true"
    assert again.read() == audio
    assert media(stack) == objects
    assert syntheses(stack) == done
    other = speak(client, input="캐시 확인 문장", response_format="flac", speed=1.0)
    assert other.headers["X-Moksori-Cached"] == "false"
    assert len(media(stack)) == len(objects) + 1


def test_wav_at_speed_one_shares_api_texts_cache(stack: Stack, client: openai.OpenAI) -> None:
    """A WAV at speed 1.0 is the very object POST /api/texts makes (keys unchanged)."""
    text = "같은 파일입니다"
    posted = requests.post(
        f"{stack.base}/api/texts?wait=30",
        headers={"Authorization": f"Bearer {API_KEY}"},
        json={"member_id": 5, "text": text},
        timeout=40,
    ).json()
    assert posted["status"] == "done"
    raw = speak(client, input=text, response_format="wav")
    assert raw.headers["X-Moksori-Cached"] == "true"
    stored = requests.get(posted["url"], timeout=10).content
    assert raw.read() == stored
    with wave.open(io.BytesIO(stored)) as wav:
        assert wav.getframerate() == 16000


@pytest.mark.parametrize("voice", ["nari", "NARI", " Nari ", "5", 5])
def test_voice_by_id_or_name(client: openai.OpenAI, voice: str | int) -> None:
    """A member's id (integer or digits) or its name in any case picks its voice."""
    raw = speak(client, input="이름으로 부르기", voice=voice, response_format="wav")
    assert raw.read().startswith(b"RIFF")


def error_of(exc: openai.APIStatusError) -> dict[str, Any]:
    """The error object of an OpenAI-shaped error body, checked for its four fields."""
    body = exc.response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"] and error["type"] == "invalid_request_error"
    return error


@pytest.mark.parametrize(
    ("fields", "param", "code"),
    [
        ({"voice": "alloy"}, "voice", "unknown_voice"),
        ({"voice": 99}, "voice", "unknown_voice"),
        ({"voice": True}, "voice", "invalid_value"),
        ({"response_format": "aac"}, "response_format", "unsupported_format"),
        ({"speed": 4.5}, "speed", "invalid_speed"),
        ({"speed": 0.1}, "speed", "invalid_speed"),
        ({"speed": "fast"}, "speed", "invalid_speed"),
        ({"input": ""}, "input", "empty_text"),
        ({"input": "   "}, "input", "empty_text"),
        ({"input": "🙂🙂"}, "input", "unspeakable_text"),
        ({"input": "가" * 1001}, "input", "text_too_long"),
        ({"input": 5}, "input", "invalid_value"),
        ({"stream_format": "sse"}, "stream_format", "invalid_value"),
    ],
)
def test_bad_input_is_a_400_in_openai_shape(
    client: openai.OpenAI, fields: dict[str, Any], param: str, code: str
) -> None:
    """Every malformed field is openai.BadRequestError with OpenAI's body naming the field."""
    fields = {"input": "안녕하세요", **fields}
    with pytest.raises(openai.BadRequestError) as caught:
        speak(client, **fields)
    error = error_of(caught.value)
    assert (error["param"], error["code"]) == (param, code), error
    shown = {
        k: (v if len(str(v)) <= 20 else f"{str(v)[:3]}… ({len(v)} chars)")
        for k, v in fields.items()
    }
    report.record(
        "OpenAI API",
        f"`POST /v1/audio/speech` with {json.dumps(shown, ensure_ascii=False)}",
        f"400 `{code}`, `param` `{param}` (openai.BadRequestError)",
    )


def test_unknown_model_is_404_model_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        speak(client, model="whisper-1", input="안녕")
    error = error_of(caught.value)
    assert (error["param"], error["code"]) == ("model", "model_not_found")
    report.record(
        "OpenAI API",
        "`POST /v1/audio/speech` with model `whisper-1`",
        "404 `model_not_found` (openai.NotFoundError)",
    )


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code", "param"),
    [
        ("not json", "application/json", 400, "invalid_json", None),
        ("[1, 2]", "application/json", 400, "invalid_json", None),
        (
            '{"model": "tts-1", "voice": "5"}',
            "application/json",
            400,
            "missing_required_parameter",
            "input",
        ),
        (
            '{"input": "안녕", "voice": "5"}',
            "application/json",
            400,
            "missing_required_parameter",
            "model",
        ),
        (
            '{"model": "tts-1", "voice": "5", "input": "안녕"}',
            "text/plain",
            415,
            "unsupported_media_type",
            None,
        ),
    ],
)
def test_malformed_bodies_over_plain_http(
    stack: Stack, body: str, content_type: str, status: int, code: str, param: str | None
) -> None:
    """Not JSON, not an object, a missing field, the wrong content type: a 4xx in OpenAI's
    shape, never a 500; and GET is a 405 in it."""
    response = requests.post(
        f"{stack.base}/v1/audio/speech",
        data=body.encode(),
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": content_type},
        timeout=10,
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"], error["type"]) == (code, param, "invalid_request_error")
    wrong_method = requests.get(
        f"{stack.base}/v1/audio/speech", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10
    )
    assert wrong_method.status_code == 405
    assert set(wrong_method.json()["error"]) == {"message", "type", "param", "code"}
    report.record(
        "OpenAI API",
        f"`POST /v1/audio/speech`, `{content_type}` body `{body[:40]}`",
        f"{status} `{code}` in OpenAI's error shape",
    )


def test_api_keys_apply(stack: Stack) -> None:
    """MOKSORI_API_KEYS guards /v1 as /api: the client's api_key is the bearer key."""
    bad = openai.OpenAI(base_url=f"{stack.base}/v1", api_key="wrong", max_retries=0)
    with bad, pytest.raises(openai.AuthenticationError) as caught:
        speak(bad, input="안녕")
    error = caught.value.response.json()["error"]
    assert (error["code"], error["type"]) == ("invalid_api_key", "authentication_error")


def test_unserved_member_is_503(stack: Stack) -> None:
    """Member 6 exists but no worker serves it: 503 member_unavailable at once, not a wait."""
    started = time.monotonic()
    response = requests.post(
        f"{stack.base}/v1/audio/speech",
        headers={"Authorization": f"Bearer {API_KEY}"},
        json={"model": "tts-1", "voice": "dal", "input": "안녕"},
        timeout=10,
    )
    assert response.status_code == 503 and time.monotonic() - started < 5
    error = response.json()["error"]
    assert (error["code"], error["type"]) == ("member_unavailable", "server_error")
    assert response.headers["Retry-After"]


def test_openapi_lists_the_speech_call(stack: Stack) -> None:
    spec = requests.get(f"{stack.base}/openapi.json", timeout=10).json()
    operation = spec["paths"]["/v1/audio/speech"]["post"]
    assert {"200", "400", "404", "504"} <= set(operation["responses"])
    assert set(operation["responses"]["200"]["content"]) == {
        "audio/wav",
        "audio/mpeg",
        "audio/flac",
        "audio/ogg",
        "audio/pcm",
    }
    body = spec["components"]["schemas"]["SpeechRequest"]
    assert body["properties"]["response_format"]["default"] == "mp3"
    assert json.dumps(body["properties"]["speed"]).count("0.25") == 1


@pytest.mark.parametrize(
    ("fmt", "words"),
    [("opus", "기다리지 않는 문장입니다"), ("mp3", "기다리지 않는 노래입니다")],
    ids=["opus", "mp3"],
)
def test_timeout_is_504_and_a_retry_gets_the_audio(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory, fmt: str, words: str
) -> None:
    """An API that waits only 1 ms answers a new text with 504 `timeout` (OpenAI's
    InternalServerError) while the job goes on, whether the format is answered whole (opus)
    or streamed (mp3); the same request once it is done is the stored audio, with no second
    synthesis. The worker's pool process is paused (SIGSTOP) during the request: Celery's
    result wait can overrun a short timeout by up to its 1 s drain interval, and a warm tiny
    voice finishes well within that."""
    env = {**stack.env, "MOKSORI_SPEECH_TIMEOUT": "0.001"}
    api, base = start_api(env, tmp_path_factory.mktemp("impatient-api"))
    try:
        impatient = openai.OpenAI(base_url=f"{base}/v1", api_key=API_KEY, max_retries=0)
        before = syntheses(stack)
        pool = psutil.Process(stack.worker.proc.pid).children(recursive=True)
        for child in pool:
            child.suspend()
        try:
            with impatient, pytest.raises(openai.InternalServerError) as caught:
                speak(impatient, input=words, response_format=fmt)
        finally:
            for child in pool:
                child.resume()
        assert caught.value.status_code == 504
        error = caught.value.response.json()["error"]
        assert (error["code"], error["type"]) == ("timeout", "server_error")
        assert caught.value.response.headers["Retry-After"]
        deadline = time.monotonic() + 30
        while syntheses(stack) == before and time.monotonic() < deadline:  # the job goes on
            time.sleep(0.05)
        with openai.OpenAI(base_url=f"{base}/v1", api_key=API_KEY, max_retries=0) as retry:
            again = speak(retry, input=words, response_format=fmt)
        assert again.headers["X-Moksori-Cached"] == "true"
        assert len(decoded(again.read())[0]) > 0
        assert syntheses(stack) == before + 1
    finally:
        api.stop()
    report.record(
        "OpenAI API",
        f"`POST /v1/audio/speech` ({fmt}) not done within MOKSORI_SPEECH_TIMEOUT (1 ms)",
        "504 `timeout` with Retry-After; the job finished, and the retry got the stored audio "
        "(no second synthesis)",
        1,
        0,
    )


def test_rate_limit_and_cors_cover_v1(voices: Path, tmp_path: Path, queue_name: str) -> None:
    """/v1 counts toward MOKSORI_RATE_LIMIT (a 429 in OpenAI's shape, rate_limit_error, with
    Retry-After) and browsers on allowed origins may call it."""
    app = build_app(voices, tmp_path, queue=queue_name, rate_limit="2/minute")
    client = app.test_client()
    origin = "http://localhost:3000"
    preflight = client.options(
        "/v1/audio/speech",
        headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.headers["Access-Control-Allow-Origin"] == origin
    body = {"model": "tts-1", "voice": "alloy", "input": "안녕"}
    assert [client.post("/v1/audio/speech", json=body).status_code for _ in range(2)] == [400] * 2
    refused = client.post("/v1/audio/speech", json=body)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    error = refused.get_json()["error"]
    assert (error["code"], error["type"], error["param"]) == (
        "rate_limited",
        "rate_limit_error",
        None,
    )
    app.extensions["moksori"].celery.close()


# Streaming: long texts on the fault repository's voices.

FAST, SLOW, FRAGILE = 1, 2, 3  # HiFi-GAN; Griffin-Lim at about a second a sentence; fails on ㅎ
PLACES = {"wav": "바다", "pcm": "들판", "mp3": "호수", "flac": "숲속"}
"""A place per format: texts about other places share no sentence, so none is stored before."""


@pytest.fixture(scope="module")
def long_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The fault repository's voices behind one API process with one waiting slot, so that a
    stream that kept its slot would have every later streamed request refused."""
    logs = tmp_path_factory.mktemp("openai-long")
    voices = voice_factory.build_fault_repository(logs / "voices")
    settings = {"api_keys": API_KEY, "rate_limit": "off", "api_workers": "1", "max_waiting": "1"}
    with stack_on(voices, logs, "openai-long", **settings) as stack:
        yield stack


@pytest.fixture(scope="module")
def long_client(long_stack: Stack) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{long_stack.base}/v1", api_key=API_KEY, max_retries=0) as c:
        yield c


def job_view(stack: Stack, job_id: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    return requests.get(f"{stack.base}/api/jobs/{job_id}", headers=headers, timeout=10).json()


def ended(stack: Stack, job_id: str) -> dict[str, Any]:
    return eventually(
        lambda: (view := job_view(stack, job_id))["status"] in {"done", "failed"} and view,
        f"job {job_id} ending",
        timeout=120,
    )


def long_speech(client: openai.OpenAI, fmt: str, place: str) -> Any:
    """The slow voice saying :func:`text` about ``place`` in ``fmt``: the response as it comes
    (a context manager; its body is read as it arrives)."""
    return client.audio.speech.with_streaming_response.create(
        model="tts-1", voice=str(SLOW), input=text(place), response_format=fmt
    )


@pytest.mark.parametrize("fmt", STREAMED_FORMATS)
def test_a_long_text_streams_from_its_first_sentence(
    long_stack: Stack, long_client: openai.OpenAI, fmt: str
) -> None:
    """wav, pcm and mp3 come chunked: the first bytes once the first sentence is stored, while
    the job is still making the others, and the stream read to its end is the job's audio (a
    wav's frames are the stored WAV's, pcm its 24 kHz samples, mp3 decodes to its length)."""
    started = time.monotonic()
    with long_speech(long_client, fmt, PLACES[fmt]) as r:
        parts = r.iter_bytes()
        first = next(parts)
        first_s = time.monotonic() - started
        running = job_view(long_stack, r.headers["X-Moksori-Job-Id"])
        body = first + b"".join(parts)
    total_s = time.monotonic() - started

    assert r.headers["Content-Type"] == FORMATS[fmt].content_type
    assert r.headers["X-Moksori-Cached"] == "false"
    assert "Content-Length" not in r.headers and r.headers["Transfer-Encoding"] == "chunked"
    assert running["status"] == "running", running
    assert 1 <= running["sentences_done"] < running["sentences_total"] == SENTENCES, running
    assert first_s < total_s / 2, (first_s, total_s)

    view = ended(long_stack, r.headers["X-Moksori-Job-Id"])
    assert view["status"] == "done", view
    stored = stored_object(long_stack, view["url"])
    rate = int(r.headers["X-Sample-Rate"])
    if fmt == "wav":
        assert body[:4] == b"RIFF" and body[36:40] == b"data"
        assert body[44:] == frames(stored)
        match = "its frames are the job's WAV's"
    elif fmt == "pcm":
        assert rate == 24000
        samples, whole = np.frombuffer(body, "<i2"), np.frombuffer(stored, "<i2")
        # Each sentence is resampled alone here, the whole text at once by the worker.
        assert abs(len(samples) - len(whole)) <= SENTENCES, (len(samples), len(whole))
        n = min(len(samples), len(whole))
        correlation = np.corrcoef(samples[:n], whole[:n])[0, 1]
        assert correlation > 0.99
        match = f"{len(samples)} samples (the job's: {len(whole)}), correlation {correlation:.4f}"
    else:
        samples, decoded_rate = decoded(body)
        whole, _ = decoded(stored)
        assert decoded_rate == rate
        streamed_s, whole_s = len(samples) / rate, len(whole) / rate
        # Each piece carries its encoder's delay and padding (at most ~0.11 s at 16 kHz: 1105
        # samples of delay, up to a 576-sample frame of padding), which the stored MP3's
        # LAME frame lets the decoder trim.
        assert whole_s <= streamed_s <= whole_s + 0.15 * SENTENCES
        match = f"decodes to {streamed_s:.2f} s (the job's MP3: {whole_s:.2f} s)"
    report.record(
        "OpenAI API",
        f"`POST /v1/audio/speech` of a {SENTENCES}-sentence text, `response_format` `{fmt}` "
        "(slow test voice, 1 worker)",
        f"first bytes after {first_s:.2f} s ({running['sentences_done']} of {SENTENCES} "
        f"sentences stored), whole text after {total_s:.2f} s; {match}",
        1,
        0,
    )


def test_flac_is_answered_whole(long_stack: Stack, long_client: openai.OpenAI) -> None:
    """flac cannot be sent piecewise: the answer starts once the job is done, with a length,
    and is the stored object."""
    with long_speech(long_client, "flac", PLACES["flac"]) as r:
        view = job_view(long_stack, r.headers["X-Moksori-Job-Id"])
        body = r.read()
    assert view["status"] == "done" and view["sentences_total"] == SENTENCES, view
    assert int(r.headers["Content-Length"]) == len(body)
    assert body == stored_object(long_stack, view["url"])


def test_a_job_failing_at_its_first_sentence_is_a_json_500(long_client: openai.OpenAI) -> None:
    """The fragile voice cannot say "하늘": a text that starts with it fails before any audio,
    so the answer is still OpenAI's error (openai.InternalServerError), not a stream."""
    with pytest.raises(openai.InternalServerError) as caught:
        speak(
            long_client,
            voice=str(FRAGILE),
            input="하늘이 파래요. 바다를 봅니다. 바다가 좋아요.",
            response_format="wav",
        )
    assert caught.value.status_code == 500
    error = caught.value.response.json()["error"]
    assert (error["code"], error["type"]) == ("synthesis_failed", "server_error")
    assert "Sentence 1 of 3 failed" in error["message"], error


def test_a_stream_holds_a_waiting_slot_until_its_client_goes(
    long_stack: Stack, long_client: openai.OpenAI
) -> None:
    """With MOKSORI_MAX_WAITING=1, another streamed request while a stream runs is a 503
    `service_unavailable`; once its client closes the stream mid-way, the slot comes back."""
    with long_speech(long_client, "pcm", "공원") as r:
        next(r.iter_bytes())
        with pytest.raises(openai.InternalServerError) as caught:
            speak(long_client, voice=str(FAST), input="공원에 갑니다.", response_format="wav")
    assert caught.value.status_code == 503
    assert caught.value.response.json()["error"]["code"] == "service_unavailable"
    assert caught.value.response.headers["Retry-After"]
    tries = iter(range(1000))

    def streams() -> bool:
        try:
            speak(long_client, voice=str(FAST), input=f"공원에 {next(tries)}번 갑니다.")
        except openai.InternalServerError as exc:
            assert exc.status_code == 503, exc
            return False
        return True

    eventually(streams, "a streamed request served after the first stream's client went")


# In-process: the pipeline itself.


@pytest.fixture(scope="module")
def pipeline(voices: Path, tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    return Pipeline(
        bank=load_bank(scan(voices), "cpu"),
        storage=LocalStorage(tmp_path_factory.mktemp("speech-media")),
        normalizer=Normalizer(),
        secret=TEST_SECRET,
    )


def test_batched_jobs_keep_their_own_speed_and_format(pipeline: Pipeline) -> None:
    """A batch mixing speeds and formats: each job gets what run() alone would give it, and
    the model's length_scale is the voice's own afterwards."""
    model = pipeline.bank.voices[5].synthesizer.tts_model
    outcomes = pipeline.run_batch(
        [(5, "가나다라마바", "pcm", 2.0), (5, "사아자차카타", "pcm", 1.0), (5, "파하거너더러")]
    )
    assert model.length_scale == 1.0
    fast, normal, wav = outcomes
    assert fast["key"].startswith("pcm/") and wav["key"].startswith("wav/")
    read = pipeline.storage.read
    assert len(read(fast["key"])) < 0.75 * len(read(normal["key"]))
    alone = pipeline.run(5, "가나다라마바", "pcm", 2.0)
    assert alone["key"] == fast["key"] and alone["synthesis_s"] == 0  # the batch stored it
    assert abs(len(read(alone["key"])) - len(read(fast["key"]))) == 0


def test_speaking_rate_is_restored_after_a_failure(pipeline: Pipeline) -> None:
    voice = pipeline.bank.voices[5]
    with pytest.raises(RuntimeError), speaking_rate(voice, 4.0):
        assert voice.synthesizer.tts_model.length_scale == 0.25
        raise RuntimeError("the model failed")
    assert voice.synthesizer.tts_model.length_scale == 1.0


def test_encode_audio_rates() -> None:
    """opus and pcm are resampled to 24 kHz; wav, mp3 and flac keep the voice's rate."""
    tone = np.sin(np.arange(16000) * 2 * np.pi * 440 / 16000).astype(np.float32)
    for fmt, expected in (("wav", 16000), ("mp3", 16000), ("flac", 16000), ("opus", 24000)):
        data, rate = encode_audio(tone, 16000, fmt)
        samples, decoded_rate = decoded(data)
        assert rate == decoded_rate == expected, fmt
        assert len(samples) / rate == pytest.approx(1.0, abs=0.1), fmt
    pcm, rate = encode_audio(tone, 16000, "pcm")
    assert rate == 24000 and len(pcm) == 2 * 24000
