"""Fault injectors for the fault tests: a private RabbitMQ node and a private Redis the test may
stop and restart, a TCP proxy whose connections can be cut, an HTTP proxy that can answer 503
(or 429, 500) for storage, a tiny tmpfs that fills up, and an immutable directory.

The shared broker on 127.0.0.1:5672 and the shared Redis on 6379 are never touched: every broker
or result-backend fault happens on a server of the test's own (own ports, data directory and
config), stopped in teardown.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from harness.processes import free_port, reachable


class RabbitNode:
    """A RabbitMQ node of the test's own, started with ``rabbitmq-server`` like the shared one.

    Its data directory survives :meth:`stop`, so a restart keeps durable queues and persistent
    messages, exactly what a production broker restart does. ``consumer_timeout_ms`` sets
    RabbitMQ's delivery-acknowledgement timeout for this node only (checked every second here,
    instead of RabbitMQ's default of once a minute, so a test can cross it quickly).

    ``address`` is where it listens and ``prefix`` wraps its commands (``ip netns exec NS``:
    a node on another host, :mod:`harness.netns`); ``heartbeat_s`` is the AMQP heartbeat it
    offers clients (they settle on the smaller of theirs and this)."""

    def __init__(
        self,
        consumer_timeout_ms: int | None = None,
        address: str = "127.0.0.1",
        prefix: Sequence[str] = (),
        heartbeat_s: int | None = None,
    ) -> None:
        # Not under pytest's tmp_path: its folders are private to root, and the node runs as the
        # rabbitmq user. remove() deletes it.
        root = Path(tempfile.mkdtemp(prefix="moksori-rabbit-"))
        root.chmod(0o755)
        self.root = root
        self.name = f"moksori-test-{uuid.uuid4().hex[:8]}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        self.address = address
        self._prefix = list(prefix)
        self.url = f"amqp://guest:guest@{address}:{self.port}//"
        (root / "mnesia").mkdir(parents=True, exist_ok=True)
        (root / "log").mkdir(parents=True, exist_ok=True)
        config = [f"listeners.tcp.default = {address}:{self.port}", "loopback_users = none"]
        if consumer_timeout_ms is not None:
            config.append(f"consumer_timeout = {consumer_timeout_ms}")
        if heartbeat_s is not None:
            config.append(f"heartbeat = {heartbeat_s}")
        (root / "rabbitmq.conf").write_text("\n".join(config) + "\n", encoding="utf-8")
        (root / "enabled_plugins").write_text("[].\n", encoding="utf-8")
        (root / "advanced.config").write_text(
            "[{rabbit, [{channel_tick_interval, 1000}]}].\n", encoding="utf-8"
        )
        with contextlib.suppress(KeyError, PermissionError):
            # rabbitmq-server drops to the rabbitmq user when started as root.
            user = pwd.getpwnam("rabbitmq")
            for path in [root, *root.rglob("*")]:
                os.chown(path, user.pw_uid, user.pw_gid)
        self._env = {
            **os.environ,
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(root / "mnesia"),
            "RABBITMQ_MNESIA_DIR": str(root / "mnesia" / "node"),
            "RABBITMQ_LOG_BASE": str(root / "log"),
            "RABBITMQ_CONFIG_FILE": str(root / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(root / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(root / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(root / "node.pid"),
        }
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0) -> None:
        log = (self.root / "server.out").open("ab")
        self._proc = subprocess.Popen(
            [*self._prefix, "rabbitmq-server"],
            env=self._env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not reachable(self.address, self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"private RabbitMQ node did not start:\n{self.output()}")
            time.sleep(0.2)

    def stop(self) -> None:
        """Stop the node the way an operator would (``rabbitmqctl stop``); kill it if that fails."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            subprocess.run(
                [*self._prefix, "rabbitmqctl", "-n", self.name, "stop"],
                env=self._env,
                capture_output=True,
                timeout=60,
                check=False,
            )
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._proc.pid, 9)
                self._proc.wait()
        self._proc = None
        deadline = time.monotonic() + 15
        while reachable(self.address, self.port) and time.monotonic() < deadline:
            time.sleep(0.1)

    def remove(self) -> None:
        """Stop the node and delete its data."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def queue_types(self) -> dict[str, str]:
        """Each queue's name and type (``classic``, ``quorum``), as ``rabbitmqctl`` lists them."""
        done = subprocess.run(
            [*self._prefix, "rabbitmqctl", "-n", self.name, "-q", "list_queues", "name", "type"],
            env=self._env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        rows = (line.split() for line in done.stdout.splitlines())
        return {row[0]: row[1] for row in rows if len(row) == 2 and row[0] != "name"}

    def kill(self) -> None:
        """Crash the node (SIGKILL to every process of it), as a power cut would."""
        if self._proc is None:
            return
        import psutil

        with contextlib.suppress(psutil.NoSuchProcess):
            parent = psutil.Process(self._proc.pid)
            for proc in [*parent.children(recursive=True), parent]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.kill()
        self._proc.wait(timeout=30)
        self._proc = None
        deadline = time.monotonic() + 15
        while reachable(self.address, self.port) and time.monotonic() < deadline:
            time.sleep(0.1)

    def output(self) -> str:
        path = self.root / "server.out"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


class RedisNode:
    """A Redis server of the test's own (``redis-server --daemonize yes``), with append-only
    persistence in a directory of its own, so a stop and start keeps every key, as a production
    Redis with AOF does: what an outage of the result backend looks like, not a data loss.
    ``address`` and ``prefix`` as for :class:`RabbitNode`."""

    def __init__(self, address: str = "127.0.0.1", prefix: Sequence[str] = ()) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="moksori-redis-"))
        self.port = free_port()
        self.address = address
        self._prefix = list(prefix)
        self.url = f"redis://{address}:{self.port}/0"

    def start(self, timeout: float = 30.0) -> None:
        """Start the server (again) and return once it answers PING (AOF loaded)."""
        options = {
            "port": str(self.port),
            "bind": self.address,
            # Protected mode refuses every client not on loopback; this server listens on the
            # one address the test chose (a namespace's, :mod:`harness.netns`) and nowhere else.
            "protected-mode": "no",
            "dir": str(self.root),
            "appendonly": "yes",
            "save": "",
            "daemonize": "yes",
            "pidfile": str(self.root / "redis.pid"),
            "logfile": str(self.root / "redis.log"),
        }
        subprocess.run(
            [
                *self._prefix,
                "redis-server",
                *(arg for name, value in options.items() for arg in (f"--{name}", value)),
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        deadline = time.monotonic() + timeout
        while not self._answers():
            if time.monotonic() > deadline:
                raise AssertionError(f"private Redis did not start:\n{self.output()}")
            time.sleep(0.1)

    def _answers(self) -> bool:
        done = subprocess.run(
            ["redis-cli", "-h", self.address, "-p", str(self.port), "ping"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return done.stdout.strip() == "PONG"

    def stop(self) -> None:
        """Stop the server as an operator would (``SHUTDOWN``, which syncs the AOF); SIGTERM
        its pid if that does not work. Returns once the port is closed."""
        if reachable(self.address, self.port):
            subprocess.run(
                ["redis-cli", "-h", self.address, "-p", str(self.port), "shutdown"],
                capture_output=True,
                timeout=30,
                check=False,
            )
        deadline = time.monotonic() + 15
        while reachable(self.address, self.port):
            if time.monotonic() > deadline:
                pid_file = self.root / "redis.pid"
                with contextlib.suppress(OSError, ValueError):
                    os.kill(int(pid_file.read_text().strip()), 15)
                deadline = time.monotonic() + 15
            time.sleep(0.1)

    def remove(self) -> None:
        """Stop the server and delete its data."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def output(self) -> str:
        path = self.root / "redis.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


class TcpProxy:
    """Forwards a local port to ``target``; :meth:`cut` drops every connection and refuses new
    ones (a network partition), :meth:`restore` listens again on the same port."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    close = cut

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class FlakyHttp:
    """An HTTP proxy in front of ``upstream`` (e.g. the storage emulator) that forwards every
    request, or answers ``status`` (503 unless set: 429, 500, ...) to the next ``fail_next``
    requests (``-1``: to all of them)."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("http://").rsplit(":", 1)
        self.upstream = (host, int(port))
        self.status = 503
        self.fail_next = 0
        self.failed = 0
        self.forwarded = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if proxy._should_fail():
                    status = proxy.status
                    payload = b'{"error": {"code": %d, "message": "injected fault"}}' % status
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request(self.command, self.path, body=body, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in {"transfer-encoding", "content-length", "connection"}:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle  # noqa: N815

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _should_fail(self) -> bool:
        with self._lock:
            if self.fail_next == 0:
                self.forwarded += 1
                return False
            if self.fail_next > 0:
                self.fail_next -= 1
            self.failed += 1
            return True

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class TinyVolume:
    """A tmpfs of ``size_kb`` mounted at ``path`` (needs root and the mount syscall): a real
    volume that runs out of space. :meth:`fill` leaves only ``free_kb`` of it free with a filler
    file, :meth:`release` deletes the filler; :meth:`unmount` in a ``finally``."""

    def __init__(self, path: Path, size_kb: int) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k,mode=0755", "tmpfs", str(path)],
            check=True,
            capture_output=True,
            timeout=30,
        )
        self._filler = path / "filler.bin"

    def free_kb(self) -> int:
        return shutil.disk_usage(self.path).free // 1024

    def fill(self, free_kb: int = 0) -> None:
        """Grow the filler until no more than ``free_kb`` is free (tmpfs counts 4 KiB pages)."""
        with self._filler.open("ab") as fh:
            while (room := self.free_kb() - free_kb) > 0:
                try:
                    fh.write(bytes(min(room, 64) * 1024))
                    fh.flush()
                except OSError:  # ENOSPC: full
                    break

    def release(self) -> None:
        self._filler.unlink(missing_ok=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False, capture_output=True)


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[None]:
    """``chattr +i`` on a directory for the block: nothing can be created in it, by root
    either (permission bits do not stop root); ``chattr -i`` afterwards, whatever happens."""
    subprocess.run(["chattr", "+i", str(path)], check=True, capture_output=True, timeout=10)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=False, capture_output=True, timeout=10)
