"""The vendor HTTP client (libcurl driven by the asyncio loop) against real loopback servers."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from datafly.delivery.http import UnsendableRequest, VendorClient, header_lines, request_url
from datafly.destinations.base import OutboundRequest


class Server:
    """An aiohttp server on loopback that records what it got and answers as told."""

    def __init__(self) -> None:
        self.seen: list[web.Request] = []
        self.bodies: list[bytes] = []
        self.keep_alive = True
        self.delay = 0.0
        self.connections: set[tuple[str, int]] = set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(request)
        self.bodies.append(await request.read())
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer:
            self.connections.add(peer)
        if self.delay:
            await asyncio.sleep(self.delay)
        headers = {} if self.keep_alive else {"Connection": "close"}
        if request.path == "/limited":
            return web.Response(status=429, headers={**headers, "Retry-After": "7"}, text="slow down")
        if request.path == "/big":
            return web.Response(body=b"x" * 200_000, headers=headers)
        return web.Response(status=201, headers={**headers, "X-Answer": "yes"}, text="created")


@pytest.fixture
async def server() -> AsyncIterator[tuple[Server, str]]:
    state = Server()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", state.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield state, f"http://127.0.0.1:{port}"
    await runner.cleanup()


def get(url: str, headers: dict[str, str] | None = None) -> OutboundRequest:
    return OutboundRequest("GET", url, headers or {}, None, ("item-1",))


async def test_a_get_carries_exactly_the_requests_headers(server: tuple[Server, str]) -> None:
    state, base = server
    client = VendorClient(4)
    try:
        answer = await client.send(
            get(f"{base}/s2s/pi.ashx?campaign=c%26d&euk=v-1", {"X-Forwarded-For": "198.51.100.7", "User-Agent": "Visitor/1.0"}),
            5.0,
        )
    finally:
        await client.close()
    assert answer.status == 201 and answer.body == b"created" and not answer.error
    assert answer.headers["X-Answer"] == "yes"
    assert answer.latency_ms > 0
    request = state.seen[0]
    assert request.method == "GET"
    assert request.path_qs == "/s2s/pi.ashx?campaign=c%26d&euk=v-1"  # the URL as built, not re-quoted
    assert request.query["campaign"] == "c&d"
    assert request.headers["X-Forwarded-For"] == "198.51.100.7"
    assert request.headers.getall("User-Agent") == ["Visitor/1.0"]  # the visitor's, none of our own
    assert "Expect" not in request.headers and "Cookie" not in request.headers


async def test_a_post_sends_its_body_and_no_user_agent_of_our_own(server: tuple[Server, str]) -> None:
    state, base = server
    client = VendorClient(4)
    body = b'{"events": [' + b'{"n": 1},' * 400 + b'{"n": 2}]}'  # over 1 KiB: no "Expect: 100-continue" wait
    try:
        answer = await client.send(
            OutboundRequest("POST", f"{base}/v1/conversions", {"Content-Type": "application/json"}, body, ("a", "b")),
            5.0,
        )
        plain = await client.send(OutboundRequest("PUT", f"{base}/hook", {}, b"raw", ("c",)), 5.0)
        after = await client.send(get(f"{base}/again"), 5.0)  # a reused handle goes back to GET
    finally:
        await client.close()
    assert answer.status == plain.status == after.status == 201
    assert [r.method for r in state.seen] == ["POST", "PUT", "GET"]
    assert state.bodies == [body, b"raw", b""]
    assert state.seen[0].headers["Content-Type"] == "application/json"
    assert state.seen[1].headers["Content-Type"] == "application/octet-stream"
    assert all("User-Agent" not in r.headers and "Expect" not in r.headers for r in state.seen)


async def test_answers_keep_their_headers_and_at_most_64_kib_of_body(server: tuple[Server, str]) -> None:
    _, base = server
    client = VendorClient(4)
    try:
        limited = await client.send(get(f"{base}/limited"), 5.0)
        big = await client.send(get(f"{base}/big"), 5.0)
        after = await client.send(get(f"{base}/ok"), 5.0)  # the connection that carried 200 kB is fine
    finally:
        await client.close()
    assert limited.status == 429 and limited.retry_after() == 7.0 and limited.body == b"slow down"
    assert big.status == 200 and big.body == b"x" * (64 * 1024)
    assert after.status == 201


async def test_connections_are_kept_alive_and_bounded_per_host(server: tuple[Server, str]) -> None:
    state, base = server
    client = VendorClient(4)
    try:
        answers = await asyncio.gather(*(client.send(get(f"{base}/n/{i}"), 5.0) for i in range(200)))
    finally:
        await client.close()
    assert [a.status for a in answers] == [201] * 200
    assert len(state.seen) == 200
    assert len(state.connections) <= 4  # reused, never more than the concurrency


async def test_a_server_that_closes_every_connection(server: tuple[Server, str]) -> None:
    """Every answer closes its connection, so libcurl closes a socket per request and the next
    one may get the same file descriptor: the loop must never watch a closed one."""
    state, base = server
    state.keep_alive = False
    client = VendorClient(8)
    try:
        answers = await asyncio.gather(*(client.send(get(f"{base}/c/{i}"), 5.0) for i in range(300)))
    finally:
        await client.close()
    assert [a.status for a in answers] == [201] * 300
    assert len(state.connections) == 300


async def test_a_timeout_and_a_refused_connection_are_answers_not_exceptions(server: tuple[Server, str]) -> None:
    state, base = server
    state.delay = 2.0
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/x"
    client = VendorClient(4)
    try:
        slow = await client.send(get(f"{base}/slow"), 0.2)
        refused = await client.send(get(dead), 2.0)
        state.delay = 0.0
        after = await client.send(get(f"{base}/ok"), 5.0)
    finally:
        await client.close()
    assert slow.status == 0 and slow.error == "timed out after 0.2s" and 150 < slow.latency_ms < 1500
    assert refused.status == 0 and "connect" in refused.error.lower()
    assert after.status == 201


async def test_only_http_and_https_are_spoken(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("local file")
    client = VendorClient(2)
    try:
        answer = await client.send(get(f"file://{secret}"), 2.0)
    finally:
        await client.close()
    assert answer.status == 0 and b"local" not in answer.body and "file" in answer.error


async def test_a_cancelled_request_leaves_the_client_usable(server: tuple[Server, str]) -> None:
    state, base = server
    state.delay = 1.0
    client = VendorClient(2)
    try:
        pending = asyncio.create_task(client.send(get(f"{base}/slow"), 5.0))
        await asyncio.sleep(0.2)
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
        state.delay = 0.0
        after = await client.send(get(f"{base}/ok"), 5.0)
    finally:
        await client.close()
    assert after.status == 201


async def test_a_line_break_in_a_header_is_refused_before_anything_is_sent(server: tuple[Server, str]) -> None:
    state, base = server
    client = VendorClient(2)
    try:
        with pytest.raises(ValueError, match="line break"):
            await client.send(get(f"{base}/x", {"User-Agent": "evil\r\nX-Injected: 1"}), 5.0)
        after = await client.send(get(f"{base}/ok"), 5.0)
    finally:
        await client.close()
    assert after.status == 201 and len(state.seen) == 1


async def test_what_cannot_be_sent_raises_unsendable_and_leaves_the_client_usable(
    server: tuple[Server, str],
) -> None:
    state, base = server
    client = VendorClient(2)
    refused = [
        {"User-Agent": "evil\nX-Injected: 1"},
        {"User-Agent": "nul\0byte"},
        {"User-Agent": "bell\x07"},
        {"X-Bad Name": "v"},
        {"X-Bad:Name": "v"},
        {"": "v"},
        {"Ümlaut": "v"},
    ]
    try:
        for headers in refused:
            with pytest.raises(UnsendableRequest):
                await client.send(get(f"{base}/x", headers), 5.0)
        with pytest.raises(UnsendableRequest, match="method"):
            await client.send(OutboundRequest("GET /x HTTP/1.1\r\n", f"{base}/x", {}, None, ("i",)), 5.0)
        after = await client.send(get(f"{base}/ok"), 5.0)
    finally:
        await client.close()
    assert after.status == 201 and len(state.seen) == 1


async def test_non_ascii_is_encoded_never_raised(server: tuple[Server, str]) -> None:
    """A header value goes as UTF-8 (TAB allowed); a URL's non-printable-ASCII characters are
    percent-encoded UTF-8, so a space or a line break cannot split the request line."""
    state, base = server
    client = VendorClient(2)
    try:
        answer = await client.send(
            get(f"{base}/p/ü x?q=é\r\nX-Injected: 1#", {"X-Note": "café\tcrème", "User-Agent": "UA/1.0"}), 5.0
        )
    finally:
        await client.close()
    assert answer.status == 201
    (request,) = state.seen
    assert request.raw_path == "/p/%C3%BC%20x?q=%C3%A9%0D%0AX-Injected:%201"  # (the '#' is libcurl's: a fragment)
    raw = dict(request.raw_headers)
    assert raw[b"X-Note"] == "café\tcrème".encode()
    assert b"X-Injected" not in raw and raw[b"User-Agent"] == b"UA/1.0"


def test_request_url_and_header_lines_are_bytes_libcurl_can_send() -> None:
    assert request_url("https://v.example/a?b=c%20d") == b"https://v.example/a?b=c%20d"  # as built
    assert request_url("https://v.example/é?x=a b\0") == b"https://v.example/%C3%A9?x=a%20b%00"
    assert request_url("https://v.example/\ud800") == b"https://v.example/%3F"  # a lone surrogate: '?'
    assert header_lines({"User-Agent": "UA", "X-Empty": ""}, False) == [b"User-Agent: UA", b"X-Empty;", b"Expect:"]
    assert header_lines({"X-Note": "ü"}, True) == [
        "X-Note: ü".encode(),
        b"Content-Type: application/octet-stream",
        b"User-Agent:",
        b"Expect:",
    ]


async def test_no_proxy_from_the_environment(server: tuple[Server, str], monkeypatch: pytest.MonkeyPatch) -> None:
    state, base = server
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # would refuse every request
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    client = VendorClient(2)
    try:
        answer = await client.send(get(f"{base}/ok"), 5.0)
    finally:
        await client.close()
    assert answer.status == 201 and len(state.seen) == 1


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


async def test_tls_is_verified_against_the_trusted_certificates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    state = Server()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", state.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"https://127.0.0.1:{port}/secure"
    try:
        untrusted = VendorClient(2)  # the system's CA bundle does not know this certificate
        try:
            refused = await untrusted.send(get(url), 5.0)
        finally:
            await untrusted.close()
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        trusting = VendorClient(2)
        try:
            accepted = await trusting.send(get(url), 5.0)
        finally:
            await trusting.close()
    finally:
        await runner.cleanup()
    assert refused.status == 0 and "certificate" in refused.error.lower()
    assert accepted.status == 201 and len(state.seen) == 1
