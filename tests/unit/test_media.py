"""``GET /media/<key>`` over real HTTP (the API under gunicorn): nothing outside the storage root
is ever served, whatever the path's encoding, and symlinks inside the root are not followed."""

from __future__ import annotations

import json
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from common.storage import audio_key
from harness.processes import start_api
from tests import report
from tests.support import TEST_SECRET, base_env

ORIGIN = "https://moksori.example"


@dataclass
class MediaServer:
    port: int
    root: Path
    secret: bytes
    wav_key: str
    links: dict[str, str]
    """What each planted symlink is, by its (server-shaped) key."""


@pytest.fixture(scope="module")
def media_server(
    voice_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MediaServer]:
    """The API under gunicorn on a media root holding one real file, a secret file and a
    secret folder beside the root, and symlinks to them inside it under keys shaped like the
    server's own (so the route looks them up and the storage layer must refuse them)."""
    base = tmp_path_factory.mktemp("media-http")
    root, outside = base / "media", base / "outside"
    secret = f"TOPSECRET-{secrets.token_hex(8)}".encode()
    (base / "secret.txt").write_bytes(secret)
    wav_key = audio_key(1, "v1", "안녕", secret=TEST_SECRET)
    (root / wav_key).parent.mkdir(parents=True)
    (root / wav_key).write_bytes(b"RIFF-real-audio")
    (root / "wav" / "1" / "v1" / ".upload-k2j4h5").write_bytes(secret)  # an upload under way
    file_link, dir_link, inside_link = (
        audio_key(1, "v1", "file link", secret=TEST_SECRET),
        audio_key(2, "v1", "folder link", secret=TEST_SECRET),
        audio_key(1, "v1", "inside link", secret=TEST_SECRET),
    )
    (root / file_link).symlink_to(base / "secret.txt")
    (outside / "v1").mkdir(parents=True)
    (outside / dir_link.removeprefix("wav/2/")).write_bytes(secret)
    (root / "wav" / "2").symlink_to(outside, target_is_directory=True)
    (root / inside_link).symlink_to(root / wav_key)
    links = {
        file_link: "a file symlink to a file outside",
        dir_link: "a folder symlink to a folder outside",
        inside_link: "a symlink to a file inside (not followed either)",
    }
    env = base_env(
        storage_url=f"file://{root}",
        voice_dir=str(voice_dir),
        queue="moksori-media",
        cors_origins=ORIGIN,  # one exact origin: the configuration flask-cors sends no Vary for
    )
    api, url = start_api(env, base)
    yield MediaServer(int(url.rsplit(":", 1)[1]), root, secret, wav_key, links)
    api.stop()


