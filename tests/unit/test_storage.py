"""Storage: local files and Google Cloud Storage (against gcp-storage-emulator).

What the emulator does with signed URLs (gcp-storage-emulator, measured): it serves
``GET /<bucket>/<object>`` whatever the query string, so a V4 signed URL made for its host
downloads the object, but it checks neither the signature nor the expiry, and it would serve
the same path unsigned too (it enforces no ACL). So the tests fetch the signed URL from the
emulator for the bytes, and check the signature itself against the key's public half, by
rebuilding the string to sign from the URL as Google's V4 specification defines it.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from google.auth import compute_engine, identity_pool
from google.auth.compute_engine import _metadata
from google.auth.credentials import AnonymousCredentials, Credentials
from google.oauth2 import credentials as user_credentials
from google.oauth2 import service_account

from common.config import Settings
from common.signing import IAM, PUBLIC, IamSigner, signing_mode
from common.signing import KEY as KEY_SIGNING
from common.storage import (
    GCSStorage,
    LocalStorage,
    StorageError,
    StorageFullError,
    StoredAudio,
    audio_key,
    is_audio_key,
    is_key,
    open_storage,
)
from harness.processes import Process, free_port
from tests import report
from tests.support import SERVICE_ACCOUNT, TEST_SECRET

KEY = audio_key(1, "g2500-h300", "안녕하세요", secret=TEST_SECRET)


@pytest.fixture
def signing_key(
    gcs_emulator: str, service_account_key: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """The emulator, with GOOGLE_APPLICATION_CREDENTIALS naming a service-account key."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(service_account_key))
    yield service_account_key


def test_keys_are_server_built() -> None:
    """Keys come from the member id, a sanitised version and a hash: nothing else."""
    assert KEY.startswith("wav/1/g2500-h300/") and KEY.endswith(".wav")
    assert audio_key(1, "../../etc", "x", secret=TEST_SECRET).startswith("wav/1/etc/")
    assert audio_key(1, "/abs/path", "x", secret=TEST_SECRET).startswith("wav/1/abs-path/")
    assert audio_key(1, "v", "a", secret=TEST_SECRET) != audio_key(1, "v", "b", secret=TEST_SECRET)


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
    assert storage.lookup(KEY) is not None
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


def test_gcs_upload_url_and_idempotence(gcs_emulator: str, signing_key: Path) -> None:
    """Against the emulator: create-only upload, existence check and a fetchable object URL."""
    storage = open_storage("gs://moksori-test/audio")
    assert isinstance(storage, GCSStorage)
    assert storage.lookup(KEY) is None
    storage.put(KEY, b"RIFF-first", "audio/wav")
    storage.put(KEY, b"RIFF-second", "audio/wav")  # "already exists" is success
    assert storage.lookup(KEY) is not None
    url = storage.url(KEY)
    assert url.startswith(gcs_emulator) and "/moksori-test/audio/wav/1/" in url
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.read() in {b"RIFF-first", b"RIFF-second"}


