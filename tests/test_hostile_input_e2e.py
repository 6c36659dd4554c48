"""Hostile input against a real ``datafly serve`` (issue 14): refused clearly, never halting.

- Each input that once halted all processing is refused with a 400 that says why, and an event
  sent after it is delivered.
- An accepted event the processor cannot process (here: one stored by an older version, written
  into the inbox while the server was down) is set aside as an "unprocessable" dead letter that
  the management API lists, replays and discards; the events after it are delivered.
- Hypothesis sends arbitrary requests (methods, paths, queries, headers, bodies: JSON-shaped,
  gzip, garbage) over raw sockets: the server answers every one with a status below 500, and a
  sentinel event sent afterwards is delivered.
- ``DATAFLY_HOME`` is private: the directory 0700, every file in it 0600.
"""

from __future__ import annotations

import gzip
import json
import socket
import sqlite3
import stat
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from e2e_support import wait_until
from hostile_inputs import bodies, nested
from http_client import post, request
from standins import WebhookStandIn

sys.path.insert(0, str(Path(__file__).parent / "management"))
from management_client import login

KEY = "dk_hostile"


@pytest.fixture
def hook() -> Iterator[WebhookStandIn]:
    with WebhookStandIn().running_in_thread() as stand_in:
        yield stand_in


def config(hook_url: str) -> dict[str, Any]:
    return {
        "sources": [{"id": "web", "key": KEY}],
        "integrations": [{"id": "hook", "vendor": "webhook", "preset": "all", "settings": {"url": hook_url, "batch_size": 20}}],
        "delivery": {"initial_backoff": "100ms", "timeout": "2s"},
    }


@pytest.fixture
def server(serve: Any, hook: WebhookStandIn) -> Any:
    return serve(config(hook.url))


def sentinel_delivered(server: Any, hook: WebhookStandIn) -> None:
    mid = uuid.uuid4().hex
    answer = post(f"{server.url}/v1/t?key={KEY}", {"event": "Sentinel", "messageId": mid})
    assert answer.status == 200, answer.body
    wait_until(lambda: any(e.get("messageId") == mid for e in hook.events()), 15, "the sentinel delivered")


HALTED_PROCESSING = [
    ("/v1/t", {"event": "p", "timestamp": 1e300}, "timestamp"),
    ("/v1/t", {"event": "p", "timestamp": 1e20}, "timestamp"),
    ("/v1/t", {"event": "p", "timestamp": -1e300}, "timestamp"),
    ("/v1/t", {"event": "p", "timestamp": 1e15}, "timestamp"),
    ("/v1/t", {"event": "p", "timestamp": 253402300800}, "before 2000"),  # year 9999 in seconds: read as ms
    ("/v1/t", {"event": "p", "timestamp": "9999-12-31T23:59:59-14:00"}, "timestamp"),
    ("/v1/t", {"event": "p", "timestamp": "0001-01-01T00:00:00+14:00"}, "timestamp"),
    ("/v1/t", {"event": "p", "timestamp": "0001-01-01"}, "before 2000"),
    ("/v1/t", {"event": "p", "timestamp": "9999-12-31"}, "ten years ahead"),
    ("/v1/t", {"event": "p", "timestamp": -5}, "before 2000"),
    ("/v1/p", {"context": {"page": {"url": "http://[::1/?rclid=abc"}}}, "context.page.url"),
    ("/v1/p", {"properties": {"url": "http://[::1/?rclid=abc"}}, "properties.url"),
    ("/v1/t", {"event": "p", "context": {"session": {"id": "s1", "number": 1e300}}}, "session.number"),
    ("/v1/t", {"event": "p", "properties": nested(255)}, "nested deeper than 32"),
    ("/v1/t", {"event": "p", "traits": nested(40)}, "nested deeper than 32"),
]


def test_inputs_that_halted_processing_are_refused_with_a_reason(server: Any, hook: WebhookStandIn) -> None:
    for path, event, reason in HALTED_PROCESSING:
        raw = json.dumps(event).encode()  # (orjson's encoder stops at 254 levels)
        answer = request("POST", f"{server.url}{path}?key={KEY}", raw, {"Content-Type": "application/json"})
        assert answer.status == 400, (event, answer.body)
        assert reason in answer.json()["error"], (event, answer.json())
    answer = request(
        "POST",
        f"{server.url}/v1/t?key={KEY}",
        b'{"event":"p","properties":' + b'{"k":' * 1000 + b"1" + b"}" * 1000 + b"}",
        {"Content-Type": "application/json"},
    )
    assert answer.status == 400 and "nested deeper than 32" in answer.json()["error"]
    sentinel_delivered(server, hook)


def test_shapes_that_answered_500_are_refused_as_400(server: Any, hook: WebhookStandIn) -> None:
    shapes: list[tuple[str, Any]] = [
        ("/v1/batch", {"context": {"ip": "1.2.3.4"}, "batch": [{"type": "track", "event": "e", "context": "str"}]}),
        ("/v1/batch", {"context": {"ip": "1.2.3.4"}, "batch": [{"type": "track", "event": "e", "context": [1]}]}),
        ("/v1/batch", {"context": {"a": 1}, "batch": ["not an event"]}),
        ("/v1/batch", {"context": "str", "batch": [{"type": "track", "event": "e"}]}),
    ]
    for path, body in shapes:
        answer = post(f"{server.url}{path}?key={KEY}", body)
        assert answer.status == 400, (body, answer.status, answer.body)
        assert answer.json()["error"]
    sentinel_delivered(server, hook)


