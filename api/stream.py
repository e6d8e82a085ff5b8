"""A job's audio while it is being made: each sentence sent as soon as it is stored.

``follow()`` -> ``pieces()`` -> ``chunks()``, and :func:`open_stream` to answer a request with them

The job's record is followed through the result backend's pub/sub (Redis publishes every
rewrite of it, and the worker rewrites it after each sentence: :class:`common.jobs.Progress`);
other backends are read every :data:`POLL_S`. Only sentence objects already in storage are
sent, in the text's order, joined by the voice's pause: the bytes of a WAV stream are those of
the job's own WAV once it is done.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from api.errors import SERVICE_UNAVAILABLE, ApiError
from api.service import NO_AUDIO, UNAVAILABLE, JobService, failure, reaching
from common.encoding import read_wav, stream_piece
from common.jobs import SYNTHESIS_FAILED_CODE, job_status, redis_client

_LOGGER = logging.getLogger(__name__)

QUIET_S = 5.0
"""How long a followed record may stay unchanged before it is read again anyway (a lost
message, or a job judged lost, still ends the stream)."""
POLL_S = 0.1
"""How often a record is read when the result backend has no pub/sub."""


class JobEndedError(Exception):
    """The job failed (or can no longer finish): why, and the API error code for it."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message, self.code = message, code


class NotReadyError(Exception):
    """Nothing of the job could be sent by the deadline; the job goes on."""


@dataclass(frozen=True)
class Piece:
    """Something that can be sent: a sentence's WAV object, or (``whole``) the job's own
    object, for a job of one sentence or one answered from storage."""

    key: str
    whole: bool = False


def follow(
    service: JobService, job_id: str, deadline: float | None = None
) -> Iterator[dict[str, Any]]:
    """The job's record now, after each change and once more when ``deadline`` (by
    ``time.monotonic()``) passes, until it ends or is judged lost; stops when it has not
    changed for the time limit plus a margin (a job nobody runs)."""
    backend = service.celery.backend
    client = redis_client(backend)
    idle_s = service.settings.task_time_limit + 60
    if client is None:
        yield from _polled(backend, job_id, idle_s, deadline)
        return
    channel = backend.get_key_for_task(job_id)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe(channel)  # before the first read: no rewrite can fall in between
        meta = backend.get_task_meta(job_id, cache=False)
        changed = time.monotonic()
        while True:
            yield meta
            if _ended(meta) or time.monotonic() - changed > idle_s:
                return
            message = pubsub.get_message(timeout=_quiet_s(deadline))
            if message is not None and message.get("type") == "message":
                meta = backend.decode_result(message["data"])
                changed = time.monotonic()
            else:
                meta = backend.get_task_meta(job_id, cache=False)
    finally:
        pubsub.close()


def _quiet_s(deadline: float | None) -> float:
    """How long to listen for a change before reading the record anyway: until the deadline
    when it comes first."""
    left = QUIET_S if deadline is None else deadline - time.monotonic()
    return min(QUIET_S, left) if left > 0 else QUIET_S


def _polled(
    backend: Any, job_id: str, idle_s: float, deadline: float | None
) -> Iterator[dict[str, Any]]:
    last: Any = None
    changed = time.monotonic()
    while True:
        meta = backend.get_task_meta(job_id, cache=False)
        due = deadline is not None and time.monotonic() >= deadline
        if meta != last or due:
            yield meta
            last, changed = meta, time.monotonic()
            deadline = None if due else deadline
        if _ended(meta) or time.monotonic() - changed > idle_s:
            return
        time.sleep(POLL_S)


def _ended(meta: dict[str, Any]) -> bool:
    return job_status(meta.get("status", "")) in {"done", "failed", None}


