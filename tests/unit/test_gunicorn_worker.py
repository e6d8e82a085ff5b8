"""The request-reading stage of the API's gunicorn worker: when a request counts as received,
which requests take the probe lane, and the 408 it answers a late client with."""

from __future__ import annotations

import json

from api.errors import ERRORS
from common.gunicorn_worker import HEAD_LIMIT, is_probe, received, timeout_answer, wants_continue

HEAD = b"POST /api/texts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


def test_a_request_is_received_once_its_head_and_body_are_in() -> None:
    """Content-Length bodies are waited for in full, chunked ones up to their last chunk; a
    request without a body needs only its head."""
    assert not received(b"GET /healthz HTTP/1.1\r\nHost: x\r\n", 1000)
    assert received(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 1000)
    assert not received(HEAD + b"Content-Length: 10\r\n\r\n12345", 1000)
    assert received(HEAD + b"content-length:10\r\n\r\n1234567890", 1000)
    chunked = HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
    assert not received(chunked, 1000)
    assert received(chunked + b"0\r\n\r\n", 1000)


def test_what_gunicorn_refuses_is_handed_over_at_once() -> None:
    """A body over the limit (the app answers 413 without reading it) and an oversized head
    (gunicorn answers its own 4xx) are not waited for."""
    assert received(HEAD + b"Content-Length: 5000\r\n\r\n", 1000)
    assert received(HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + b"x" * 1001, 1000)
    assert received(HEAD + b"X-Long: " + b"a" * HEAD_LIMIT, 1000)


def test_probes_take_their_own_lane() -> None:
    assert is_probe(b"GET /healthz HTTP/1.1\r\n\r\n")
    assert is_probe(b"HEAD /readyz?verbose=1 HTTP/1.1\r\n\r\n")
    assert not is_probe(b"POST /healthz HTTP/1.1\r\n\r\n")
    assert not is_probe(b"GET /healthz/x HTTP/1.1\r\n\r\n")
    assert not is_probe(HEAD + b"\r\n")


def test_expect_continue_is_honoured_on_http_1_1_only() -> None:
    asks = HEAD + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n"
    assert wants_continue(asks)
    assert not wants_continue(asks.replace(b"HTTP/1.1", b"HTTP/1.0"))
    assert not wants_continue(HEAD + b"Content-Length: 5\r\n\r\n")


def test_the_timeout_answer_is_a_registered_json_error() -> None:
    """The 408 has the API's error shape and a code of the registry, at the registry's status."""
    raw = timeout_answer(3)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert f"Content-Length: {len(body)}".encode() in head
    error = json.loads(body)["error"]
    assert ERRORS[error["code"]].status == 408
    assert "3 s" in error["message"]
