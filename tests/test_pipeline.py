"""The whole path through a real server to a loopback webhook: sessions, identity, click ids,
dedup, consent, batching, retries, dead letters, isolation, crash and shutdown."""

from __future__ import annotations

import itertools
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e_support import db, wait_until
from http_client import post
from standins import WebhookStandIn

KEY = "dk_pipe"


def hook_integration(iid: str, url: str, batch_size: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "id": iid,
        "vendor": "webhook",
        "preset": "all",
        "settings": {"url": url, "batch_size": batch_size},
        **extra,
    }


def make_config(*integrations: dict[str, Any], **delivery: Any) -> dict[str, Any]:
    return {
        "sources": [{"id": "web", "key": KEY}],
        "integrations": list(integrations),
        "delivery": {"initial_backoff": "200ms", "max_backoff": "2s", "timeout": "2s", **delivery},
    }


@pytest.fixture
def hook() -> Iterator[WebhookStandIn]:
    with WebhookStandIn().running_in_thread() as stand_in:
        yield stand_in


def send(server: Any, *events: dict[str, Any]) -> list[str]:
    ids = []
    batch = []
    for event in events:
        event = {"messageId": uuid.uuid4().hex, **event}
        ids.append(event["messageId"])
        batch.append(event)
    answer = post(f"{server.url}/v1/batch?key={KEY}", {"batch": batch})
    assert answer.status == 200, answer.body
    return ids


def wait_events(hook: WebhookStandIn, ids: list[str], timeout: float = 10.0) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        by_id = {str(e["messageId"]): e for e in hook.events()}
        if all(i in by_id for i in ids):
            return by_id
        if time.monotonic() > deadline:
            missing = [i for i in ids if i not in by_id]
            raise AssertionError(f"{len(missing)} of {len(ids)} events not delivered")
        time.sleep(0.05)






def test_sessions_are_derived_when_the_event_has_none(serve: Any, hook: WebhookStandIn) -> None:
    server = serve(make_config(hook_integration("hook", hook.url)))
    visitor = {"anonymousId": "visitor-1"}
    ids = send(server, {"type": "page", "timestamp": "2026-06-06T10:00:00Z", **visitor})
    ids += send(server, {"type": "track", "event": "A", "timestamp": "2026-06-06T10:20:00Z", **visitor})
    ids += send(server, {"type": "track", "event": "B", "timestamp": "2026-06-06T10:51:00Z", **visitor})
    ids += send(server, {"type": "page", "timestamp": "2026-06-06T10:00:00Z", "anonymousId": "visitor-2"})
    events = wait_events(hook, ids)
    sessions = [events[i]["context"]["session"] for i in ids]
    assert [s["number"] for s in sessions] == [1, 1, 2, 1]
    assert sessions[0]["id"] == sessions[1]["id"] != sessions[2]["id"]
    assert sessions[3]["id"] not in {sessions[0]["id"], sessions[2]["id"]}


def test_a_session_given_by_the_client_is_kept(serve: Any, hook: WebhookStandIn) -> None:
    server = serve(make_config(hook_integration("hook", hook.url)))
    ids = send(server, {"type": "track", "event": "A", "context": {"session": {"id": "s-7", "number": 3}}})
    assert wait_events(hook, ids)[ids[0]]["context"]["session"] == {"id": "s-7", "number": 3}


def test_identify_traits_user_id_and_click_ids_are_carried_on(serve: Any, hook: WebhookStandIn) -> None:
    server = serve(make_config(hook_integration("hook", hook.url)))
    visitor = {"anonymousId": "visitor-9"}
    ids = send(
        server,
        {
            "type": "page",
            "context": {"page": {"url": "https://shop.example/land?rclid=CLICK-1&x=1"}},
            **visitor,
        },
    )
    ids += send(
        server, {"type": "identify", "userId": "user-123", "traits": {"email": "Jane@Example.com"}, **visitor}
    )
    ids += send(
        server, {"type": "track", "event": "Order Completed", "properties": {"order_id": "o-1"}, **visitor}
    )
    ids += send(
        server,
        {"type": "page", "properties": {"url": "https://shop.example/?rtid=T-2"}, "anonymousId": "v-10"},
    )
    events = wait_events(hook, ids)
    order = events[ids[2]]
    assert order["userId"] == "user-123"
    assert order["context"]["clickIds"] == {"rclid": "CLICK-1"}
    import hashlib

    assert order["context"]["traits"]["email_sha256"] == hashlib.sha256(b"jane@example.com").hexdigest()
    assert events[ids[3]]["context"]["clickIds"] == {"rclid": "T-2"}
    assert (
        "clickIds" not in events[ids[0]]["context"]
        or events[ids[0]]["context"]["clickIds"]["rclid"] == "CLICK-1"
    )


