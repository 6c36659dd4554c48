"""The HTTP transport's bounds, through a real ``datafly serve`` and raw sockets: request heads
over ``gateway.max_header_bytes`` or ``max_headers`` (431/414), heads and bodies that do not
arrive in time (408 or a close), gzip bodies that are cut short or followed by other bytes (400);
and ``decode_body``'s property: the original payload or a ``BadRequest``, never another error."""

from __future__ import annotations

import contextlib
import gzip
import select
import socket
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datafly.config import load_config
from datafly.errors import BadRequest, ConfigError
from datafly.gateway.body import decode_body
from http_client import get, post
from server_process import ServerProcess
from standins import WebhookStandIn

KEY = "dk_test_transport"
HEAD_LIMIT = 64 * 1024  # the default gateway.max_header_bytes
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def hook() -> Iterator[WebhookStandIn]:
    with WebhookStandIn().running_in_thread() as stand_in:
        yield stand_in


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, hook: WebhookStandIn) -> Iterator[ServerProcess]:
    """One server for the module, with 1-second header and body deadlines; every test leaves it
    healthy for the next (the last one checks that an event is still delivered)."""
    config = {
        "sources": [{"id": "web", "key": KEY}],
        "integrations": [{"id": "hook", "vendor": "webhook", "preset": "all", "settings": {"url": hook.url}}],
        "gateway": {"header_timeout": "1s", "body_timeout": "1s"},
        "delivery": {"initial_backoff": "100ms"},
    }
    process = ServerProcess(tmp_path_factory.mktemp("transport"), config).start()
    yield process
    process.stop()


