"""The Backend interface's contract, run against the embedded and the scaled backend alike."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest

from datafly.errors import InvalidId
from datafly.inbox import RequestMeta, encode
from datafly.processing.profile import Profile
from datafly.store.base import Backend
from datafly.store.records import (
    UNPROCESSABLE,
    DeadLetter,
    InboundEvent,
    LogRow,
    NewDelivery,
    QueuedItem,
    Retry,
    Unprocessable,
    dedup_key,
)


def event(mid: str, anonymous_id: str = "a1") -> bytes:
    """An inbox record of one event, as the gateway stores it."""
    meta = RequestMeta("web", "203.0.113.1", "ua", anonymous_id, time.time(), "track", "single")
    return encode(meta, orjson.dumps({"event": "Order Completed", "messageId": mid, "anonymousId": anonymous_id}))


def body(e: InboundEvent) -> dict[str, Any]:
    """The one event of a record read back."""
    assert e.record is not None, e.problem
    found: dict[str, Any] = e.record.events()[0]
    return found


async def ingest(backend: Backend, mids: list[str], integration: str = "hook") -> None:
    await backend.append_inbound([event(m, f"v{i % 5}") for i, m in enumerate(mids)])
    got = []
    while len(got) < len(mids):
        batch = await backend.read_inbound(500)
        assert batch, "accepted events must be readable"
        got.extend(batch)
        deliveries = [
            NewDelivery(integration, body(e)["messageId"], "track", False, orjson.dumps(body(e)))
            for e in batch
        ]
        await backend.commit_processed(
            batch, [], [(body(e)["messageId"], time.time()) for e in batch], deliveries, []
        )


async def lease_all(backend: Backend, integration: str = "hook", lease_for: float = 30) -> list[QueuedItem]:
    return await backend.lease(integration, 1000, time.time(), lease_for)


async def test_accepted_events_are_read_once_in_order(backend: Backend) -> None:
    await backend.append_inbound([event(f"m{i}") for i in range(20)])
    batch = await backend.read_inbound(500)
    assert [body(e)["messageId"] for e in batch] == [f"m{i}" for i in range(20)]
    await backend.commit_processed(batch, [], [], [], [])
    assert await backend.read_inbound(500) == []


async def test_uncommitted_events_are_read_again(backend: Backend) -> None:
    await backend.append_inbound([event("m1"), event("m2")])
    first = await backend.read_inbound(500)
    again = await backend.read_inbound(500)
    assert [body(e)["messageId"] for e in again] == [body(e)["messageId"] for e in first] == ["m1", "m2"]
    await backend.commit_processed(again, [], [], [], [])
    assert await backend.read_inbound(500) == []


async def test_profiles_and_seen_ids(backend: Backend) -> None:
    await backend.append_inbound([event("m1")])
    batch = await backend.read_inbound(10)
    profile = Profile(anonymous_id="a1", user_id="u1", traits={"email": "x"}, session_number=2)
    now = time.time()
    await backend.commit_processed(batch, [profile], [("m1", now)], [], [])
    loaded = await backend.load_profiles(["a1", "nobody"])
    assert loaded == {"a1": profile}
    assert await backend.seen_message_ids(["m1", "m2"], now - 60) == {"m1"}


async def test_deliver_and_settle_done(backend: Backend) -> None:
    await ingest(backend, ["m1", "m2", "m3"])
    assert (await backend.queue_depths()).get("hook") == 3
    due = await backend.next_due("hook")
    assert due is not None and due <= time.time()
    assert await backend.ready_count("hook", time.time(), 10) == 3
    items = await lease_all(backend)
    assert sorted(i.message_id for i in items) == ["m1", "m2", "m3"]
    assert all(i.attempts == 0 and i.integration_id == "hook" for i in items)
    assert orjson.loads(items[0].event)["messageId"] == items[0].message_id
    assert await lease_all(backend) == []  # leased: not handed out twice
    await backend.settle("hook", [i.id for i in items], [], [], [])
    assert (await backend.queue_depths()).get("hook", 0) == 0
    assert await backend.next_due("hook") is None


async def test_retry_waits_until_due(backend: Backend) -> None:
    await ingest(backend, ["m1"])
    [item] = await lease_all(backend)
    due_at = time.time() + 0.6
    await backend.settle("hook", [], [Retry(item.id, due_at, 1, "503")], [], [])
    assert abs((await backend.next_due("hook") or 0) - due_at) < 0.05
    assert await backend.ready_count("hook", time.time(), 10) == 0
    assert await lease_all(backend) == []
    await asyncio.sleep(0.7)
    [again] = await lease_all(backend)
    assert again.message_id == "m1" and again.attempts == 1
    assert again.enqueued_at == item.enqueued_at
    await backend.settle("hook", [again.id], [], [], [])
    assert (await backend.queue_depths()).get("hook", 0) == 0


async def test_leased_items_are_neither_due_nor_ready(backend: Backend) -> None:
    await ingest(backend, [f"m{i}" for i in range(5)])
    first = await backend.lease("hook", 2, time.time(), 30)
    assert len(first) == 2
    assert await backend.ready_count("hook", time.time(), 10) == 3  # the three not leased
    due = await backend.next_due("hook")
    assert due is not None and due <= time.time()
    rest = await backend.lease("hook", 10, time.time(), 30)
    assert sorted(i.message_id for i in first + rest) == [f"m{i}" for i in range(5)]
    assert await backend.ready_count("hook", time.time(), 10) == 0
    due = await backend.next_due("hook")
    assert due is None or due > time.time() + 20  # only when a lease would run out
    await backend.settle("hook", [i.id for i in first], [Retry(i.id, time.time(), i.attempts, "") for i in rest], [], [])
    assert await backend.ready_count("hook", time.time(), 10) == 3  # released: due again at once
    assert sorted(i.message_id for i in await lease_all(backend)) == sorted(i.message_id for i in rest)


async def test_lease_expires(backend: Backend) -> None:
    await ingest(backend, ["m1"])
    [item] = await lease_all(backend, lease_for=0.5)
    assert await lease_all(backend, lease_for=0.5) == []
    await asyncio.sleep(0.7)
    [again] = await lease_all(backend, lease_for=30)
    assert again.message_id == item.message_id == "m1"


async def test_dead_letters_replay_and_discard(backend: Backend) -> None:
    await ingest(backend, ["m1", "m2"])
    items = await lease_all(backend)
    dead = [DeadLetter(i, 1, "rejected", "400 bad", '{"url": "x"}') for i in items]
    await backend.settle("hook", [], [], dead, [])
    letters = await backend.dead_letters("hook")
    assert sorted(d["message_id"] for d in letters) == ["m1", "m2"]
    first = letters[0]
    assert first["outcome"] == "rejected" and first["reason"] == "400 bad" and first["attempts"] == 1
    assert first["last_request"] == {"url": "x"} and first["event"]["messageId"] == first["message_id"]
    assert (await backend.queue_depths()).get("hook", 0) == 0
    assert await backend.replay_dead_letters([first["id"]], None, time.time()) == 1
    [replayed] = await lease_all(backend)
    assert replayed.message_id == first["message_id"] and replayed.attempts == 0
    assert await backend.discard_dead_letters(None, "hook") == 1
    assert await backend.dead_letters() == []


async def test_delivery_log(backend: Backend) -> None:
    rows = [
        LogRow(
            time.time(),
            "hook",
            ("m1", "m2"),
            "done",
            request='{"a": 1}',
            status=200,
            latency_ms=1.5,
            attempt=1,
        ),
        LogRow(time.time(), "other", ("m3",), "filtered", "no consent"),
    ]
    await backend.settle("hook", [], [], [], rows[:1])
    await backend.append_log(rows[1:])
    everything = await backend.delivery_log()
    assert {r["integration_id"] for r in everything} == {"hook", "other"}
    [hook] = await backend.delivery_log("hook")
    assert hook["message_ids"] == ["m1", "m2"] and hook["status"] == 200 and hook["request"] == {"a": 1}
    [by_message] = await backend.delivery_log(message_id="m2")
    assert by_message["outcome"] == "done"
    assert await backend.delivery_log(message_id="m9") == []


async def test_documents(backend: Backend) -> None:
    assert await backend.list_documents("integration") == []
    await backend.put_document("integration", "b", {"vendor": "webhook", "n": 1})
    await backend.put_document("integration", "a", {"vendor": "rokt"})
    await backend.put_document("integration", "b", {"vendor": "webhook", "n": 2})
    assert [d["id"] for d in await backend.list_documents("integration")] == ["a", "b"]
    assert await backend.get_document("integration", "b") == {"vendor": "webhook", "n": 2, "id": "b"}
    assert await backend.get_document("source", "b") is None
    assert await backend.delete_document("integration", "b") is True
    assert await backend.delete_document("integration", "b") is False


async def test_notify_wakes_wait(backend: Backend) -> None:
    started = time.monotonic()
    backend.notify("queue:hook")
    await backend.wait("queue:hook", 5)
    assert time.monotonic() - started < 1
    started = time.monotonic()
    await backend.wait("queue:hook", 0.2)
    assert 0.15 < time.monotonic() - started < 1.5


async def test_unprocessable_events_are_kept_and_replayed_into_the_inbox(backend: Backend) -> None:
    await backend.append_inbound([b'{"m": {"s": "web"}, "b": [' + b"[" * 1100 + b"]" * 1100 + b"]}", event("ok")])
    batch = await backend.read_inbound(10)
    assert [e.record is None for e in batch] == [True, False]  # undecodable, but read
    record = orjson.dumps({"m": {"s": "web", "w": "single"}, "b": {"event": "x", "messageId": "bad"}})
    await backend.commit_processed(
        batch, [], [], [], [], [Unprocessable("bad", "web", record, "ValueError: injected", 1.0)]
    )
    assert await backend.read_inbound(10) == []
    dead = await backend.dead_letters()
    assert [(d["integration_id"], d["message_id"], d["outcome"], d["reason"]) for d in dead] == [
        ("", "bad", UNPROCESSABLE, "ValueError: injected")
    ]
    assert dead[0]["event"]["b"]["messageId"] == "bad"
    assert await backend.replay_dead_letters([dead[0]["id"]], None, time.time()) == 1
    again = await backend.read_inbound(10)
    assert [e.raw for e in again] == [record]
    assert await backend.dead_letters() == []


async def test_dedup_keys_are_per_source(backend: Backend) -> None:
    await backend.append_inbound([event("same"), event("same")])
    batch = await backend.read_inbound(10)
    for record, source in zip(batch, ["a", "b"], strict=True):
        key = dedup_key(source, "same")
        await backend.commit_processed(
            [record], [], [(key, time.time())], [NewDelivery("hook", "same", "track", False, b"{}")], []
        )
    keys = [dedup_key(source, "same") for source in "abc"]
    assert await backend.seen_message_ids(keys, 0) == set(keys[:2])


async def test_ids_no_backend_issued_are_refused_alike(backend: Backend) -> None:
    """Replaying or discarding by an id that is not a number is refused on both backends (the API
    answers 400); an id that is a number but unknown touches nothing."""
    for bad in (["x1"], ["1; DROP TABLE dead_letters"], ["-1"], [""]):
        with pytest.raises(InvalidId):
            await backend.replay_dead_letters(bad, None, time.time())
        with pytest.raises(InvalidId):
            await backend.discard_dead_letters(bad, None)
    assert await backend.replay_dead_letters(["999999"], None, time.time()) == 0


async def test_append_log_writes_rows_outside_a_settle(backend: Backend) -> None:
    await backend.append_log([LogRow(time.time(), "hook", ("m-log",), "filtered", "consent: marketing")])
    rows = await backend.delivery_log(message_id="m-log")
    assert [(r["integration_id"], r["message_ids"], r["outcome"], r["reason"]) for r in rows] == [
        ("hook", ["m-log"], "filtered", "consent: marketing")
    ]
