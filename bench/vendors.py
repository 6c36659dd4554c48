"""Delivery throughput to the vendor stand-ins: the real delivery worker against a bare client loop
sending the same requests, for every vendor (Exactag, Rokt, Meta, GA4, Google Ads, TikTok). Prints
figures; asserts nothing.

Usage: .venv/bin/python bench/vendors.py [--events 20000] [--conversions 20000]
       [--vendors-events 20000] [--concurrency 64] [--rounds 3] [--only meta,ga4,...]

Method (everything in one run, on loopback), the same for every vendor (one entry of ``VENDORS``:
its stand-in with its credentials, the integration pointing at it, the events it is sent):

- Each stand-in (tests/standins) runs in its own process, so it shares neither the event loop nor
  the GIL with the client side being measured. It is asked for its arrival times and what it
  ingested at the end of each loop, then cleared.
- Bare loop: the requests the destination builds for N events, shaped as the processor leaves
  them (built in chunks of ``max_batch`` as the worker builds them, so the same requests: same
  URLs, headers and bodies), are sent by a bare aiohttp loop at the given concurrency, then by a
  bare loop over the worker's own HTTP client (``VendorClient``, libcurl). For a vendor that
  authorises with an access token (Google Ads) one is fetched from the stand-in's token endpoint
  once, before the loops, and the requests are built with it.
- Worker path: N fresh events are put in the embedded SQLite queue in advance
  (``commit_processed``, untimed); then the real IntegrationWorker (feeder, lanes and settler, as
  ``datafly serve`` runs it) drains the queue: (token,) lease, format, build, send, classify,
  settle, delivery log. Timed from its start until the queue is empty.
- Exactag is one GET per event (requests/s); the others are counted in conversions (events)
  per second, whatever their batching: Rokt 100 per request, Meta and TikTok 1,000, Google Ads
  2,000, GA4 up to 25 events of one client_id per request. Keep N a multiple of the batch size
  (20,000 is): a last, partial batch that was queued less than ``max_wait`` (0.5 s) ago is held
  back by the worker for a fuller one, as in production, and that wait would be timed.
- For the batched vendors the bare loops send ready-made bodies (a few requests), so their figure
  is no ceiling for the worker; the rate of the destination alone (decode, format, build in a
  plain loop, no I/O) is printed beside it.

The stand-ins record every request in memory and check what the real vendors check, so they are
not free: the "bare" figure is the ceiling of this setup, not of the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import multiprocessing
import os
import platform
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from statistics import median
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import aiohttp  # noqa: E402
import orjson  # noqa: E402
from yarl import URL  # noqa: E402

from datafly.config import DeliveryConfig, Integration  # noqa: E402
from datafly.delivery.http import VendorClient  # noqa: E402
from datafly.delivery.worker import IntegrationWorker  # noqa: E402
from datafly.destinations.base import (  # noqa: E402
    ACCESS_TOKEN_KEY,
    AccessToken,
    Formatted,
    Item,
    OutboundRequest,
    Skip,
    VendorResponse,
    event_key,
)
from datafly.destinations.registry import get_destination  # noqa: E402
from datafly.observe import DebugBus, Metrics  # noqa: E402
from datafly.store.embedded.backend import EmbeddedBackend  # noqa: E402
from datafly.store.records import InboundEvent, NewDelivery  # noqa: E402

# credentials the stand-ins take (and the integrations send)
CODE = "BenchCampaignCode0123456789abcde"
API_KEY, API_SECRET, ACCOUNT = "rpub-bench", "rsec-bench", "4242"
META_PIXEL, META_TOKEN = "987654321012345", "EAAbenchTokenForMeta0123456789abcdef"
GA4_CONTAINER = "BENCH12345"
GA4_MEASUREMENT_ID, GA4_SECRET = f"G-{GA4_CONTAINER}", "bench-Api_Secret-0123456789"
GADS_CLIENT_ID, GADS_CLIENT_SECRET = "bench-client.apps.googleusercontent.com", "GOCSPX-bench-client-secret-0123"
GADS_REFRESH, GADS_DEV_TOKEN, GADS_ACTION = "1//bench-refresh-token-0123456789", "benchDevToken0123456789", "555000111"
TIKTOK_TOKEN, TIKTOK_PIXEL = "tt-bench-access-token-5f1e2d3c4b5a6978", "CBENCHPIXEL000000001"


# events ---------------------------------------------------------------------------------------------
# Events as the processor leaves them (Segment-shaped, enriched with session, consent, click ids,
# vendor cookies and hashed traits): the benchmark measures delivery, so it fills the queue directly.


def _processed(i: int, ctx: dict[str, Any], **fields: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    stamp = (now - timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%S.000Z")  # recent: Meta/GA4 refuse old events
    visitor = f"visitor-{i % 1000:04d}"
    base_ctx = {
        "ip": f"198.51.{i % 250}.{i % 200 + 1}",
        "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Bench/1.0",
        "session": {"id": f"session-{i % 1000:04d}", "number": 1 + i % 3},
        "page": {"url": f"https://shop.example/p/{i}?utm_source=bench", "path": f"/p/{i}"},
        **ctx,
    }
    return {
        "messageId": uuid.uuid4().hex,
        "anonymousId": visitor,
        "timestamp": stamp,
        "receivedAt": stamp,
        "sourceId": "web",
        "properties": {},
        "context": base_ctx,
        **fields,
    }


def exactag_events(n: int) -> list[dict[str, Any]]:
    """A shop's traffic over 1,000 visitors: page views, product views and an order now and then."""
    consent = {"canonical": {"marketing": True}, "tcf_string": "CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA"}
    events = []
    for i in range(n):
        if i % 10 == 9:
            events.append(
                _processed(
                    i,
                    {"consent": consent},
                    type="track",
                    event="Order Completed",
                    userId=f"user-{i % 1000}",
                    properties={"order_id": f"ORD-{i}", "revenue": 10 + i % 90, "affiliation": "web"},
                )
            )
        elif i % 3 == 0:
            events.append(_processed(i, {"consent": consent}, type="page"))
        else:
            events.append(
                _processed(
                    i,
                    {"consent": consent},
                    type="track",
                    event="Product Viewed",
                    properties={"product_id": f"P-{i % 500}"},
                )
            )
    return events


