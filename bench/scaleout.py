"""Scale-out figures on this machine: delivery with 1 and 2 delivery processes, ingestion with 1
and 2 gateways, and the cost of Redis' ``appendfsync always`` against ``everysec``.

Usage: python bench/scaleout.py [--events 20000] [--seconds 8]

Starts its own redis-server and PostgreSQL (tests/scaled/servers.py) and ``datafly serve --role``
processes on loopback. The load generator and the vendor stand-in run in this process and share
the machine's cores with the servers, so the figures are a floor, not a ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import ServerProcess  # noqa: E402
from datafly.config import Config  # noqa: E402
from datafly.store.scaled.backend import open_scaled_backend  # noqa: E402
from scaled.cluster import KEY, AnsweringWebhook, cluster_config, make_events  # noqa: E402
from scaled.servers import PostgresServer, RedisServer, scaled_config  # noqa: E402


async def enqueue(urls: dict[str, str], count: int) -> None:
    """Fill the webhook's delivery queue directly (what the processor would have done)."""
    backend = open_scaled_backend(Config(storage=urls["storage"], queue=urls["queue"]), "")
    now = time.time()
    events = make_events(count)
    for start in range(0, count, 1000):
        chunk = events[start : start + 1000]
        items = [(e["messageId"], "track", False, orjson.dumps(e)) for e in chunk]
        await backend.queue.enqueue("hook", items, now)
    await backend.redis.aclose()
    await backend.pg.close()


async def _append(urls: dict[str, str], count: int) -> None:
    backend = open_scaled_backend(Config(storage=urls["storage"], queue=urls["queue"]), "")
    events = make_events(count)
    meta = {
        "s": "web",
        "ip": "127.0.0.1",
        "ua": "bench",
        "v": "x",
        "at": time.time(),
        "t": None,
        "w": "batch",
    }
    records = [orjson.dumps({"m": meta, "b": {"batch": events[i : i + 10]}}) for i in range(0, count, 10)]
    for start in range(0, len(records), 100):  # as the gateway stores requests of 10 events
        await backend.queue.append_inbound(records[start : start + 100])
    await backend.redis.aclose()
    await backend.pg.close()


async def _routed(urls: dict[str, str]) -> int:
    backend = open_scaled_backend(Config(storage=urls["storage"], queue=urls["queue"]), "")
    depth = (await backend.queue.queue_depths()).get("hook", 0)
    await backend.redis.aclose()
    await backend.pg.close()
    return depth


def processor_run(urls: dict[str, str], processors: int, count: int, workdir: Path) -> float:
    """Events per second through the processor role: accepted events in, delivery items out."""
    config = cluster_config(urls, "http://127.0.0.1:9/unused")
    servers = [ServerProcess(workdir, config, role="processor").start() for _ in range(processors)]
    try:
        time.sleep(2.5)  # let the processors settle their shares of the inbound shards
        started = time.monotonic()
        asyncio.run(_append(urls, count))
        while asyncio.run(_routed(urls)) < count:
            time.sleep(0.1)
            if time.monotonic() - started > 300:
                raise RuntimeError("processing did not finish")
        return count / (time.monotonic() - started)
    finally:
        for server in servers:
            server.stop()


def delivery_run(urls: dict[str, str], workers: int, count: int, batch_size: int, workdir: Path) -> float:
    with AnsweringWebhook().running_in_thread() as hook:
        config = cluster_config(urls, hook.url, batch_size=batch_size)
        servers = [ServerProcess(workdir, config, role="delivery").start() for _ in range(workers)]
        try:
            time.sleep(1.0)
            started = time.monotonic()
            asyncio.run(enqueue(urls, count))
            while len(hook.events()) < count:
                time.sleep(0.05)
                if time.monotonic() - started > 300:
                    raise RuntimeError("delivery did not finish")
            elapsed = time.monotonic() - started
            assert not hook.duplicates(), "duplicates in a benchmark run"
        finally:
            for server in servers:
                server.stop()
    return count / elapsed


async def load(
    urls: list[str], seconds: float, batch: int, concurrency: int
) -> tuple[int, float, list[float]]:
    """POST batches of ``batch`` events round robin for ``seconds``; returns events accepted, seconds,
    latencies."""
    accepted = 0
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    counter = 0

    async def client(session: aiohttp.ClientSession, n: int) -> None:
        nonlocal accepted, counter
        while time.monotonic() < deadline:
            counter += 1
            events = [
                {
                    "type": "track",
                    "event": "x",
                    "messageId": f"{n}-{counter}-{i}",
                    "anonymousId": f"v{counter % 997}",
                }
                for i in range(batch)
            ]
            body = orjson.dumps({"batch": events, "writeKey": KEY})
            sent = time.monotonic()
            async with session.post(urls[counter % len(urls)] + "/v1/batch", data=body) as answer:
                await answer.read()
                if answer.status == 200:
                    accepted += batch
                    latencies.append(time.monotonic() - sent)

    started = time.monotonic()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(client(session, n) for n in range(concurrency)))
    return accepted, time.monotonic() - started, latencies


