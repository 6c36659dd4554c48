"""The one place that talks HTTP to vendors: libcurl's multi interface, driven by the asyncio loop.

Why libcurl (pycurl) and not aiohttp: a one-request-per-event vendor such as Exactag makes the HTTP
client the largest cost per event, and libcurl does the HTTP work in C. Measured against the same
loopback stand-in, in one run (bench/README.md): aiohttp's client spends about 1.8x the CPU per
request that this client does. aiohttp stays the tests' and the benchmarks' HTTP library.

How it is driven (the pattern of libcurl's ``multi_socket`` API, as in Tornado's curl client):
libcurl tells us which sockets to watch (``M_SOCKETFUNCTION``) and when to call it back
(``M_TIMERFUNCTION``); the loop calls ``socket_action`` when a socket is ready or the timer is
due; finished transfers are read with ``info_read`` and resolve their futures. Everything runs
in the loop's thread: no thread hand-off per request.

What a vendor request gets (as before with aiohttp): keep-alive connections shared by every
integration (at most ``concurrency`` per host); no redirects followed; no cookies kept; no proxy
from the environment; no ``User-Agent`` of our own (Exactag forwards the visitor's); TLS verified
against the system's CA bundle (``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` are honoured); at most 64 KiB
of the answer kept.

How a request is put into bytes (:func:`request_url`, :func:`header_lines`): the destinations
make event values safe for where they go (datafly.destinations.wire); this is the last line for
what they could not know (a configured URL or header). A URL's characters outside printable ASCII
(spaces, control characters, non-ASCII) are percent-encoded as UTF-8; a header name must be an
HTTP token; a header value is sent as UTF-8 and must hold no control character but TAB (no CR,
LF or NUL: no second header can be smuggled in). A request that breaks these rules raises
:class:`UnsendableRequest` before anything is sent: sending it again would fail the same way.
"""

from __future__ import annotations

import asyncio
import os
import re
import ssl
import time
from collections.abc import Mapping
from typing import Any

import pycurl

from datafly.destinations.base import OutboundRequest, VendorResponse

_MAX_BODY = 64 * 1024
_POLL_READ = (pycurl.POLL_IN, pycurl.POLL_INOUT)
_POLL_WRITE = (pycurl.POLL_OUT, pycurl.POLL_INOUT)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+").fullmatch  # RFC 9110 token: a header name, a method
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]").search  # what a header value must not hold (TAB may)
_URL_UNSAFE = re.compile(r"[^\x21-\x7e]+")  # not printable ASCII, or a space


class UnsendableRequest(ValueError):
    """The request cannot be put on the wire (a bad header name or value, a bad method): refused
    before anything is sent, and it would be refused again. Raised by :meth:`VendorClient.send`."""


def _percent(match: re.Match[str]) -> str:
    return "".join(f"%{byte:02X}" for byte in match.group().encode("utf-8", "replace"))


def request_url(url: str) -> bytes:
    """The URL as libcurl gets it: ASCII, every character outside printable ASCII percent-encoded
    as UTF-8 (so a space, a line break or ``é`` cannot break the request line or raise)."""
    if not (url.isascii() and url.isprintable() and " " not in url):
        url = _URL_UNSAFE.sub(_percent, url)
    return url.encode("ascii")


def header_lines(headers: Mapping[str, str], has_body: bool) -> list[bytes]:
    """The header lines libcurl sends (see the module's docstring); raises
    :class:`UnsendableRequest` for a name that is not a token or a value with a control character."""
    lines = []
    content_type = user_agent = False
    for name, value in headers.items():
        if not (type(name) is str and _TOKEN(name)):
            raise UnsendableRequest(f"header name {name!r} is not an HTTP token")
        if type(value) is not str:
            raise UnsendableRequest(f"header {name!r} has a value that is not text")
        if not (value.isascii() and value.isprintable()) and _CONTROL(value):
            raise UnsendableRequest(f"header {name!r} holds a line break, NUL or another control character")
        lower = name.lower()
        if lower == "content-type":
            content_type = True
        elif lower == "user-agent":
            user_agent = True
        line = f"{name}: {value}" if value else f"{name};"  # "Name;" sends an empty value
        lines.append(line.encode("utf-8", "replace"))
    if has_body and not content_type:
        lines.append(b"Content-Type: application/octet-stream")
    if not user_agent:
        lines.append(b"User-Agent:")  # "Name:" removes the header ("PycURL/..." otherwise)
    lines.append(b"Expect:")  # never wait for "100 Continue" before sending a body
    return lines