def rokt_events(n: int) -> list[dict[str, Any]]:
    return [
        _processed(
            i,
            {
                "clickIds": {"rclid": uuid.UUID(int=i).hex},
                "traits": {"email_sha256": hashlib.sha256(f"buyer{i}@example.com".encode()).hexdigest()},
            },
            type="track",
            event="Order Completed",
            properties={"order_id": f"ORD-R-{i}", "revenue": 19.99 + i % 50, "currency": "EUR"},
        )
        for i in range(n)
    ]


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _visitor_context(v: int, now_ms: int) -> dict[str, Any]:
    """What the processor carries for visitor ``v`` who landed from an ad an hour ago (one click id
    per ad network, when each was first seen, the site's vendor cookies, the hashed traits of an
    identify) and gave consent."""
    landed = now_ms - 3_600_000 - v * 1000
    click = f"{v:04d}"
    fbclid = f"IwAR-bench-click-{click}"
    return {
        "ip": f"198.51.{v % 250}.{v % 200 + 1}",  # one address per visitor (GA4 groups by ip_override)
        "page": {
            "url": "https://shop.example/checkout/done",
            "path": "/checkout/done",
            "referrer": "https://shop.example/cart",
            "title": "Thank you",
        },
        "consent": {"canonical": {"marketing": True, "advertising": True}},
        "clickIds": {"gclid": f"Cj0KCQjw-bench-gclid-{click}", "fbclid": fbclid, "ttclid": f"E.C.P.bench-{click}"},
        "clickIdsAt": {"gclid": landed, "fbclid": landed, "ttclid": landed},
        "cookies": {
            "_fbp": f"fb.1.{landed}.{1_000_000_000 + v}",
            "_fbc": f"fb.1.{landed}.{fbclid}",
            "_ga": f"GA1.1.{1_000_000_000 + v}.{landed // 1000}",
            f"_ga_{GA4_CONTAINER}": f"GS2.1.s{landed // 1000}$o2$g1$t{now_ms // 1000}$j0$l0$h0",
            "_ttp": f"2ZkQ8xYzBench{click}",
        },
        "traits": {
            "email_sha256": _sha(f"buyer{v}@example.com"),
            "phone_sha256": _sha(f"+4477009{v:05d}"),
            "phone_digits_sha256": _sha(f"4477009{v:05d}"),
        },
    }


