"""Storage: local files and Google Cloud Storage (against gcp-storage-emulator)."""

from __future__ import annotations

import os
import time
import urllib.request
from pathlib import Path

import pytest

from common.storage import GCSStorage, LocalStorage, StorageError, audio_key, open_storage
from tests.conftest import free_port

KEY = audio_key(1, "g2500-h300", "안녕하세요")


def test_keys_are_server_built() -> None:
    """Keys come from the member id, a sanitised version and a hash: nothing else."""
    assert KEY.startswith("wav/1/g2500-h300/") and KEY.endswith(".wav")
    assert audio_key(1, "../../etc", "x").startswith("wav/1/etc/")
    assert audio_key(1, "/abs/path", "x").startswith("wav/1/abs-path/")
    assert audio_key(1, "v", "a") != audio_key(1, "v", "b")


def test_open_storage_by_url(tmp_path: Path) -> None:
    """file:// gives local storage; anything unknown is refused."""
    assert isinstance(open_storage(f"file://{tmp_path}"), LocalStorage)
    with pytest.raises(ValueError):
        open_storage("s3://bucket")
    with pytest.raises(ValueError):
        open_storage("file://relative/dir")


def test_local_put_is_create_only(tmp_path: Path) -> None:
    """A second upload of the same key keeps the first object and does not fail."""
    storage = LocalStorage(tmp_path)
    storage.put(KEY, b"first")
    storage.put(KEY, b"second")
    assert (tmp_path / KEY).read_bytes() == b"first"
    assert storage.exists(KEY)
    assert [p.name for p in (tmp_path / KEY).parent.iterdir()] == [KEY.rsplit("/", 1)[1]]
    assert storage.url(KEY, "http://host:8000/") == f"http://host:8000/media/{KEY}"


@pytest.mark.parametrize(
    "key",
    ["../secret", "wav/../../secret", "/etc/passwd", "wav//x", "wav/./x", "a\\..\\b", "wav/\x00"],
)
def test_local_paths_never_leave_the_root(tmp_path: Path, key: str) -> None:
    """Traversal, absolute paths and odd separators have no path."""
    assert LocalStorage(tmp_path / "root").path_for(key) is None


def test_local_symlinks_are_not_followed(tmp_path: Path) -> None:
    """A symlink inside the root pointing outside it is refused."""
    root = tmp_path / "root"
    (root / "wav").mkdir(parents=True)
    (tmp_path / "secret.wav").write_bytes(b"secret")
    os.symlink(tmp_path / "secret.wav", root / "wav" / "link.wav")
    assert LocalStorage(root).path_for("wav/link.wav") is None


def test_gcs_upload_url_and_idempotence(gcs_emulator: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Against the emulator: create-only upload, existence check and a fetchable object URL."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    storage = open_storage("gs://moksori-test/audio")
    assert isinstance(storage, GCSStorage)
    assert not storage.exists(KEY)
    storage.put(KEY, b"RIFF-first", "audio/wav")
    storage.put(KEY, b"RIFF-second", "audio/wav")  # "already exists" is success
    assert storage.exists(KEY)
    url = storage.url(KEY)
    assert url.startswith(gcs_emulator) and "/moksori-test/audio/wav/1/" in url
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.read() in {b"RIFF-first", b"RIFF-second"}


def test_gcs_outage_is_a_storage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """With storage unreachable an upload fails with StorageError after its retry budget."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{free_port()}")
    storage = GCSStorage("moksori-test", "audio", retry_deadline=1.0)
    started = time.monotonic()
    with pytest.raises(StorageError, match="upload of wav/1/"):
        storage.put(KEY, b"RIFF", "audio/wav")
    assert time.monotonic() - started < 15
