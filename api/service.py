"""The API's side of a job: validate against the voice, record it, publish it, read its status."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from amqp.exceptions import ChannelError
from celery import Celery
from celery.backends.asynchronous import AsyncBackendMixin
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from celery.exceptions import TimeoutError as CeleryTimeout
from celery.states import READY_STATES
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from api import metrics
from api.errors import (
    JOB_LOST,
    MEMBER_UNAVAILABLE,
    SERVICE_UNAVAILABLE,
    TOO_MANY_QUEUED,
    UNKNOWN_MEMBER,
    UNSPEAKABLE_TEXT,
    ApiError,
)
from api.inflight import Inflight, open_inflight
from api.quota import Quota, open_quota
from api.validation import TextRequest
from common import logs
from common.audio_formats import DEFAULT_FORMAT, DEFAULT_SPEED
from common.config import Settings
from common.fleet import Fleet
from common.jobs import (
    QUEUED,
    REQUEST_ID_HEADER,
    SYNTHESIS_FAILED_CODE,
    TASK_NAME,
    JobMessage,
    SynthesisError,
    SynthesisResult,
    job_status,
    load_media_secret,
    make_celery,
    member_queue,
    speech_key,
)
from common.media_secret import MediaSecret
from common.normalize import pronounceable
from common.repository import VoiceCatalog, VoiceSpec
from common.storage import (
    GCSStorage,
    LocalStorage,
    StorageError,
    StoredAudio,
    adopt,
    open_storage,
)

_LOGGER = logging.getLogger(__name__)

# Errors that mean "the broker or the result backend cannot be reached right now".
# (kombu's OperationalError is a KombuError; ConnectionError and TimeoutError are OSErrors.)
# A channel error is the broker refusing an operation, e.g. PRECONDITION_FAILED for a member
# queue declared with another type than MOKSORI_QUEUE_TYPE: not the client's fault either.
UNAVAILABLE = (KombuError, RedisError, OSError, ChannelError)

PUSH_STEP_S = 1.0
"""How long one step of Celery's pub/sub wait may take (its drain interval)."""
POLL_S = 0.02
"""How often a polled result backend is read while a request waits for a job."""

# What a client over its queued-jobs cap is told to wait: about one synthesis.
QUEUE_CAP_RETRY_AFTER_S = 5

STALE_MARGIN_S = 60
"""Seconds past the hard time limit (``MOKSORI_TASK_TIME_LIMIT``) after which a record that has
not advanced is judged unable to advance: time for a killed worker's message to be redelivered
(broker heartbeats) and for a worker that waited out a result-backend outage to write again."""
LOST_RUNNING = (
    "The worker running this job stopped reporting on it for longer than the time limit "
    "allows (its worker was lost); submit it again."
)
LOST_QUEUED = (
    "This job is no longer in the queue and no worker reported starting it (its message was "
    "lost); submit it again."
)

NO_AUDIO = "The job finished without an audio file."
"""Why a job whose result has no storage key failed (such a result is not our worker's)."""


@contextmanager
def reaching(what: str) -> Iterator[None]:
    """Run the block against ``what`` (the broker or the result backend); when it cannot be
    reached, the client gets one 503 saying so and the log says why."""
    try:
        yield
    except UNAVAILABLE as exc:
        _LOGGER.warning("%s unavailable: %s", what, exc)
        raise SERVICE_UNAVAILABLE(
            f"The job queue is unavailable ({what}); try again shortly.",
            headers={"Retry-After": "5"},
        ) from exc


def _storage_unavailable(doing: str, key: str, exc: StorageError) -> ApiError:
    _LOGGER.warning("storage: cannot %s %s: %s", doing, key, exc)
    return SERVICE_UNAVAILABLE(
        f"Storage is unavailable (cannot {doing} right now); try again shortly.",
        headers={"Retry-After": "5"},
    )


def _too_many_queued(cap: int) -> ApiError:
    return TOO_MANY_QUEUED(
        f"This client already has {cap} jobs queued or running (the limit); "
        "wait for one to finish.",
        headers={"Retry-After": str(QUEUE_CAP_RETRY_AFTER_S)},
    )