def ingestion_run(
    urls: dict[str, str], gateways: int, seconds: float, batch: int, workdir: Path
) -> dict[str, float]:
    config = cluster_config(urls, "http://127.0.0.1:9/unused")
    servers = [ServerProcess(workdir, config, role="gateway").start() for _ in range(gateways)]
    try:
        accepted, elapsed, latencies = asyncio.run(load([s.url for s in servers], seconds, batch, 64))
    finally:
        for server in servers:
            server.stop()
    latencies.sort()
    return {
        "events_per_s": accepted / elapsed,
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000 if latencies else 0,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000 if latencies else 0,
    }


async def commit_latency(url: str, concurrency: int, seconds: float = 3.0) -> tuple[float, float]:
    """What one gateway request costs in Redis alone: MULTI, 10 XADDs, EXEC, from ``concurrency``
    clients at once. Returns (commits per second, median milliseconds)."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url, max_connections=concurrency + 4)
    body = orjson.dumps(make_events(1)[0])
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    async def one() -> None:
        while time.monotonic() < deadline:
            sent = time.monotonic()
            async with client.pipeline(transaction=True) as pipe:
                for _ in range(10):
                    pipe.xadd("bench:stream", {"e": body}, maxlen=100_000, approximate=True)
                await pipe.execute()
            latencies.append(time.monotonic() - sent)

    started = time.monotonic()
    await asyncio.gather(*(one() for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    await client.aclose()
    latencies.sort()
    return len(latencies) / elapsed, latencies[len(latencies) // 2] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000, help="events per delivery run")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per ingestion run")
    parser.add_argument("--batch-size", type=int, default=20, help="webhook events per request")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each figure; the best is kept")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="datafly-bench-"))
    postgres = PostgresServer().start()
    redis_servers = {mode: RedisServer(appendfsync=mode).start() for mode in ("always", "everysec")}
    results: dict[str, Any] = {"cores": os.cpu_count()}
    try:
        for mode, server in redis_servers.items():
            for concurrency in (1, 64):
                rate, median = asyncio.run(commit_latency(server.url(15), concurrency))
                results[f"redis_commit_{mode}_{concurrency}_clients"] = {
                    "per_s": round(rate),
                    "p50_ms": round(median, 2),
                }
                print(
                    f"Redis alone, appendfsync {mode}, {concurrency} client(s): {rate:,.0f} commits/s of 10 events,"
                    f" p50 {median:.2f} ms",
                    flush=True,
                )
        for processors in (1, 2):
            rate = 0.0
            for _ in range(args.repeat):
                urls = scaled_config(redis_servers["always"], postgres)
                rate = max(rate, processor_run(urls, processors, args.events, workdir))
            results[f"processor_{processors}_processes_events_per_s"] = round(rate)
            print(f"processing, {processors} process(es): {rate:,.0f} events/s", flush=True)
        for workers in (1, 2):
            rate = 0.0
            for _ in range(args.repeat):
                urls = scaled_config(redis_servers["always"], postgres)
                rate = max(rate, delivery_run(urls, workers, args.events, args.batch_size, workdir))
            results[f"delivery_{workers}_processes_events_per_s"] = round(rate)
            print(
                f"delivery, {workers} process(es), batch_size {args.batch_size}: {rate:,.0f} events/s",
                flush=True,
            )
        for mode in ("always", "everysec"):
            for gateways in (1, 2):
                if mode == "everysec" and gateways == 2:
                    continue
                runs = []
                for _ in range(args.repeat):
                    urls = scaled_config(redis_servers[mode], postgres)
                    runs.append(ingestion_run(urls, gateways, args.seconds, 10, workdir))
                figures = max(runs, key=lambda r: r["events_per_s"])
                results[f"ingest_{gateways}_gateways_appendfsync_{mode}"] = {
                    k: round(v, 1) for k, v in figures.items()
                }
                print(
                    f"ingestion, {gateways} gateway(s), appendfsync {mode}: {figures['events_per_s']:,.0f} events/s"
                    f" ({figures['requests_per_s']:,.0f} requests/s of 10 events; p50 {figures['p50_ms']:.1f} ms,"
                    f" p99 {figures['p99_ms']:.1f} ms)",
                    flush=True,
                )
    finally:
        for server in redis_servers.values():
            server.cleanup()
        postgres.cleanup()
    print(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
