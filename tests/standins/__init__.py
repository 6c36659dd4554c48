"""Loopback stand-ins for the vendor APIs: real aiohttp servers on 127.0.0.1 for tests.

Each stand-in checks what the real vendor checks, answers like it, and records every request it
received (:class:`RecordedRequest`) so a test can assert on what went over the wire.

Common API (see :class:`StandIn`)::

    async with RoktStandIn(api_key="rpub-x", api_secret="rsec-y") as rokt:
        rokt.url                      # the full endpoint URL to configure
        rokt.fail_next(2, 503, {"Retry-After": "1"})   # the next 2 requests fail like that
        rokt.delay = 0.5              # every answer waits this long (a slow vendor)
        await rokt.wait_for(3)        # until 3 requests arrived
        rokt.requests                 # every request, failed ones included, in order
        rokt.duplicates()             # dedup view: keys accepted more than once (should be {})

Synchronous tests (a server process under test, a browser) use ``with stand_in.running_in_thread():``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

import aiohttp
import orjson
import yarl
from aiohttp import web

from datafly.destinations.base import OutboundRequest, VendorResponse

__all__ = [
    "ExactagStandIn",
    "PlannedAnswer",
    "RecordedRequest",
    "RoktStandIn",
    "StandIn",
    "WebhookStandIn",
    "send",
]


@dataclass
class RecordedRequest:
    """One request as the stand-in received it, and the status it answered."""

    method: str
    path: str
    query: dict[str, str]  # first value of each query parameter, decoded
    query_string: str  # raw, as sent
    headers: dict[str, str]
    body: bytes
    time: float  # arrival, epoch seconds
    status: int | None = None  # None while the answer is still pending (delay)

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)

    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def accepted(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True)
class PlannedAnswer:
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0


class StandIn:
    """Base of the vendor stand-ins: lifecycle, recording, failure plan, dedup helpers.

    Subclasses set :attr:`path` and implement :meth:`answer` (the vendor's own checks).
    """

    path: ClassVar[str] = "/"
    paths: ClassVar[tuple[str, ...]] = ()  # further paths the vendor serves (GA4: /debug/mp/collect)

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, delay: float = 0.0) -> None:
        self.host = host
        self.port = port
        self.delay = delay  # seconds every answer waits (planned answers carry their own)
        self.requests: list[RecordedRequest] = []
        self._plan: deque[PlannedAnswer] = deque()
        self._runner: web.AppRunner | None = None

    # lifecycle
    async def start(self) -> Self:
        app = web.Application(client_max_size=10 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @contextmanager
    def running_in_thread(self) -> Iterator[Self]:
        """Serve from a private event loop in a daemon thread (for synchronous tests)."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name=type(self).__name__, daemon=True)
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.start(), loop).result(10)
            yield self
        finally:
            asyncio.run_coroutine_threadsafe(self.stop(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
            loop.close()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The vendor endpoint to configure as the integration's ``endpoint``."""
        return self.base_url + self.path

    # test controls
    def fail_next(
        self,
        n: int = 1,
        status: int = 500,
        headers: Mapping[str, str] | None = None,
        body: bytes | str = b"",
        delay: float = 0.0,
    ) -> None:
        """Answer the next ``n`` requests with ``status`` (nothing is ingested), after ``delay``."""
        data = body.encode() if isinstance(body, str) else body
        self._plan.extend(PlannedAnswer(status, dict(headers or {}), data, delay) for _ in range(n))

    def clear(self) -> None:
        """Forget recorded requests, the failure plan and what was ingested."""
        self.requests.clear()
        self._plan.clear()

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Until ``count`` requests have been answered; raises TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while self._answered() < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{type(self).__name__}: {self._answered()} of {count} requests")
            await asyncio.sleep(0.01)
        return list(self.requests)

    def wait_for_sync(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        deadline = time.monotonic() + timeout
        while self._answered() < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{type(self).__name__}: {self._answered()} of {count} requests")
            time.sleep(0.01)
        return list(self.requests)

    def _answered(self) -> int:
        return sum(1 for r in self.requests if r.status is not None)

    @staticmethod
    def duplicates_of(counts: Counter[str]) -> dict[str, int]:
        return {key: n for key, n in counts.items() if n > 1}

    # serving
    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            query={k: request.query[k] for k in request.query},
            query_string=request.query_string,
            headers=dict(request.headers),
            body=body,
            time=time.time(),
        )
        self.requests.append(record)
        planned = self._plan.popleft() if self._plan else None
        delay = planned.delay if planned else self.delay
        if delay:
            await asyncio.sleep(delay)
        if planned is not None:
            response = web.Response(status=planned.status, headers=dict(planned.headers), body=planned.body)
        elif request.path != self.path and request.path not in self.paths:
            response = web.json_response({"error": "not found"}, status=404)
        else:
            response = await self.answer(request, record)
        record.status = response.status
        return response

    async def answer(self, request: web.Request, record: RecordedRequest) -> web.Response:
        raise NotImplementedError


async def send(request: OutboundRequest, timeout: float = 10.0) -> VendorResponse:
    """Send one built request as the delivery worker would (the URL is sent exactly as built)."""
    started = time.monotonic()
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.request(
                request.method,
                yarl.URL(request.url, encoded=True),
                headers=dict(request.headers),
                data=request.body,
            ) as answer,
        ):
            body = await answer.read()
            latency = (time.monotonic() - started) * 1000
            return VendorResponse(answer.status, dict(answer.headers), body, latency_ms=latency)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return VendorResponse(0, error=f"{type(exc).__name__}: {exc}")


from .exactag import ExactagStandIn  # noqa: E402
from .rokt import RoktStandIn  # noqa: E402
from .webhook import WebhookStandIn  # noqa: E402
