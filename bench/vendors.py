"""Delivery throughput to the vendor stand-ins: the Exactag worker against a bare aiohttp loop, and
Rokt conversions per second in batches of 100. Prints figures; asserts nothing.

Usage: .venv/bin/python bench/vendors.py [--events 20000] [--conversions 20000] [--concurrency 64]
       [--rounds 3]

Method (everything in one run, on loopback):

- Each stand-in (tests/standins) runs in its own process, so it shares neither the event loop nor
  the GIL with the client side being measured. It is asked for its arrival times at the end.
- Exactag, baseline: the N GET requests the Exactag destination builds (same URLs, same headers)
  are sent by a bare aiohttp loop at the given concurrency, with the connector the delivery
  worker uses.
- Exactag, worker path: the same N events, shaped as the processor leaves them, are put in the
  embedded SQLite queue in advance (``commit_processed``, untimed); then the real IntegrationWorker (feeder, lanes and settler, as ``datafly serve``
  runs it) drains the queue: lease, format, send, classify, settle, delivery log. Timed from its
  start until the queue is empty; the ratio to the baseline is printed.
- Rokt: M conversions queued the same way; the worker sends them in batches of up to 100.
  Conversions per second delivered (settled), with the bare-loop figure for the same bodies.

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
from datafly.destinations.base import Formatted, Item, OutboundRequest, Skip, event_key  # noqa: E402
from datafly.destinations.registry import get_destination  # noqa: E402
from datafly.observe import DebugBus, Metrics  # noqa: E402
from datafly.store.embedded.backend import EmbeddedBackend  # noqa: E402
from datafly.store.records import InboundEvent, NewDelivery  # noqa: E402

CODE = "BenchCampaignCode0123456789abcde"
API_KEY, API_SECRET, ACCOUNT = "rpub-bench", "rsec-bench", "4242"


# the stand-in process -------------------------------------------------------------------------


def _stand_in_process(kind: str, conn: Connection) -> None:
    """Run one stand-in until told to stop; answers ``stats`` and ``clear`` over ``conn``."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    from standins import ExactagStandIn, RoktStandIn, StandIn

    async def main() -> None:
        stand_in: StandIn
        if kind == "exactag":
            stand_in = ExactagStandIn(valid_codes=[CODE])
        else:
            stand_in = RoktStandIn(API_KEY, API_SECRET, account_id=ACCOUNT)
        await stand_in.start()
        conn.send(stand_in.port)
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


def _stats(stand_in: Any) -> dict[str, Any]:
    times = [r.time for r in stand_in.requests]
    stats: dict[str, Any] = {
        "requests": len(stand_in.requests),
        "statuses": dict(Counter(r.status for r in stand_in.requests)),
        "first": min(times, default=0.0),
        "last": max(times, default=0.0),
    }
    if hasattr(stand_in, "accepted_events"):
        stats["events"] = len(stand_in.accepted_events)
        stats["duplicates"] = len(stand_in.duplicates())
        stats["max_batch"] = max((len(orjson.loads(r.body)["events"]) for r in stand_in.requests), default=0)
    else:
        stats["duplicates"] = len(stand_in.duplicates())
    return stats


class StandInProcess:
    def __init__(self, kind: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_stand_in_process, args=(kind, child), daemon=True)
        self.process.start()
        self.port = int(self.conn.recv())
        path = "/s2s/pi.ashx" if kind == "exactag" else "/v1/conversions"
        self.url = f"http://127.0.0.1:{self.port}{path}"

    def ask(self, command: str) -> Any:
        self.conn.send(command)
        return self.conn.recv()

    def stop(self) -> None:
        self.conn.send("stop")
        self.process.join(10)
        if self.process.is_alive():
            self.process.terminate()


# events ---------------------------------------------------------------------------------------------
# Events as the processor leaves them (Segment-shaped, enriched with session, consent, click ids and
# hashed traits): the benchmark measures delivery, so it fills the queue directly.