def test_an_unprocessable_event_is_set_aside_visible_and_replayable(
    serve: Any, hook: WebhookStandIn, tmp_path: Path
) -> None:
    """An accepted event the pipeline cannot process never blocks the ones after it."""
    server = serve(config(hook.url))
    server.stop()
    # as an older gateway stored it: accepted with a timestamp the pipeline cannot carry
    meta = {"s": "web", "ip": "203.0.113.1", "ua": "ua", "v": "v1", "at": 1.8e9, "t": "track", "w": "single"}
    stored = orjson.dumps({"m": meta, "b": {"event": "Old", "messageId": "old-1", "timestamp": 1e300}})
    with sqlite3.connect(server.home / "inbox.db") as conn:
        conn.execute("INSERT INTO inbox (body) VALUES (?)", (stored,))
    server = serve(config(hook.url), home=server.home)
    sentinel_delivered(server, hook)

    api = login(server.url)
    dead = wait_until(lambda: api.get("/api/dead-letters").json()["dead_letters"], 10, "the dead letter")
    assert [(d["integration_id"], d["message_id"], d["outcome"]) for d in dead] == [("", "old-1", "unprocessable")]
    assert "timestamp" in dead[0]["reason"]
    assert dead[0]["event"]["b"]["messageId"] == "old-1"

    # a replay processes it again; it is still unprocessable, so it is set aside again
    assert api.post(f"/api/dead-letters/{dead[0]['id']}/replay").status == 200
    again = wait_until(  # (embedded storage may give the new dead letter the freed id)
        lambda: [d for d in api.get("/api/dead-letters").json()["dead_letters"] if d["created_at"] > dead[0]["created_at"]],
        10,
        "set aside again",
    )
    assert [d["message_id"] for d in again] == ["old-1"]
    assert api.delete(f"/api/dead-letters/{again[0]['id']}").status == 200
    assert api.get("/api/dead-letters").json()["dead_letters"] == []
    sentinel_delivered(server, hook)
    assert not any(e.get("messageId") == "old-1" for e in hook.events())


def test_the_home_is_private(server: Any) -> None:
    home: Path = server.home
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    files = [p for p in home.iterdir() if p.is_file()]
    assert {p.name for p in files} >= {"datafly.db", "inbox.db", "datafly.db-wal"}
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


# any request at all ------------------------------------------------------------------------------
_token = st.text(alphabet="!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=20)
_visible = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=60)
_paths = st.one_of(
    st.sampled_from(["/v1/t", "/v1/p", "/v1/i", "/v1/g", "/v1/batch", "/v1/import", "/v1/track", "/d.js", "/healthz", "/readyz", "/metrics"]),
    st.text(alphabet="/abcdefghijklmnopqrstuvwxyz0123456789%.-_~", min_size=1, max_size=30).map(lambda p: "/" + p),
)
_queries = st.one_of(
    st.just(f"key={KEY}"),
    st.just(f"key={KEY}"),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789=&%+_.-", max_size=40),
)
_headers = st.lists(st.tuples(_token, _visible), max_size=6)
_bodies = st.one_of(
    bodies.map(lambda b: orjson.dumps(b) if _encodable(b) else b"{}"),
    bodies.map(lambda b: gzip.compress(orjson.dumps(b)) if _encodable(b) else b"\x1f\x8b"),
    st.binary(max_size=300),
)


def _encodable(value: Any) -> bool:
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError:
        return False
    return True


def _raw_request(port: int, method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> int:
    head = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    for name, value in headers:
        head += f"{name}: {value}\r\n"
    head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode("latin-1") + body)
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 "), answer[:200]
    return int(status_line.split()[1])


def test_any_request_is_answered_below_500_and_delivery_goes_on(server: Any, hook: WebhookStandIn) -> None:
    statuses: dict[int, int] = {}

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(
        method=st.sampled_from(["POST", "POST", "POST", "GET", "OPTIONS", "PUT", "DELETE", "HEAD"]),
        path=_paths,
        query=_queries,
        headers=_headers,
        encoding=st.sampled_from([None, None, "gzip", "deflate", "br", "gzip, gzip"]),
        body=_bodies,
    )
    def probe(method: str, path: str, query: str, headers: list[tuple[str, str]], encoding: str | None, body: bytes) -> None:
        sent = [(n, v) for n, v in headers if n.lower() not in {"content-length", "transfer-encoding", "host", "connection"}]
        if encoding:
            sent.append(("Content-Encoding", encoding))
        status = _raw_request(server.port, method, f"{path}?{query}", sent, body)
        statuses[status] = statuses.get(status, 0) + 1
        assert status < 500, (method, path, query, sent, body[:200], status)

    probe()
    assert statuses.get(200, 0) > 0 and sum(v for k, v in statuses.items() if 400 <= k < 500) > 0, statuses
    sentinel_delivered(server, hook)
    assert "Traceback" not in server.log(), server.log()[-3000:]