@dataclass(frozen=True)
class Submission:
    """What ``submit`` did: a new job, an identical job already in flight (its id), or a cache
    hit (``view`` holds the answer)."""

    job_id: str
    cached: bool = False
    view: dict[str, Any] | None = None
    key: str = ""
    """The storage key the job's audio has (or will have)."""


@dataclass
class JobService:
    """Everything the routes need, built once per API process."""

    settings: Settings
    celery: Celery
    storage: LocalStorage | GCSStorage
    catalog: VoiceCatalog
    fleet: Fleet
    inflight: Inflight
    quota: Quota
    waiting: threading.BoundedSemaphore
    """Slots for requests waiting on their job (``MOKSORI_MAX_WAITING``), so that waits never hold
    every request thread of this process."""
    secret: MediaSecret
    """What object names are keyed with (and ``/media`` URLs signed with)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> JobService:
        celery = make_celery(settings, main="moksori-api", fail_fast=True)
        secret = load_media_secret(settings)
        return cls(
            settings=settings,
            celery=celery,
            storage=open_storage(
                settings.storage_url,
                # A cache lookup must not hold a request longer than the broker may.
                timeout=min(settings.storage_timeout, settings.publish_timeout),
                signed_url_ttl=settings.signed_url_ttl,
                public_bucket=settings.public_bucket,
                url_signer=secret if settings.media_access == "signed" else None,
            ),
            secret=secret,
            catalog=VoiceCatalog(settings.voice_dir, settings.voice_reload_interval),
            fleet=Fleet(celery, settings.queue, settings.publish_timeout),
            inflight=open_inflight(
                celery.backend, 2 * settings.task_time_limit, namespace=settings.queue
            ),
            quota=open_quota(
                celery.backend,
                settings.max_queued_per_client,
                2 * settings.task_time_limit,
                namespace=settings.queue,
            ),
            waiting=threading.BoundedSemaphore(settings.max_waiting),
        )

    @property
    def voices(self) -> dict[int, VoiceSpec]:
        """Every known voice at its current version (rescanned at most every
        ``MOKSORI_VOICE_RELOAD_INTERVAL`` seconds, so a new checkpoint shows without a restart);
        each member's counters exist from then on."""
        voices = self.catalog.current()
        metrics.known(voices)
        return voices

    def voice(self, member_id: int) -> VoiceSpec:
        voice = self.voices.get(member_id)
        if voice is None:
            known = ", ".join(str(m) for m in self.voices) or "none"
            raise UNKNOWN_MEMBER(f"There is no voice for member {member_id} (known: {known}).")
        return voice

    def submit(
        self,
        req: TextRequest,
        base_url: str,
        client: str,
        fmt: str = DEFAULT_FORMAT,
        speed: float = DEFAULT_SPEED,
    ) -> Submission:
        """Answer from the cache, join an identical job in flight, or queue a new synthesis
        (a WAV at the voice's own rate unless ``fmt`` and ``speed`` say otherwise).

        4xx for bad input; 429 when ``client`` already has its cap of jobs queued or running;
        503 when no worker serves the member or the queue is down."""
        voice = self.voice(req.member_id)
        if not pronounceable(req.text):
            raise UNSPEAKABLE_TEXT(
                "text has nothing this voice can pronounce (no Korean, Latin letters or numbers)."
            )
        pause = self.settings.sentence_pause
        identity = (req.member_id, voice.version, req.text, pause, fmt, speed)
        key = speech_key(*identity, secret=self.secret)
        legacy = speech_key(*identity, secret=None) if self.settings.media_legacy_names else None
        stored = self._lookup(key, legacy)
        if stored is not None:
            return self._from_cache(req, voice, stored, base_url)
        self._require_worker(req.member_id)
        job_id = str(uuid.uuid4())
        backend = self.celery.backend
        # Record the job before publishing (a worker may finish before we would get to it after)
        # and before claiming the key (a follower must never find a leader without a record).
        # The client's slot is taken after the record exists (a slot's job is never unknown)
        # and before the key is claimed (so a refusal leaves nothing anyone could join).
        admitted = False
        try:
            with reaching("result backend"):
                record = {"member_id": req.member_id, "uuid": req.uuid, "queued_at": time.time()}
                backend.store_result(job_id, record, QUEUED)
                admitted = self.quota.take(client, job_id)
                leader = self._claim(key, job_id) if admitted else None
        except ApiError:
            if admitted:
                self._give_back(client, job_id)
            raise
        if not admitted:
            self._discard(job_id)
            raise _too_many_queued(self.quota.cap)
        if leader is not None:
            self._give_back(client, job_id)
            self._discard(job_id)  # this request rides on another job: drop its own record
        if isinstance(leader, StoredAudio):  # a twin finished while we looked
            return self._from_cache(req, voice, leader, base_url)
        if leader is not None:
            _LOGGER.info("job %s joins job %s for member %s", job_id, leader, req.member_id)
            metrics.JOBS_JOINED.labels(req.member_id).inc()
            return Submission(job_id=leader, key=key)
        message = JobMessage(
            member_id=req.member_id, text=req.text, uuid=req.uuid, created_at=req.created_at
        )
        message["voice_version"] = voice.version  # the job runs on the version its key names
        request_id = logs.current("request_id")
        # Only when asked for: a worker that predates these fields still runs every WAV job.
        if fmt != DEFAULT_FORMAT:
            message["format"] = fmt
        if speed != DEFAULT_SPEED:
            message["speed"] = speed
        try:
            with reaching("broker"):
                self.celery.send_task(
                    TASK_NAME,
                    kwargs=dict(message),
                    # What Celery's "received" line and task events show instead of the arguments.
                    kwargsrepr=repr({"member_id": req.member_id, "characters": len(req.text)}),
                    task_id=job_id,
                    queue=member_queue(self.settings.queue, req.member_id),
                    headers={REQUEST_ID_HEADER: request_id} if request_id else None,
                )
        except ApiError:
            self._abandon(job_id, key)
            self._give_back(client, job_id)
            raise
        _LOGGER.info("job %s queued for member %s", job_id, req.member_id)
        metrics.JOBS_QUEUED.labels(req.member_id).inc()
        return Submission(job_id=job_id, key=key)

    def _lookup(self, key: str, legacy_key: str | None = None) -> StoredAudio | None:
        try:
            return adopt(self.storage, key, legacy_key)
        except StorageError as exc:  # storage down: synthesize; the worker's upload will retry
            _LOGGER.warning("cache lookup failed, synthesizing instead: %s", exc)
            return None

    def _from_cache(
        self, req: TextRequest, voice: VoiceSpec, stored: StoredAudio, base_url: str
    ) -> Submission:
        """A job born done: recorded (so its status URL works like any other) but never sent."""
        job_id = str(uuid.uuid4())
        result = SynthesisResult(
            key=stored.key,
            url=self.storage.location(stored.key),
            duration_s=stored.duration_s or 0.0,
            sample_rate=voice.sample_rate,
            member_id=req.member_id,
            voice_version=voice.version,
            synthesis_s=0.0,
            pipeline_s=0.0,
        )
        with reaching("result backend"):
            self.celery.backend.store_result(job_id, dict(result), "SUCCESS")
        _LOGGER.info("job %s for member %s served from the cache", job_id, req.member_id)
        metrics.CACHE_HITS.labels(req.member_id).inc()
        view = {"job_id": job_id, "status": "done", "url": self._url(stored.key, base_url)}
        view["duration_s"] = stored.duration_s
        return Submission(job_id=job_id, cached=True, view=view, key=stored.key)

    def _require_worker(self, member_id: int) -> None:
        with reaching("broker"):
            consumers = self.fleet.consumers(member_id)
        if consumers == 0:
            raise MEMBER_UNAVAILABLE(
                f"No worker serves member {member_id} right now; try again later.",
                headers={"Retry-After": "30"},
            )

    def _claim(self, key: str, job_id: str) -> str | StoredAudio | None:
        """None when ``job_id`` now leads ``key``; else the live job to join, or the stored
        object when the job that leads ``key`` finished since we looked it up."""
        for _ in range(3):
            leader = self.inflight.claim(key, job_id)
            if leader is None or leader == job_id:
                return None
            meta = self.celery.backend.get_task_meta(leader)
            status = job_status(meta.get("status", ""))
            if status in {"queued", "running"} and self.lost(meta) is None:
                return leader
            if status == "done":
                stored = self._lookup(key)
                if stored is not None:
                    return stored
            # Done yet the object is gone, failed or expired: take the key over.
            if self.inflight.replace(key, leader, job_id):
                return None
        return None  # contended three times: render it ourselves; the worker dedupes the upload

    def _give_back(self, client: str, job_id: str) -> None:
        try:
            self.quota.give_back(client, job_id)
        except UNAVAILABLE:  # the slot ends with its job's failed record, or its deadline
            _LOGGER.warning("could not free the queue slot of job %s", job_id)

    def _discard(self, job_id: str) -> None:
        try:
            self.celery.backend.forget(job_id)
        except UNAVAILABLE:  # it expires with MOKSORI_RESULT_EXPIRES anyway
            _LOGGER.warning("could not drop the record of job %s", job_id)

    def _abandon(self, job_id: str, key: str) -> None:
        """A job that could not be published: followers must see it fail, not wait forever."""
        try:
            self.inflight.release(key, job_id)
            self.celery.backend.mark_as_failure(
                job_id, RuntimeError("The job could not be queued: the broker was unreachable.")
            )
        except UNAVAILABLE:
            _LOGGER.warning("could not record unpublished job %s as failed", job_id)

    @contextmanager
    def wait_slot(self) -> Iterator[bool]:
        """Hold one of this process's waiting slots for the block: True if one was free (the
        request may wait), False if all are taken (it answers at once)."""
        taken = self.waiting.acquire(blocking=False)
        if not taken:
            metrics.WAITS_DECLINED.inc()
        try:
            yield taken
        finally:
            if taken:
                self.waiting.release()

    def wait(self, job_id: str, timeout: float) -> bool:
        """Block until the job ends or ``timeout`` seconds pass, by the clock; True if it ended.

        Redis pushes the result (pub/sub), but Celery listens in steps of up to a second and
        checks the time only between them, so that wait stops a second early and the rest is
        polled. SQL backends are polled throughout, here rather than by Celery, whose poll loop
        counts only its sleeps, not the polls (a 30 s wait on SQLite took 38 s)."""
        deadline = time.monotonic() + timeout
        result = self.celery.AsyncResult(job_id)
        backend = result.backend
        with reaching("result backend"):
            if isinstance(backend, AsyncBackendMixin) and timeout > PUSH_STEP_S:
                try:
                    result.get(
                        timeout=timeout - PUSH_STEP_S,
                        interval=0.02,
                        propagate=False,
                        disable_sync_subtasks=False,
                    )
                    return True
                except CeleryTimeout:
                    # Stop listening on this thread's pub/sub connection: the rest is polled.
                    backend.remove_pending_result(result)
            return _poll(backend, job_id, deadline)

    def status(self, job_id: str, base_url: str) -> dict[str, Any] | None:
        """The public view of a job, or None when no such job is known."""
        with reaching("result backend"):
            meta = self.celery.backend.get_task_meta(job_id)
        status = job_status(meta.get("status", "PENDING"))
        if status is None:
            return None
        view: dict[str, Any] = {"job_id": job_id, "status": status}
        result = meta.get("result")
        key = result.get("key") if isinstance(result, dict) else None
        if status == "done" and isinstance(key, str):
            view["url"] = self._url(key, base_url)
            view["duration_s"] = result.get("duration_s")
            self._progress(view, result.get("sentences"), base_url)
        elif status == "done":  # a result without a key was not written by our worker
            view.update(
                status="failed",
                error=NO_AUDIO,
                error_code=SYNTHESIS_FAILED_CODE,
            )
        elif status == "failed":
            view["error"], view["error_code"] = failure(result)
        elif (lost := self.lost(meta)) is not None:
            view.update(status="failed", error=lost, error_code=JOB_LOST.code)
        elif isinstance(result, dict):
            self._progress(view, result.get("ready"), base_url)
        return view

    def _progress(self, view: dict[str, Any], ready: Any, base_url: str) -> None:
        """A text of several sentences: how many are stored of how many, and the URL of each
        one stored, in the text's order (:class:`common.jobs.Progress`)."""
        if not isinstance(ready, list) or len(ready) < 2:
            return
        view["sentences_done"] = sum(isinstance(key, str) for key in ready)
        view["sentences_total"] = len(ready)
        view["sentences"] = [
            {"index": index, "url": self._url(key, base_url)}
            for index, key in enumerate(ready)
            if isinstance(key, str)
        ]

    def outcome(self, job_id: str) -> tuple[str | None, str | None, tuple[str, str] | None]:
        """A job's public status, its result's storage key when done, and why it failed (a
        sentence and an error code)."""
        with reaching("result backend"):
            meta = self.celery.backend.get_task_meta(job_id)
        status = job_status(meta.get("status", "PENDING"))
        result = meta.get("result")
        if status == "done":
            key = result.get("key") if isinstance(result, dict) else None
            return status, key if isinstance(key, str) else None, None
        if status == "failed":
            return status, None, failure(result)
        if (lost := self.lost(meta)) is not None:
            return "failed", None, (lost, JOB_LOST.code)
        return status, None, None

    def lost(self, meta: dict[str, Any]) -> str | None:
        """Why a queued or running record can no longer advance, or None if it still can.

        Running: the STARTED record (its ``started_at``) is older than the hard time limit plus
        a margin. Every attempt writes a fresh one, and the limit kills an attempt, so nothing
        runs this job any more (if its message does come back later, say after waiting in a
        queue nobody consumed, the record advances again and reads so). Queued: the record is
        as old, and the member's queue holds no message waiting: a job still behind others in
        its queue is left queued; one whose message is gone is lost. Records without a time
        (written before these fields existed) are not judged. The verdict is made at each read
        and not stored, so every API process gives the same answer."""
        result = meta.get("result")
        if not isinstance(result, dict):
            return None
        status = job_status(meta.get("status", "PENDING"))
        since = result.get("started_at" if status == "running" else "queued_at")
        if status not in {"queued", "running"} or not isinstance(since, int | float):
            return None
        if time.time() - since <= self.settings.task_time_limit + STALE_MARGIN_S:
            return None
        if status == "running":
            return LOST_RUNNING
        member_id = result.get("member_id")
        if not isinstance(member_id, int):
            return None
        try:
            waiting = self.fleet.waiting(member_id)
        except UNAVAILABLE as exc:  # the broker cannot say: judge at a later read
            _LOGGER.warning("broker unavailable while checking an old queued job: %s", exc)
            return None
        return LOST_QUEUED if waiting == 0 else None

    def read(self, key: str) -> bytes | None:
        """The stored object's bytes (None when it is gone); 503 when storage fails."""
        try:
            return self.storage.read(key)
        except StorageError as exc:
            raise _storage_unavailable("read the audio", key, exc) from exc

    def _url(self, key: str, base_url: str) -> str:
        """A URL for ``key`` made now (signed afresh for a private bucket; results store only
        the object's location, so no stale signature is ever handed out)."""
        try:
            return self.storage.url(key, self.settings.public_url or base_url)
        except StorageError as exc:
            raise _storage_unavailable("make an audio URL", key, exc) from exc


def _poll(backend: Any, job_id: str, deadline: float) -> bool:
    """Read the job's state every ``POLL_S`` until it ends (True) or the clock passes
    ``deadline`` (False)."""
    while backend.get_task_meta(job_id).get("status") not in READY_STATES:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(POLL_S, left))
    return True


def failure(error: Any) -> tuple[str, str]:
    """A failed job's exception as a plain sentence and the API error code it stands for."""
    if isinstance(error, SynthesisError):
        return error.message, error.code
    if isinstance(error, TimeLimitExceeded | SoftTimeLimitExceeded):
        return "Synthesis took longer than the time limit.", SYNTHESIS_FAILED_CODE
    if isinstance(error, BaseException):
        name, message = type(error).__name__, str(error).strip()
        return (f"{name}: {message}" if message else name), SYNTHESIS_FAILED_CODE
    return (str(error) if error else "The job failed."), SYNTHESIS_FAILED_CODE
