"""An event the processor cannot process is set aside; it never blocks another (issue 14).

The processor runs here on the real embedded storage in a temporary home, with a fault injected
into the pure pipeline: whatever one event raises, that event alone becomes an "unprocessable"
dead letter with the error, the others are queued, and a replay after the fix processes it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

import datafly.processor.loop as processor_module
from datafly.config import ProcessingConfig
from datafly.observe import DebugBus, Metrics
from datafly.processing.routing import Route
from datafly.processor.loop import Processor
from datafly.store.embedded.backend import EmbeddedBackend
from datafly.store.records import UNPROCESSABLE, dedup_key, message_id_of


class _Routes:
    def routes(self) -> list[Route]:
        return [Route("hook", {"*": "default"})]


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[EmbeddedBackend]:
    store = EmbeddedBackend(str(tmp_path / "home"), "NORMAL")
    await store.start()
    try:
        yield store
    finally:
        await store.close()


def processor(backend: EmbeddedBackend, **config: Any) -> Processor:
    return Processor(backend, _Routes(), ProcessingConfig(**config), Metrics(), DebugBus())


def record(*events: dict[str, Any], source: str = "web", at: float = 1_800_000_000.0) -> bytes:
    meta = {"s": source, "ip": "203.0.113.9", "ua": "test", "v": "visitor-1", "at": at, "t": None, "w": "list"}
    return orjson.dumps({"m": meta, "b": list(events)})


def queued(home: Path) -> list[str]:
    with sqlite3.connect(home / "datafly.db") as conn:
        return [r[0] for r in conn.execute("SELECT message_id FROM queue ORDER BY id")]


async def drain(proc: Processor) -> None:
    while await proc.step():
        pass


async def test_an_event_that_raises_anything_is_set_aside_and_the_rest_go_on(
    backend: EmbeddedBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = processor_module.process_event

    def faulty(event: dict[str, Any], *args: Any) -> Any:
        if event.get("event") == "Poison":
            raise ZeroDivisionError("injected fault")
        return real(event, *args)

    monkeypatch.setattr(processor_module, "process_event", faulty)
    track = {"type": "track", "event": "Fine"}
    await backend.append_inbound(
        [
            record({**track, "messageId": "a1"}, {"type": "track", "event": "Poison", "messageId": "p1"}, {**track, "messageId": "a2"}),
            record({**track, "messageId": "a3"}),
        ]
    )
    proc = processor(backend)
    await drain(proc)
    assert queued(tmp_path / "home") == ["a1", "a2", "a3"]
    dead = await backend.dead_letters()
    assert [(d["integration_id"], d["message_id"], d["outcome"]) for d in dead] == [("", "p1", UNPROCESSABLE)]
    assert "ZeroDivisionError: injected fault" in dead[0]["reason"]
    assert dead[0]["event"]["b"] == {"type": "track", "event": "Poison", "messageId": "p1"}
    log = await backend.delivery_log(message_id="p1")
    assert [row["outcome"] for row in log] == [UNPROCESSABLE]
    assert proc.metrics.unprocessable._value.get() == 1

    # the cause fixed, a replay processes it once, and only it
    monkeypatch.setattr(processor_module, "process_event", real)
    assert await backend.replay_dead_letters([dead[0]["id"]], None, 0.0) == 1
    await drain(proc)
    assert queued(tmp_path / "home") == ["a1", "a2", "a3", "p1"]
    assert await backend.dead_letters() == []


async def test_a_profile_that_cannot_be_stored_is_traced_to_its_event(
    backend: EmbeddedBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The failure comes from the commit (encoding the profile), not from the event's own
    processing: the processor finds which event made the profile unstorable."""
    real = processor_module.process_event

    def spoiling(event: dict[str, Any], profile: Any, *args: Any) -> Any:
        if event.get("event") == "Spoil":
            profile.traits["bad"] = {1, 2}  # a set: JSON cannot hold it
        return real(event, profile, *args)

    monkeypatch.setattr(processor_module, "process_event", spoiling)
    await backend.append_inbound(
        [record({"type": "track", "event": "Ok", "messageId": f"m{i}"}) for i in range(3)]
        + [record({"type": "track", "event": "Spoil", "messageId": "s1"}, {"type": "track", "event": "Ok", "messageId": "m9"})]
    )
    await drain(processor(backend))
    assert sorted(queued(tmp_path / "home")) == ["m0", "m1", "m2", "m9"]
    dead = await backend.dead_letters()
    assert [d["message_id"] for d in dead] == ["s1"]
    assert "JSONEncodeError" in dead[0]["reason"] or "not JSON serializable" in dead[0]["reason"]


