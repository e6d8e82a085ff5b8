"""``python -m launcher`` (what ``make run`` calls): the API and a worker in one terminal.

It checks what would otherwise fail with a traceback (port taken, no voices), starts gunicorn and
a Celery worker, prefixes their output with their names, restarts a process that dies (with
backoff), and on Ctrl-C or SIGTERM stops everything it started, children included.

While the workers load their voices it says so, with each voice as it loads, and it gives the URL
only once a worker consumes and ``/readyz`` says every member is served (on RabbitMQ, by each
member queue's consumers; the embedded broker cannot count them, so there by the worker's own
lines). A voice that failed to load everywhere is named instead of waited for.

A person reads this terminal, so its lines are text unless ``MOKSORI_LOG_FORMAT`` says
otherwise; with ``json`` every line it prints is one JSON object (the children's as they wrote
them, anything else they print wrapped in one).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from common import logs
from common.config import PREFIX, Settings, process_settings
from common.repository import scan
from launcher import api_argv, worker_argv

_LOGGER = logging.getLogger("launcher")
LOG_FORMAT_VAR = f"{PREFIX}LOG_FORMAT"
STOP_TIMEOUT_S = 20.0
_OUTPUT_LOCK = threading.Lock()


@dataclass
class Child:
    """One supervised command, restarted with backoff whenever it exits on its own."""

    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    next_start: float = 0.0
    pump: threading.Thread | None = None
    env: dict[str, str] | None = None
    """Its environment, when it differs from ours."""
    startup: Startup | None = None
    """Told of this worker's starts and output lines, to follow its voices loading."""

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so its children can be stopped too
        )
        self.started_at = time.monotonic()
        _LOGGER.info("started %s (pid %d)", self.name, self.proc.pid)
        seen = None
        if self.startup is not None:  # before its first line is read
            self.startup.started(self.name)
            seen = functools.partial(self.startup.seen, self.name)
        self.pump = threading.Thread(
            target=_pump, args=(self.name, self.proc.stdout, _json_output(), seen), daemon=True
        )
        self.pump.start()

    def stop(self) -> None:
        """SIGTERM the process (gunicorn and Celery stop their own children), then SIGKILL
        whatever is left of its process group."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            _LOGGER.warning("%s did not stop in %.0f s; killing it", self.name, STOP_TIMEOUT_S)
        _signal_group(self.proc.pid, signal.SIGKILL)  # leftovers of the group, if any
        self.proc.wait()
        if self.pump is not None:
            self.pump.join(timeout=2)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _json_output() -> bool:
    return os.environ.get(LOG_FORMAT_VAR) == "json"


def _pump(
    name: str,
    stream: IO[bytes] | None,
    as_json: bool = False,
    seen: Callable[[str], None] | None = None,
) -> None:
    """Copy a child's output to ours, one prefixed line at a time; in JSON, its JSON lines as
    they are and anything else (a crash before its logging started) wrapped in one. Each line
    is then handed to ``seen``."""
    if stream is None:
        return
    stray = logging.getLogger(f"launcher.{name}")
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", errors="replace").rstrip("\n")
        if as_json and not _is_json_object(line):
            stray.warning("%s", line)
        else:
            with _OUTPUT_LOCK:
                sys.stdout.write(f"{line}\n" if as_json else f"{name:>6} | {line}\n")
                sys.stdout.flush()
        if seen is not None:
            seen(line)


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


_LOADED = re.compile(r"loaded member (\d+) ")
_FAILED = re.compile(r"voice for member (\d+) .*failed to load")
_CONSUMING = re.compile(r"@\S+ ready\.")
"""Celery's "celery@host ready.": the worker consumes (only once its voices are loaded)."""
READY_POLL_S = 0.5


@dataclass
class _Loading:
    """What one worker's lines said since it (re)started."""

    loaded: set[int] = field(default_factory=set)
    failed: set[int] = field(default_factory=set)
    consuming: bool = False


