"""The server's HTTP/1.1 transport: uvicorn's httptools protocol with bounded request heads and
read deadlines (``gateway.max_header_bytes``, ``max_headers``, ``header_timeout``,
``body_timeout``).

- The request line and headers of one request may take at most ``max_header_bytes``. The bytes
  are counted as they arrive, before the parser sees them, so no more than that is ever buffered
  for a head: a request over it is answered ``431`` (``414`` while still in the request line)
  and its connection closed. More than ``max_headers`` header fields: ``431`` too.
- A request's head must be complete within ``header_timeout`` of the connection's opening or of
  the end of the previous answer on a keep-alive connection (uvicorn's keep-alive timeout, 5 s,
  still closes an idle one first). Else: ``408`` if part of a request came, and the connection
  is closed.
- A request's body must be complete within ``body_timeout`` of the end of its head (while the
  server reads; not while it holds the body back itself). Else ``408`` and the connection closed.

Cost per request: the base class's work, plus a counter subtracted per read while a head is
expected, a header count compared at the end of each read and of each head, and a phase and
its clock reset at the end of each head and each request (one more Python call per request:
``on_headers_complete``; uvicorn's keep-alive check and ``on_message_complete`` are inlined). No timer per request: one sweep per server, every ``tick`` seconds
(at most 1 s), looks at every open connection's phase and its start, so a deadline fires up to
one tick late.

After a refused head (``431``/``414``) the connection is half-closed and what the client still
sends is read and dropped for up to 2-3 s or 1 MiB (a lingering close, as nginx does), so a
client that sent its whole request before reading gets the answer instead of a reset.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import ClassVar

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from datafly.config import GatewayConfig

# what a connection is waiting for
_DONE = 0  # nothing: it is closing
_HEAD = 1  # a request line and headers (or the app is still answering the previous request)
_BODY = 2  # the rest of a request's body
_LINGER = 3  # the client to stop sending after a refused head; its bytes are dropped

LINGER_SECONDS = 2.0
LINGER_BYTES = 1024 * 1024


class _Refused(Exception):
    """Raised in a parser callback to stop parsing a request that is answered with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class BoundedHttpProtocol(HttpToolsProtocol):
    """Use a subclass made by :func:`gateway_protocol`, which carries the limits."""

    max_header_bytes: ClassVar[int] = GatewayConfig.max_header_bytes
    max_headers: ClassVar[int] = GatewayConfig.max_headers
    header_timeout: ClassVar[float] = GatewayConfig.header_timeout
    body_timeout: ClassVar[float] = GatewayConfig.body_timeout
    tick: ClassVar[float] = 1.0
    _sweeper: ClassVar[_Sweeper | None] = None

    _phase: int
    _head_left: int  # bytes the current head may still take (or, lingering, bytes still dropped)
    _since: float  # loop time the current phase's clock started; 0.0: the next sweep starts it

    # the hot path ------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.timeout_keep_alive_task is not None:
            self._unset_keepalive_if_required()
        phase = self._phase
        if phase == _HEAD:
            left = self._head_left - len(data)
            if left < 0:
                self._over_budget(memoryview(data))
                return
            self._head_left = left
        elif phase == _LINGER:
            self._drop(len(data))
            return
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._parse_failed(exc)
            return
        if self._phase == _HEAD and len(self.headers) > self.max_headers:  # a head still coming
            self._refuse_head(431, f"too many header fields: more than {self.max_headers}")

    def on_headers_complete(self) -> None:
        if len(self.headers) > self.max_headers:
            raise _Refused(431, f"too many header fields: more than {self.max_headers}")
        self._phase = _BODY
        self._since = 0.0
        HttpToolsProtocol.on_headers_complete(self)

    def on_message_complete(self) -> None:
        self._phase = _HEAD
        self._head_left = self.max_header_bytes
        self._since = 0.0
        # uvicorn's own, inlined
        if (self.parser.should_upgrade() and self._should_upgrade()) or self.cycle.response_complete:
            return
        self.cycle.more_body = False
        self.cycle.message_event.set()

    # once per connection -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.headers = []  # read by data_received before the first request begins
        self._phase = _HEAD
        self._head_left = self.max_header_bytes
        self._since = self.loop.time()
        cls = type(self)
        sweeper = cls._sweeper
        if sweeper is None or sweeper.loop is not self.loop:
            sweeper = cls._sweeper = _Sweeper(self.loop, self.connections, self.tick)
        sweeper.start()

    # the rare paths ----------------------------------------------------------------------
    def _parse_failed(self, exc: Exception) -> None:
        if isinstance(exc, httptools.HttpParserUpgrade):  # uvicorn's own handling
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        refused = exc.__context__
        if isinstance(refused, _Refused):
            self._refuse_head(refused.status, refused.message)
            return
        self._phase = _DONE
        msg = "Invalid HTTP request received."
        self.logger.warning(msg)
        self.send_400_response(msg)

    def _over_budget(self, data: memoryview) -> None:
        """``data`` holds more than the current head may still take: feed what it may, then see
        whether the head ended within it."""
        while True:
            left = self._head_left
            if len(data) <= left:
                self._head_left = left - len(data)
                self._feed(data)
                return
            self._head_left = 0
            if left and not self._feed(data[:left]):
                return
            data = data[left:]
            if self._phase == _HEAD:
                if self._head_left == 0:  # still the same head, and it has taken all it may
                    url = getattr(self, "url", b"")
                    if not self.headers and len(url) * 2 > self.max_header_bytes:
                        self._refuse_head(414, f"request line too long: over {self.max_header_bytes} bytes")
                    else:
                        self._refuse_head(
                            431, f"request header fields too large: over {self.max_header_bytes} bytes"
                        )
                    return
                continue  # a request ended within the slice: the next head has its own budget
            if self._phase == _BODY:
                self._feed(data)
            return

    def _feed(self, data: memoryview) -> bool:
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._parse_failed(exc)
            return False
        if self._phase == _HEAD and len(self.headers) > self.max_headers:
            self._refuse_head(431, f"too many header fields: more than {self.max_headers}")
            return False
        return not self.transport.is_closing()

    def _answer(self, status: int, message: str) -> None:
        body = orjson.dumps({"error": message})
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/json\r\ncontent-length: ",
                str(len(body)).encode("ascii"),
                b"\r\nconnection: close\r\n\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))

    def _refuse_head(self, status: int, message: str) -> None:
        """Answer a head that is refused, then linger: drop what the client still sends."""
        self._phase = _DONE
        transport = self.transport
        if transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # an earlier request (pipelined) is still being answered: no answer can come in order
            transport.close()
            return
        self._answer(status, message)
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self._phase = _LINGER
        self._head_left = LINGER_BYTES
        self._since = self.loop.time()

    def _drop(self, size: int) -> None:
        self._head_left -= size
        if self._head_left < 0:
            self._phase = _DONE
            self.transport.close()

    def _timed_out(self, phase: int) -> None:
        self._phase = _DONE
        transport = self.transport
        if transport.is_closing():
            return
        if phase == _HEAD:
            if self._head_left != self.max_header_bytes:  # part of a request came
                self._answer(408, f"request timeout: the request's head took over {self.header_timeout:g}s")
        elif phase == _BODY:
            cycle = self.cycle
            if cycle is not None and not cycle.response_started:
                cycle.disconnected = True  # the app's receive() now says so, and its send() is dropped
                cycle.message_event.set()
                self._answer(408, f"request timeout: the request's body took over {self.body_timeout:g}s")
        transport.close()

    def check_deadline(self, now: float) -> None:
        """Called by the sweep: start the current phase's clock, or end a phase that is late."""
        phase = self._phase
        if phase == _HEAD:
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete:
                return  # the app is answering; the next head's clock starts after that
            limit = self.header_timeout
        elif phase == _BODY:
            if self.flow.read_paused:  # the server holds the body back, not the client
                self._since = 0.0
                return
            limit = self.body_timeout
        elif phase == _LINGER:
            limit = LINGER_SECONDS
        else:
            return
        since = self._since
        if not since:
            self._since = now
        elif now - since >= limit:
            self._timed_out(phase)