def conversion_events(n: int) -> list[dict[str, Any]]:
    """Paid orders of 1,000 returning visitors, each with every id Meta, GA4, Google Ads and TikTok
    read (``context.clickIds``/``clickIdsAt``/``cookies``/``traits``), timestamped 30 s ago."""
    now_ms = int(time.time() * 1000)
    contexts = [_visitor_context(v, now_ms) for v in range(min(n, 1000))]
    events = []
    for i in range(n):
        v = i % 1000
        price = round(19.99 + i % 50, 2)
        events.append(
            _processed(
                i,
                contexts[v],
                type="track",
                event="Order Completed",
                userId=f"user-{v}",
                properties={
                    "order_id": f"ORD-C-{i}",
                    "revenue": price,
                    "currency": "EUR",
                    "products": [{"product_id": f"SKU-{i % 500}", "name": "Socks", "price": price, "quantity": 1}],
                },
            )
        )
    return events


# the vendors ------------------------------------------------------------------------------------------
# Each vendor is one entry: its stand-in (made in the stand-in's process, with the credentials it
# accepts), the integration pointing at it (from what the stand-in process reports: port, url,
# base_url, token_url), the events, and the target the issue sets (None: figures only).


def _exactag_stand_in() -> Any:
    from standins import ExactagStandIn

    return ExactagStandIn(valid_codes=[CODE])


def _rokt_stand_in() -> Any:
    from standins import RoktStandIn

    return RoktStandIn(API_KEY, API_SECRET, account_id=ACCOUNT)


def _meta_stand_in() -> Any:
    from standins.meta import MetaStandIn

    return MetaStandIn(META_PIXEL, META_TOKEN)


def _ga4_stand_in() -> Any:
    from standins.ga4 import Ga4StandIn

    return Ga4StandIn(GA4_MEASUREMENT_ID, GA4_SECRET)


def _google_ads_stand_in() -> Any:
    from standins.google_ads import GoogleAdsStandIn

    return GoogleAdsStandIn(
        client_id=GADS_CLIENT_ID,
        client_secret=GADS_CLIENT_SECRET,
        refresh_token=GADS_REFRESH,
        developer_token=GADS_DEV_TOKEN,
        conversion_action_ids=(GADS_ACTION,),
    )


def _tiktok_stand_in() -> Any:
    from standins.tiktok import TikTokStandIn

    return TikTokStandIn(TIKTOK_TOKEN, TIKTOK_PIXEL)


@dataclass(frozen=True)
class Vendor:
    name: str  # the vendor id (--only)
    title: str
    unit: str  # what a figure counts: requests (one event each) or conversions
    batching: str  # how the destination sends them, for the title
    stand_in: Callable[[], Any]  # runs in the stand-in's process
    integration: Callable[[dict[str, Any]], Integration]  # from the stand-in's addresses
    events: Callable[[int], list[dict[str, Any]]]
    count: Callable[[argparse.Namespace], int]  # how many events, from the arguments
    min_rate: float | None = None  # target: worker conversions per second
    min_ratio: float | None = None  # target: worker / bare aiohttp loop