# raw sockets ---------------------------------------------------------------------------------
def connect(server: ServerProcess, sndbuf: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if sndbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", server.port))
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a reset ends it too)."""
    out = b""
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            return out
        if not data:
            return out
        out += data


def status_of(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer[9:12])


def send_in_background(sock: socket.socket, data: bytes) -> threading.Thread:
    def run() -> None:
        with contextlib.suppress(OSError):  # the server may close before it read everything
            sock.sendall(data)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def rss_kib(server: ServerProcess) -> int:
    assert server.proc is not None
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def head(path: str = "/healthz", method: str = "GET", extra: bytes = b"") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: gateway.test\r\n".encode() + extra


# request heads -------------------------------------------------------------------------------
def test_a_1_mb_header_is_answered_431_and_memory_stays_flat(server: ServerProcess) -> None:
    before = rss_kib(server)
    sock = connect(server)
    sender = send_in_background(sock, head(extra=b"X-Big: " + b"a" * 1_000_000 + b"\r\n\r\n"))
    answer = read_until_closed(sock)
    sender.join(10)
    sock.close()
    assert status_of(answer) == 431
    assert b"request header fields too large" in answer
    assert b"connection: close" in answer
    assert rss_kib(server) - before < 8 * 1024
    assert get(server.url + "/healthz").status == 200


def test_a_64_mb_header_flood_is_cut_off_while_others_are_served(server: ServerProcess) -> None:
    before = rss_kib(server)
    flood = connect(server, sndbuf=64 * 1024)
    sent = 0
    failure: list[OSError] = []

    def run() -> None:
        nonlocal sent
        chunk = b"a" * 65536
        try:
            flood.sendall(head(method="POST", path=f"/v1/t?key={KEY}", extra=b"X-Flood: "))
            while sent < 64 * MiB:
                flood.sendall(chunk)
                sent += len(chunk)
        except OSError as exc:
            failure.append(exc)

    sender = threading.Thread(target=run, daemon=True)
    sender.start()
    assert get(server.url + "/healthz").status == 200  # another client, during the flood
    sender.join(60)
    flood.close()
    assert not sender.is_alive()
    # the server closed the connection: what it accepted (its limit, then at most 1 MiB dropped
    # while it lingered) plus what the kernels buffered, a small part of the flood
    assert failure, f"the server took all {sent} bytes"
    assert sent < 16 * MiB, sent
    assert rss_kib(server) - before < 16 * 1024
    assert get(server.url + "/healthz").status == 200


def test_too_many_header_fields_are_answered_431(server: ServerProcess) -> None:
    def with_fields(count: int) -> bytes:  # Host and Connection are two of them
        fields = b"".join(b"X-Field-%d: v\r\n" % i for i in range(count - 2))
        return head(extra=b"Connection: close\r\n" + fields + b"\r\n")

    sock = connect(server)
    sock.sendall(with_fields(100))
    assert status_of(read_until_closed(sock)) == 200
    sock.close()
    sock = connect(server)
    sock.sendall(with_fields(101))
    answer = read_until_closed(sock)
    sock.close()
    assert status_of(answer) == 431
    assert b"too many header fields: more than 100" in answer


def test_a_head_just_within_the_limit_is_served(server: ServerProcess) -> None:
    start = head(extra=b"Connection: close\r\nX-Pad: ")
    padding = HEAD_LIMIT - len(start) - 4  # the padding's CRLF and the final one
    sock = connect(server)
    sock.sendall(start + b"p" * padding + b"\r\n\r\n")
    assert status_of(read_until_closed(sock)) == 200
    sock.close()
    sock = connect(server)
    sock.sendall(start + b"p" * (padding + 1) + b"\r\n\r\n")
    assert status_of(read_until_closed(sock)) == 431
    sock.close()


def test_a_url_over_the_limit_is_answered_414(server: ServerProcess) -> None:
    sock = connect(server)
    sender = send_in_background(sock, head(path="/healthz?" + "q" * 200_000, extra=b"\r\n"))
    answer = read_until_closed(sock)
    sender.join(10)
    sock.close()
    assert status_of(answer) == 414


def test_pipelined_requests_with_large_bodies_are_all_served(server: ServerProcess) -> None:
    """Heads and bodies arriving together in large reads: only the heads count."""
    body = b'{"event": "Big", "properties": {"pad": "%s"}}' % (b"x" * 150_000)
    one = head(method="POST", path=f"/v1/t?key={KEY}", extra=b"Content-Length: %d\r\n\r\n" % len(body)) + body
    sock = connect(server)
    sender = send_in_background(sock, one * 3 + head(extra=b"Connection: close\r\n\r\n"))
    answer = read_until_closed(sock)
    sender.join(10)
    sock.close()
    assert answer.count(b"HTTP/1.1 200 OK") == 4, answer[-500:]


# deadlines -----------------------------------------------------------------------------------
def test_a_slowloris_head_is_cut_off(server: ServerProcess) -> None:
    """One header byte a second against a 1-second header deadline."""
    sock = connect(server)
    sock.sendall(head(extra=b"X-Slow: "))
    sent = 0
    while sent < 20:
        readable, _, _ = select.select([sock], [], [], 1.0)
        if readable:
            break
        try:
            sock.sendall(b"s")
        except OSError:
            break
        sent += 1
    assert sent < 20, "the server kept the connection open"
    answer = read_until_closed(sock)
    sock.close()
    assert status_of(answer) == 408


def test_a_connection_that_sends_nothing_is_closed(server: ServerProcess) -> None:
    sock = connect(server)
    readable, _, _ = select.select([sock], [], [], 15.0)
    assert readable, "the server kept the connection open"
    assert read_until_closed(sock) == b""  # nothing was asked, so nothing is answered
    sock.close()


def test_a_stalled_body_is_answered_408(server: ServerProcess) -> None:
    sock = connect(server)
    sock.sendall(
        head(method="POST", path=f"/v1/t?key={KEY}", extra=b"Content-Length: 100\r\n\r\n")
        + b'{"event": "Stalled"'
    )
    answer = read_until_closed(sock)  # the body never comes
    sock.close()
    assert status_of(answer) == 408
    assert b"body" in answer


def test_a_body_that_trickles_is_cut_off_at_the_deadline(server: ServerProcess) -> None:
    """Progress does not extend the body's deadline: a byte every 0.2 s is not enough."""
    sock = connect(server)
    sock.sendall(head(method="POST", path=f"/v1/t?key={KEY}", extra=b"Content-Length: 1000\r\n\r\n"))
    sent = 0
    while sent < 100:
        readable, _, _ = select.select([sock], [], [], 0.2)
        if readable:
            break
        try:
            sock.sendall(b" ")
        except OSError:
            break
        sent += 1
    assert sent < 100, "the server kept reading"
    answer = read_until_closed(sock)
    sock.close()
    assert status_of(answer) == 408