def _processed(i: int, ctx: dict[str, Any], **fields: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    stamp = (now - timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
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


@dataclass
class Queued:
    backend: EmbeddedBackend
    integration: Integration
    home: str


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


async def built_requests(queued: Queued) -> list[OutboundRequest]:
    """The requests the destination builds for the queued items (for the bare loop)."""
    destination = get_destination(queued.integration.vendor)
    assert destination is not None
    settings = {**queued.integration.settings, "preset": queued.integration.preset}
    endpoint = destination.endpoint(settings, queued.integration.endpoint)
    items = await queued.backend.lease(queued.integration.id, 10**9, time.time(), 0.0)
    formatted: list[Formatted] = []
    for item in items:
        shaped = destination.format_item(
            Item(item.id, orjson.loads(item.event), item.mapping, item.first_in_session), settings
        )
        if not isinstance(shaped, Skip):
            formatted.append(shaped)
    return destination.build_requests(formatted, settings, endpoint)


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
    # over the whole queue every 50 ms cost the worker ~3% of its samples)
    iid = queued.integration.id
    while await queued.backend.db.read(
        lambda c: c.execute("SELECT 1 FROM queue WHERE integration_id=? LIMIT 1", (iid,)).fetchone()
    ):
        await asyncio.sleep(0.05)
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
    """``rounds`` alternations of the bare loop and the worker on the same N events."""
    bares: list[Figure] = []
    clients: list[Figure] = []
    workers: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="datafly-bench-") as tmp:
        # warm-up: connections, the stand-in's code paths
        warm = await queue_events(integration, make_events(min(2000, n)), os.path.join(tmp, "warm"))
        await bare_loop(await built_requests(warm), concurrency)
        await warm.backend.close()
        stand_in.ask("clear")
        for r in range(rounds):
            bare_queue = await queue_events(integration, make_events(n), os.path.join(tmp, f"bare{r}"))
            requests = await built_requests(bare_queue)
            await bare_queue.backend.close()
            seconds = await bare_loop(requests, concurrency)
            stats = stand_in.ask("stats")
            bares.append(Figure("bare aiohttp loop", n, seconds, stats["last"] - stats["first"], stats))
            stand_in.ask("clear")
            seconds = await bare_client_loop(requests, concurrency)
            stats = stand_in.ask("stats")
            clients.append(Figure("bare loop, worker client", n, seconds, stats["last"] - stats["first"], stats))
            stand_in.ask("clear")

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


async def run(args: argparse.Namespace) -> None:
    print(f"machine: {machine()}")
    print(
        f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (other work on the machine "
        "skews the figures)"
    )
    print(
        f"concurrency {args.concurrency}; {args.rounds} rounds; stand-ins in their own processes; "
        f"uvloop: {_uvloop()}"
    )

    exactag_proc = StandInProcess("exactag")
    rokt_proc = StandInProcess("rokt")
    try:
        exactag = Integration(
            "exactag-bench", "exactag", "default", {"campaign_code": CODE}, endpoint=exactag_proc.url
        )
        bares, clients, workers = await measure(
            exactag_proc, exactag, exactag_events, args.events, args.concurrency, args.rounds
        )
        show(f"Exactag: {args.events:,} events, one GET each", "requests", bares, clients, workers)
        logged = {(w.stats["delivery_log_rows"], w.stats["delivery_log_done"]) for w in workers}
        print(f"  delivery log rows (rows, done) per worker round: {sorted(logged)}")

        rokt = Integration(
            "rokt-bench",
            "rokt",
            "default",
            {"account_id": ACCOUNT, "api_key": API_KEY, "api_secret": API_SECRET},
            endpoint=rokt_proc.url,
        )
        bares, clients, workers = await measure(
            rokt_proc, rokt, rokt_events, args.conversions, args.concurrency, args.rounds
        )
        show(
            f"Rokt: {args.conversions:,} conversions, batches of up to 100", "conversions", bares, clients, workers
        )
        accepted = {f.stats["events"] for f in bares + workers}
        print(
            f"  conversions ingested by the stand-in per round: {sorted(accepted)}; requests per round: "
            f"bare {bares[0].stats['requests']:,}, worker {workers[0].stats['requests']:,} "
            f"(largest batch {max(w.stats['max_batch'] for w in workers)})"
        )
    finally:
        exactag_proc.stop()
        rokt_proc.stop()
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def _uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="Exactag events (default 20000)")
    parser.add_argument("--conversions", type=int, default=20_000, help="Rokt conversions (default 20000)")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight (default 64)")
    parser.add_argument("--rounds", type=int, default=3, help="bare/worker alternations (default 3)")
    args = parser.parse_args()
    if _uvloop():
        import uvloop

        uvloop.run(run(args))
    else:
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
