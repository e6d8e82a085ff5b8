"""The per-process state of a worker: its voices, storage and normalizer.

Built once per worker process at start-up (Celery's ``worker_process_init``, which both the
prefork and the solo pool send), never at import time and never per task.
"""

from __future__ import annotations

import logging
import time

from common.config import Settings
from common.jobs import load_media_secret
from common.normalize import Normalizer
from common.repository import Repository, VoiceCatalog, scan
from common.storage import open_storage
from worker.memory import keep_freed_memory
from worker.reload import VoiceReloader
from worker.synthesis import Pipeline
from worker.voices import load_bank, resolve_device

_LOGGER = logging.getLogger(__name__)

_PIPELINE: Pipeline | None = None
_POOL_SIZE = 1


def start(settings: Settings) -> Pipeline:
    """Load every voice and open storage for this process."""
    global _PIPELINE
    started = time.perf_counter()
    if not keep_freed_memory():
        _LOGGER.info("malloc is not glibc's: freed buffers go back to the system as it decides")
    # Coqui logs every input sentence at INFO; users' text stays out of our logs.
    logging.getLogger("TTS").setLevel(logging.WARNING)
    device = resolve_device(settings.device)
    if settings.torch_threads > 0:
        import torch

        torch.set_num_threads(settings.torch_threads)
    catalog = VoiceCatalog(
        settings.voice_dir,
        settings.voice_reload_interval,
        narrow=lambda repository: narrow(settings, repository),
    )
    repository = catalog.repository
    normalizer = Normalizer()
    normalizer.warm_up()
    bank = load_bank(repository, device)
    for where, problem in bank.errors.items():
        _LOGGER.error("voice %s is NOT served by this worker: %s", where, problem)
    if not bank.voices:
        _LOGGER.error("no voice could be loaded from %s; every job will fail", settings.voice_dir)
    reloader = VoiceReloader(catalog, bank, device, settings.keep_versions)
    _PIPELINE = Pipeline(
        bank=bank,
        storage=open_storage(
            settings.storage_url,
            timeout=settings.storage_timeout,
            signed_url_ttl=settings.signed_url_ttl,
            public_bucket=settings.public_bucket,
        ),
        normalizer=normalizer,
        secret=load_media_secret(settings),
        sentence_pause=settings.sentence_pause,
        legacy_names=settings.media_legacy_names,
        reloader=reloader,
    )
    reloader.start()
    _LOGGER.info(
        "worker ready on %s: members %s loaded in %.2f s",
        device,
        sorted(bank.voices) or "none",
        time.perf_counter() - started,
    )
    return _PIPELINE


def served_repository(settings: Settings) -> Repository:
    """The voice repository narrowed to ``MOKSORI_MEMBERS`` (all of it when that is empty)."""
    return narrow(settings, scan(settings.voice_dir))


def narrow(settings: Settings, repository: Repository) -> Repository:
    """``repository`` without the voices ``MOKSORI_MEMBERS`` leaves out."""
    if not settings.members:
        return repository
    wanted = set(settings.members)
    missing = wanted - set(repository.voices)
    errors = dict(repository.errors)
    for member_id in sorted(missing):
        errors.setdefault(f"member {member_id}", "named by MOKSORI_MEMBERS, not in the repository")
    return Repository(
        voices={m: v for m, v in repository.voices.items() if m in wanted}, errors=errors
    )


def set_pool_size(processes: int) -> None:
    """Record how many pool processes this worker runs (set before the pool forks)."""
    global _POOL_SIZE
    _POOL_SIZE = max(1, int(processes))


def pool_size() -> int:
    """How many pool processes this worker runs (``--concurrency``)."""
    return _POOL_SIZE


def current() -> Pipeline:
    """This process's pipeline; raises if the worker start-up hook has not run."""
    if _PIPELINE is None:
        raise RuntimeError("the worker runtime is not started (worker_process_init did not run)")
    return _PIPELINE
