"""Gateway + processor fuzzing against a real server, for longer than the tests (issue 14).

    .venv/bin/python bench/fuzz.py [--inputs 20000] [--seed N]

A default ``datafly serve`` (embedded storage) with a webhook integration that takes every event,
delivering to a loopback receiver that counts. Hypothesis generates requests with the strategies
of ``tests/hostile_inputs.py`` (event-shaped bodies with extreme timestamps, URLs that do not
parse, huge numbers, deep nesting, arbitrary JSON), sent to the ingestion routes as JSON or gzip,
plus arbitrary bytes. Afterwards a sentinel event is sent. Printed: how many inputs, the answers
by status, how many events were accepted, processed, set aside as unprocessable and delivered,
5xx answers, and tracebacks in the server's log. 0 is the only right figure for the last four.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sqlite3
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from gateway import Server
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from soak import HOOK_PATH, Receiver

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from hostile_inputs import bodies

ROUTES = ["/v1/batch", "/v1/t", "/v1/p", "/v1/i", "/v1/g", "/v1/import"]


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args()
    receiver = Receiver()
    hook = {
        "id": "hook",
        "vendor": "webhook",
        "preset": "all",
        "settings": {"url": f"http://127.0.0.1:{receiver.port}{HOOK_PATH}", "batch_size": 100},
    }
    server = Server([hook])
    statuses: Counter[int] = Counter()
    accepted = 0
    started = time.monotonic()

    @seed(args.seed)
    @settings(max_examples=args.inputs, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(
        route=st.sampled_from(ROUTES),
        body=st.one_of(bodies, bodies, bodies, st.binary(max_size=400)),
        compress=st.sampled_from([False, False, False, True]),
    )
    def probe(route: str, body: Any, compress: bool) -> None:
        nonlocal accepted
        if isinstance(body, bytes):
            raw = body
        else:
            try:
                raw = orjson.dumps(body)
            except orjson.JSONEncodeError:
                raw = json.dumps(body).encode()  # nested past orjson's encoder
        headers = {"Content-Type": "application/json"}
        if compress:
            raw = gzip.compress(raw)
            headers["Content-Encoding"] = "gzip"
        status, _ = post(f"{server.url}{route}?key=bench", raw, headers)
        statuses[status] += 1
        if status == 200:
            count = len(body["batch"]) if route in ("/v1/batch", "/v1/import") and isinstance(body, dict) and "batch" in body else 1
            accepted += count

    try:
        probe()
        sent_s = time.monotonic() - started
        sentinel = uuid.uuid4().hex
        status, _ = post(
            f"{server.url}/v1/t?key=bench", orjson.dumps({"event": "Sentinel", "messageId": sentinel}), {}
        )
        statuses[status] += 0
        deadline = time.monotonic() + 120
        while server.metric("datafly_events_processed_total") + server.metric("datafly_events_duplicate_total") < accepted + 1:
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        processed = server.metric("datafly_events_processed_total")
        duplicates = server.metric("datafly_events_duplicate_total")
        while receiver.events < processed and time.monotonic() < deadline:
            time.sleep(0.5)
        home = server.dir / "home"
        with sqlite3.connect(home / "datafly.db") as conn:
            unprocessable = conn.execute("SELECT count(*) FROM dead_letters WHERE outcome='unprocessable'").fetchone()[0]
            dead = conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
        log = (server.dir / "server.log").read_text(errors="replace")
    finally:
        server.stop()
    print(f"inputs: {args.inputs:,} (seed {args.seed}) in {sent_s:.0f} s")
    print("answers: " + ", ".join(f"{code}: {n:,}" for code, n in sorted(statuses.items())))
    print(f"events accepted: {accepted + 1:,} (the sentinel included)")
    print(f"processed: {processed:,.0f}, duplicates: {duplicates:,.0f}, delivered: {receiver.events:,}")
    print(f"5xx answers: {sum(n for code, n in statuses.items() if code >= 500)}")
    print(f"unprocessable dead letters: {unprocessable}, dead letters in all: {dead}")
    print(f"tracebacks in the server's log: {log.count('Traceback')}")
    print(f"accepted events not processed: {accepted + 1 - processed - duplicates:,.0f}")


if __name__ == "__main__":
    main()