def test_a_message_id_is_delivered_once(serve: Any, hook: WebhookStandIn) -> None:
    server = serve(make_config(hook_integration("hook", hook.url)))
    event = {"type": "track", "event": "Order Completed", "messageId": "dup-1"}
    assert post(f"{server.url}/v1/batch?key={KEY}", {"batch": [event, event]}).status == 200
    assert post(f"{server.url}/v1/t?key={KEY}", event).status == 200
    later = send(server, {"type": "track", "event": "Later"})
    wait_events(hook, ["dup-1", *later])
    time.sleep(0.3)
    assert hook.count_by_message_id()["dup-1"] == 1


def test_consent_gates_each_integration(serve: Any, hook: WebhookStandIn) -> None:
    gated = hook_integration("gated", hook.url + "?i=gated", consent=["marketing", "advertising"])
    open_ = hook_integration("open", hook.url + "?i=open")
    server = serve(make_config(gated, open_))
    granted = {"context": {"consent": {"canonical": {"marketing": True, "advertising": True}}}}
    partial = {"context": {"consent": {"canonical": {"marketing": True, "advertising": False}}}}
    ids = send(
        server,
        {"type": "track", "event": "Granted", **granted},
        {"type": "track", "event": "Partial", **partial},
        {"type": "track", "event": "Absent"},
    )
    wait_until(lambda: len([r for r in hook.requests if r.query.get("i") == "open"]) >= 3)
    wait_until(lambda: [r for r in hook.requests if r.query.get("i") == "gated"])
    time.sleep(0.5)
    gated_ids = [r.json()["messageId"] for r in hook.requests if r.query.get("i") == "gated"]
    assert gated_ids == [ids[0]]
    rows = db(
        server.home,
        "SELECT message_ids, reason FROM delivery_log WHERE outcome='filtered' AND integration_id='gated'",
    )
    filtered = {row[0].strip('[]"'): row[1] for row in rows}
    assert set(filtered) == {ids[1], ids[2]}
    assert "advertising" in filtered[ids[1]] and "marketing" not in filtered[ids[1]]


def test_events_are_batched_up_to_the_batch_size(serve: Any, hook: WebhookStandIn) -> None:
    server = serve(make_config(hook_integration("hook", hook.url, batch_size=10)))
    ids = send(server, *({"type": "track", "event": f"E{i}"} for i in range(25)))
    wait_events(hook, ids)
    sizes = [len(r.json()["batch"]) for r in hook.requests if r.accepted]
    assert sum(sizes) == 25 and max(sizes) <= 10 and len(sizes) <= 4


def test_retry_after_is_honoured(serve: Any, hook: WebhookStandIn) -> None:
    server = serve(make_config(hook_integration("hook", hook.url)))
    hook.fail_next(1, 429, {"Retry-After": "2"})
    ids = send(server, {"type": "track", "event": "A"})
    wait_events(hook, ids, timeout=10)
    first, second = hook.requests[0], hook.requests[1]
    assert first.status == 429 and second.status == 200
    assert second.time - first.time >= 1.9
    query = "SELECT outcome, status FROM delivery_log WHERE integration_id='hook' ORDER BY id"
    rows = wait_until(lambda: len(db(server.home, query)) >= 2 and db(server.home, query))
    assert rows == [("retry", 429), ("done", 200)]


def test_server_errors_back_off_exponentially_then_dead_letter(serve: Any, hook: WebhookStandIn) -> None:
    server = serve(make_config(hook_integration("hook", hook.url), max_attempts=4, initial_backoff="300ms"))
    hook.fail_next(10, 503)
    ids = send(server, {"type": "track", "event": "A"})
    rows = wait_until(
        lambda: db(
            server.home, "SELECT message_id, attempts, outcome, reason, last_request FROM dead_letters"
        )
    )
    assert rows[0][0] == ids[0] and rows[0][1] == 4 and rows[0][2] == "retry"
    assert "503" in rows[0][3] and hook.url in rows[0][4]
    times = [r.time for r in hook.requests]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) == 4
    assert gaps[0] >= 0.14 and gaps[2] >= gaps[0]  # 300ms, 600ms, 1.2s with jitter in [0.5, 1]
    assert db(server.home, "SELECT count(*) FROM queue") == [(0,)]