def pieces(service: JobService, job_id: str, deadline: float | None = None) -> Iterator[Piece]:
    """What of the job can be sent, in order, as soon as it can; :class:`JobEndedError` when the
    job fails or is judged lost (after the pieces stored before it), :class:`NotReadyError`
    when ``deadline`` (by ``time.monotonic()``) passes before the first piece."""
    sent = 0
    for meta in follow(service, job_id, deadline):
        status = job_status(meta.get("status", ""))
        result = meta.get("result")
        if status == "done":
            keys = result.get("sentences") if isinstance(result, dict) else None
            key = result.get("key") if isinstance(result, dict) else None
            if not keys and isinstance(key, str):
                if not sent:
                    yield Piece(key, whole=True)
                return
            if not keys:  # a result without a key was not written by our worker
                raise JobEndedError(NO_AUDIO, SYNTHESIS_FAILED_CODE)
            for key in keys[sent:]:
                yield Piece(key)
            return
        if status == "failed":
            raise JobEndedError(*failure(result))
        if status is None:
            raise JobEndedError("There is no job with this id (or it has expired).", "unknown_job")
        lost = service.lost(meta)
        if lost is not None:
            raise JobEndedError(lost, "job_lost")
        ready = result.get("ready") if isinstance(result, dict) else None
        if isinstance(ready, list):
            while sent < len(ready) and isinstance(ready[sent], str):
                yield Piece(ready[sent])
                sent += 1
        if not sent and deadline is not None and time.monotonic() >= deadline:
            raise NotReadyError
    raise JobEndedError("The job made no progress within its time limit.", "job_lost")


def chunks(
    service: JobService, source: Iterator[Piece], fmt: str, first: Piece | None = None
) -> Iterator[bytes]:
    """The bytes of a stream in ``fmt`` (``wav``, ``pcm`` or ``mp3``) from ``source``'s
    pieces (``first``, when given, already taken from it). A whole object is sent as it is
    stored. A failure after the first bytes ends the stream where it is (logged): the client
    has a shorter, still playable stream, and the job's status says why."""
    pause_s = service.settings.sentence_pause
    index = 0
    try:
        for piece in _chained(first, source):
            data = service.read(piece.key)
            if data is None:
                _LOGGER.warning("stream: %s vanished from storage", piece.key)
                return
            if piece.whole:
                yield data
                return
            rate, pcm = read_wav(data)
            if index:
                pcm = np.concatenate([np.zeros(round(pause_s * rate), dtype="<i2"), pcm])
            yield stream_piece(pcm, rate, fmt, first=index == 0)
            index += 1
    except JobEndedError as exc:
        _LOGGER.warning("stream ended after %d sentence(s): %s", index, exc.message)
    except (*UNAVAILABLE, ApiError, ValueError) as exc:
        _LOGGER.warning("stream ended after %d sentence(s): %s", index, exc)


def _chained(first: Piece | None, source: Iterator[Piece]) -> Iterator[Piece]:
    if first is not None:
        yield first
    yield from source


def open_stream(
    service: JobService, job_id: str, fmt: str, deadline: float | None = None
) -> tuple[Piece, Iterator[bytes]]:
    """The job's first piece and its stream in ``fmt``, once the stream's first bytes are
    ready, so that every failure before them is still an error the route can answer with:
    503 when every waiting slot is taken or the first piece cannot be read, the result
    backend's 503, :class:`JobEndedError`, :class:`NotReadyError`.

    The stream holds a request thread, so it holds one of the process's waiting slots
    (``MOKSORI_MAX_WAITING``) until its body ends, or is closed when the client goes."""
    if not service.waiting.acquire(blocking=False):
        raise SERVICE_UNAVAILABLE(
            "Every streaming slot of this server is taken; try again shortly, or follow the "
            "job's status and fetch its sentences.",
            headers={"Retry-After": "5"},
        )
    source = pieces(service, job_id, deadline)
    try:
        with reaching("result backend"):
            first = next(source)
        body = chunks(service, source, fmt, first)
        head = next(body, None)
        if head is None:  # chunks logged why
            raise SERVICE_UNAVAILABLE(
                "The audio could not be read from storage; try again shortly.",
                headers={"Retry-After": "5"},
            )
    except BaseException:
        source.close()  # its pub/sub connection
        service.waiting.release()
        raise

    def held() -> Iterator[bytes]:
        try:
            yield head
            yield from body
        finally:
            body.close()
            source.close()
            service.waiting.release()

    return first, held()
