"""Where synthesized audio is kept: a local directory or a Google Cloud Storage bucket.

Object keys are built by :func:`audio_key` from server-side values only (member id, voice version
and an HMAC of the normalized text under the server's secret, :mod:`common.media_secret`), so no
client string can choose a path and nobody without the secret can compute one from a text.
Uploads are create-only: the same key always holds the same audio, and "already exists" counts
as success.

GCS objects are private: clients get V4 signed URLs, made afresh each time one is handed out
(see :class:`GCSStorage`), and plain public URLs only for a bucket configured as public. Job
results keep an object's :meth:`~LocalStorage.location`, never a URL that could go stale.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import tempfile
import time
import uuid
import wave
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from common.audio_formats import FORMATS
from common.config import MAX_SIGNED_URL_TTL
from common.media_secret import MediaSecret, legacy_digest

_LOGGER = logging.getLogger(__name__)

KEY_PATTERN = r"^wav/[0-9]+/[A-Za-z0-9_-][A-Za-z0-9._-]*/[0-9a-f]{64}\.wav$"
"""Every WAV key :func:`audio_key` builds (the version never starts with a dot: no ``.``/``..``);
what ``/media`` serves and documents."""
_KEY_RE = re.compile(KEY_PATTERN)
_AUDIO_KEY_RE = re.compile(
    r"^(wav|mp3|flac|opus|pcm)/[0-9]+/[A-Za-z0-9_-][A-Za-z0-9._-]*/[0-9a-f]{64}\.\1$"
)
"""Every key :func:`audio_key` builds, in any format (``/v1/audio/speech``'s included)."""
_VERSION_RE = re.compile(r"[^A-Za-z0-9._-]+")
PROBE_PREFIX = ".readyz-"
"""Name prefix of the readiness probe's short-lived object: never the shape of an audio key."""
_NAME_MAX, _PATH_MAX = 255, 4096  # bytes, as Linux and macOS file systems count them


STORAGE_FULL = "storage_full"
STORAGE_UNAVAILABLE = "storage_unavailable"
"""The codes of a job that failed to store its audio after its retries
(:attr:`StorageError.code`)."""


class StorageError(RuntimeError):
    """Storage could not be reached or refused the operation; its message is a plain reason
    (no errno, no traceback text) that a failed job shows its client."""

    code = STORAGE_UNAVAILABLE


class StorageFullError(StorageError):
    """No room left for the object: a full volume or an exhausted quota."""

    code = STORAGE_FULL


_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def _local_error(key: str, exc: OSError) -> StorageError:
    """A failed local write as a :class:`StorageError` saying why in plain words."""
    if exc.errno in _FULL:
        return StorageFullError(f"no space left on the storage volume for {key}")
    return StorageError(f"cannot write {key}: {exc.strerror or type(exc).__name__}")


def _gcs_error(doing: str, exc: BaseException) -> StorageError:
    """A failed GCS call as a :class:`StorageError` naming its HTTP status when it has one
    (a :class:`~google.api_core.exceptions.RetryError` names its last cause's)."""
    cause = getattr(exc, "cause", None) or exc
    status = getattr(cause, "code", None)
    if isinstance(status, int):
        why = f"GCS answered HTTP {status}"
    elif isinstance(cause, OSError):
        why = "GCS could not be reached"
    else:
        why = f"{type(cause).__name__}: {cause}"
    if cause is not exc:
        why += ", until the retry deadline"
    return StorageError(f"{doing}: {why}")


def audio_key(
    member_id: int,
    voice_version: str,
    normalized_text: str,
    fmt: str = "wav",
    *,
    secret: MediaSecret | None,
) -> str:
    """The object key for one member's rendering of one normalized text in format ``fmt``
    (a name from :data:`common.audio_formats.FORMATS`, never a client's string), named by an
    HMAC under ``secret``; ``secret=None`` gives the unkeyed name objects had before (read only
    for the migration, ``MOKSORI_MEDIA_LEGACY_NAMES``)."""
    version = _VERSION_RE.sub("-", voice_version).strip(".-") or "0"
    if secret is None:
        digest = legacy_digest(normalized_text)
    else:
        digest = secret.name_digest(normalized_text)
    key = f"{fmt}/{int(member_id)}/{version}/{digest}.{fmt}"
    if not is_audio_key(key):  # a negative member id: the API never lets one through
        raise ValueError(f"refusing to build key {key!r}")
    return key


def is_key(key: str) -> bool:
    """Whether ``key`` has the shape of a WAV key :func:`audio_key` builds (what ``/media``
    serves)."""
    return _KEY_RE.fullmatch(key) is not None


def is_audio_key(key: str) -> bool:
    """Whether ``key`` has the shape of any key :func:`audio_key` builds, in any format."""
    return _AUDIO_KEY_RE.fullmatch(key) is not None


@dataclass(frozen=True)
class StoredAudio:
    """What the cache needs to know of an object that is really there."""

    key: str
    duration_s: float | None


@dataclass(frozen=True)
class LocalStorage:
    """Files under one root directory, served by the API under ``/media/``.

    With ``url_signer`` (``MOKSORI_MEDIA_ACCESS=signed``) every URL handed out carries an
    expiry ``url_ttl`` seconds ahead and a signature of path and expiry, which ``/media``
    checks (:meth:`refusal`), as GCS does with V4 signed URLs."""

    root: Path
    url_signer: MediaSecret | None = None
    url_ttl: int = 3600

    def path_for(self, key: str) -> Path | None:
        """The file for ``key``, or None when the key would leave the root (any traversal trick)
        or could name no file (a part longer than NAME_MAX, the whole over PATH_MAX)."""
        if not key or key.startswith(("/", "\\")) or "\x00" in key:
            return None
        parts = key.split("/")
        if any(part in {"", ".", ".."} or "\\" in part for part in parts):
            return None
        if any(len(part.encode("utf-8", "surrogatepass")) > _NAME_MAX for part in parts):
            return None
        root = self.root.resolve()
        candidate = root.joinpath(*parts)
        if len(str(candidate).encode("utf-8", "surrogatepass")) >= _PATH_MAX:
            return None
        try:
            resolved = candidate.resolve()
        except (OSError, ValueError):  # ValueError: a lone surrogate cannot be a file name
            return None
        if resolved != candidate or not resolved.is_relative_to(root):
            return None  # a symlink somewhere on the way
        return resolved

    def put(
        self,
        key: str,
        data: bytes,
        content_type: str = "audio/wav",
        duration_s: float | None = None,
    ) -> None:
        """Write ``data`` to a temporary file beside the object, then link it to its name:
        nothing half-written ever has the name, and a failed write leaves no temporary file.
        A full volume is :class:`StorageFullError`; any other refusal a :class:`StorageError`."""
        path = self.path_for(key)
        if path is None:
            raise StorageError(f"invalid key {key!r}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        except OSError as exc:
            raise _local_error(key, exc) from exc
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)
            try:
                os.link(tmp, path)  # atomic and create-only: readers never see half a file
            except FileExistsError:
                _LOGGER.debug("object %s already stored", key)
        except OSError as exc:
            raise _local_error(key, exc) from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def free_bytes(self) -> int:
        """Bytes free for this process on the root's volume (what a write can still use)."""
        return shutil.disk_usage(self.root).free

    def lookup(self, key: str) -> StoredAudio | None:
        """Reads the duration from the WAV header (a few hundred bytes), so no sidecar is needed."""
        path = self.path_for(key)
        if path is None:
            return None
        if not key.endswith(".wav"):  # other formats: no header read here (no decoder in the API)
            return StoredAudio(key, None) if path.is_file() else None
        try:
            with wave.open(str(path), "rb") as wav:
                duration = wav.getnframes() / wav.getframerate()
        except FileNotFoundError:
            return None
        except (OSError, EOFError, wave.Error, ZeroDivisionError):
            return StoredAudio(key, None) if path.is_file() else None
        return StoredAudio(key, round(duration, 3))

    def read(self, key: str) -> bytes | None:
        path = self.path_for(key)
        if path is None:
            return None
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"read of {key} failed: {exc}") from exc

    def url(self, key: str, base_url: str = "") -> str:
        """The object's ``/media`` URL, signed and with an expiry when ``url_signer`` is set."""
        url = f"{base_url.rstrip('/')}{self.location(key)}"
        if self.url_signer is None:
            return url
        expires = int(time.time()) + self.url_ttl
        signature = self.url_signer.signature(self.location(key), expires)
        return f"{url}?expires={expires}&signature={signature}"

    def refusal(self, key: str, expires: str | None, signature: str | None) -> str:
        """Why a ``/media`` request for ``key`` with this expiry and signature is refused
        (``missing``, ``malformed``, ``invalid`` or ``expired``), or "" when it may be served."""
        if self.url_signer is None:
            return ""
        return self.url_signer.check(self.location(key), expires, signature, time.time())

    def location(self, key: str) -> str:
        return f"/media/{key}"

    def probe(self) -> None:
        """Write and remove a small file under the root (for ``/readyz``); raises
        :class:`StorageError` saying why the root is not writable."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=PROBE_PREFIX)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(b"moksori readiness probe\n")
            finally:
                os.unlink(tmp)
        except OSError as exc:
            raise StorageError(f"cannot write to {self.root}: {exc.strerror or exc}") from exc


class GCSStorage:
    """Objects in a Google Cloud Storage bucket under a prefix (honours STORAGE_EMULATOR_HOST).

    Objects are uploaded private (no ACL is ever set) and handed out as V4 signed GET URLs
    valid for ``signed_url_ttl`` seconds, or as plain URLs when ``public_bucket`` is set.
    ``credentials`` sign those URLs; by default they are the application default credentials.
    Under the emulator the client itself is anonymous and the signer comes from
    GOOGLE_APPLICATION_CREDENTIALS (any service-account key: the emulator checks no signature).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        retry_deadline: float = 30.0,
        *,
        signed_url_ttl: int = 3600,
        public_bucket: bool = False,
        credentials: Any = None,
    ) -> None:
        # Imported here: only GCS deployments pay for google-auth (~120 ms, ~14 MB).
        from google.cloud import storage
        from google.cloud.storage.retry import DEFAULT_RETRY

        from common import signing

        if not 1 <= signed_url_ttl <= MAX_SIGNED_URL_TTL:
            raise ValueError(f"signed URL lifetime {signed_url_ttl} s: use 1 s to 7 days")
        if os.environ.get("STORAGE_EMULATOR_HOST"):
            from google.auth.credentials import AnonymousCredentials

            client = storage.Client(credentials=AnonymousCredentials(), project="moksori-local")
            signer = credentials if credentials is not None else signing.key_file_credentials()
        else:
            if credentials is None:
                credentials, project = signing.default_credentials()
            else:
                project = getattr(credentials, "project_id", None)
            client = storage.Client(credentials=credentials, project=project)
            signer = credentials
        self.bucket_name = bucket
        self.prefix = prefix.strip("/")
        self.signed_url_ttl = signed_url_ttl
        self.signing = signing.signing_mode(signer, public_bucket)  # PUBLIC, KEY or IAM
        self._signer = signing.IamSigner(signer) if self.signing == signing.IAM else signer
        self._bucket = client.bucket(bucket)
        # The client retries transient errors itself; bound that so a storage outage becomes a
        # StorageError (and a Celery retry with backoff) instead of a two-minute stall.
        self._retry = DEFAULT_RETRY.with_deadline(retry_deadline)
        self._timeout = (5.0, 30.0)

    def _name(self, key: str) -> str:
        """The object name of ``key``: always under the prefix (keys are checked, so no ``..``
        segment can climb out of it once a browser normalizes the URL's path)."""
        if not is_audio_key(key):
            raise ValueError(f"not a storage key: {key!r}")
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(
        self,
        key: str,
        data: bytes,
        content_type: str = "audio/wav",
        duration_s: float | None = None,
    ) -> None:
        from google.api_core import exceptions

        blob = self._bucket.blob(self._name(key))
        if duration_s is not None:
            blob.metadata = {"duration_s": f"{duration_s:.3f}"}
        try:
            blob.upload_from_string(
                data,
                content_type=content_type,
                if_generation_match=0,
                retry=self._retry,
                timeout=self._timeout,
            )
        except exceptions.PreconditionFailed:
            _LOGGER.debug("object %s already stored", key)
        except (exceptions.GoogleAPICallError, exceptions.RetryError, OSError) as exc:
            # OSError covers dropped connections (requests' ConnectionError is one).
            raise _gcs_error(f"upload of {key} failed", exc) from exc

    def lookup(self, key: str) -> StoredAudio | None:
        from google.api_core import exceptions

        try:
            blob = self._bucket.get_blob(self._name(key), retry=self._retry, timeout=self._timeout)
        except (exceptions.GoogleAPICallError, exceptions.RetryError, OSError) as exc:
            raise _gcs_error(f"lookup of {key} failed", exc) from exc
        if blob is None:
            return None
        raw = (blob.metadata or {}).get("duration_s")
        try:
            duration = float(raw) if raw is not None else None
        except ValueError:
            duration = None
        return StoredAudio(key, duration)

    def read(self, key: str) -> bytes | None:
        from google.api_core import exceptions

        blob = self._bucket.blob(self._name(key))
        try:
            return blob.download_as_bytes(retry=self._retry, timeout=self._timeout)
        except exceptions.NotFound:
            return None
        except (exceptions.GoogleAPICallError, exceptions.RetryError, OSError) as exc:
            raise _gcs_error(f"read of {key} failed", exc) from exc

    def url(self, key: str, base_url: str = "") -> str:
        """A public URL, or a V4 signed GET URL made now and valid for ``signed_url_ttl``."""
        from google.api_core import exceptions
        from google.auth import exceptions as auth_exceptions

        from common import signing

        blob = self._bucket.blob(self._name(key))
        if self.signing == signing.PUBLIC:
            return blob.public_url
        try:
            return blob.generate_signed_url(
                version="v4",
                expiration=timedelta(seconds=self.signed_url_ttl),
                method="GET",
                credentials=self._signer,
            )
        except (
            auth_exceptions.GoogleAuthError,
            exceptions.GoogleAPICallError,
            exceptions.RetryError,
            OSError,
        ) as exc:  # IAM refused or unreachable (a key in hand never fails here)
            raise StorageError(f"could not sign a URL for {key}: {exc}") from exc

    def location(self, key: str) -> str:
        return f"gs://{self.bucket_name}/{self._name(key)}"

    def probe(self, timeout: float = 5.0) -> None:
        """Upload and delete a small object under the prefix (for ``/readyz``), each call
        bounded by ``timeout`` seconds and not retried; raises :class:`StorageError`."""
        from google.api_core import exceptions

        name = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
        blob = self._bucket.blob(f"{self.prefix}/{name}" if self.prefix else name)
        try:
            blob.upload_from_string(
                b"moksori readiness probe\n",
                content_type="text/plain",
                if_generation_match=0,
                retry=None,
                timeout=timeout,
            )
            blob.delete(retry=None, timeout=timeout)
        except (exceptions.GoogleAPICallError, exceptions.RetryError, OSError) as exc:
            raise StorageError(f"cannot write to gs://{self.bucket_name}: {exc}") from exc


