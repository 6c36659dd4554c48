"""Gateway and end-to-end benchmarks (issue: the event pipeline). Prints figures; asserts nothing.

    .venv/bin/python bench/gateway.py [--quick] [--skip-memory] [--rounds N]

In one run: (1) the floor, a bare ASGI app under the same uvicorn settings that parses the same
JSON body; (2) the gateway on /v1/t, every event durable before its 200; (3) /v1/batch with 100
events per request; (1)-(3) alternate in N rounds (default 5), each gateway run compared with the
mean of the floor runs just before and after it; (4) end to end at 2,000 events/s to a loopback
webhook stand-in (run in its own process), with the latency from gateway receipt to vendor
receipt; (5) resident memory with one million events waiting in a queue. wrk is the load
generator for (1)-(3).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
EVENT = {
    "event": "Product Viewed",
    "properties": {"product_id": "p-1", "price": 12.5},
    "context": {"page": {"url": "https://shop.example/p/1"}},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer")


def wrk(
    url: str, body: str, seconds: int, connections: int = 50, headers: dict[str, str] | None = None
) -> float:
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    lines = [
        'wrk.method = "POST"',
        f"wrk.body = {json.dumps(body)}",
        'wrk.headers["Content-Type"] = "application/json"',
    ]
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in (headers or {}).items()]
    script.write_text("\n".join(lines) + "\n")
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url],
        capture_output=True,
        text=True,
    ).stdout
    script.unlink()
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        print(f"    note: {errors.group(1)} non-2xx answers")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(match.group(1)) if match else 0.0


def write_config(path: Path, integrations: list[dict[str, Any]]) -> None:
    import yaml

    path.write_text(
        yaml.safe_dump(
            {
                "sources": [{"id": "web", "key": "bench"}],
                "integrations": integrations,
                "gateway": {"max_batch_events": 500},
            }
        )
    )


class Server:
    def __init__(self, integrations: list[dict[str, Any]], env: dict[str, str] | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="datafly-bench-"))
        self.port = free_port()
        write_config(self.dir / "config.yaml", integrations)
        env = {
            **os.environ,
            "DATAFLY_HOME": str(self.dir / "home"),
            "DATAFLY_LOG_LEVEL": "WARNING",
            **(env or {}),
        }
        self.proc = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "datafly.cli",
                "serve",
                "--config",
                str(self.dir / "config.yaml"),
                "--port",
                str(self.port),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "server.log", "wb"),  # noqa: SIM115
        )
        wait_http(f"http://127.0.0.1:{self.port}/healthz")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pids(self) -> list[int]:
        """The server and its child processes (the processor, the inbox's fsync helper)."""
        found = [self.proc.pid]
        for pid in found:
            for task in Path(f"/proc/{pid}/task").iterdir():
                found += [int(c) for c in (task / "children").read_text().split()]
        return found

    def rss_mb(self) -> tuple[float, float]:
        """Resident size and peak of the server's processes, summed (peaks may not coincide)."""
        rss = peak = 0
        for pid in self.pids():
            status = Path(f"/proc/{pid}/status").read_text()
            rss += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
            peak += int(re.search(r"VmHWM:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
        return rss / 1024, peak / 1024

    def metric(self, name: str) -> float:
        text = urllib.request.urlopen(self.url + "/metrics").read().decode()
        return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def bare_floor(seconds: int, body: str) -> float:
    port = free_port()
    proc = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "uvicorn",
            "bare_app:app",
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=ROOT / "bench",
        env={**os.environ, "PYTHONPATH": str(ROOT / "bench")},
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/")
        return wrk(f"http://127.0.0.1:{port}/v1/t", body, seconds)
    finally:
        proc.terminate()
        proc.wait()


# --- end to end: a webhook stand-in in its own process ---------------------------------------------


def receiver(port: int, results: Any, duration: float) -> None:
    from aiohttp import web

    latencies: list[float] = []
    arrivals: list[float] = []
    ids: set[str] = set()
    count = 0

    async def hook(request: web.Request) -> web.Response:
        nonlocal count
        now = time.time()
        body = json.loads(await request.read())
        for event in body.get("batch", [body]):
            count += 1
            ids.add(event["messageId"])
            received = event["receivedAt"]
            from datetime import datetime

            latencies.append(now - datetime.fromisoformat(received.replace("Z", "+00:00")).timestamp())
            arrivals.append(now)
        return web.json_response({"ok": True})

    async def report(request: web.Request) -> web.Response:
        return web.json_response(
            {"count": count, "unique": len(ids), "latencies": latencies, "arrivals": arrivals}
        )

    app = web.Application(client_max_size=50 * 1024 * 1024)
    app.router.add_post("/hook", hook)
    app.router.add_get("/report", report)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def steady_load(url: str, rate: int, seconds: float, per_request: int) -> tuple[int, int]:
    import aiohttp

    sent = 0
    failed = 0
    interval = per_request / rate
    async with aiohttp.ClientSession() as session:

        async def one() -> None:
            nonlocal sent, failed
            batch = [{**EVENT, "type": "track", "messageId": uuid.uuid4().hex} for _ in range(per_request)]
            async with session.post(url, json={"batch": batch}) as response:
                if response.status == 200:
                    sent += per_request
                else:
                    failed += per_request

        tasks = []
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < seconds:
            target = start + n * interval
            delay = target - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
            n += 1
        await asyncio.gather(*tasks)
    return sent, failed


def end_to_end(seconds: int, rate: int = 2000) -> dict[str, Any]:
    port = free_port()
    proc = multiprocessing.Process(target=receiver, args=(port, None, seconds), daemon=True)
    proc.start()
    wait_http(f"http://127.0.0.1:{port}/report")
    hook = {
        "id": "hook",
        "vendor": "webhook",
        "preset": "all",
        "settings": {"url": f"http://127.0.0.1:{port}/hook", "batch_size": 100},
    }
    server = Server([hook])
    try:
        sent, failed = asyncio.run(steady_load(f"{server.url}/v1/batch?key=bench", rate, seconds, 20))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            report = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/report").read())
            if report["unique"] >= sent:
                break
            time.sleep(0.2)
        rss, peak = server.rss_mb()
    finally:
        server.stop()
        proc.terminate()
    lat = sorted(report["latencies"])
    pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")  # noqa: E731
    return {
        "sent": sent,
        "failed": failed,
        "delivered": report["unique"],
        "duplicates": report["count"] - report["unique"],
        "p50_ms": pick(0.5),
        "p99_ms": pick(0.99),
        "max_ms": pick(1.0),
        "rss_mb": rss,
        "peak_mb": peak,
    }


async def fill(url: str, total: int, per_request: int = 100, concurrency: int = 8) -> int:
    import aiohttp

    body = json.dumps({"batch": [{**EVENT, "type": "track"} for _ in range(per_request)]}).encode()
    done = 0
    async with aiohttp.ClientSession() as session:

        async def worker() -> None:
            nonlocal done
            while done < total:
                done += per_request
                async with session.post(url, data=body) as response:
                    assert response.status == 200, await response.text()

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done


def memory_with_backlog(total: int) -> dict[str, float]:
    dead_port = free_port()  # nothing listens: every delivery fails and waits for its retry
    hook = {
        "id": "hook",
        "vendor": "webhook",
        "preset": "all",
        "settings": {"url": f"http://127.0.0.1:{dead_port}/hook", "batch_size": 100},
    }
    server = Server([hook])
    try:
        started = time.monotonic()
        asyncio.run(fill(f"{server.url}/v1/batch?key=bench", total))
        ingest_s = time.monotonic() - started
        while server.metric("datafly_events_processed_total") < total:
            time.sleep(0.5)
        processed_s = time.monotonic() - started
        deadline = time.monotonic() + 30  # (the depth gauge is refreshed by the housekeeping loop)
        depth = server.metric('datafly_queue_depth{integration="hook"}')
        while depth < total and time.monotonic() < deadline:
            time.sleep(1)
            depth = server.metric('datafly_queue_depth{integration="hook"}')
        time.sleep(2)
        rss, peak = server.rss_mb()
    finally:
        server.stop()
    return {
        "events": total,
        "ingest_s": ingest_s,
        "processed_s": processed_s,
        "rss_mb": rss,
        "peak_mb": peak,
        "queue_depth": depth,
    }


def processed_share(server: Server) -> float:
    """Of the events the server accepted so far, the share it has processed."""
    accepted = server.metric("datafly_events_accepted_total")
    return server.metric("datafly_events_processed_total") / accepted if accepted else 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--quick", action="store_true", help="short runs (5 s, 10 s end to end, 100k backlog)"
    )
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--rounds", type=int, default=5, help="alternating floor/gateway rounds (default 5)")
    args = parser.parse_args()
    seconds = 5 if args.quick else 10
    body = json.dumps(EVENT)
    print(
        f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}; load generator on the same machine"
    )

    # The floor and the gateway alternate, each round on a fresh server: the machine's speed drifts
    # (other tenants, the disk's flush latency), and a ratio is only fair within one round. Each
    # gateway run is bracketed by two floor runs and compared with their mean, so a drift during
    # the round moves both sides of its ratio alike.
    batch_body = json.dumps({"batch": [{**EVENT, "type": "track"} for _ in range(100)]})
    floors: list[float] = [bare_floor(seconds, body)]
    ratios: list[float] = []
    batch_rates: list[float] = []
    for round_no in range(1, args.rounds + 1):
        server = Server([])
        try:
            single = wrk(f"{server.url}/v1/t?key=bench", body, seconds, headers={"Cookie": "_dfid=visitor-1"})
            share = processed_share(server)
            batches = wrk(f"{server.url}/v1/batch?key=bench", batch_body, seconds, connections=16)
        finally:
            server.stop()
        floors.append(bare_floor(seconds, body))
        before, after = floors[-2], floors[-1]
        ratio = single / ((before + after) / 2)
        ratios.append(ratio)
        batch_rates.append(batches * 100)
        print(
            f"round {round_no}: bare ASGI app (uvicorn+httptools+uvloop, parse JSON, 200) {before:,.0f} before, "
            f"{after:,.0f} after requests/s; gateway /v1/t, one event per request, durable before 200: "
            f"{single:,.0f} requests/s = {ratio:.0%} of the bare app's mean ({share:.0%} of them processed "
            f"during the run); /v1/batch, 100 events per request: {batches * 100:,.0f} events/s"
        )
    floor = statistics.median(floors)
    print(
        f"gateway /v1/t: median {statistics.median(ratios):.0%} of the bare app over {len(ratios)} rounds "
        f"(lowest {min(ratios):.0%}, highest {max(ratios):.0%}; target 50%)"
    )
    print(
        f"gateway /v1/batch, 100 events per request: median {statistics.median(batch_rates):,.0f} events/s "
        f"(lowest {min(batch_rates):,.0f}; target 100,000 events/s)"
    )

    own = Server([], env={"DATAFLY_PROCESSOR": "process"})
    try:
        single = wrk(f"{own.url}/v1/t?key=bench", body, seconds, headers={"Cookie": "_dfid=visitor-1"})
        print(
            f"  /v1/t with DATAFLY_PROCESSOR=process (the processor in a process of its own): "
            f"{single:,.0f} requests/s = {single / floor:.0%} of the median bare app; "
            f"{processed_share(own):.0%} processed during the run"
        )
    finally:
        own.stop()

    e2e = end_to_end(10 if args.quick else 60)
    print(
        f"end to end at 2,000 events/s for {10 if args.quick else 60}s to a loopback webhook: "
        f"{e2e['delivered']:,}/{e2e['sent']:,} delivered, {e2e['duplicates']} duplicates, {e2e['failed']} refused; "
        f"receipt→vendor p50 {e2e['p50_ms']:.0f} ms, p99 {e2e['p99_ms']:.0f} ms, max {e2e['max_ms']:.0f} ms "
        f"(target p99 < 250 ms); server RSS {e2e['rss_mb']:.0f} MB"
    )

    if not args.skip_memory:
        m = memory_with_backlog(100_000 if args.quick else 1_000_000)
        print(
            f"memory with {m['events']:,} events waiting (vendor unreachable): RSS {m['rss_mb']:.0f} MB, peak "
            f"{m['peak_mb']:.0f} MB (target < 300 MB); ingested in {m['ingest_s']:.1f}s, processed in "
            f"{m['processed_s']:.1f}s, queue depth {m['queue_depth']:,.0f}"
        )


if __name__ == "__main__":
    main()
