"""Settings shared by the API and the worker, read from ``MOKSORI_*`` environment variables.

One pydantic-settings model: every field has an embedded default so the service starts on a
laptop, and its docstring is the description the configuration page is generated from
(``docs/configuration.md``). A process reads its settings once (:func:`settings`). Nothing
here imports torch.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources.utils import parse_env_vars

PREFIX = "MOKSORI_"
REPO_ROOT = Path(__file__).resolve().parent.parent

MIN_SECRET_LENGTH = 16
"""The shortest ``MOKSORI_MEDIA_SECRET`` accepted."""
MAX_SIGNED_URL_TTL = 7 * 24 * 3600
"""The longest lifetime Google accepts for a V4 signed URL."""

DEFAULT_CORS_ORIGINS = (r"^https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?$",)

_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("moksori_environ", default=None)


class _GivenEnviron(EnvSettingsSource):
    """``MOKSORI_*`` variables read from a given mapping instead of the process environment."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._given = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._given, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


class Settings(BaseSettings):
    """The service's configuration; one attribute per ``MOKSORI_<NAME>`` variable."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        env_ignore_empty=True,  # MOKSORI_X= (empty) means the default
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
        validate_default=False,
    )

    broker_url: str = "filesystem://"
    """Celery broker: ``amqp://`` (RabbitMQ) in production; the default is an embedded broker in
    ``MOKSORI_BROKER_DIR``. Only ids and text travel through it."""
    broker_dir: Path = REPO_ROOT / "var" / "broker"
    """Folder of the embedded ``filesystem://`` broker (one machine only)."""
    result_backend: str = f"db+sqlite:///{REPO_ROOT / 'var' / 'results.sqlite'}"
    """Celery result backend, readable by every API process: ``redis://`` in production, SQLite
    by default (never ``rpc://``)."""
    storage_url: str = f"file://{REPO_ROOT / 'var' / 'media'}"
    """Where WAVs go: ``file:///dir`` (served by the API under /media) or ``gs://bucket/prefix``."""
    signed_url_ttl: int = 3600
    """Seconds a V4 signed GCS URL stays valid (1 to 604800, V4's limit of 7 days)."""
    public_bucket: bool = False
    """Hand out plain (unsigned) GCS URLs: only for a bucket that is public on purpose."""
    media_secret: str = Field(default="", repr=False)
    """Server secret (16+ characters) that object names are an HMAC under, so they cannot be
    computed from a text, and that signs /media URLs. Empty: one is generated once and kept in
    ``.media-secret`` (mode 0600) in the storage root (``var/`` for GCS). Every host sharing
    storage needs the same value."""
    media_access: Literal["public", "signed"] = "public"
    """``/media`` with local storage: ``public`` (anyone with the URL) or ``signed`` (the URL's
    expiry and signature, valid ``MOKSORI_SIGNED_URL_TTL`` seconds, or a valid API key)."""
    media_legacy_names: bool = False
    """Migration: a cache lookup that misses an object's keyed name also tries the unkeyed name
    it had before names were keyed, and copies what it finds to the keyed name."""
    voice_dir: Path = REPO_ROOT / "voice_model"
    """The voice repository: legacy ``glow-tts/``, ``hifigan-v2/`` and ``voices/*/voice.json``."""
    device: str = "auto"
    """``auto`` (CUDA when present), ``cuda`` or ``cpu``."""
    queue: str = "moksori"
    """Prefix of the durable RabbitMQ queues: member N's jobs go to ``<queue>.N``."""
    queue_type: Literal["classic", "quorum"] = "classic"
    """RabbitMQ type of the member queues. ``quorum`` replicates them across a cluster's nodes;
    an existing queue keeps its type, so switching needs a new ``MOKSORI_QUEUE`` prefix
    (docs/operations.md, "Queue type")."""
    members: Annotated[tuple[int, ...], NoDecode] = ()
    """Comma-separated member ids a worker loads and serves (its queues); empty: every voice."""
    workers: int = 1
    """Worker processes ``make run`` starts (one per GPU; on CPU, one per core at most)."""
    voice_reload_interval: float = 5.0
    """Seconds between checks of the voice repository for a new checkpoint (a changed
    ``voice.json`` or legacy checkpoint name), in every worker process and the API; 0: never."""
    keep_versions: int = 1
    """Older versions of each voice a worker keeps loaded after a new one goes live, so jobs
    queued for them still finish on them (each costs one model's memory); 0: none."""
    torch_threads: int = 0
    """Threads each worker process gives torch; 0 keeps torch's default (all cores)."""
    batch_size: int = 1
    """Dynamic batching: up to this many queued jobs of one member in one model call (1: off)."""
    batch_wait_ms: int = 5
    """Dynamic batching: how long a starting job waits for others to join its batch."""
    max_text_length: int = 1000
    """Longest accepted text, in characters."""
    max_content_length: int = 64 * 1024
    """Largest accepted request body, in bytes."""
    cors_origins: Annotated[tuple[str, ...], NoDecode] = DEFAULT_CORS_ORIGINS
    """Comma-separated allowed browser origins (exact origins or regular expressions)."""
    api_keys: Annotated[tuple[str, ...], NoDecode] = Field(default=(), repr=False)
    """Comma-separated API keys (16+ characters each); when set, every /api/* and /v1/* call
    needs ``Authorization: Bearer <key>`` (empty: the API is open)."""
    metrics_auth: bool = False
    """Whether /metrics also needs an API key (when keys are set)."""
    rate_limit: str = "300/minute;30/second"
    """Requests per client (API key, else IP) to /api/* and /v1/*, in ``limits`` notation
    separated by ``;``; ``off`` disables it."""
    rate_limit_storage: str = "memory://"
    """Where rate-limit counters live: ``memory://`` (per process) or ``redis://host:6379/N``
    (shared by every API process and machine)."""
    max_queued_per_client: int = 20
    """Jobs one client may have queued or running at once; 0: no cap."""
    trusted_proxies: int = 0
    """Reverse proxies in front of the API whose ``X-Forwarded-For`` is trusted for the client's
    address (rate limits, queue cap); 0: the TCP peer is the client."""
    public_url: str = ""
    """Base URL clients reach the API at, for /media links; empty means the request's own host."""
    task_soft_time_limit: int = 120
    """Seconds before a synthesis is asked to stop (SoftTimeLimitExceeded)."""
    task_time_limit: int = 150
    """Seconds before a synthesis's process is killed."""
    max_deliveries: int = 3
    """A job whose worker process dies this many times while running it (a crash, an OOM kill)
    fails instead of being delivered again: one poison job cannot take a fleet down in a loop."""
    storage_retries: int = 4
    """Times a job retries storing its audio (with exponential backoff) before it fails."""
    storage_timeout: float = 30.0
    """Seconds one storage call keeps retrying transient errors (GCS 503s, dropped connections)
    before the job's own retry with backoff takes over; the API uses at most
    ``MOKSORI_PUBLISH_TIMEOUT`` for its cache lookups."""
    storage_min_free_mb: int = 64
    """``/readyz`` reports local storage with less free space than this (MB) as not ready: a
    typical object might not fit (a minute of 22 kHz WAV is about 2.6 MB); 0: not checked."""
    result_expires: int = 86400
    """Seconds a job's status stays readable."""
    publish_timeout: float = 3.0
    """Seconds the API tries to reach the broker, or waits for one Redis call, before answering
    503."""
    speech_timeout: float = 60.0
    """Seconds ``POST /v1/audio/speech`` waits for its job (for a streamed format, its first
    sentence) before answering 504 (the job goes on, and a retry of the same request joins it or
    finds its audio stored)."""
    sentence_pause: float = 0.25
    """Seconds of silence between sentences of a long text."""
    log_format: str = "json"
    """``json`` (one JSON object per line, for log collectors) or ``text`` (for a terminal;
    what ``make run`` uses unless this is set)."""
    log_level: str = "INFO"
    """Lowest level logged: ``DEBUG``, ``INFO``, ``WARNING``, ``ERROR``. Users' text is logged
    at no level above DEBUG."""
    worker_metrics_port: int = 9808
    """Port a worker serves its Prometheus metrics on (its main process, adding up its pool
    processes); 0 turns the server off. ``make run`` gives its Nth worker this port + N - 1."""
    worker_metrics_host: str = "127.0.0.1"
    """Address a worker's metrics server binds to (``0.0.0.0`` in a container)."""
    host: str = "127.0.0.1"
    """Address the API binds to (``make run`` and the API image)."""
    port: int = 8000
    """Port the API binds to (``make run`` and the API image)."""
    api_workers: int = Field(default=2, ge=1)
    """gunicorn worker processes of the API."""
    api_threads: int = Field(default=32, ge=2)
    """Request threads per API process (the liveness and readiness probes have four more of
    their own)."""
    max_waiting: int = Field(default=16, ge=0)
    """Requests per API process that may wait for their job (``?wait=N``) or stream its audio
    at once; beyond that a ``?wait`` request is answered ``202`` at once (header ``Moksori-Wait:
    declined``) and the client polls its ``status_url``, and a stream is a 503. Keep it below
    ``MOKSORI_API_THREADS``, so that waits never hold every thread."""
    request_read_timeout: float = Field(default=10.0, gt=0)
    """Seconds a client has to send a whole request (headers and body) once the API waits for
    it; a slower one is answered ``408`` and disconnected."""

    @field_validator("members", "cors_origins", "api_keys", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        """``a, b`` in the environment is the list ``(a, b)``."""
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("broker_dir", "voice_dir", mode="after")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("log_format")
    @classmethod
    def _log_format(cls, value: str) -> str:
        if value not in {"json", "text"}:
            raise ValueError("use json or text")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("use DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return value

    @field_validator("media_secret")
    @classmethod
    def _media_secret(cls, value: str) -> str:
        if value and len(value) < MIN_SECRET_LENGTH:
            raise ValueError(f"use {MIN_SECRET_LENGTH} or more characters (or leave it empty)")
        return value

    @model_validator(mode="after")
    def _waits_leave_threads(self) -> Settings:
        if self.max_waiting >= self.api_threads:
            raise ValueError(
                f"{PREFIX}MAX_WAITING={self.max_waiting} is not valid: keep it below "
                f"{PREFIX}API_THREADS={self.api_threads}, or waits can hold every thread"
            )
        return self

    @model_validator(mode="after")
    def _signed_url_ttl(self) -> Settings:
        if not 1 <= self.signed_url_ttl <= MAX_SIGNED_URL_TTL:
            raise ValueError(
                f"{PREFIX}SIGNED_URL_TTL={self.signed_url_ttl} is not valid: use 1 to "
                f"{MAX_SIGNED_URL_TTL} seconds (a V4 signed URL lives at most 7 days)"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Explicit values first, then the environment (the process's, or the one given to
        :meth:`from_env`); no dotenv or secret files."""
        environ = _ENVIRON.get()
        env = env_settings if environ is None else _GivenEnviron(settings_cls, environ)
        return (init_settings, env)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``MOKSORI_*`` variables (``environ``, else the process's), then
        explicit overrides (strings are parsed as the environment's would be). A bad value
        is a ValueError naming the variable and what it was set to."""
        unknown = sorted(set(overrides) - set(cls.model_fields))
        if unknown:
            raise TypeError(f"unknown setting {unknown[0]!r}")
        with _given(environ):
            try:
                return cls(**overrides)
            except ValidationError as exc:
                raise ValueError(_describe(exc)) from None


@contextmanager
def _given(environ: Mapping[str, str] | None) -> Iterator[None]:
    token = _ENVIRON.set(environ)
    try:
        yield
    finally:
        _ENVIRON.reset(token)


def _describe(exc: ValidationError) -> str:
    """Each problem as ``MOKSORI_NAME='value' is not valid: why``."""
    problems = []
    for error in exc.errors(include_url=False):
        name = str(error["loc"][0]) if error["loc"] else ""
        why = str(error["msg"]).removeprefix("Value error, ")
        if len(error["loc"]) > 1:  # one item of a list
            item = int(error["loc"][1]) + 1
            problems.append(
                f"{PREFIX}{name.upper()}: item {item} ({error['input']!r}) is not valid: {why}"
            )
        elif name:
            problems.append(f"{PREFIX}{name.upper()}={error['input']!r} is not valid: {why}")
        else:
            problems.append(why)
    return "; ".join(problems)


@functools.cache
def process_settings() -> Settings:
    """This process's settings, read from its environment once."""
    return Settings.from_env()