class _Sweeper:
    """One per server and event loop: every ``tick`` seconds, while connections are open, each
    connection checks its deadline."""

    def __init__(self, loop: asyncio.AbstractEventLoop, connections: Collection[object], tick: float) -> None:
        self.loop = loop
        self.connections = connections
        self.tick = tick
        self.handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if self.handle is None:
            self.handle = self.loop.call_later(self.tick, self.sweep)

    def sweep(self) -> None:
        self.handle = None
        now = self.loop.time()
        for connection in list(self.connections):
            if isinstance(connection, BoundedHttpProtocol):
                connection.check_deadline(now)
        if self.connections:
            self.start()


def gateway_protocol(gateway: GatewayConfig) -> type[BoundedHttpProtocol]:
    """The protocol class for ``uvicorn.Config(http=...)``, with ``gateway``'s limits."""

    class GatewayHttpProtocol(BoundedHttpProtocol):
        pass

    GatewayHttpProtocol.max_header_bytes = gateway.max_header_bytes
    GatewayHttpProtocol.max_headers = gateway.max_headers
    GatewayHttpProtocol.header_timeout = gateway.header_timeout
    GatewayHttpProtocol.body_timeout = gateway.body_timeout
    # a deadline fires at most one tick late
    GatewayHttpProtocol.tick = min(1.0, max(0.05, min(gateway.header_timeout, gateway.body_timeout) / 4))
    return GatewayHttpProtocol
