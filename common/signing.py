"""How GCS URLs are made: which credentials can sign a V4 URL, and how.

Imported only by :class:`common.storage.GCSStorage`, so deployments on local files never load
google-auth.
"""

from __future__ import annotations

import functools
import os
import threading
from typing import Any

from google.auth.credentials import Signing

PUBLIC, KEY, IAM = "public", "key", "iam"
"""How URLs are made: plain public ones, V4 signatures made with a private key the process
holds, or V4 signatures made by IAM's ``signBlob`` for keyless credentials."""


def signing_mode(credentials: Any, public_bucket: bool) -> str:
    """Which way URLs for a bucket are made with ``credentials``; ValueError when none can be.

    * a public bucket needs no signature;
    * credentials that can sign (a service-account key from GOOGLE_APPLICATION_CREDENTIALS, or
      impersonated credentials, which call IAM themselves) sign each URL;
    * keyless service-account credentials (GCE, Cloud Run, GKE workload identity: the metadata
      server's token) have IAM sign for their service account, which needs the
      ``iam.serviceAccounts.signBlob`` permission (roles/iam.serviceAccountTokenCreator) on it;
    * anything else (anonymous, a user's own login, federation without impersonation) cannot.
    """
    if public_bucket:
        return PUBLIC
    if isinstance(credentials, Signing):
        return KEY
    if getattr(credentials, "service_account_email", None):
        return IAM
    raise ValueError(
        f"GCS objects are private and served through signed URLs, but these credentials "
        f"({type(credentials).__module__}.{type(credentials).__name__}) cannot sign: use a "
        "service-account key (GOOGLE_APPLICATION_CREDENTIALS) or a service account's own "
        "credentials (GCE, Cloud Run, GKE workload identity), or set MOKSORI_PUBLIC_BUCKET=1 "
        "if the bucket is public on purpose"
    )


class IamSigner(Signing):
    """Signatures for keyless service-account credentials, made by IAM's ``signBlob`` for
    their own account, with every call bounded by ``timeout`` seconds.

    The storage library can do this itself (``generate_signed_url(service_account_email=...,
    access_token=...)``), but it retries an unreachable IAM for up to two minutes, which would
    hold a client's status request that long; here a failure is a prompt StorageError (503).
    """

    def __init__(self, credentials: Any, timeout: float = 5.0) -> None:
        from google.auth.transport.requests import Request

        self.credentials = credentials
        self._request = functools.partial(Request(), timeout=timeout)
        self._lock = threading.Lock()

    @property
    def signer_email(self) -> str:
        """The service account: metadata-server credentials only learn it (from ``default``)
        on refresh, which also fetches the token signBlob is called with."""
        with self._lock:
            if not self.credentials.valid:
                self.credentials.refresh(self._request)
            return self.credentials.service_account_email

    @property
    def signer(self) -> Any:
        from google.auth import iam

        return iam.Signer(self._request, self.credentials, self.signer_email)

    def sign_bytes(self, message: bytes) -> bytes:
        return self.signer.sign(message)


def default_credentials() -> tuple[Any, str | None]:
    """The application default credentials, or a ValueError saying how to provide them."""
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        return google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    except DefaultCredentialsError as exc:
        raise ValueError(f"GCS storage needs credentials: {exc}") from exc


def key_file_credentials() -> Any:
    """Under the emulator: the service-account key in GOOGLE_APPLICATION_CREDENTIALS, if any
    (any key will do: the emulator checks no signature), else anonymous credentials."""
    from google.auth.credentials import AnonymousCredentials
    from google.oauth2 import service_account

    path = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if not path:
        return AnonymousCredentials()
    return service_account.Credentials.from_service_account_file(path)
