"""Object names keyed with the server's secret, the secret's file, signed ``/media`` URLs and
the migration from unkeyed names (:mod:`common.media_secret`, :mod:`common.storage`)."""

from __future__ import annotations

import hashlib
import multiprocessing
import stat
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from common import media_secret
from common.config import Settings
from common.jobs import load_media_secret, speech_key
from common.media_secret import SECRET_FILE, MediaSecret
from common.normalize import NORMALIZER_VERSION, canonical
from common.storage import LocalStorage, adopt, is_key

TEXT = "오늘 회의는 세 시에 시작합니다."


def test_a_name_cannot_be_computed_from_the_text_without_the_secret() -> None:
    """Same text and secret: same name (content-addressed); another secret: another name; and
    the unkeyed SHA-256 of the name's inputs is not it."""
    one, other = MediaSecret(b"first secret, 16+ chars"), MediaSecret(b"second secret, 16+ chars")
    name = speech_key(1, "v1", TEXT, 0.25, secret=one)
    assert name == speech_key(1, "v1", f" {TEXT} ", 0.25, secret=one)
    assert name != speech_key(1, "v1", TEXT, 0.25, secret=other)
    identity = "\x00".join((f"normalizer={NORMALIZER_VERSION}", "pause=0.25", canonical(TEXT)))
    unkeyed = hashlib.sha256(identity.encode()).hexdigest()
    assert unkeyed not in name and is_key(name)
    assert speech_key(1, "v1", TEXT, 0.25, secret=None) == f"wav/1/v1/{unkeyed}.wav"


def test_a_generated_secret_is_kept_private_and_reused(tmp_path: Path) -> None:
    """Unset, the secret is generated once into the storage root, mode 0600, and read back by
    every later start; a configured one wins and no file is needed."""
    settings = Settings.from_env({}, storage_url=f"file://{tmp_path / 'media'}")
    first = load_media_secret(settings)
    path = tmp_path / "media" / SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_media_secret(settings).name_digest("x") == first.name_digest("x")
    assert not is_key(f"wav/1/v1/{SECRET_FILE}")  # never served by /media
    configured = Settings.from_env({"MOKSORI_MEDIA_SECRET": "a-configured-secret-value"})
    assert load_media_secret(configured).value == b"a-configured-secret-value"
    with pytest.raises(ValueError, match="MOKSORI_MEDIA_SECRET"):
        Settings.from_env({"MOKSORI_MEDIA_SECRET": "short"})


def test_a_secret_that_cannot_be_kept_still_lets_the_process_start(tmp_path: Path) -> None:
    """Storage that cannot hold the secret file (here: under a regular file) is not a crash at
    start-up: the process gets a secret of its own, and /readyz reports the storage."""
    (tmp_path / "file").write_bytes(b"")
    one = media_secret.load("", tmp_path / "file" / "media")
    assert one.name_digest("x") != media_secret.load("", tmp_path / "file" / "media").name_digest(
        "x"
    )


def _digest_from(folder: str) -> str:
    return media_secret.load("", Path(folder)).name_digest("x")


def test_processes_starting_together_agree_on_one_secret(tmp_path: Path) -> None:
    """Eight processes generating the secret at once all end up with the same one."""
    with multiprocessing.get_context("spawn").Pool(8) as pool:
        digests = set(pool.map(_digest_from, [str(tmp_path)] * 8))
    assert len(digests) == 1
    assert [p.name for p in tmp_path.iterdir()] == [SECRET_FILE]  # no temporary file left


def test_signed_urls_work_expire_and_refuse_tampering(tmp_path: Path) -> None:
    """A signed URL is valid until its expiry for exactly its path; anything else is refused
    with the reason."""
    secret = MediaSecret(b"signing secret, 16+ chars")
    storage = LocalStorage(tmp_path, url_signer=secret, url_ttl=60)
    key = speech_key(1, "v1", TEXT, 0.25, secret=secret)
    url = storage.url(key, "http://h")
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert urlsplit(url).path == f"/media/{key}"
    assert int(query["expires"]) - time.time() == pytest.approx(60, abs=5)
    assert storage.refusal(key, query["expires"], query["signature"]) == ""
    other = speech_key(1, "v1", TEXT + "!", 0.25, secret=secret)
    assert storage.refusal(other, query["expires"], query["signature"]) == "invalid"
    later = str(int(query["expires"]) + 3600)
    assert storage.refusal(key, later, query["signature"]) == "invalid"
    flipped = query["signature"][:-1] + ("0" if query["signature"][-1] != "0" else "1")
    assert storage.refusal(key, query["expires"], flipped) == "invalid"
    assert storage.refusal(key, None, None) == "missing"
    assert storage.refusal(key, "soon", query["signature"]) == "malformed"
    past = int(time.time()) - 1
    assert storage.refusal(key, str(past), secret.signature(f"/media/{key}", past)) == "expired"
    other_secret = MediaSecret(b"another secret, 16+ chars")
    assert (
        LocalStorage(tmp_path, url_signer=other_secret).refusal(
            key, query["expires"], query["signature"]
        )
        == "invalid"
    )
    assert LocalStorage(tmp_path).url(key, "http://h") == f"http://h/media/{key}"
    assert LocalStorage(tmp_path).refusal(key, None, None) == ""


def test_an_object_under_its_unkeyed_name_is_adopted(tmp_path: Path) -> None:
    """The migration: an object stored before names were keyed is found under its old name,
    copied to its keyed name, and found there directly from then on."""
    storage = LocalStorage(tmp_path)
    secret = MediaSecret(b"migration secret, 16+ chars")
    key = speech_key(1, "v1", TEXT, 0.25, secret=secret)
    legacy = speech_key(1, "v1", TEXT, 0.25, secret=None)
    storage.put(legacy, b"RIFF-old-audio", duration_s=1.5)
    assert adopt(storage, key, None) is None  # migration off: the old name is not read
    found = adopt(storage, key, legacy)
    assert found is not None and found.key == key
    assert storage.read(key) == b"RIFF-old-audio"
    assert adopt(storage, key, None) is not None
    missing = [speech_key(1, "v1", "없는 문장", 0.25, secret=s) for s in (secret, None)]
    assert adopt(storage, *missing) is None  # neither name stored: a miss