VENDORS: tuple[Vendor, ...] = (
    Vendor(
        "exactag", "Exactag", "requests", "one GET each", _exactag_stand_in,
        lambda s: Integration("exactag-bench", "exactag", "default", {"campaign_code": CODE}, endpoint=s["url"]),
        exactag_events, lambda a: a.events,
    ),
    Vendor(
        "rokt", "Rokt", "conversions", "batches of up to 100", _rokt_stand_in,
        lambda s: Integration(
            "rokt-bench", "rokt", "default",
            {"account_id": ACCOUNT, "api_key": API_KEY, "api_secret": API_SECRET}, endpoint=s["url"],
        ),
        rokt_events, lambda a: a.conversions,
    ),
    Vendor(
        "meta", "Meta", "conversions", "batches of up to 1,000", _meta_stand_in,
        lambda s: Integration(
            "meta-bench", "meta", "default", {"pixel_id": META_PIXEL, "access_token": META_TOKEN},
            consent=("advertising",), endpoint=s["base_url"],  # an origin: the destination adds the path
        ),
        conversion_events, lambda a: a.vendors_events, min_rate=10_000,
    ),
    Vendor(
        "ga4", "GA4", "conversions", "up to 25 events of one client_id per request", _ga4_stand_in,
        lambda s: Integration(
            "ga4-bench", "ga4", "default", {"measurement_id": GA4_MEASUREMENT_ID, "api_secret": GA4_SECRET},
            endpoint=s["base_url"],
        ),
        conversion_events, lambda a: a.vendors_events, min_ratio=0.60,
    ),
    Vendor(
        "google_ads", "Google Ads", "conversions", "batches of up to 2,000", _google_ads_stand_in,
        lambda s: Integration(
            "gads-bench", "google_ads", "default",
            {
                "customer_id": "123-456-7890",
                "conversion_action_id": GADS_ACTION,
                "developer_token": GADS_DEV_TOKEN,
                "client_id": GADS_CLIENT_ID,
                "client_secret": GADS_CLIENT_SECRET,
                "refresh_token": GADS_REFRESH,
                "token_url": s["token_url"],  # the worker fetches its access token there
            },
            endpoint=s["base_url"],
        ),
        conversion_events, lambda a: a.vendors_events, min_ratio=0.60,
    ),
    Vendor(
        "tiktok", "TikTok", "conversions", "batches of up to 1,000", _tiktok_stand_in,
        lambda s: Integration(
            "tiktok-bench", "tiktok", "default", {"pixel_code": TIKTOK_PIXEL, "access_token": TIKTOK_TOKEN},
            consent=("advertising",), endpoint=s["base_url"],
        ),
        conversion_events, lambda a: a.vendors_events, min_rate=10_000,
    ),
)  # fmt: skip
BY_NAME = {v.name: v for v in VENDORS}


# the stand-in process -------------------------------------------------------------------------


