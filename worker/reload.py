"""Hot reload of voices in a worker process: a new checkpoint goes live without a restart.

Each pool process (which holds the models; Celery's control commands run in the main process,
which holds none) watches the repository itself: a daemon thread looks every
``MOKSORI_VOICE_RELOAD_INTERVAL`` seconds (a few ``stat`` calls,
:func:`common.repository.fingerprint`) and, for a member whose version changed, loads the
new version beside the old one and swaps it in at once (:meth:`worker.voices.VoiceBank.swap`).
A version that fails to load is logged with the reason and the old one keeps serving.

A job carries the version the API pinned when it was submitted (``voice_version``), and runs on
that version when it is current or kept; one pinned to a version newer than this process knows
(the API saw the new manifest first) makes it look at once (:meth:`VoiceReloader.check`).
"""

from __future__ import annotations

import logging
import threading
import time

from common.repository import VoiceCatalog
from worker.voices import LoadedVoice, VoiceBank, load_voice

_LOGGER = logging.getLogger(__name__)


class VoiceReloader:
    """Keeps one process's :class:`VoiceBank` at the versions its :class:`VoiceCatalog` lists."""

    def __init__(self, catalog: VoiceCatalog, bank: VoiceBank, device: str, keep: int) -> None:
        self.catalog = catalog
        self.bank = bank
        self.device = device
        self.keep = keep
        self._lock = threading.Lock()  # one load at a time; a job asking waits for it
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Watch the repository from a daemon thread (nothing when the interval is 0)."""
        if self.catalog.interval <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._watch, name="voice-reload", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while True:
            time.sleep(self.catalog.interval)
            try:
                self.check()
            except Exception:  # a bad look at the disk must not end the watching
                _LOGGER.exception("checking the voice repository failed")

    def check(self) -> list[LoadedVoice]:
        """Rescan if the files changed; load and swap in every member's new version. Returns
        the voices swapped in."""
        swapped: list[LoadedVoice] = []
        with self._lock:
            self.catalog.refresh()
            for member_id, spec in self.catalog.voices.items():
                current = self.bank.voices.get(member_id)
                if current is None or current.spec.version == spec.version:
                    continue  # not served here (a restart adds members), or already live
                failed = self.bank.failed.get(member_id)
                if failed is not None and failed[0] == spec:
                    continue  # tried and failed; a changed manifest is tried again
                try:
                    voice = load_voice(spec, self.device)
                except Exception as exc:  # the old version keeps serving
                    reason = f"{type(exc).__name__}: {exc}"
                    self.bank.failed[member_id] = (spec, reason)
                    _LOGGER.error(
                        "member %s: version %s failed to load, still serving version %s: %s",
                        member_id,
                        spec.version,
                        current.spec.version,
                        reason,
                    )
                    continue
                self.bank.swap(voice, self.keep)
                swapped.append(voice)
                _LOGGER.info(
                    "member %s now serves version %s (loaded in %.2f s; kept: %s)",
                    member_id,
                    spec.version,
                    voice.load_seconds,
                    [v.spec.version for v in self.bank.previous.get(member_id, [])] or "none",
                )
        return swapped