async def test_an_undecodable_stored_request_is_set_aside_whole(backend: EmbeddedBackend, tmp_path: Path) -> None:
    garbage = b'{"m": {"s": "web"}, "b": [' + b"[" * 2000 + b"]" * 2000 + b"]}"  # past the decoder's depth
    await backend.append_inbound([garbage, record({"type": "track", "event": "After", "messageId": "ok1"})])
    await drain(processor(backend))
    assert queued(tmp_path / "home") == ["ok1"]
    dead = await backend.dead_letters()
    assert [d["outcome"] for d in dead] == [UNPROCESSABLE]
    assert "could not be decoded" in dead[0]["reason"]
    assert dead[0]["event"]["undecodable"].startswith('{"m": {"s": "web"}')


@pytest.mark.parametrize(
    "event",
    [
        {"type": "track", "event": "p", "timestamp": 1e300},
        {"type": "track", "event": "p", "timestamp": "9999-12-31T23:59:59-14:00"},
        {"type": "page", "context": {"page": {"url": "http://[::1/?rclid=abc"}}},
        {"type": "track", "event": "p", "context": {"session": {"id": "s", "number": 1e300}}},
        {"type": "track", "event": "p", "properties": {"deep": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}},
    ],
    ids=["timestamp-1e300", "timestamp-year-10000", "ipv6-url", "session-number-1e300", "nested-35"],
)
async def test_events_stored_before_the_gateway_refused_them_do_not_stop_processing(
    backend: EmbeddedBackend, tmp_path: Path, event: dict[str, Any]
) -> None:
    """The inputs that halted processing in issue 14, stored as an older gateway stored them."""
    await backend.append_inbound([record({**event, "messageId": "bad"}), record({"type": "track", "event": "ok", "messageId": "good"})])
    await asyncio.wait_for(drain(processor(backend)), 10)
    assert queued(tmp_path / "home") == ["good"]
    assert [d["message_id"] for d in await backend.dead_letters()] == ["bad"]


async def test_dedup_is_per_source(backend: EmbeddedBackend, tmp_path: Path) -> None:
    """One source cannot silence another by sending its messageIds first."""
    await backend.append_inbound(
        [
            record({"type": "track", "event": "x", "messageId": "same"}, source="attacker"),
            record({"type": "track", "event": "x", "messageId": "same"}, source="web"),
            record({"type": "track", "event": "x", "messageId": "same"}, source="web"),  # a real duplicate
        ]
    )
    proc = processor(backend)
    await drain(proc)
    assert queued(tmp_path / "home") == ["same", "same"]
    assert proc.metrics.duplicates._value.get() == 1


def test_dedup_keys_name_source_and_message_unambiguously() -> None:
    assert dedup_key("a:b", "c") != dedup_key("a", "b:c")
    assert message_id_of(dedup_key("a:b", "c:d")) == "c:d"


async def test_identify_traits_are_bounded_per_visitor(backend: EmbeddedBackend, tmp_path: Path) -> None:
    big = "x" * 40_000
    await backend.append_inbound(
        [
            record({"type": "identify", "userId": "u", "traits": {"plan": "pro", "notes": big}, "messageId": "i1"}),
            record({"type": "identify", "traits": {"essay": big + big}, "messageId": "i2"}),
        ]
    )
    proc = processor(backend, max_traits_bytes=4096)
    await drain(proc)
    profile = (await backend.load_profiles(["visitor-1"]))["visitor-1"]
    assert profile.traits == {"plan": "pro"}
    assert len(orjson.dumps(profile.traits)) <= 4096
    trimmed = [r for r in await backend.delivery_log() if r["outcome"] == "trimmed"]
    assert sorted(r["message_ids"][0] for r in trimmed) == ["i1", "i2"]
    assert "notes (40,011 bytes)" in next(r["reason"] for r in trimmed if r["message_ids"] == ["i1"])
