"""The API's gunicorn worker class: gunicorn's threaded worker with two changes, so that no
client can starve the liveness and readiness probes.

* **Requests are read in the event loop, not in a thread.** gunicorn's ``gthread`` worker hands
  a connection to a pool thread as soon as its first byte arrives, and the thread then reads the
  rest blocking: a client that sends its headers a byte at a time, or stops halfway through its
  body, holds a thread for as long as it likes, and a few dozen such clients hold them all.
  Here the main loop (which only waits on sockets) reads each request without blocking until its
  headers and body are in, and only then gives it to a thread. A request not fully received
  within ``MOKSORI_REQUEST_READ_TIMEOUT`` seconds of its first byte being awaited is answered
  ``408`` and its connection closed; until then it costs a buffer, not a thread.
* **Probes have a lane of their own.** ``GET``/``HEAD`` of ``/healthz`` and ``/readyz`` run on a
  small pool of their own, so they never queue behind other requests (``?wait`` requests
  holding threads, a burst of POSTs), whatever the clients do.

TLS and HTTP/2 are not used by this service (TLS ends at the proxy in front of it); with TLS
configured the worker behaves exactly as gunicorn's own.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import selectors
import socket
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any

from gunicorn import http
from gunicorn.workers.gthread import TConn, ThreadWorker

from common.config import process_settings

_LOGGER = logging.getLogger(__name__)

PROBE_PATHS = frozenset({b"/healthz", b"/readyz"})
"""Paths served on the probe lane (``GET`` and ``HEAD`` only)."""
PROBE_THREADS = 4
"""Threads of the probe lane, per process: a readiness check answers within a second, so four
serve probes arriving several times a second."""
HEAD_LIMIT = 64 * 1024
"""Bytes of a request head after which it is handed to gunicorn's parser unfinished: gunicorn
answers its own 4xx for a request line or headers over its limits, reading the rest in a thread
under the same deadline."""
RECV_BYTES = 64 * 1024
REQUEST_TIMEOUT_CODE = "request_timeout"
"""The error code of the 408 answer (registered in ``api.errors``, which this layer cannot
import)."""

_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length[ \t]*:[ \t]*(\d+)")
_CHUNKED = re.compile(rb"\r\ntransfer-encoding[ \t]*:[^\r]*chunked")
_EXPECT_CONTINUE = re.compile(rb"\r\nexpect[ \t]*:[ \t]*100-continue")


def timeout_answer(seconds: float) -> bytes:
    """The whole ``408`` response sent to a client too slow to send its request."""
    body = json.dumps(
        {
            "error": {
                "code": REQUEST_TIMEOUT_CODE,
                "message": f"The request was not received in full within {seconds:g} s.",
            }
        }
    ).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def received(buf: bytes | bytearray, max_body: int) -> bool:
    """Whether ``buf`` holds a whole request, or as much of it as is worth waiting for here.

    The head must be complete; then a ``Content-Length`` body must be in (unless it is over
    ``max_body``, which the app refuses without reading), and a chunked body must have its last
    chunk. A head over :data:`HEAD_LIMIT` counts as received: gunicorn refuses it."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return len(buf) > HEAD_LIMIT
    head = bytes(buf[:end]).lower()
    body = len(buf) - end - 4
    if _CHUNKED.search(head):
        return buf.endswith(b"0\r\n\r\n") or body > max_body
    length = _CONTENT_LENGTH.search(head)
    if length is None:
        return True
    expected = int(length.group(1))
    return body >= expected or expected > max_body


def wants_continue(buf: bytes | bytearray) -> bool:
    """Whether the (complete) head asks for ``100 Continue`` before its body is sent."""
    end = buf.find(b"\r\n\r\n")
    head = bytes(buf[:end]).lower()
    return (
        end >= 0
        and b"http/1.1\r\n" in head[: head.find(b"\r\n") + 2]
        and bool(_EXPECT_CONTINUE.search(head))
    )


def is_probe(buf: bytes | bytearray) -> bool:
    """Whether the request line is a ``GET`` or ``HEAD`` of a probe path."""
    method, _, rest = bytes(buf[: buf.find(b"\r\n")]).partition(b" ")
    target = rest.partition(b" ")[0].partition(b"?")[0]
    return method in {b"GET", b"HEAD"} and target in PROBE_PATHS


