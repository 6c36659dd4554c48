"""Memory under a soak of large identify events (issue 14). Prints figures; asserts nothing.

    .venv/bin/python bench/soak.py [--requests 1000] [--trait-kb 200] [--rounds 2]

A default ``datafly serve`` (embedded storage) delivers to a loopback webhook receiver that only
counts. Each round sends ``--requests`` identify events, each from a new visitor with two traits
of ``--trait-kb`` KB, and waits until every one is delivered. The resident memory of the
server's processes is read before, right after each round is accepted (during) and 7 s after
it is delivered. The baseline, in the same run on a fresh server: the same rounds with small traits.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
import uuid
from typing import Any

import aiohttp
from aiohttp import web
from gateway import Server, free_port

HOOK_PATH = "/hook"


class Receiver:
    """A webhook receiver that counts delivered events and keeps nothing."""

    def __init__(self) -> None:
        self.port = free_port()
        self.events = 0
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._run, daemon=True).start()
        time.sleep(0.5)

    def _run(self) -> None:
        async def hook(request: web.Request) -> web.Response:
            body = await request.json()
            self.events += len(body.get("batch", [body])) if isinstance(body, dict) else len(body)
            return web.Response(text="ok")

        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post(HOOK_PATH, hook)
        runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._loop.run_forever()


async def send_round(url: str, requests: int, trait_bytes: int, concurrency: int = 8) -> int:
    sent = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal sent
        while not queue.empty():
            queue.get_nowait()
            filler = uuid.uuid4().hex
            event = {
                "userId": f"u-{uuid.uuid4().hex}",
                "anonymousId": uuid.uuid4().hex,
                "traits": {
                    "name": "Soak Visitor",
                    "notes": (filler * (trait_bytes // 32 + 1))[:trait_bytes],
                    "history": (filler[::-1] * (trait_bytes // 32 + 1))[:trait_bytes],
                },
            }
            async with session.post(url, json=event) as answer:
                if answer.status == 200:
                    sent += 1
                else:
                    print(f"  refused: {answer.status} {(await answer.text())[:120]}", flush=True)

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return sent


def soak(requests: int, trait_bytes: int, rounds: int) -> list[dict[str, Any]]:
    receiver = Receiver()
    hook = {
        "id": "hook",
        "vendor": "webhook",
        "preset": "all",
        "settings": {"url": f"http://127.0.0.1:{receiver.port}{HOOK_PATH}", "batch_size": 50},
    }
    server = Server([hook])
    figures: list[dict[str, Any]] = []
    try:
        time.sleep(1)
        figures.append({"when": "before", "rss_mb": server.rss_mb()[0]})
        expected = 0
        for number in range(1, rounds + 1):
            started = time.monotonic()
            expected += asyncio.run(send_round(f"{server.url}/v1/i?key=bench", requests, trait_bytes))
            figures.append({"when": f"round {number} accepted", "rss_mb": server.rss_mb()[0]})
            deadline = time.monotonic() + 300
            while receiver.events < expected and time.monotonic() < deadline:
                time.sleep(0.2)
            delivered_s = time.monotonic() - started
            time.sleep(7)  # the server gives free memory back every 5 s (datafly.runtime.memory)
            rss, peak = server.rss_mb()
            figures.append(
                {
                    "when": f"round {number} delivered",
                    "rss_mb": rss,
                    "peak_mb": peak,
                    "delivered": f"{receiver.events}/{expected}",
                    "seconds": round(delivered_s, 1),
                }
            )
    finally:
        server.stop()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--trait-kb", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    for label, size in (("baseline: 100-byte traits", 100), (f"{args.trait_kb} KB traits", args.trait_kb * 1024)):
        print(f"== {label}, {args.requests} identify requests x {args.rounds} rounds", flush=True)
        for row in soak(args.requests, size, args.rounds):
            print("  " + ", ".join(f"{k}={v:.0f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)


if __name__ == "__main__":
    main()