def raw_get(
    server: MediaServer, target: bytes, byte_range: str = "", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """Send ``GET <target>`` byte for byte (no client normalizes or re-encodes it), with
    ``headers`` (and ``Range: byte_range``) as given."""
    sent = {**(headers or {}), **({"Range": byte_range} if byte_range else {})}
    extra = "".join(f"{name}: {value}\r\n" for name, value in sent.items()).encode("latin-1")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"GET " + target + b" HTTP/1.1\r\nHost: t\r\n" + extra + b"Connection: close\r\n\r\n"
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return int(status_line.split()[1]), headers, body


def traversal_paths(server: MediaServer) -> dict[str, list[bytes]]:
    """Every trick, by family, as raw request targets."""
    base = str(server.root.parent)
    return {
        "percent-encoded ../": [
            b"/media/%2e%2e/secret.txt",
            b"/media/%2E%2E/%2E%2E/etc/passwd",
            b"/media/..%2fsecret.txt",
            b"/media/%2e%2e%2fsecret.txt",
            b"/media/wav/%2e%2e/%2e%2e/secret.txt",
            b"/media/wav/../../secret.txt",
            b"/media/%c0%ae%c0%ae/secret.txt",  # overlong UTF-8 for "."
        ],
        "double-encoded ../": [
            b"/media/%252e%252e%252fsecret.txt",
            b"/media/%252e%252e/secret.txt",
            b"/media/wav/%252e%252e%252f%252e%252e%252fsecret.txt",
        ],
        "absolute paths": [
            b"/media/%2Fetc%2Fpasswd",
            b"/media//etc/passwd",
            b"/media/%2F" + quote(base, safe="").encode() + b"%2Fsecret.txt",
            b"/media/" + quote(f"{base}/secret.txt", safe="/").encode(),
        ],
        "backslashes": [
            b"/media/..\\secret.txt",
            b"/media/wav\\..\\..\\secret.txt",
            b"/media/%5c..%5csecret.txt",
            b"/media/wav%5c..%5c..%5csecret.txt",
        ],
        "NUL bytes (encoded)": [
            b"/media/wav/%00",
            b"/media/secret.txt%00.wav",
            b"/media/%00/../secret.txt",
        ],
        "symlinks inside the root": [f"/media/{key}".encode() for key in server.links],
        "names no file can have": [
            b"/media/" + b"a" * 300,
            b"/media/wav/1/v1/" + b"%C3%A9" * 200 + b".wav",
            b"/media/wav/1/v1/.upload-k2j4h5",  # a half-written upload is no key
        ],
    }


def test_media_serves_real_files(media_server: MediaServer) -> None:
    """The control: a stored file is served, so the 404s below are refusals, not a dead route."""
    status, headers, body = raw_get(media_server, f"/media/{media_server.wav_key}".encode())
    assert status == 200 and body == b"RIFF-real-audio"
    assert headers["content-type"] == "audio/wav"


def test_media_never_leaves_its_root_over_http(media_server: MediaServer) -> None:
    """Encoded, double-encoded, absolute, backslashed, NUL, symlinked and over-long paths: each
    a JSON 404 that never carries the secret's bytes (or /etc/passwd's). Over-long names were
    a 500 (found by tests/test_fuzz.py)."""
    families = traversal_paths(media_server)
    for family, targets in families.items():
        for target in targets:
            status, headers, body = raw_get(media_server, target)
            assert status == 404, (family, target, status, body[:200])
            assert headers["content-type"] == "application/json", (target, headers)
            assert json.loads(body)["error"]["code"] == "not_found"
            assert media_server.secret not in body and b"root:" not in body
        report.record(
            "bad input",
            f"GET /media/ with {family} ({len(targets)} paths, real HTTP)",
            "404 not_found (JSON); the secret's bytes never in the body",
        )


@pytest.mark.parametrize("target", [b"/media/wav/\x00", b"/media/\xc3\xa9", b"/media/\xff..%2f"])
def test_raw_bytes_the_http_server_refuses(media_server: MediaServer, target: bytes) -> None:
    """A raw NUL or non-ASCII byte in the request line never reaches the app: gunicorn itself
    answers 400 (its own HTML page, not our JSON shape), and nothing is served."""
    status, _, body = raw_get(media_server, target)
    assert status == 400
    assert media_server.secret not in body


def test_media_answers_match_the_spec(media_server: MediaServer) -> None:
    """The answers the fuzzer cannot reach (it never guesses a stored key): a whole file, a
    range and a range past the end, each with the status, headers and error code the OpenAPI
    document gives /media/{key}."""
    status, _, served = raw_get(media_server, b"/openapi.json")  # the running API's own spec
    assert status == 200
    spec = json.loads(served)["paths"]["/media/{key}"]["get"]["responses"]
    target = f"/media/{media_server.wav_key}".encode()
    whole = raw_get(media_server, target)
    part = raw_get(media_server, target, "bytes=0-3")
    past = raw_get(media_server, target, "bytes=500-600")
    assert (whole[0], part[0], past[0]) == (200, 206, 416)
    for (status, headers, _), required in (
        (whole, spec["200"]["headers"]),
        (part, spec["206"]["headers"]),
    ):
        assert {name.lower() for name in required} <= set(headers), (status, headers)
    assert part[2] == b"RIFF"
    documented = spec["416"]["content"]["application/json"]["schema"]["allOf"][1]
    codes = documented["properties"]["error"]["properties"]["code"]["enum"]
    assert json.loads(past[2])["error"]["code"] in codes


def test_media_answers_vary_on_origin(media_server: MediaServer) -> None:
    """A /media answer is ``public, immutable`` and its CORS headers depend on the request's
    Origin, so every one says ``Vary: Origin`` (once), whether the request came from the listed
    origin, another one or none: a shared cache never hands one origin's answer to another.
    Only the listed origin gets ``Access-Control-Allow-Origin``."""
    target = f"/media/{media_server.wav_key}".encode()
    seen = {}
    for origin in (ORIGIN, "https://elsewhere.example", None):
        status, headers, body = raw_get(
            media_server, target, headers={"Origin": origin} if origin else None
        )
        assert status == 200 and body == b"RIFF-real-audio"
        assert "immutable" in headers["cache-control"]
        assert headers.get("vary") == "Origin", (origin, headers)
        seen[origin] = headers.get("access-control-allow-origin")
    assert seen == {ORIGIN: ORIGIN, "https://elsewhere.example": None, None: None}, seen
    report.record(
        "bad input",
        "GET /media/<key> from the listed origin, another origin and no origin (real HTTP)",
        "`Vary: Origin` on each (the answers are public and immutable); "
        "Access-Control-Allow-Origin only for the listed origin",
    )


IGNORED_RANGES = {
    "bytes=0-1,4-7": "two ranges",
    "bytes=0-3, 8-": "a range and an open-ended one",
    "bytes=abc-def": "not numbers",
    "bytes=7-2": "last before first",
    "bytes 0-3": "no `=`",
    "items=0-3": "another unit",
}


def test_a_range_served_only_as_one_part_is_ignored(media_server: MediaServer) -> None:
    """RFC 9110 (section 14.2) lets a server ignore ``Range`` and requires it for an unknown
    unit: several ranges, a malformed range or another unit gets the whole file (200) with
    ``Accept-Ranges: bytes``, where each was a 416. One byte range is still a 206, and one
    that starts past the end still a 416."""
    target = f"/media/{media_server.wav_key}".encode()
    for value, what in IGNORED_RANGES.items():
        status, headers, body = raw_get(media_server, target, value)
        assert (status, body) == (200, b"RIFF-real-audio"), (what, value, status, body[:200])
        assert headers["accept-ranges"] == "bytes" and "content-range" not in headers
    assert raw_get(media_server, target, "bytes=4-7")[::2] == (206, b"-rea")
    assert raw_get(media_server, target, "bytes=500-")[0] == 416
    report.record(
        "bad input",
        f"GET /media/<key> with a Range of {', '.join(IGNORED_RANGES.values())} (real HTTP)",
        "200 with the whole file (the Range ignored, as RFC 9110 allows); one byte range is "
        "206, one past the end 416",
    )


def test_an_if_match_mismatch_is_a_412_without_the_audio(media_server: MediaServer) -> None:
    """``If-Match`` naming another version is a 412 in the JSON error shape, with no audio in
    it (it carried the whole WAV), and with a ``Range`` too (If-Match comes first, RFC 9110
    section 13.2.2); the file's own ETag, or ``*``, serves it."""
    target = f"/media/{media_server.wav_key}".encode()
    etag = raw_get(media_server, target)[1]["etag"]
    for extra in ({}, {"Range": "bytes=0-3"}):
        status, headers, body = raw_get(
            media_server, target, headers={"If-Match": '"old"', **extra}
        )
        assert status == 412, (extra, status, body[:200])
        assert headers["content-type"] == "application/json"
        assert json.loads(body)["error"]["code"] == "precondition_failed"
        assert b"RIFF" not in body
    for match in (etag, "*", f'"old", {etag}'):
        assert raw_get(media_server, target, headers={"If-Match": match})[::2] == (
            200,
            b"RIFF-real-audio",
        )
    assert raw_get(media_server, target, "bytes=0-3", headers={"If-Match": etag})[0] == 206
    report.record(
        "bad input",
        "GET /media/<key> with an If-Match naming another version, with and without a Range "
        "(real HTTP)",
        "412 precondition_failed (JSON), no audio in the body; the file's own ETag or `*` "
        "serves it",
    )