def ca_locations() -> tuple[str | None, str | None]:
    """``(CA file, CA directory)`` to verify vendors' certificates with: the environment's
    ``SSL_CERT_FILE``/``SSL_CERT_DIR``, else what Python's ``ssl`` module uses on this system.
    (The libcurl inside pycurl's wheel was built elsewhere: its own default path may not exist.)"""
    paths = ssl.get_default_verify_paths()
    files = [os.environ.get("SSL_CERT_FILE"), paths.cafile, paths.openssl_cafile, "/etc/ssl/certs/ca-certificates.crt"]
    dirs = [os.environ.get("SSL_CERT_DIR"), paths.capath, paths.openssl_capath]
    ca_file = next((f for f in files if f and os.path.isfile(f)), None)
    ca_dir = next((d for d in dirs if d and os.path.isdir(d)), None)
    return ca_file, ca_dir


class _Transfer:
    """One request on its way: the answer's parts as libcurl hands them over."""

    __slots__ = ("body", "errno", "error", "future", "header_lines", "size", "started")

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.future = future
        self.errno = 0  # libcurl's error code; 0: an HTTP answer came
        self.error = ""
        self.body: list[bytes] = []
        self.size = 0
        self.header_lines: list[bytes] = []
        self.started = time.perf_counter()

    def on_body(self, chunk: bytes) -> None:
        if self.size < _MAX_BODY:  # the rest is read and dropped: the connection stays usable
            self.body.append(chunk)
            self.size += len(chunk)

    def on_header(self, line: bytes) -> None:
        if line.startswith(b"HTTP/"):  # a new status line: an interim answer (1xx) came first
            self.header_lines.clear()
        self.header_lines.append(line)

    def headers(self) -> dict[str, str]:
        """The final answer's headers (repeated names: the last one); case-insensitive lookups go
        through ``VendorResponse.retry_after`` and the classifiers, which compare lower-case."""
        found: dict[str, str] = {}
        for line in self.header_lines[1:]:
            name, sep, value = line.partition(b":")
            if sep:
                found[name.strip().decode("latin-1")] = value.strip().decode("latin-1")
        return found


