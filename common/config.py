"""Settings shared by the API and the worker, read from ``MOKSORI_*`` environment variables.

Every field has an embedded default so the service starts on a laptop; the README's configuration
table lists the same names. Nothing here imports torch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

PREFIX = "MOKSORI_"
REPO_ROOT = Path(__file__).resolve().parent.parent

MAX_SIGNED_URL_TTL = 7 * 24 * 3600
"""The longest lifetime Google accepts for a V4 signed URL."""

DEFAULT_CORS_ORIGINS = (r"^https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?$",)


@dataclass(frozen=True)
class Settings:
    """The service's configuration; one attribute per ``MOKSORI_<NAME>`` variable."""

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
    voice_dir: Path = REPO_ROOT / "voice_model"
    """The voice repository: legacy ``glow-tts/``, ``hifigan-v2/`` and ``voices/*/voice.json``."""
    device: str = "auto"
    """``auto`` (CUDA when present), ``cuda`` or ``cpu``."""
    queue: str = "moksori"
    """Prefix of the durable RabbitMQ queues: member N's jobs go to ``<queue>.N``."""
    members: tuple[int, ...] = ()
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
    cors_origins: tuple[str, ...] = DEFAULT_CORS_ORIGINS
    """Comma-separated allowed browser origins (exact origins or regular expressions)."""
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    """Comma-separated API keys; when set, every /api/* call needs ``Authorization: Bearer <key>``
    (empty: the API is open)."""
    metrics_auth: bool = False
    """Whether /metrics also needs an API key (when keys are set)."""
    rate_limit: str = "300/minute;30/second"
    """Requests per client (API key, else IP) to /api/*, in ``limits`` notation separated by
    ``;``; ``off`` disables it."""
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
    result_expires: int = 86400
    """Seconds a job's status stays readable."""
    publish_timeout: float = 3.0
    """Seconds the API tries to reach the broker before answering 503."""
    speech_timeout: float = 60.0
    """Seconds ``POST /v1/audio/speech`` waits for its job before answering 504 (the job goes on,
    and a retry of the same request joins it or finds its audio stored)."""
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
    """Address ``make run`` binds the API to."""
    port: int = 8000
    """Port ``make run`` binds the API to."""

    def __post_init__(self) -> None:
        if self.log_format not in {"json", "text"}:
            raise ValueError(
                f"{PREFIX}LOG_FORMAT={self.log_format!r} is not valid: use json or text"
            )
        if self.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(
                f"{PREFIX}LOG_LEVEL={self.log_level!r} is not valid: use DEBUG, INFO, WARNING, "
                "ERROR or CRITICAL"
            )
        if not 1 <= self.signed_url_ttl <= MAX_SIGNED_URL_TTL:
            raise ValueError(
                f"{PREFIX}SIGNED_URL_TTL={self.signed_url_ttl} is not valid: use 1 to "
                f"{MAX_SIGNED_URL_TTL} seconds (a V4 signed URL lives at most 7 days)"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``MOKSORI_*`` variables, then explicit overrides (strings are
        parsed as the environment's would be)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _parse(f.name, raw, f.default)
        defaults = {f.name: f.default for f in fields(cls)}
        for name, value in overrides.items():
            if name not in defaults:
                raise TypeError(f"unknown setting {name!r}")
            if isinstance(value, str) and not isinstance(defaults[name], str):
                value = _parse(name, value, defaults[name])
            values[name] = value
        return cls(**values)


_INT_LISTS = {"members"}


def _parse(name: str, raw: str, default: Any) -> Any:
    """Convert one environment string to the type of its default, naming the variable on error."""
    try:
        if isinstance(default, bool):
            return raw.strip().lower() in {"1", "true", "yes", "on"}
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, Path):
            return Path(raw).expanduser().resolve()
        if isinstance(default, tuple):
            parts = tuple(part.strip() for part in raw.split(",") if part.strip())
            return tuple(int(part) for part in parts) if name in _INT_LISTS else parts
    except ValueError as exc:
        raise ValueError(f"{PREFIX}{name.upper()}={raw!r} is not valid: {exc}") from None
    return raw