def test_gcs_outage_is_a_storage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """With storage unreachable an upload fails with StorageError after its retry budget."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{free_port()}")
    storage = GCSStorage("moksori-test", "audio", retry_deadline=1.0, public_bucket=True)
    started = time.monotonic()
    with pytest.raises(StorageError, match="upload of wav/1/"):
        storage.put(KEY, b"RIFF", "audio/wav")
    assert time.monotonic() - started < 15


def verify_v4_signature(url: str, key_file: Path) -> dict[str, str]:
    """Check a V4 signed URL's signature with the public half of ``key_file``, rebuilding the
    canonical request and string to sign from the URL alone (Google's V4 signing process:
    method, path, sorted query without the signature, ``host`` header, unsigned payload).
    Returns the query parameters; raises InvalidSignature when the signature does not match."""
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    signature = bytes.fromhex(params.pop("X-Goog-Signature"))
    canonical_query = "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(params.items())
    )
    canonical_request = "\n".join(
        ["GET", parts.path, canonical_query, f"host:{parts.netloc}\n", "host", "UNSIGNED-PAYLOAD"]
    )
    scope = params["X-Goog-Credential"].split("/", 1)[1]
    string_to_sign = "\n".join(
        [
            "GOOG4-RSA-SHA256",
            params["X-Goog-Date"],
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    info = json.loads(key_file.read_text(encoding="utf-8"))
    private = serialization.load_pem_private_key(info["private_key"].encode(), password=None)
    private.public_key().verify(
        signature, string_to_sign.encode(), padding.PKCS1v15(), hashes.SHA256()
    )
    return params


def test_gcs_urls_are_v4_signed_with_the_configured_lifetime(
    gcs_emulator: str, signing_key: Path
) -> None:
    """A private bucket's URL is a V4 signed GET URL for the object, signed by the service
    account's key, valid for MOKSORI_SIGNED_URL_TTL seconds, and it fetches the WAV."""
    storage = open_storage("gs://moksori-test/signed", signed_url_ttl=900)
    assert isinstance(storage, GCSStorage) and storage.signing == KEY_SIGNING
    wav = b"RIFF" + os.urandom(64)
    storage.put(KEY, wav, "audio/wav", 1.5)
    url = storage.url(KEY)
    assert url.startswith(f"{gcs_emulator}/moksori-test/signed/{KEY}?")
    params = verify_v4_signature(url, signing_key)
    assert params["X-Goog-Algorithm"] == "GOOG4-RSA-SHA256"
    assert params["X-Goog-Expires"] == "900"
    assert params["X-Goog-Credential"].startswith(f"{SERVICE_ACCOUNT}/")
    assert params["X-Goog-SignedHeaders"] == "host"
    signed_at = datetime.strptime(params["X-Goog-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - signed_at).total_seconds()) < 60
    tampered = url.replace("X-Goog-Expires=900", "X-Goog-Expires=604800")
    with pytest.raises(InvalidSignature):
        verify_v4_signature(tampered, signing_key)
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.read() == wav
    assert storage.location(KEY) == f"gs://moksori-test/signed/{KEY}"
    report.record(
        "storage privacy",
        "GCS object URL (private bucket, service-account key)",
        "V4 signed GET URL, GOOG4-RSA-SHA256, X-Goog-Expires = MOKSORI_SIGNED_URL_TTL; "
        "signature verified with the key; the emulator serves the WAV at it",
    )


def test_gcs_public_urls_only_for_a_public_bucket(gcs_emulator: str, signing_key: Path) -> None:
    """Plain URLs come only with MOKSORI_PUBLIC_BUCKET=1; by default every URL is signed."""
    settings = Settings.from_env({"MOKSORI_PUBLIC_BUCKET": "1"})
    public = open_storage("gs://moksori-test/pub", public_bucket=settings.public_bucket)
    assert isinstance(public, GCSStorage) and public.signing == PUBLIC
    public.put(KEY, b"RIFF-public", "audio/wav")
    assert public.url(KEY) == f"{gcs_emulator}/moksori-test/pub/{KEY}"
    with urllib.request.urlopen(public.url(KEY), timeout=5) as response:
        assert response.read() == b"RIFF-public"
    default = open_storage("gs://moksori-test/pub", public_bucket=Settings().public_bucket)
    assert "X-Goog-Signature=" in default.url(KEY)


def test_gcs_without_signing_credentials_fails_at_start(
    gcs_emulator: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anonymous credentials on a private bucket cannot sign: refused when storage is opened,
    naming the ways out, rather than handing out URLs nobody can fetch."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    with pytest.raises(ValueError, match=r"cannot sign.*MOKSORI_PUBLIC_BUCKET=1"):
        open_storage("gs://moksori-test/audio")
    assert open_storage("gs://moksori-test/audio", public_bucket=True).signing == PUBLIC
    report.record(
        "storage privacy",
        "GCS with credentials that cannot sign, bucket not public",
        "refused at start-up with a message naming the fixes",
    )


def test_gcs_uploads_never_make_objects_public(
    gcs_emulator_process: Process, signing_key: Path
) -> None:
    """Uploads set no ACL: no predefinedAcl on the upload request, no public entry on the object."""
    storage = open_storage("gs://moksori-test/private")
    assert isinstance(storage, GCSStorage)
    key = audio_key(2, "v", "private", secret=TEST_SECRET)
    seen = len(gcs_emulator_process.output())
    storage.put(key, b"RIFF-private", "audio/wav", 0.5)
    requests = gcs_emulator_process.output()[seen:].splitlines()
    uploads = [line for line in requests if "uploadType=" in line]
    assert len(uploads) == 1, requests
    assert "predefinedAcl" not in uploads[0] and "/acl" not in "".join(requests)
    blob = storage._bucket.blob(storage._name(key))
    blob.acl.reload()
    entities = {entry["entity"] for entry in blob.acl}
    assert not entities & {"allUsers", "allAuthenticatedUsers"}


def test_signed_url_lifetime_is_bounded() -> None:
    """MOKSORI_SIGNED_URL_TTL is 1 s to 7 days (V4's limit), checked when settings are read."""
    assert Settings.from_env({}).signed_url_ttl == 3600
    assert Settings.from_env({"MOKSORI_SIGNED_URL_TTL": "604800"}).signed_url_ttl == 604800
    for bad in ("0", "604801", "-5"):
        with pytest.raises(ValueError, match="MOKSORI_SIGNED_URL_TTL"):
            Settings.from_env({"MOKSORI_SIGNED_URL_TTL": bad})
    with pytest.raises(ValueError, match="prefix"):
        open_storage("gs://moksori-test/a/../b", public_bucket=True)


class MetadataServerCredentials(Credentials):
    """Keyless credentials shaped like the metadata server's (GCE, Cloud Run, GKE workload
    identity): the account is ``default`` until the first refresh names it."""

    def __init__(self) -> None:
        super().__init__()
        self.service_account_email = "default"
        self.refreshes = 0

    def refresh(self, request: object) -> None:
        self.refreshes += 1
        self.service_account_email = "runner@moksori.iam.gserviceaccount.com"
        self.token = f"token-{self.refreshes}"
        self.expiry = datetime.now(UTC).replace(tzinfo=None).replace(year=2999)


def test_signing_mode_follows_the_credentials(service_account_key: Path, tmp_path: Path) -> None:
    """Which credentials sign how: a key signs locally, keyless service-account credentials
    go through IAM signBlob, a public bucket needs nothing, and the rest cannot sign."""
    key = service_account.Credentials.from_service_account_file(str(service_account_key))
    assert signing_mode(key, public_bucket=False) == KEY_SIGNING
    assert signing_mode(compute_engine.Credentials(), public_bucket=False) == IAM
    assert signing_mode(MetadataServerCredentials(), public_bucket=False) == IAM
    (tmp_path / "token").write_text("subject-token")
    federation = {
        "type": "external_account",
        "audience": "//iam.googleapis.com/projects/1/locations/global/"
        "workloadIdentityPools/p/providers/q",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": "https://sts.googleapis.com/v1/token",
        "credential_source": {"file": str(tmp_path / "token")},
    }
    impersonating = {
        **federation,
        "service_account_impersonation_url": "https://iamcredentials.googleapis.com/v1/projects/"
        "-/serviceAccounts/runner@moksori.iam.gserviceaccount.com:generateAccessToken",
    }
    assert signing_mode(identity_pool.Credentials.from_info(impersonating), False) == IAM
    for unable in (
        AnonymousCredentials(),
        user_credentials.Credentials(token="a user's own login"),
        identity_pool.Credentials.from_info(federation),
    ):
        with pytest.raises(ValueError, match="cannot sign"):
            signing_mode(unable, public_bucket=False)
        assert signing_mode(unable, public_bucket=True) == PUBLIC


def test_keyless_credentials_sign_through_iam(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keyless credentials sign through IAM for the account a refresh names (refreshed once
    while the token is valid); an IAM that cannot be reached (no network here) is a prompt
    StorageError, which the API answers as a 503."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{free_port()}")
    credentials = MetadataServerCredentials()
    storage = GCSStorage("moksori-test", "audio", credentials=credentials)
    assert storage.signing == IAM and isinstance(storage._signer, IamSigner)
    assert storage._signer.signer_email == "runner@moksori.iam.gserviceaccount.com"
    assert storage._signer.signer_email == "runner@moksori.iam.gserviceaccount.com"
    assert credentials.refreshes == 1
    started = time.monotonic()
    with pytest.raises(StorageError, match="could not sign"):
        storage.url(KEY)
    assert time.monotonic() - started < 15


class _RefusingMetadataServer(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_metadata_server_refusing_is_a_storage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """google-auth's real GCE credentials with a metadata server that will not give a token:
    url() raises StorageError (the API answers 503), never an unexpected exception."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RefusingMetadataServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{free_port()}")
        # What GCE_METADATA_HOST sets, read by google-auth once, when first imported.
        monkeypatch.setattr(_metadata, "_GCE_METADATA_HOST", f"127.0.0.1:{server.server_port}")
        storage = GCSStorage("moksori-test", "audio", credentials=compute_engine.Credentials())
        assert storage.signing == IAM
        with pytest.raises(StorageError, match="could not sign"):
            storage.url(KEY)
    finally:
        server.shutdown()
        thread.join()


MP3_KEY = audio_key(1, "g2500-h300", "안녕하세요", "mp3", secret=TEST_SECRET)


def test_other_formats_have_keys_of_their_own(tmp_path: Path) -> None:
    """A format names its folder and extension; only WAV keys are what /media serves."""
    assert MP3_KEY.startswith("mp3/1/g2500-h300/") and MP3_KEY.endswith(".mp3")
    assert is_audio_key(MP3_KEY) and not is_key(MP3_KEY)
    assert is_audio_key(KEY) and is_key(KEY)
    assert not is_audio_key(MP3_KEY.replace(".mp3", ".wav"))  # folder and extension agree


def test_local_read_and_lookup_of_any_format(tmp_path: Path) -> None:
    """read() gives the stored bytes (None when absent); a non-WAV object is found by lookup
    without a duration (its header is not read)."""
    storage = LocalStorage(tmp_path)
    assert storage.read(MP3_KEY) is None and storage.lookup(MP3_KEY) is None
    storage.put(MP3_KEY, b"\xff\xf3mp3 bytes", "audio/mpeg")
    assert storage.read(MP3_KEY) == b"\xff\xf3mp3 bytes"
    assert storage.lookup(MP3_KEY) == StoredAudio(MP3_KEY, None)
    assert storage.read("../outside.mp3") is None


def test_gcs_read_of_any_format(gcs_emulator: str, signing_key: Path) -> None:
    """Against the emulator: read() downloads the object, None when there is none."""
    storage = open_storage("gs://moksori-test/read")
    assert storage.read(MP3_KEY) is None
    storage.put(MP3_KEY, b"\xff\xf3mp3 bytes", "audio/mpeg", 1.5)
    assert storage.read(MP3_KEY) == b"\xff\xf3mp3 bytes"
    assert storage.lookup(MP3_KEY) == StoredAudio(MP3_KEY, 1.5)


def test_a_refused_local_write_is_a_plain_coded_error_and_leaves_nothing(tmp_path: Path) -> None:
    """A write the file system refuses (here: a folder of the key is a file) is a StorageError
    coded ``storage_unavailable`` whose message is the plain reason, with nothing left behind;
    a full volume is ``storage_full`` (tests/integration/test_storage_faults.py, on a tmpfs)."""
    storage = LocalStorage(tmp_path)
    (tmp_path / "wav").write_bytes(b"not a folder")
    with pytest.raises(StorageError) as refused:
        storage.put(KEY, b"RIFF")
    assert refused.value.code == "storage_unavailable"
    assert str(refused.value) == f"cannot write {KEY}: Not a directory"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wav"]
    assert StorageFullError("x").code == "storage_full" and isinstance(
        StorageFullError("x"), StorageError
    )