class Startup:
    """Follows the workers' voices loading, from their lines, and tells the terminal: progress
    while they load, then the URL once a worker serves every member (:meth:`watch`)."""

    def __init__(self, members: list[int], base: str, probe: str) -> None:
        self.members = sorted(members)
        self.base = base
        self._probe = probe
        self._lock = threading.Lock()
        self._workers: dict[str, _Loading] = {}
        self._ready = False
        self._told = ""

    def started(self, name: str) -> None:
        """A worker (re)starts: it serves nothing until its lines say otherwise."""
        with self._lock:
            self._workers[name] = _Loading()
            again = self._ready
            self._ready = False
        if again:
            _LOGGER.warning("%s restarted: not ready until it has loaded its voices again", name)
        _LOGGER.info("%s: loading voices… 0/%d", name, len(self.members))

    def seen(self, name: str, line: str) -> None:
        """One line of worker ``name``'s output."""
        loaded, failed = _LOADED.search(line), _FAILED.search(line)
        with self._lock:
            state = self._workers.setdefault(name, _Loading())
            if _CONSUMING.search(line):
                state.consuming = True
            found = loaded or failed
            if found is None:
                return
            member = int(found.group(1))
            (state.loaded if loaded else state.failed).add(member)
            done = len(state.loaded | state.failed)
        outcome = "loaded" if loaded else "FAILED to load"
        _LOGGER.info(
            "%s: loading voices… %d/%d (member %d %s)",
            name,
            done,
            len(self.members),
            member,
            outcome,
        )

    def watch(self, stop: threading.Event) -> None:
        """Until ``stop``: once a worker consumes, ask ``/readyz`` until every member is served
        (or its voice failed to load everywhere), then give the URL; again after a restart."""
        while not stop.wait(READY_POLL_S):
            with self._lock:
                consuming = [s for s in self._workers.values() if s.consuming]
                if self._ready or not consuming:
                    continue
                loaded = set().union(*(s.loaded for s in consuming))
                failed = set.intersection(*(s.failed for s in consuming))
            served, problem = self._served(loaded)
            if problem:
                self._tell(f"waiting for the API: {problem}")
                continue
            missing = [m for m in self.members if m not in served]
            if any(m not in failed for m in missing):
                self._tell(f"waiting for a worker to serve member(s) {_listed(missing)}")
                continue
            with self._lock:
                self._ready = True
            self._announce(sorted(served), missing)

    def _served(self, loaded: set[int]) -> tuple[set[int], str]:
        """The members ``/readyz`` counts consumers for (when the broker can count them, else
        ``loaded``), or why it is not ready."""
        try:
            with urllib.request.urlopen(self._probe, timeout=2) as response:
                body: dict[str, Any] = json.load(response)
        except urllib.error.HTTPError as exc:
            try:
                return set(), json.load(exc)["error"]["message"]
            except (ValueError, KeyError, TypeError):
                return set(), f"/readyz answered {exc.code}"
        except (OSError, ValueError) as exc:
            return set(), f"no answer from {self._probe} yet ({exc})"
        consumers = body.get("checks", {}).get("workers", {}).get("consumers")
        if consumers is None:
            return loaded, ""
        return {int(m) for m, n in consumers.items() if n > 0}, ""

    def _tell(self, message: str) -> None:
        """Say ``message`` once, not at every poll."""
        if message != self._told:
            self._told = message
            _LOGGER.info("%s", message)

    def _announce(self, served: list[int], missing: list[int]) -> None:
        self._told = ""
        if missing:
            _LOGGER.warning(
                "member(s) %s NOT served: the voice failed to load (see the worker's lines)",
                _listed(missing),
            )
        _LOGGER.info("ready: moksori on %s (members %s served)", self.base, _listed(served))
        member = served[0] if served else 1
        _LOGGER.info(
            "try: curl -s -X POST '%s/api/texts?wait=30' -H 'Content-Type: application/json' "
            '-d \'{"member_id": %s, "text": "안녕하세요! 반갑습니다."}\'',
            self.base,
            member,
        )


def _listed(members: list[int]) -> str:
    return ", ".join(map(str, members)) or "none"