class DeadlineSocket:
    """What gunicorn's parser reads a request through: the client socket, each read bounded
    by the request's deadline (a read past it raises ``TimeoutError``), so a thread reading
    whatever the event loop did not is never held longer than that."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.deadline = 0.0

    def recv(self, size: int) -> bytes:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request was not received in time")
        self.sock.settimeout(left)
        try:
            return self.sock.recv(size)
        finally:
            self.sock.settimeout(None)


class GuardedThreadWorker(ThreadWorker):
    """gunicorn's ``gthread`` worker that reads requests in its event loop under a deadline and
    serves the probes on a lane of their own (see the module's docstring)."""

    def init_process(self) -> None:
        settings = process_settings()
        self.read_timeout = settings.request_read_timeout
        self.max_body = settings.max_content_length
        self.probe_pool = ThreadPoolExecutor(PROBE_THREADS, thread_name_prefix="probe")
        self.reading: deque[TConn] = deque()  # in deadline order: each gets the same timeout
        super().init_process()  # runs the loop

    def accept(self, listener: socket.socket) -> None:
        if self.cfg.is_ssl:
            super().accept(listener)
            return
        try:
            client, addr = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        self.nr_conns += 1
        self._read(TConn(self.cfg, client, addr, listener.getsockname()))

    def on_client_socket_readable(self, conn: TConn, client: socket.socket) -> None:
        """A kept-alive connection has its next request coming: read it here too."""
        if self.cfg.is_ssl:
            super().on_client_socket_readable(conn, client)
            return
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        conn.sock.setblocking(False)
        self._read(conn)

    def _read(self, conn: TConn) -> None:
        conn.received = bytearray()
        conn.read_deadline = time.monotonic() + self.read_timeout
        self.reading.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_bytes, conn))

    def _on_bytes(self, conn: TConn, client: socket.socket) -> None:
        try:
            data = client.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client left
            self._stop_reading(conn)
            self._close(conn)
            return
        had_head = b"\r\n\r\n" in conn.received
        conn.received += data
        if not had_head and wants_continue(conn.received):
            self._send(conn, b"HTTP/1.1 100 Continue\r\n\r\n")
        if received(conn.received, self.max_body):
            self._stop_reading(conn)
            conn.probe = is_probe(conn.received)
            self.enqueue_req(conn)

    def _stop_reading(self, conn: TConn) -> None:
        self.poller.unregister(conn.sock)
        self.reading.remove(conn)

    def murder_pending(self) -> None:
        """Also answer 408 to and close every connection whose request is late."""
        super().murder_pending()
        now = time.monotonic()
        while self.reading and self.reading[0].read_deadline <= now:
            conn = self.reading[0]
            self._stop_reading(conn)
            self.log.info(
                "closing %s: no whole request within %g s", conn.client, self.read_timeout
            )
            self._send(conn, timeout_answer(self.read_timeout))
            self._close(conn)

    def enqueue_req(self, conn: TConn) -> None:
        """Give a received request to a thread: the probe lane's or the main pool's. Bytes
        already read are put back in front of gunicorn's parser, which reads anything further
        under the request's deadline."""
        deadline = getattr(conn, "read_deadline", None) or time.monotonic() + self.read_timeout
        conn.read_deadline = None
        if conn.parser is None and not self.cfg.is_ssl:
            conn.source = DeadlineSocket(conn.sock)
            conn.parser = http.get_parser(self.cfg, conn.source, conn.client)
        if getattr(conn, "source", None) is not None:
            conn.source.deadline = deadline
        pending = getattr(conn, "received", None)
        if pending:
            conn.parser.unreader.unread(bytes(pending))
            conn.received = None
            conn.data_ready = True
        pool = self.probe_pool if getattr(conn, "probe", False) else self.tpool
        conn.probe = False
        future: Future[Any] = pool.submit(self.handle, conn)
        future.add_done_callback(
            lambda fut: self.method_queue.defer(self.finish_request, conn, fut)
        )

    def _send(self, conn: TConn, data: bytes) -> None:
        with contextlib.suppress(OSError):  # a client too slow to read it does not get it
            conn.sock.send(data)

    def _close(self, conn: TConn) -> None:
        self.nr_conns -= 1
        conn.close()

    def handle_quit(self, sig: int, frame: Any) -> None:
        self.probe_pool.shutdown(wait=False)
        super().handle_quit(sig, frame)