# gzip ----------------------------------------------------------------------------------------
def event(name: str) -> tuple[str, bytes]:
    message_id = uuid.uuid4().hex
    return message_id, b'{"event": "%s", "messageId": "%s"}' % (name.encode(), message_id.encode())


def test_truncated_gzip_is_refused_400(server: ServerProcess) -> None:
    _, body = event("Truncated")
    answer = post(f"{server.url}/v1/t?key={KEY}", gzip.compress(body)[:-6], {"Content-Encoding": "gzip"})
    assert answer.status == 400
    assert "truncated" in answer.json()["error"]


def test_gzip_followed_by_garbage_is_refused_400(server: ServerProcess) -> None:
    _, body = event("Trailing")
    answer = post(
        f"{server.url}/v1/t?key={KEY}", gzip.compress(body) + b"garbage", {"Content-Encoding": "gzip"}
    )
    assert answer.status == 400
    assert answer.json()["error"] == "the gzip body has 7 bytes of trailing data after the compressed stream"


def wait_delivered(hook: WebhookStandIn, message_ids: set[str], timeout: float = 15.0) -> set[str]:
    deadline = time.monotonic() + timeout
    while True:
        got = {str(e.get("messageId")) for e in hook.events()}
        if message_ids <= got or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def test_afterwards_the_server_accepts_and_delivers_events(
    server: ServerProcess, hook: WebhookStandIn
) -> None:
    plain_id, plain = event("Plain")
    zipped_id, zipped = event("Zipped")
    members_id, two_members = event("Members")
    half = len(two_members) // 2
    answers = [
        post(f"{server.url}/v1/t?key={KEY}", plain),
        post(f"{server.url}/v1/t?key={KEY}", gzip.compress(zipped), {"Content-Encoding": "gzip"}),
        post(  # a gzip file may hold several members
            f"{server.url}/v1/t?key={KEY}",
            gzip.compress(two_members[:half]) + gzip.compress(two_members[half:]),
            {"Content-Encoding": "gzip"},
        ),
    ]
    assert [a.status for a in answers] == [200, 200, 200], [a.body for a in answers]
    expected = {plain_id, zipped_id, members_id}
    assert expected <= wait_delivered(hook, expected)


