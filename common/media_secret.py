"""The server's media secret: what makes object names unguessable and signs ``/media`` URLs.

An object's name is an HMAC-SHA256 of what decides its audio (normalizer version, pause,
format, speed, canonical text) under the secret, so it is still content-addressed (same inputs,
same secret: same name; caching and coalescing keep working) but nobody without the secret can
compute it from a text and test whether that text was ever spoken. Two keys are derived from the
one secret, one for names and one for URL signatures, so neither use can stand in for the other.

The secret is ``MOKSORI_MEDIA_SECRET``; unset, one is generated once and kept in a file (mode
0600) that every process on the machine shares (:func:`load`). Hosts that share storage must
share the secret: set the variable to the same value everywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from common.config import MIN_SECRET_LENGTH

_LOGGER = logging.getLogger(__name__)

SECRET_FILE = ".media-secret"
"""The generated secret's file name: never the shape of an audio key, so ``/media`` never
serves it."""


@dataclass(frozen=True)
class MediaSecret:
    """One server secret, and the two keys derived from it."""

    value: bytes = field(repr=False)
    _names: bytes = field(init=False, repr=False)
    _urls: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        derive = lambda label: hmac.new(self.value, label, hashlib.sha256).digest()  # noqa: E731
        object.__setattr__(self, "_names", derive(b"moksori object names"))
        object.__setattr__(self, "_urls", derive(b"moksori media urls"))

    def name_digest(self, identity: str) -> str:
        """The 64-hex-digit digest that names the object rendering ``identity``."""
        return hmac.new(self._names, identity.encode("utf-8"), hashlib.sha256).hexdigest()

    def signature(self, path: str, expires: int) -> str:
        """The signature of a GET of ``path`` (``/media/<key>``) valid until ``expires``
        (Unix seconds)."""
        message = f"GET\n{path}\n{int(expires)}".encode("utf-8", "surrogateescape")
        return hmac.new(self._urls, message, hashlib.sha256).hexdigest()

    def check(self, path: str, expires: str | None, signature: str | None, now: float) -> str:
        """Why a signed URL for ``path`` is refused at ``now``, or "" when it is valid."""
        if not expires or not signature:
            return "missing"
        if not expires.isdigit() or len(expires) > 12:
            return "malformed"
        expected = self.signature(path, int(expires))
        if not hmac.compare_digest(expected, signature.lower()):
            return "invalid"
        if int(expires) < now:
            return "expired"
        return ""


def legacy_digest(identity: str) -> str:
    """The unkeyed SHA-256 that named objects before names were keyed: read only when
    ``MOKSORI_MEDIA_LEGACY_NAMES`` asks for it (``docs/operations.md``, "Media names")."""
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()


def load(configured: str, folder: Path) -> MediaSecret:
    """``configured`` (``MOKSORI_MEDIA_SECRET``) when set, else the secret kept in
    ``folder``/:data:`SECRET_FILE`, generated there first if there is none.

    The file is created whole and create-only (written to a temporary file, then linked to its
    name), so an API and a worker starting together agree on one secret and never read half of
    one."""
    if configured:
        return MediaSecret(configured.encode("utf-8"))
    path = folder / SECRET_FILE
    try:
        try:
            return MediaSecret(_read(path))
        except FileNotFoundError:
            return MediaSecret(_generate(folder, path))
    except OSError as exc:
        # Storage that cannot be written to fails every job anyway (and /readyz says so); the
        # process still starts, to report it, with a secret of its own meanwhile.
        _LOGGER.error(
            "cannot keep a media secret in %s (%s): this process uses one of its own, so its "
            "object names match no other process's; set MOKSORI_MEDIA_SECRET",
            folder,
            exc.strerror or exc,
        )
        return MediaSecret(secrets.token_urlsafe(32).encode("ascii"))


def _generate(folder: Path, path: Path) -> bytes:
    """A new secret linked to ``path``, or the one another process linked there first."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".media-secret-")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(secrets.token_urlsafe(32) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
            _LOGGER.info("generated a media secret in %s (MOKSORI_MEDIA_SECRET unset)", path)
        except FileExistsError:
            pass  # another process made it first: use theirs
    finally:
        os.unlink(tmp)
    return _read(path)


def _read(path: Path) -> bytes:
    value = path.read_text(encoding="ascii").strip()
    if len(value) < MIN_SECRET_LENGTH:
        raise ValueError(f"the media secret in {path} is under {MIN_SECRET_LENGTH} characters")
    return value.encode("ascii")