def adopt(
    storage: LocalStorage | GCSStorage, key: str, legacy_key: str | None
) -> StoredAudio | None:
    """The object stored under ``key``; failing that, one stored under its unkeyed
    ``legacy_key`` (when the migration reads those) is copied to ``key`` first, so the next
    lookup finds it directly and the URL handed out carries the keyed name."""
    stored = storage.lookup(key)
    if stored is not None or legacy_key is None:
        return stored
    old = storage.lookup(legacy_key)
    data = storage.read(legacy_key) if old is not None else None
    if old is None or data is None:
        return None
    extension = key.rsplit(".", 1)[-1]
    storage.put(key, data, FORMATS[extension].content_type, old.duration_s)
    _LOGGER.info("object %s adopted from its unkeyed name %s", key, legacy_key)
    return StoredAudio(key, old.duration_s)


def local_root(url: str) -> Path | None:
    """The directory a ``file://`` storage URL names, or None for any other URL."""
    parsed = urlparse(url)
    if parsed.scheme != "file":
        return None
    if parsed.netloc not in {"", "localhost"}:
        raise ValueError(f"storage URL {url!r}: file URLs need an absolute path (file:///dir)")
    return Path(unquote(parsed.path)).resolve()


def open_storage(
    url: str,
    *,
    timeout: float = 30.0,
    signed_url_ttl: int = 3600,
    public_bucket: bool = False,
    url_signer: MediaSecret | None = None,
) -> LocalStorage | GCSStorage:
    """The storage backend named by ``MOKSORI_STORAGE_URL`` (``file:///dir`` or ``gs://bucket/prefix``).

    ``signed_url_ttl`` is ``MOKSORI_SIGNED_URL_TTL``: how long a signed URL stays valid. For
    GCS, ``timeout`` bounds how long one call retries transient errors and ``public_bucket`` is
    ``MOKSORI_PUBLIC_BUCKET``; a bucket whose URLs could not be signed is refused here. For
    local files, ``url_signer`` (``MOKSORI_MEDIA_ACCESS=signed``) signs ``/media`` URLs."""
    root = local_root(url)
    if root is not None:
        return LocalStorage(root, url_signer=url_signer, url_ttl=signed_url_ttl)
    parsed = urlparse(url)
    if parsed.scheme == "gs":
        if not parsed.netloc:
            raise ValueError(f"storage URL {url!r} names no bucket")
        prefix = parsed.path.strip("/")
        if prefix and any(part in {"", ".", ".."} for part in prefix.split("/")):
            raise ValueError(f"storage URL {url!r}: the prefix has an empty, . or .. segment")
        return GCSStorage(
            parsed.netloc,
            prefix,
            retry_deadline=timeout,
            signed_url_ttl=signed_url_ttl,
            public_bucket=public_bucket,
        )
    raise ValueError(f"storage URL {url!r}: use file:///dir or gs://bucket/prefix")