# config --------------------------------------------------------------------------------------
def test_transport_limits_are_config_keys(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "gateway:\n  max_header_bytes: 16384\n  max_headers: 50\n  header_timeout: 5s\n  body_timeout: 1m\n"
    )
    gateway = load_config(str(path)).gateway
    assert (gateway.max_header_bytes, gateway.max_headers) == (16384, 50)
    assert (gateway.header_timeout, gateway.body_timeout) == (5.0, 60.0)
    defaults = load_config(str(_write(tmp_path / "empty.yaml", "sources: []\n"))).gateway
    assert (defaults.max_header_bytes, defaults.max_headers) == (64 * 1024, 100)
    assert (defaults.header_timeout, defaults.body_timeout) == (10.0, 30.0)
    path.write_text(
        "gateway:\n  max_header_bytes: 100\n  max_headers: 0\n  header_timeout: 0s\n  body_timeout: -1s\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    problems = "\n".join(caught.value.problems)
    for key in ("max_header_bytes", "max_headers", "header_timeout", "body_timeout"):
        assert f"gateway.{key}" in problems


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# decode_body's property ----------------------------------------------------------------------
CODINGS = [b"gzip", b"x-gzip", b"GZip ", b"deflate"]


def compress(payload: bytes, coding: bytes, level: int) -> bytes:
    if b"gzip" in coding.lower():
        return gzip.compress(payload, compresslevel=level, mtime=0)
    return zlib.compress(payload, level)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    payload=st.binary(max_size=4096) | st.text(max_size=2048).map(str.encode),
    coding=st.sampled_from(CODINGS),
    level=st.integers(0, 9),
    limit=st.integers(1, 8192),
    damage=st.sampled_from(["none", "truncated", "garbage", "both"]),
    cut=st.integers(0, 1 << 16),
    garbage=st.binary(min_size=1, max_size=64),
)
def test_decode_body_gives_the_payload_or_refuses(
    payload: bytes, coding: bytes, level: int, limit: int, damage: str, cut: int, garbage: bytes
) -> None:
    stream = compress(payload, coding, level)
    body = stream
    if damage in ("truncated", "both"):
        body = body[: cut % len(stream)]
    if damage in ("garbage", "both"):
        body += garbage
    try:
        decoded = decode_body(body, coding, limit)
    except BadRequest as exc:
        assert exc.status in (400, 413), exc
        if damage == "none":
            assert exc.status == 413 and len(payload) > limit
        # a damaged stream is refused either way: what follows a cut may decode as more data (413)
        return
    # accepted: only the whole stream, alone, and never more than the limit
    assert decoded == payload
    assert damage == "none" and len(payload) <= limit


@settings(max_examples=300, deadline=None)
@given(
    body=st.binary(max_size=4096),
    coding=st.none()
    | st.sampled_from([*CODINGS, b"identity", b"br", b"gzip, gzip", b""])
    | st.binary(max_size=16),
    limit=st.integers(1, 8192),
)
def test_decode_body_on_arbitrary_bytes_refuses_with_400_413_or_415(
    body: bytes, coding: bytes | None, limit: int
) -> None:
    try:
        decoded = decode_body(body, coding, limit)
    except BadRequest as exc:
        assert exc.status in (400, 413, 415), exc
        return
    assert isinstance(decoded, bytes)
    if not coding or coding.strip().lower() in (b"", b"identity"):
        assert decoded is body
    else:
        assert len(decoded) <= limit


@settings(max_examples=200, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=512), min_size=1, max_size=80),
    limit=st.integers(1, 8192),
)
def test_decode_body_joins_gzip_members(payloads: list[bytes], limit: int) -> None:
    body = b"".join(gzip.compress(p, mtime=0) for p in payloads)
    whole = b"".join(payloads)
    try:
        decoded = decode_body(body, b"gzip", limit)
    except BadRequest as exc:
        assert (exc.status == 413 and len(whole) > limit) or (exc.status == 400 and len(payloads) > 64), exc
        return
    assert decoded == whole and len(payloads) <= 64


def test_decode_body_messages_say_what_is_wrong() -> None:
    stream = gzip.compress(b'{"event": "A"}')
    with pytest.raises(BadRequest, match="truncated"):
        decode_body(stream[:-1], b"gzip", 1000)
    with pytest.raises(BadRequest, match="truncated"):
        decode_body(b"", b"gzip", 1000)
    with pytest.raises(BadRequest, match="3 bytes of trailing data"):
        decode_body(stream + b"\x00\x00\x00", b"gzip", 1000)
    with pytest.raises(BadRequest, match="trailing data"):
        decode_body(zlib.compress(b"{}") + zlib.compress(b"{}"), b"deflate", 1000)
    with pytest.raises(BadRequest, match="not valid gzip"):
        decode_body(b"{}", b"gzip", 1000)
    with pytest.raises(BadRequest, match="larger than 10 bytes") as caught:
        decode_body(gzip.compress(b"x" * 1_000_000), b"gzip", 10)
    assert caught.value.status == 413
    with pytest.raises(BadRequest) as caught:
        decode_body(b"{}", b"br", 1000)
    assert caught.value.status == 415
    assert decode_body(stream, b" GZIP", 1000) == b'{"event": "A"}'
    assert decode_body(b"{}", b"Identity", 1000) == b"{}"