def _stand_in_process(name: str, conn: Connection) -> None:
    """Run one stand-in until told to stop; answers ``stats`` and ``clear`` over ``conn``."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    async def main() -> None:
        stand_in = BY_NAME[name].stand_in()
        await stand_in.start()
        conn.send(
            {
                "port": stand_in.port,
                "url": stand_in.url,
                "base_url": stand_in.base_url,
                "token_url": getattr(stand_in, "token_url", None),
            }
        )
        loop = asyncio.get_running_loop()
        while True:
            command = await loop.run_in_executor(None, conn.recv)
            if command == "stats":
                conn.send(_stats(stand_in))
            elif command == "clear":
                stand_in.clear()
                conn.send(True)
            else:
                break
        await stand_in.stop()

    asyncio.run(main())


def _batch_size(body: bytes | None) -> int:
    """Events in one request body (Rokt and GA4 ``events``, Meta and TikTok ``data``, Google Ads
    ``conversions``)."""
    try:
        parsed = orjson.loads(body or b"")
    except orjson.JSONDecodeError:
        return 0
    if isinstance(parsed, dict):
        for key in ("events", "data", "conversions"):
            if isinstance(parsed.get(key), list):
                return len(parsed[key])
    return 0


def _stats(stand_in: Any) -> dict[str, Any]:
    times = [r.time for r in stand_in.requests]
    stats: dict[str, Any] = {
        "requests": len(stand_in.requests),
        "statuses": dict(Counter(r.status for r in stand_in.requests)),
        "first": min(times, default=0.0),
        "last": max(times, default=0.0),
    }
    # what was ingested: ``accepted_events`` (Rokt, Meta, GA4, TikTok), ``accepted`` (Google Ads)
    accepted = getattr(stand_in, "accepted_events", None)
    if not isinstance(accepted, list):
        accepted = getattr(stand_in, "accepted", None)
    if isinstance(accepted, list):
        stats["events"] = len(accepted)
        stats["duplicates"] = len(stand_in.duplicates())
        stats["max_batch"] = max((_batch_size(r.body) for r in stand_in.requests), default=0)
    else:
        stats["duplicates"] = len(stand_in.duplicates())
    # what a real vendor would not have kept although it answered 2xx (GA4 ``dropped``), test
    # events (Meta, TikTok, Rokt), token requests recorded apart (Google Ads)
    for name in ("dropped", "test_events", "token_requests"):
        found = getattr(stand_in, name, None)
        if isinstance(found, list):
            stats[name] = len(found)
    return stats


class StandInProcess:
    def __init__(self, name: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_stand_in_process, args=(name, child), daemon=True)
        self.process.start()
        self.addresses: dict[str, Any] = self.conn.recv()
        self.port = int(self.addresses["port"])
        self.url = str(self.addresses["url"])

    def ask(self, command: str) -> Any:
        self.conn.send(command)
        return self.conn.recv()

    def stop(self) -> None:
        self.conn.send("stop")
        self.process.join(10)
        if self.process.is_alive():
            self.process.terminate()


# the queue -----------------------------------------------------------------------------------------


@dataclass
class Queued:
    backend: EmbeddedBackend
    integration: Integration
    home: str
    format_seconds: float = 0.0  # decode, format and build of every item in a plain loop (built_requests)


async def queue_events(integration: Integration, events: Sequence[dict[str, Any]], home: str) -> Queued:
    """Enqueue the events for the integration in the embedded SQLite queue, as the processor does."""
    backend = EmbeddedBackend(home)
    await backend.start()
    mapping = integration.mapping()
    seen_sessions: set[tuple[str, str]] = set()
    deliveries = []
    for event in events:
        value = mapping.get(event_key(event))
        if value is None:
            continue
        first = False
        if event["type"] == "page":
            key = (event["anonymousId"], event["context"]["session"]["id"])
            first = key not in seen_sessions
            seen_sessions.add(key)
        deliveries.append(NewDelivery(integration.id, event["messageId"], value, first, orjson.dumps(event)))
    marker = [InboundEvent(0, b"")]  # commit_processed needs the (here: no) inbound events it settles
    for start in range(0, len(deliveries), 5000):
        await backend.commit_processed(marker, [], [], deliveries[start : start + 5000], [])
    return Queued(backend, integration, home)


def _settings(integration: Integration, token: str | None = None) -> dict[str, Any]:
    settings: dict[str, Any] = {**integration.settings, "preset": integration.preset}
    if token:
        settings[ACCESS_TOKEN_KEY] = token
    return settings


async def built_requests(queued: Queued, token: str | None = None) -> list[OutboundRequest]:
    """The requests the destination builds for the queued items (for the bare loops): formatted as
    the worker formats them (with the integration's field overrides) and built in chunks of
    ``max_batch`` in queue order, as the worker builds its units (GA4 groups events by client_id
    within a chunk, so building all at once would make other requests)."""
    integration = queued.integration
    destination = get_destination(integration.vendor)
    assert destination is not None
    settings = _settings(integration, token)
    endpoint = destination.endpoint(settings, integration.endpoint)
    items = await queued.backend.lease(integration.id, 10**9, time.time(), 0.0)
    formatted: list[Formatted] = []
    skipped: Counter[str] = Counter()
    started = time.perf_counter()
    for item in items:
        shaped = destination.format_for(
            Item(item.id, orjson.loads(item.event), item.mapping, item.first_in_session), settings, integration.fields
        )
        if isinstance(shaped, Skip):
            skipped[shaped.reason[:120]] += 1
        else:
            formatted.append(shaped)
    if skipped:
        print(f"  ! {integration.vendor}: {sum(skipped.values())} events skipped by the destination: {dict(skipped)}")
    size = destination.max_batch
    requests: list[OutboundRequest] = []
    for start in range(0, len(formatted), size):
        requests.extend(destination.build_requests(formatted[start : start + size], settings, endpoint))
    queued.format_seconds = time.perf_counter() - started
    return requests


async def fetch_token(integration: Integration) -> str | None:
    """An access token from the vendor's token endpoint (the stand-in's), for the bare loops; None
    for a vendor that needs none."""
    destination = get_destination(integration.vendor)
    assert destination is not None
    settings = _settings(integration)
    request = destination.token_request(settings, destination.endpoint(settings, integration.endpoint))
    if request is None:
        return None
    async with (
        aiohttp.ClientSession() as session,
        session.request(request.method, request.url, headers=dict(request.headers), data=request.body) as answer,
    ):
        response = VendorResponse(answer.status, dict(answer.headers), await answer.read())
    got = destination.read_token(response)
    if not isinstance(got, AccessToken):
        raise RuntimeError(f"{integration.vendor}: no access token from {request.url}: {got}")
    return got.value


# the two clients ---------------------------------------------------------------------------------


def aiohttp_session(concurrency: int) -> aiohttp.ClientSession:
    """The settings the delivery worker used with aiohttp (before libcurl): keep-alive, no cookie
    jar, no User-Agent of its own."""
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=max(1, concurrency), ttl_dns_cache=300)
    return aiohttp.ClientSession(
        connector=connector, skip_auto_headers=("User-Agent",), cookie_jar=aiohttp.DummyCookieJar()
    )


async def bare_loop(requests: Sequence[OutboundRequest], concurrency: int) -> float:
    """Send every request at ``concurrency`` with aiohttp and nothing else going on; returns seconds."""
    session = aiohttp_session(concurrency)
    pending = iter(requests)
    timeout = aiohttp.ClientTimeout(total=10)

    async def one_lane() -> None:
        for request in pending:
            async with session.request(
                request.method,
                URL(request.url, encoded=True),
                headers=dict(request.headers),
                data=request.body,
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                await response.read()

    started = time.perf_counter()
    await asyncio.gather(*(one_lane() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await session.close()
    return elapsed


async def bare_client_loop(requests: Sequence[OutboundRequest], concurrency: int) -> float:
    """The same, with the delivery worker's own HTTP client (libcurl) instead of aiohttp."""
    client = VendorClient(concurrency)
    pending = iter(requests)

    async def one_lane() -> None:
        for request in pending:
            await client.send(request, 10.0)

    started = time.perf_counter()
    await asyncio.gather(*(one_lane() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await client.close()
    return elapsed


async def worker_drain(queued: Queued, concurrency: int) -> float:
    """Run the real delivery worker until the integration's queue is empty; returns seconds."""
    destination = get_destination(queued.integration.vendor)
    assert destination is not None
    config = DeliveryConfig(concurrency=concurrency, timeout=10.0)
    client = VendorClient(concurrency)
    worker = IntegrationWorker(
        queued.integration, destination, queued.backend, config, client, Metrics(), DebugBus()
    )
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(worker.run(stop))  # as Runtime.sync_workers
    # poll gently: the check shares the storage threads with the worker being measured (a count
    # over the whole queue every 50 ms cost the worker ~3% of its samples; one row every 20 ms
    # does not show). 20 ms, not 50: a batched vendor drains 20,000 events in about a second.
    iid = queued.integration.id
    while await queued.backend.db.read(
        lambda c: c.execute("SELECT 1 FROM queue WHERE integration_id=? LIMIT 1", (iid,)).fetchone()
    ):
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - started
    stop.set()
    queued.backend.notify(worker.channel)
    await asyncio.wait_for(task, 15)
    await client.close()
    return elapsed


# the runs ---------------------------------------------------------------------------------------------


@dataclass
class Figure:
    label: str
    count: int
    seconds: float
    arrival_span: float
    stats: dict[str, Any]

    @property
    def rate(self) -> float:
        return self.count / self.seconds


async def measure(
    stand_in: StandInProcess,
    integration: Integration,
    make_events: Callable[[int], list[dict[str, Any]]],
    n: int,
    concurrency: int,
    rounds: int,
) -> tuple[list[Figure], list[Figure], list[Figure]]:
    """``rounds`` alternations of the bare loops and the worker on N events each."""
    bares: list[Figure] = []
    clients: list[Figure] = []
    workers: list[Figure] = []
    token = await fetch_token(integration)  # the bare loops' access token (Google Ads), fetched once
    with tempfile.TemporaryDirectory(prefix="datafly-bench-") as tmp:
        # warm-up: connections, the stand-in's code paths
        warm = await queue_events(integration, make_events(min(2000, n)), os.path.join(tmp, "warm"))
        await bare_loop(await built_requests(warm, token), concurrency)
        await warm.backend.close()
        stand_in.ask("clear")
        for r in range(rounds):
            bare_queue = await queue_events(integration, make_events(n), os.path.join(tmp, f"bare{r}"))
            requests = await built_requests(bare_queue, token)
            await bare_queue.backend.close()
            seconds = await bare_loop(requests, concurrency)
            stats = stand_in.ask("stats")
            stats["format_rate"] = n / bare_queue.format_seconds if bare_queue.format_seconds else 0.0
            bares.append(Figure("bare aiohttp loop", n, seconds, stats["last"] - stats["first"], stats))
            stand_in.ask("clear")
            seconds = await bare_client_loop(requests, concurrency)
            stats = stand_in.ask("stats")
            clients.append(Figure("bare loop, worker client", n, seconds, stats["last"] - stats["first"], stats))
            stand_in.ask("clear")
            del requests

            queued = await queue_events(integration, make_events(n), os.path.join(tmp, f"worker{r}"))
            seconds = await worker_drain(queued, concurrency)
            stats = stand_in.ask("stats")
            logged = await queued.backend.db.read(
                lambda c: c.execute("SELECT count(*), sum(outcome='done') FROM delivery_log").fetchone()
            )
            stats["delivery_log_rows"], stats["delivery_log_done"] = logged
            await queued.backend.close()
            workers.append(
                Figure("datafly delivery worker", n, seconds, stats["last"] - stats["first"], stats)
            )
            stand_in.ask("clear")
    return bares, clients, workers


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"aiohttp {aiohttp.__version__}, {platform.system()} {platform.release()}"
    )


def show(title: str, unit: str, bares: list[Figure], clients: list[Figure], workers: list[Figure]) -> None:
    print(f"\n{title}")
    for figures in (bares, clients, workers):
        best = max(figures, key=lambda f: f.rate)
        rates = ", ".join(f"{f.rate:,.0f}" for f in figures)
        print(
            f"  {best.label:<24} best {best.rate:>9,.0f} {unit}/s, median {median(f.rate for f in figures):>9,.0f}"
            f"   (rounds: {rates})"
        )
        print(
            f"  {'':<24} best round: {best.count:,} in {best.seconds:.2f}s, first->last arrival "
            f"{best.arrival_span:.2f}s, statuses {best.stats['statuses']}, duplicates {best.stats['duplicates']}"
        )
    ratio_best = max(f.rate for f in workers) / max(f.rate for f in bares)
    ratio_median = median(f.rate for f in workers) / median(f.rate for f in bares)
    print(f"  worker / bare aiohttp loop: {ratio_best:.0%} (best), {ratio_median:.0%} (median)")
    ratio_best = max(f.rate for f in workers) / max(f.rate for f in clients)
    ratio_median = median(f.rate for f in workers) / median(f.rate for f in clients)
    print(f"  worker / bare loop with the worker's client: {ratio_best:.0%} (best), {ratio_median:.0%} (median)")


def show_checks(vendor: Vendor, bares: list[Figure], clients: list[Figure], workers: list[Figure]) -> None:
    """What the stand-in ingested (every event once?) and the issue's target, for the new vendors."""
    def per_round(key: str, figures: list[Figure]) -> list[Any]:
        return [f.stats.get(key) for f in figures]

    print(
        f"  ingested by the stand-in per round: bare {per_round('events', bares)}, worker client "
        f"{per_round('events', clients)}, worker {per_round('events', workers)}; requests per round: "
        f"bare {bares[0].stats['requests']:,}, worker {workers[0].stats['requests']:,} "
        f"(largest batch {max(w.stats.get('max_batch', 0) for w in workers)})"
    )
    rates = [f.stats["format_rate"] for f in bares]
    print(
        f"  the destination alone (decode, format, build in a plain loop, no I/O): best {max(rates):,.0f} "
        f"{vendor.unit}/s, median {median(rates):,.0f}"
    )
    logged = sorted({(w.stats["delivery_log_rows"], w.stats["delivery_log_done"]) for w in workers})
    print(f"  delivery log rows (rows, done) per worker round: {logged}")
    for key, what in (("dropped", "dropped by GA4's rules (answered 204)"), ("test_events", "test events"),
                      ("token_requests", "token requests")):  # fmt: skip
        if key in workers[0].stats:
            print(
                f"  {what} per round: bare {per_round(key, bares)}, worker client {per_round(key, clients)}, "
                f"worker {per_round(key, workers)}"
            )
    best, middle = max(f.rate for f in workers), median(f.rate for f in workers)
    if vendor.min_rate is not None:
        verdict = "met" if middle >= vendor.min_rate else ("met in the best round only" if best >= vendor.min_rate
                                                           else "NOT met")  # fmt: skip
        print(
            f"  target: at least {vendor.min_rate:,.0f} {vendor.unit}/s through the worker: {verdict} "
            f"(best {best:,.0f}, median {middle:,.0f})"
        )
    if vendor.min_ratio is not None:
        ratio_best = best / max(f.rate for f in bares)
        ratio_median = middle / median(f.rate for f in bares)
        verdict = "met" if ratio_median >= vendor.min_ratio else (
            "met in the best rounds only" if ratio_best >= vendor.min_ratio else "NOT met")  # fmt: skip
        print(
            f"  target: worker at least {vendor.min_ratio:.0%} of the bare aiohttp loop: {verdict} "
            f"({ratio_best:.0%} best, {ratio_median:.0%} median)"
        )


async def run_vendor(vendor: Vendor, args: argparse.Namespace) -> None:
    n = vendor.count(args)
    proc = StandInProcess(vendor.name)
    try:
        integration = vendor.integration(proc.addresses)
        bares, clients, workers = await measure(
            proc, integration, vendor.events, n, args.concurrency, args.rounds
        )
    finally:
        proc.stop()
    noun = "events" if vendor.unit == "requests" else vendor.unit
    show(f"{vendor.title}: {n:,} {noun}, {vendor.batching}", vendor.unit, bares, clients, workers)
    if vendor.name == "exactag":
        logged = {(w.stats["delivery_log_rows"], w.stats["delivery_log_done"]) for w in workers}
        print(f"  delivery log rows (rows, done) per worker round: {sorted(logged)}")
    elif vendor.name == "rokt":
        accepted = {f.stats["events"] for f in bares + workers}
        print(
            f"  conversions ingested by the stand-in per round: {sorted(accepted)}; requests per round: "
            f"bare {bares[0].stats['requests']:,}, worker {workers[0].stats['requests']:,} "
            f"(largest batch {max(w.stats['max_batch'] for w in workers)})"
        )
    else:
        show_checks(vendor, bares, clients, workers)


async def run(args: argparse.Namespace, chosen: Sequence[Vendor]) -> None:
    print(f"machine: {machine()}")
    print(
        f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (other work on the machine "
        "skews the figures)"
    )
    print(
        f"concurrency {args.concurrency}; {args.rounds} rounds; stand-ins in their own processes; "
        f"uvloop: {_uvloop()}; vendors: {', '.join(v.name for v in chosen)}"
    )
    for vendor in chosen:
        await run_vendor(vendor, args)
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def _uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def _only(text: str) -> list[Vendor]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in BY_NAME]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown vendor {', '.join(unknown) or '(none)'}; choose from {', '.join(BY_NAME)}"
        )
    return [v for v in VENDORS if v.name in names]  # in the table's order


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="Exactag events (default 20000)")
    parser.add_argument("--conversions", type=int, default=20_000, help="Rokt conversions (default 20000)")
    parser.add_argument(
        "--vendors-events", type=int, default=20_000,
        help="conversions for Meta, GA4, Google Ads and TikTok each (default 20000)",
    )  # fmt: skip
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight (default 64)")
    parser.add_argument("--rounds", type=int, default=3, help="bare/worker alternations (default 3)")
    parser.add_argument(
        "--only", type=_only, default=list(VENDORS), metavar="VENDOR,VENDOR",
        help=f"run only these vendors (of {', '.join(BY_NAME)})",
    )  # fmt: skip
    args = parser.parse_args()
    if _uvloop():
        import uvloop

        uvloop.run(run(args, args.only))
    else:
        asyncio.run(run(args, args.only))


if __name__ == "__main__":
    main()