def test_a_rejected_event_is_dead_lettered_at_once(serve: Any, hook: WebhookStandIn) -> None:
    server = serve(make_config(hook_integration("hook", hook.url)))
    hook.fail_next(1, 400, body=b'{"error": "bad field"}')
    ids = send(server, {"type": "track", "event": "A"})
    rows = wait_until(lambda: db(server.home, "SELECT attempts, outcome, reason FROM dead_letters"))
    assert rows == [(1, "rejected", '400 {"error": "bad field"}')]
    time.sleep(0.5)
    assert len(hook.requests) == 1 and ids


def test_one_stalled_integration_does_not_delay_another(serve: Any, hook: WebhookStandIn) -> None:
    with WebhookStandIn(delay=8.0).running_in_thread() as stalled:
        server = serve(make_config(hook_integration("fast", hook.url), hook_integration("slow", stalled.url)))
        started = time.monotonic()
        ids = send(server, *({"type": "track", "event": f"E{i}"} for i in range(200)))
        wait_events(hook, ids, timeout=10)
        elapsed = time.monotonic() - started
        assert elapsed < 6, elapsed  # the stalled vendor answers after 8s
        assert not any(r.status for r in stalled.requests)
        server.kill()


def test_nothing_answered_200_is_lost_on_sigkill(serve: Any, hook: WebhookStandIn, tmp_path: Path) -> None:
    cfg = make_config(hook_integration("hook", hook.url, batch_size=20))
    server = serve(cfg)
    ids: list[str] = []
    for _ in range(20):
        ids += send(server, *({"type": "track", "event": "E"} for _ in range(25)))
    server.kill()
    again = serve(cfg, home=server.home)
    ids += send(again, {"type": "track", "event": "after restart"})
    wait_events(hook, ids, timeout=20)
    assert set(ids) <= set(hook.count_by_message_id())


def test_sigterm_drains_and_exits_zero(serve: Any, hook: WebhookStandIn) -> None:
    cfg = make_config(hook_integration("hook", hook.url, batch_size=50))
    server = serve(cfg)
    ids: list[str] = []
    for _ in range(10):
        ids += send(server, *({"type": "track", "event": "E"} for _ in range(50)))
    home = server.home
    assert server.stop(signal.SIGTERM) == 0
    assert db(home, "SELECT count(*) FROM inbox", file="inbox.db") == [(0,)]  # every accepted event was processed
    delivered = set(hook.count_by_message_id())
    queued = db(home, "SELECT count(*) FROM queue")[0][0]
    assert len(delivered & set(ids)) + queued == len(ids)
    again = serve(cfg, home=home)
    wait_events(hook, ids, timeout=20)
    assert again.stop() == 0


def test_sigterm_exits_promptly_while_a_vendor_is_down(serve: Any) -> None:
    server = serve(make_config(hook_integration("hook", "http://127.0.0.1:9/down"), timeout="1s"))
    send(server, *({"type": "track", "event": "E"} for _ in range(10)))
    time.sleep(0.5)
    started = time.monotonic()
    assert server.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 15
    assert db(server.home, "SELECT count(*) FROM queue") == [(10,)]


def test_a_bad_config_file_is_refused_with_one_line_per_problem(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "bad.yaml"
    path.write_text(
        "sources:\n  - id: web\n    key: k\n    colour: red\n"
        "integrations:\n  - id: x\n    vendor: exactag\n    settings:\n      campaign_code: ${NOPE_NOT_SET}\n"
        "  - id: y\n    vendor: nosuch\n"
        "delivery:\n  timeout: soon\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "datafly.cli", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert any("sources[0].colour: unknown key" in line for line in lines)
    assert any("integrations[0].settings.campaign_code" in line and "NOPE_NOT_SET" in line for line in lines)
    assert any("integrations[1].vendor: unknown vendor 'nosuch'" in line for line in lines)
    assert any("delivery.timeout" in line for line in lines)
    served = subprocess.run(
        [sys.executable, "-m", "datafly.cli", "serve", "--config", str(path)], capture_output=True, text=True
    )
    assert served.returncode == 1 and "unknown key" in served.stderr
