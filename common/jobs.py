"""The contract between the API and the worker: the Celery app's settings, the task's name,
its arguments and result, and how Celery states read as job statuses.

Both sides build their Celery app with :func:`make_celery`, so broker and backend settings
cannot drift apart; the API sends the task by name and never imports the worker.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from celery import Celery
from kombu import Exchange, Queue

from common import media_secret
from common.audio_formats import DEFAULT_FORMAT, DEFAULT_SPEED
from common.config import REPO_ROOT, Settings
from common.media_secret import MediaSecret
from common.normalize import NORMALIZER_VERSION, canonical
from common.storage import audio_key, local_root

_LOGGER = logging.getLogger(__name__)

TASK_NAME = "moksori.synthesize"
SENTENCE_TASK_NAME = "moksori.sentence"
"""One sentence of a longer text, handed out by the job leading it to any idle process that
serves the member (:class:`SentenceMessage`; no result is stored: the sentence's object is)."""
REQUEST_ID_HEADER = "x_request_id"
"""The task message header carrying the API request's id (its ``X-Request-ID``) to the worker,
whose log lines for the job then name it."""
QUEUED = "QUEUED"
"""A custom Celery state the API stores *before* publishing, so an unknown job id (PENDING,
Celery's answer for anything it has never heard of) can be told apart from a queued one."""

UNSPEAKABLE = "The text has nothing this voice can pronounce."
"""Why a job whose text normalizes to nothing fails: the client's input, not a server fault."""
UNSPEAKABLE_CODE = "unspeakable_text"
SYNTHESIS_FAILED_CODE = "synthesis_failed"


class SynthesisError(Exception):
    """A job that cannot succeed however often it is retried. ``message`` is for the client;
    ``code`` is the API's error code for it (the client's text, or the synthesis itself).

    It lives here, below both sides, so the API rebuilds it from a failed job's record (Celery
    finds the class among the modules the API has loaded) and reads its code, not its name."""

    def __init__(self, message: str, code: str = SYNTHESIS_FAILED_CODE) -> None:
        super().__init__(message, code)  # both in args: what Celery stores and rebuilds
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return self.message


_STATUS = {
    QUEUED: "queued",
    "RECEIVED": "queued",
    "STARTED": "running",
    "RETRY": "running",
    "SUCCESS": "done",
    "FAILURE": "failed",
    "REVOKED": "failed",
}


class SynthesisResult(TypedDict):
    """What a successful ``moksori.synthesize`` returns (JSON; never audio)."""

    key: str
    url: str
    """Where the object is (``gs://bucket/...`` or ``/media/...``), not a URL to hand out: the
    API makes that from ``key`` at each read, signed afresh for a private bucket."""
    duration_s: float | None
    """Seconds of audio (None for a non-WAV object found already stored locally: its length is
    not read back)."""
    sample_rate: int
    member_id: int
    voice_version: str
    synthesis_s: float
    """Seconds the model took (normalize + synthesize; 0 when the object was already stored):
    what the service adds is the client's wait minus this."""
    pipeline_s: float
    """Seconds the whole pipeline took in the worker (model + lookup, encode and store)."""
    sentences: NotRequired[list[str]]
    """A text of several sentences: each sentence's own object (a WAV), in order."""


class Progress(TypedDict):
    """A running job's record while it makes a text of several sentences, rewritten after each
    sentence (with Redis, each rewrite is also published: what the API's streams follow)."""

    member_id: int
    total: int
    """How many sentences the text has."""
    ready: list[str | None]
    """Each sentence's object once it is stored, in the text's order; None until then."""


class JobMessage(TypedDict):
    """The task's keyword arguments: ids and text only, never audio."""

    member_id: int
    text: str
    uuid: str | None
    created_at: str | None
    voice_version: NotRequired[str | None]
    """The voice version the API pinned (the one its cache key names); absent or null: the
    version the worker serves when it takes the job."""
    format: NotRequired[str]
    """Output format (:data:`common.audio_formats.FORMATS`); absent: ``wav``. Sent only when not
    ``wav``, so a worker that predates the field still runs every ``/api/texts`` job."""
    speed: NotRequired[float]
    """Speaking rate, 0.25 to 4.0 (Glow-TTS's ``length_scale`` is ``1 / speed``); absent: 1.0.
    Sent only when not 1.0."""


class SentenceMessage(TypedDict):
    """:data:`SENTENCE_TASK_NAME`'s keyword arguments: one sentence as the client wrote it."""

    member_id: int
    text: str
    voice_version: str
    speed: float
    job_id: str
    """The job that handed it out (for the logs)."""
    index: int
    """Its place in that job's text, from 0 (for the logs)."""


def member_queue(prefix: str, member_id: int) -> str:
    """The durable queue holding member ``member_id``'s jobs (workers consume their members')."""
    return f"{prefix}.{int(member_id)}"


def queue_declaration(name: str, queue_type: str = "classic") -> Queue:
    """A member queue exactly as Celery declares a missing queue when the API first publishes
    to it (a direct exchange of the same name, of ``task_create_missing_queue_type``), so API
    and worker never disagree on it: RabbitMQ refuses a declaration whose type differs."""
    arguments = {"x-queue-type": queue_type} if queue_type != "classic" else None
    return Queue(
        name,
        Exchange(name, type="direct"),
        routing_key=name,
        durable=True,
        queue_arguments=arguments,
    )


def speech_key(
    member_id: int,
    voice_version: str,
    text: str,
    pause_s: float,
    fmt: str = DEFAULT_FORMAT,
    speed: float = DEFAULT_SPEED,
    *,
    secret: MediaSecret | None,
) -> str:
    """The cache key of one rendering: member, voice version, normalizer version, pause, output
    format, speed and the canonical text, named by an HMAC under ``secret`` (None: the unkeyed
    name of before, for the migration). Anything that changes the audio changes the key, and the
    API computes it without g2pK (so it stays light and answers repeats in a few milliseconds).
    A WAV at speed 1.0 has the identity it had before formats and speeds existed, so its
    unkeyed name is the one objects stored then have."""
    parts = [f"normalizer={NORMALIZER_VERSION}", f"pause={pause_s:g}"]
    if fmt != DEFAULT_FORMAT:
        parts.append(f"format={fmt}")
    if speed != DEFAULT_SPEED:
        parts.append(f"speed={speed:g}")
    identity = "\x00".join((*parts, canonical(text)))
    return audio_key(member_id, voice_version, identity, fmt, secret=secret)


def load_media_secret(settings: Settings) -> MediaSecret:
    """``MOKSORI_MEDIA_SECRET``, else the secret generated once in the local storage root
    (which API and worker share by construction) or, for GCS, in ``var/``."""
    root = local_root(settings.storage_url)
    if root is None and not settings.media_secret:
        _LOGGER.warning(
            "MOKSORI_MEDIA_SECRET is not set: object names are keyed with a secret kept in var/ "
            "on this machine; set it to the same value on every host that shares the bucket"
        )
    return media_secret.load(settings.media_secret, root or REPO_ROOT / "var")


DELETE_IF_OWNER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
"""A Lua script deleting a key only while it still holds ``ARGV[1]`` (an entry of ours that
may have expired and been taken by someone else meanwhile)."""


def redis_client(backend: Any) -> Any | None:
    """The Redis client of a Redis result backend (shared state across API processes and
    workers lives beside the job states), or None for any other backend."""
    from celery.backends.redis import RedisBackend

    return backend.client if isinstance(backend, RedisBackend) else None


def job_status(state: str) -> str | None:
    """The public status for a Celery state, or None when the job is unknown (PENDING)."""
    return _STATUS.get(state)


def make_celery(
    settings: Settings,
    main: str = "moksori",
    redis_backend: str | None = None,
    fail_fast: bool = False,
) -> Celery:
    """A Celery app configured for long, GPU-bound synthesis jobs on a durable RabbitMQ queue.

    ``redis_backend`` names (``module:Class``) a subclass of Celery's Redis backend to use for a
    ``redis://`` result backend: the worker's, whose jobs wait out a Redis outage
    (:mod:`worker.backend`). ``fail_fast`` is the API's: a request must answer (a 503) within
    ``MOKSORI_PUBLISH_TIMEOUT`` when Redis does not, so each Redis call is tried once, bounded
    by it. Celery's own policy retries a failed write (or its pub/sub reconnection, which every
    published job goes through) 20 times a second apart, and redis-py a timed-out call once,
    which held a request for 10-20 s while Redis stopped or stalled."""
    _prepare_backend(settings.result_backend)
    backend = settings.result_backend
    if redis_backend and backend.startswith(("redis://", "rediss://")):
        backend = f"{redis_backend}+{backend}"  # Celery's "class+url" form, as in db+sqlite://
    app = Celery(main, broker=settings.broker_url, backend=backend)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_default_queue=settings.queue,
        task_create_missing_queues=True,
        # The API's member queues (declared as it publishes) and the worker's are of one type.
        # Celery turns global QoS off for quorum queues (worker_detect_quorum_queues).
        task_default_queue_type=settings.queue_type,
        task_create_missing_queue_type=settings.queue_type,
        # An accepted job survives a crashed worker: ack after the work, requeue on worker loss,
        # take one job at a time so a slow synthesis does not hold others hostage.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_track_started=True,
        task_soft_time_limit=settings.task_soft_time_limit,
        task_time_limit=settings.task_time_limit,
        result_expires=settings.result_expires,
        result_extended=False,
        # Publishing: persistent messages (Celery's default) confirmed by the broker, and a short
        # retry budget so an unreachable broker becomes a quick 503 rather than a hung request.
        broker_transport_options=_transport_options(settings),
        broker_connection_timeout=settings.publish_timeout,
        broker_connection_retry_on_startup=True,
        task_publish_retry=True,
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
        redis_socket_connect_timeout=settings.publish_timeout,
        redis_socket_timeout=max(settings.publish_timeout, 5.0),
        redis_retry_on_timeout=True,
        # Monitoring: `celery inspect`, `celery events` and Flower need the worker's events. The
        # API sends no task-sent event: it would cost every request a second confirmed publish.
        worker_send_task_events=True,
        task_send_sent_event=False,
        worker_hijack_root_logger=False,
        broker_heartbeat=30,
    )
    if fail_fast:
        app.conf.update(
            redis_socket_timeout=settings.publish_timeout,
            redis_retry_on_timeout=False,
            result_backend_transport_options={"retry_policy": {"max_retries": 0}},
        )
    return app


def _transport_options(settings: Settings) -> dict[str, Any]:
    if settings.broker_url.startswith(("amqp", "pyamqp")):
        return {"confirm_publish": True}
    if settings.broker_url.startswith("filesystem"):
        # The embedded broker: one folder of message files shared by API and worker, polled
        # every 10 ms (kombu's default of 1 s would dominate every job's latency).
        queue, processed, control = (
            settings.broker_dir / d for d in ("queue", "processed", "control")
        )
        for folder in (queue, processed, control):
            folder.mkdir(parents=True, exist_ok=True)
        return {
            "data_folder_in": str(queue),
            "data_folder_out": str(queue),
            "processed_folder": str(processed),
            "control_folder": str(control),
            "store_processed": False,
            "polling_interval": 0.01,
        }
    return {}


def _prepare_backend(url: str) -> None:
    """Create the folder of a SQLite result database (Celery creates the tables)."""
    if url.startswith("db+sqlite:///"):
        Path(url.removeprefix("db+sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
