"""Unguessable audio names and signed ``/media`` URLs, through the API under gunicorn and a real
worker: names are keyed with the server's secret (a guessed unkeyed name finds nothing), the
cache survives a restart with the same secret, another secret names objects differently,
objects stored under unkeyed names are adopted by the migration, and with
``MOKSORI_MEDIA_ACCESS=signed`` ``/media`` takes only a valid unexpired signature or an API key."""

from __future__ import annotations

import io
import stat
import wave
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from common.jobs import speech_key
from common.media_secret import SECRET_FILE, MediaSecret
from tests import report
from tests.support import Stack, eventually, local_env, running_stack

API_KEY = "media-test-key-0123456789abcdef"
PAUSE = 0.25


def post(stack: Stack, text: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """POST a text for member 1 and wait for its answer (done, or cached)."""
    response = requests.post(
        f"{stack.base}/api/texts?wait=60",
        json={"member_id": 1, "text": text},
        headers=headers or {},
        timeout=90,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "done", body
    return body


def version(stack: Stack, headers: dict[str, str] | None = None) -> str:
    answer = requests.get(f"{stack.base}/api/members", headers=headers or {}, timeout=10)
    members = answer.json()["members"]
    return next(m["version"] for m in members if m["id"] == 1)


def key_of(url: str) -> str:
    return urlsplit(url).path.removeprefix("/media/")


def silent_wav(seconds: float = 1.0, rate: int = 22050) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(bytes(2 * int(seconds * rate)))
    return buffer.getvalue()


def test_names_are_keyed_survive_restarts_and_old_names_migrate(
    voice_dir: Path, queue_name: str, tmp_path: Path
) -> None:
    """With one secret: the stored name is its HMAC, not the unkeyed SHA-256 (which finds
    nothing); after a restart the same text is a cache hit under the same name; with the
    migration on, an object under its unkeyed name is adopted; another secret gives the same
    text another name."""
    media = tmp_path / "media"
    first_secret = "first-media-secret-0123456789"
    env = local_env(voice_dir, queue_name, media, media_secret=first_secret)
    text = "비밀 열쇠로 이름을 붙입니다."
    for run in ("first", "second", "third"):
        (tmp_path / run).mkdir()
    with running_stack(env, tmp_path / "first") as stack:
        body = post(stack, text)
        voice_version = version(stack)
        key = key_of(body["url"])
        keyed = MediaSecret(first_secret.encode())
        assert key == speech_key(1, voice_version, text, PAUSE, secret=keyed)
        assert (media / key).is_file()
        guessed = speech_key(1, voice_version, text, PAUSE, secret=None)
        assert guessed != key and not (media / guessed).exists()
        assert requests.get(f"{stack.base}/media/{guessed}", timeout=10).status_code == 404
        assert requests.get(body["url"], timeout=10).status_code == 200
    old_text = "열쇠 없이 저장했던 옛날 문장입니다."
    legacy = speech_key(1, voice_version, old_text, PAUSE, secret=None)
    (media / legacy).parent.mkdir(parents=True, exist_ok=True)
    (media / legacy).write_bytes(silent_wav(1.0))
    with running_stack({**env, "MOKSORI_MEDIA_LEGACY_NAMES": "1"}, tmp_path / "second") as stack:
        again = post(stack, text)
        assert again["cached"] is True and key_of(again["url"]) == key, again
        adopted = post(stack, old_text)
        new_key = speech_key(1, voice_version, old_text, PAUSE, secret=keyed)
        assert adopted["cached"] is True and key_of(adopted["url"]) == new_key, adopted
        assert adopted["duration_s"] == 1.0
        assert (media / new_key).read_bytes() == (media / legacy).read_bytes()
    other_env = {**env, "MOKSORI_MEDIA_SECRET": "second-media-secret-9876543210"}
    with running_stack(other_env, tmp_path / "third") as stack:
        other = post(stack, text)
        assert other["cached"] is False and key_of(other["url"]) != key, other
    report.record(
        "media names",
        "the unkeyed SHA-256 name of a spoken text guessed; API and worker restarted with the "
        "same secret, then with another; an object left under its unkeyed name",
        "guessed name 404 (nothing stored under it); same secret: a cache hit under the same "
        "name; another secret: synthesized under another name; the old object adopted "
        "(copied to its keyed name, 200 cached) with MOKSORI_MEDIA_LEGACY_NAMES=1",
        4,
        0,
    )


def test_signed_media_urls_under_api_keys(voice_dir: Path, queue_name: str, tmp_path: Path) -> None:
    """``MOKSORI_MEDIA_ACCESS=signed`` with API keys and no secret set: the secret is generated
    in the storage root (0600); the job's URL plays without a key until it expires; a tampered,
    missing or expired signature is a 403 ``invalid_signature``, unless a valid key is sent."""
    media = tmp_path / "media"
    env = local_env(
        voice_dir, queue_name, media, api_keys=API_KEY, media_access="signed", signed_url_ttl="8"
    )
    auth = {"Authorization": f"Bearer {API_KEY}"}
    text = "서명한 주소로만 들을 수 있습니다."
    with running_stack(env, tmp_path) as stack:
        body = post(stack, text, auth)
        secret_file = media / SECRET_FILE
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
        secret = MediaSecret(secret_file.read_text().strip().encode())
        key = key_of(body["url"])
        assert key == speech_key(1, version(stack, auth), text, PAUSE, secret=secret)
        fresh = requests.get(f"{stack.base}/api/jobs/{body['job_id']}", headers=auth, timeout=10)
        url = fresh.json()["url"]
        played = requests.get(url, timeout=10)  # no key: the signature is the capability
        assert played.status_code == 200, played.text
        assert played.content == (media / key).read_bytes()
        assert "private" in played.headers["Cache-Control"]

        def refused(target: str, headers: dict[str, str] | None = None) -> str:
            answer = requests.get(target, headers=headers or {}, timeout=10)
            assert answer.status_code == 403, (answer.status_code, answer.text)
            error = answer.json()["error"]
            assert error["code"] == "invalid_signature"
            return str(error["message"])

        bare = f"{stack.base}/media/{key}"
        assert "signed URL" in refused(bare)
        signature = url.rsplit("=", 1)[1]
        tampered = url[: -len(signature)] + signature[::-1]
        assert "does not match" in refused(tampered)
        assert "does not match" in refused(url.replace("expires=", "expires=9"))
        assert "does not match" in refused(tampered, {"Authorization": "Bearer wrong-key-xxxxxxxx"})
        assert requests.get(bare, headers=auth, timeout=10).status_code == 200
        guessed = speech_key(1, version(stack, auth), text, PAUSE, secret=None)
        refused(f"{stack.base}/media/{guessed}")
        expired = eventually(
            lambda: requests.get(url, timeout=10).status_code == 403,
            "the signed URL expire",
            timeout=30,
            interval=0.5,
        )
        assert expired and "expired" in refused(url)
    report.record(
        "media names",
        "MOKSORI_MEDIA_ACCESS=signed under API keys: /media fetched without a signature, with "
        "a tampered one, with a changed expiry, past its expiry, and by a guessed unkeyed name",
        "the job's signed URL played without a key (Cache-Control private); every other "
        "request 403 invalid_signature with the reason; a valid API key opened the bare path",
        1,
        0,
    )