def _local(host: str) -> str:
    """Where this machine reaches an API that listens on ``host``."""
    if host in {"0.0.0.0", ""}:
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def port_problem(host: str, port: int) -> str | None:
    """Why the API could not bind ``host:port``, in one line, or None when it can."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            return (
                f"cannot listen on {host}:{port} ({exc.strerror}); another program uses it. "
                f"Stop it or choose another port: MOKSORI_PORT={port + 1} make run"
            )
    return None


def commands(settings: Settings, startup: Startup | None = None) -> list[Child]:
    """``MOKSORI_WORKERS`` worker processes (each holding every voice, followed by ``startup``)
    and the API; worker N serves its metrics on ``MOKSORI_WORKER_METRICS_PORT`` + N - 1."""
    count = max(1, settings.workers)
    workers = [
        Child(
            "worker" if count == 1 else f"work{index}",
            worker_argv(f"moksori{index}@{socket.gethostname()}"),
            env=_child_env(f"worker{index}", _metrics_port(settings, index)),
            startup=startup,
        )
        for index in range(1, count + 1)
    ]
    api = Child("api", api_argv(settings.host, settings.port), env=_child_env("api"))
    return [*workers, api]


def _metrics_port(settings: Settings, index: int) -> int | None:
    """Worker ``index``'s metrics port, when it is not simply the configured one."""
    if index == 1 or settings.worker_metrics_port <= 0:
        return None
    return settings.worker_metrics_port + index - 1


def _child_env(name: str, metrics_port: int | None = None) -> dict[str, str] | None:
    """A child's environment when it differs from ours: a metrics directory of its own below
    ``PROMETHEUS_MULTIPROC_DIR`` (when the operator set one; each process tree empties its own
    at start), and a worker's metrics port."""
    base = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip()
    if not base and metrics_port is None:
        return None
    env = dict(os.environ)
    if base:
        env["PROMETHEUS_MULTIPROC_DIR"] = os.path.join(base, name)
    if metrics_port is not None:
        env["MOKSORI_WORKER_METRICS_PORT"] = str(metrics_port)
    return env


def supervise(children: list[Child], stop: threading.Event) -> None:
    """Keep every child running until ``stop`` is set; a crash-looping child backs off."""
    for child in children:
        child.start()
    while not stop.wait(0.5):
        now = time.monotonic()
        for child in children:
            assert child.proc is not None
            code = child.proc.poll()
            if code is None:
                continue
            if child.next_start == 0.0:
                _signal_group(child.proc.pid, signal.SIGKILL)  # orphans of the dead process
                uptime = now - child.started_at
                child.restarts = 0 if uptime > 60 else child.restarts + 1
                delay = min(30.0, 2.0**child.restarts - 1)
                child.next_start = now + delay
                _LOGGER.warning(
                    "%s exited with code %s after %.0f s; restarting in %.0f s",
                    child.name,
                    code,
                    uptime,
                    delay,
                )
            elif now >= child.next_start:
                child.next_start = 0.0
                child.start()


def main() -> int:
    if not os.environ.get(LOG_FORMAT_VAR):
        os.environ[LOG_FORMAT_VAR] = "text"  # for this terminal; the children inherit it
    logging.basicConfig(level=logging.INFO, format="launcher | %(message)s", stream=sys.stdout)
    try:
        settings = process_settings()
    except ValueError as exc:
        _LOGGER.error("%s", exc)
        return 2
    if settings.log_format == "json":
        logging.getLogger().handlers.clear()
        logs.configure(settings, "launcher", stream=sys.stdout)
    else:
        logging.getLogger().setLevel(settings.log_level.upper())
    problem = port_problem(settings.host, settings.port)
    if problem:
        _LOGGER.error("%s", problem)
        return 1
    repository = scan(settings.voice_dir)
    if not repository.voices:
        _LOGGER.warning(
            "no voices in %s: every request will be refused (train the demo voices with "
            "`python -m voice_model.demo`, see docs/voices.md)",
            settings.voice_dir,
        )
    members = [m for m in repository.voices if not settings.members or m in settings.members]
    startup = Startup(
        members,
        f"http://{settings.host}:{settings.port}",
        f"http://{_local(settings.host)}:{settings.port}/readyz",
    )
    _LOGGER.info(
        "starting moksori: loading voices for members %s; the URL follows once they are served",
        _listed(members),
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    children = commands(settings, startup)
    threading.Thread(target=startup.watch, args=(stop,), name="startup", daemon=True).start()
    try:
        supervise(children, stop)
    finally:
        _LOGGER.info("stopping")
        for child in reversed(children):
            child.stop()
        _LOGGER.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
