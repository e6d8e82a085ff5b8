"""The API's side of a job: validate against the voice, record it, publish it, read its status."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from celery import Celery
from celery.exceptions import TimeoutError as CeleryTimeout
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from api.errors import ApiError
from api.validation import TextRequest
from common.config import Settings
from common.jobs import QUEUED, TASK_NAME, job_status, make_celery
from common.normalize import Normalizer
from common.storage import GCSStorage, LocalStorage, open_storage
from voice_model.repository import VoiceSpec, scan

_LOGGER = logging.getLogger(__name__)

# Errors that mean "the broker or the result backend cannot be reached right now".
# (kombu's OperationalError is a KombuError; ConnectionError and TimeoutError are OSErrors.)
_UNAVAILABLE = (KombuError, RedisError, OSError)


def _unavailable(what: str, exc: BaseException) -> ApiError:
    _LOGGER.warning("%s unavailable: %s", what, exc)
    return ApiError(
        503,
        "service_unavailable",
        f"The job queue is unavailable ({what}); try again shortly.",
        headers={"Retry-After": "5"},
    )


@dataclass
class JobService:
    """Everything the routes need, built once per API process."""

    settings: Settings
    celery: Celery
    storage: LocalStorage | GCSStorage
    voices: dict[int, VoiceSpec]
    normalizer: Normalizer

    @classmethod
    def from_settings(cls, settings: Settings) -> JobService:
        repository = scan(settings.voice_dir)
        return cls(
            settings=settings,
            celery=make_celery(settings, main="moksori-api"),
            storage=open_storage(settings.storage_url),
            voices=repository.voices,
            normalizer=Normalizer(),
        )

    def voice(self, member_id: int) -> VoiceSpec:
        voice = self.voices.get(member_id)
        if voice is None:
            known = ", ".join(str(m) for m in self.voices) or "none"
            raise ApiError(
                404, "unknown_member", f"There is no voice for member {member_id} (known: {known})."
            )
        return voice

    def submit(self, req: TextRequest) -> str:
        """Queue a synthesis, return its job id; 4xx for bad input, 503 when the queue is down."""
        voice = self.voice(req.member_id)
        if not self.normalizer.sentences(req.text, voice.characters):
            raise ApiError(
                422,
                "unspeakable_text",
                "text has nothing this voice can pronounce (no Korean, Latin letters or numbers).",
            )
        job_id = str(uuid.uuid4())
        backend = self.celery.backend
        # Record the job before publishing: a worker may finish before we would get to it after.
        try:
            backend.store_result(job_id, {"member_id": req.member_id, "uuid": req.uuid}, QUEUED)
        except _UNAVAILABLE as exc:
            raise _unavailable("result backend", exc) from exc
        try:
            self.celery.send_task(
                TASK_NAME,
                kwargs={
                    "member_id": req.member_id,
                    "text": req.text,
                    "uuid": req.uuid,
                    "created_at": req.created_at,
                },
                task_id=job_id,
                queue=self.settings.queue,
            )
        except _UNAVAILABLE as exc:
            try:
                backend.forget(job_id)
            except _UNAVAILABLE:
                _LOGGER.warning("could not forget unpublished job %s", job_id)
            raise _unavailable("broker", exc) from exc
        _LOGGER.info("job %s queued for member %s", job_id, req.member_id)
        return job_id

    def wait(self, job_id: str, timeout: float) -> None:
        """Block until the job ends or ``timeout`` passes."""
        result = self.celery.AsyncResult(job_id)
        try:
            # Redis pushes the result (pub/sub); SQL backends are polled, here every 20 ms.
            result.get(timeout=timeout, interval=0.02, propagate=False, disable_sync_subtasks=False)
        except CeleryTimeout:
            # Stop listening for this job on this thread's pub/sub connection: nobody waits now.
            stop_waiting = getattr(result.backend, "remove_pending_result", None)
            if stop_waiting is not None:
                stop_waiting(result)
        except _UNAVAILABLE as exc:
            raise _unavailable("result backend", exc) from exc

    def status(self, job_id: str, base_url: str) -> dict[str, Any] | None:
        """The public view of a job, or None when no such job is known."""
        try:
            meta = self.celery.backend.get_task_meta(job_id)
        except _UNAVAILABLE as exc:
            raise _unavailable("result backend", exc) from exc
        status = job_status(meta.get("status", "PENDING"))
        if status is None:
            return None
        view: dict[str, Any] = {"job_id": job_id, "status": status}
        result = meta.get("result")
        key = result.get("key") if isinstance(result, dict) else None
        if status == "done" and isinstance(key, str):
            view["url"] = self.storage.url(key, self.settings.public_url or base_url)
            view["duration_s"] = result.get("duration_s")
        elif status == "done":  # a result without a key was not written by our worker
            view.update(status="failed", error="The job finished without an audio file.")
        elif status == "failed":
            view["error"] = _describe(result)
        return view


def _describe(error: Any) -> str:
    """A plain sentence for a failed job's exception."""
    if isinstance(error, BaseException):
        name = type(error).__name__
        message = str(error).strip()
        if name == "SynthesisError" and message:
            return message
        if "TimeLimitExceeded" in name:
            return "Synthesis took longer than the time limit."
        return f"{name}: {message}" if message else name
    return str(error) if error else "The job failed."