class VendorClient:
    """Sends :class:`OutboundRequest` values and returns :class:`VendorResponse` values; never
    raises for what the network or the vendor did (``status == 0`` with ``error`` instead). One
    client serves every vendor of a process: its connections are shared and kept alive."""

    def __init__(self, concurrency: int) -> None:
        self.concurrency = max(1, concurrency)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._multi = pycurl.CurlMulti()
        self._multi.setopt(pycurl.M_SOCKETFUNCTION, self._on_socket)
        self._multi.setopt(pycurl.M_TIMERFUNCTION, self._on_timer)
        self._multi.setopt(pycurl.M_MAX_HOST_CONNECTIONS, self.concurrency)
        self._multi.setopt(pycurl.M_MAXCONNECTS, max(16, self.concurrency * 2))
        self._watched: dict[int, int] = {}  # socket -> the pycurl.POLL_* it is watched for
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._transfers: dict[pycurl.Curl, _Transfer] = {}
        self._idle: list[pycurl.Curl] = []
        self._ca_file, self._ca_dir = ca_locations()
        self.closed = False

    # the public face --------------------------------------------------------------------------
    async def send(self, request: OutboundRequest, timeout: float) -> VendorResponse:
        if self.closed:
            raise RuntimeError("the vendor client is closed")
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        handle = self._idle.pop() if self._idle else self._new_handle()
        transfer = _Transfer(loop.create_future())
        try:
            self._prepare(handle, request, timeout, transfer)
        except Exception as exc:
            handle.reset()
            self._configure(handle)
            self._idle.append(handle)
            if isinstance(exc, UnsendableRequest):
                raise
            # libcurl refused an option built from this request: it would refuse it every time
            raise UnsendableRequest(f"{type(exc).__name__}: {exc}") from exc
        self._transfers[handle] = transfer
        self._multi.add_handle(handle)
        try:
            await transfer.future
        except asyncio.CancelledError:  # stopped mid-request: the transfer is abandoned
            self._abandon(handle)
            raise
        latency_ms = (time.perf_counter() - transfer.started) * 1000
        if request.body is not None:  # an idle handle would keep the body alive (a batch: megabytes)
            handle.setopt(pycurl.POSTFIELDS, b"")
        errno = transfer.errno
        if errno:
            error = f"timed out after {timeout:g}s" if errno == pycurl.E_OPERATION_TIMEDOUT else transfer.error
            self._idle.append(handle)
            return VendorResponse(0, error=error, latency_ms=latency_ms)
        status = int(handle.getinfo_raw(pycurl.RESPONSE_CODE))
        self._idle.append(handle)
        return VendorResponse(
            status=status,
            headers=transfer.headers(),
            body=b"".join(transfer.body)[:_MAX_BODY],
            latency_ms=latency_ms,
        )

    async def close(self) -> None:
        """Abandon what is in flight and close every connection."""
        if self.closed:
            return
        self.closed = True
        for handle in list(self._transfers):
            self._abandon(handle)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for fd in list(self._watched):
            self._unwatch(fd)
        self._multi.close()
        for handle in self._idle:
            handle.close()
        self._idle.clear()

    # one request ------------------------------------------------------------------------------
    def _new_handle(self) -> pycurl.Curl:
        handle = pycurl.Curl()
        self._configure(handle)
        return handle

    def _configure(self, handle: pycurl.Curl) -> None:
        """What every request has (kept across requests on a reused handle)."""
        handle.setopt(pycurl.NOSIGNAL, 1)
        # http and https only: libcurl also speaks file://, ftp://, ... which a vendor URL must never reach
        handle.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        handle.setopt(pycurl.REDIR_PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        handle.setopt(pycurl.PROXY, "")  # never a proxy from the environment
        handle.setopt(pycurl.FOLLOWLOCATION, 0)
        handle.setopt(pycurl.TCP_NODELAY, 1)
        handle.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
        if self._ca_file:
            handle.setopt(pycurl.CAINFO, self._ca_file)
        if self._ca_dir:
            handle.setopt(pycurl.CAPATH, self._ca_dir)

    def _prepare(self, handle: pycurl.Curl, request: OutboundRequest, timeout: float, transfer: _Transfer) -> None:
        lines = header_lines(request.headers, request.body is not None)
        method = request.method.upper()
        if not _TOKEN(method):
            raise UnsendableRequest(f"method {request.method!r} is not an HTTP token")
        handle.setopt(pycurl.URL, request_url(request.url))
        if request.body is not None:
            handle.setopt(pycurl.POSTFIELDS, request.body)
            handle.setopt(pycurl.CUSTOMREQUEST, None if method == "POST" else method)
        elif method == "GET":
            handle.setopt(pycurl.HTTPGET, 1)
            handle.setopt(pycurl.CUSTOMREQUEST, None)
        else:
            handle.setopt(pycurl.HTTPGET, 1)
            handle.setopt(pycurl.CUSTOMREQUEST, method)
        handle.setopt(pycurl.HTTPHEADER, lines)
        handle.setopt(pycurl.TIMEOUT_MS, max(1, int(timeout * 1000)))
        handle.setopt(pycurl.WRITEFUNCTION, transfer.on_body)
        handle.setopt(pycurl.HEADERFUNCTION, transfer.on_header)

    def _abandon(self, handle: pycurl.Curl) -> None:
        transfer = self._transfers.pop(handle, None)
        if transfer is None:
            return
        try:
            self._multi.remove_handle(handle)
        finally:
            handle.close()  # mid-transfer: not reused
        if not transfer.future.done():
            transfer.future.cancel()

    # libcurl's callbacks and the loop ------------------------------------------------------------
    def _on_socket(self, what: int, fd: int, multi: Any, data: Any) -> None:
        loop = self._loop
        assert loop is not None
        if what == pycurl.POLL_REMOVE:
            self._unwatch(fd)
            return
        before = self._watched.get(fd, pycurl.POLL_NONE)
        if before == what:
            return
        self._watched[fd] = what
        if (what in _POLL_READ) != (before in _POLL_READ):
            if what in _POLL_READ:
                loop.add_reader(fd, self._act, fd, pycurl.CSELECT_IN)
            else:
                loop.remove_reader(fd)
        if (what in _POLL_WRITE) != (before in _POLL_WRITE):
            if what in _POLL_WRITE:
                loop.add_writer(fd, self._act, fd, pycurl.CSELECT_OUT)
            else:
                loop.remove_writer(fd)

    def _unwatch(self, fd: int) -> None:
        before = self._watched.pop(fd, None)
        if before is None or self._loop is None:
            return
        if before in _POLL_READ:
            self._loop.remove_reader(fd)
        if before in _POLL_WRITE:
            self._loop.remove_writer(fd)

    def _on_timer(self, timeout_ms: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if timeout_ms < 0 or self._loop is None:
            return
        if timeout_ms == 0:  # "as soon as possible": never from inside libcurl's own call
            self._timer = self._loop.call_soon(self._act, pycurl.SOCKET_TIMEOUT, 0)
        else:
            self._timer = self._loop.call_later(timeout_ms / 1000, self._act, pycurl.SOCKET_TIMEOUT, 0)

    def _act(self, fd: int, event: int) -> None:
        if self.closed:
            return
        if fd == pycurl.SOCKET_TIMEOUT:
            self._timer = None
        multi = self._multi
        while True:
            code, _ = multi.socket_action(fd, event)
            if code != pycurl.E_CALL_MULTI_PERFORM:
                break
        self._finish()

    def _finish(self) -> None:
        multi = self._multi
        while True:
            queued, succeeded, failed = multi.info_read()
            for handle in succeeded:
                self._done(handle, 0, "")
            for handle, errno, message in failed:
                self._done(handle, errno, message)
            if not queued:
                return

    def _done(self, handle: pycurl.Curl, errno: int, message: str) -> None:
        self._multi.remove_handle(handle)
        transfer = self._transfers.pop(handle, None)
        if transfer is None:
            return
        transfer.errno = errno
        transfer.error = f"curl error {errno}: {message}" if errno else ""
        if not transfer.future.done():
            transfer.future.set_result(None)
