"""What only the scaled backend has to show: many processes sharing Redis and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from datafly.config import Config
from datafly.errors import StorageUnavailable
from datafly.inbox import RequestMeta, encode
from datafly.store.records import InboundEvent, NewDelivery
from datafly.store.scaled.backend import LostShard, ScaledBackend, open_scaled_backend
from datafly.store.scaled.redis_queue import CONSUMERS, SHARDS

from .servers import free_port

Opener = Callable[[], ScaledBackend]


def event(mid: str, anonymous_id: str) -> bytes:
    """An inbox record of one event, as the gateway stores it."""
    meta = RequestMeta("web", "203.0.113.1", "ua", anonymous_id, time.time(), "track", "single")
    return encode(meta, orjson.dumps({"event": "x", "messageId": mid, "anonymousId": anonymous_id}))


def body(e: InboundEvent) -> Any:
    assert e.record is not None, e.problem
    return e.record.events()[0]


@pytest.fixture
async def processes(scaled_urls: dict[str, str], tmp_path: Path) -> AsyncIterator[Opener]:
    """Factory of backends on the same servers, each as if in its own process."""
    opened: list[ScaledBackend] = []

    def open_one() -> ScaledBackend:
        backend = open_scaled_backend(Config(storage=scaled_urls["storage"], queue=scaled_urls["queue"]), "")
        opened.append(backend)
        return backend

    yield open_one
    for backend in opened:
        await backend.close()


async def started(opener: Opener) -> ScaledBackend:
    backend = opener()
    await backend.start()
    return backend


async def test_processors_share_the_shards(processes: Opener) -> None:
    a, b = await started(processes), await started(processes)
    assert len(await a.queue.balance(force=True)) == SHARDS
    await b.queue.balance(force=True)  # two live processors now: a gives half up on its next turn
    await a.queue.balance(force=True)
    await b.queue.balance(force=True)
    owned_a, owned_b = set(a.queue._owned), set(b.queue._owned)
    assert len(owned_a) == len(owned_b) == SHARDS // 2 and not owned_a & owned_b
    await b.close()  # a clean stop hands its shards over at once
    assert len(await a.queue.balance(force=True)) == SHARDS


async def test_one_message_id_is_routed_once_across_processors(processes: Opener) -> None:
    a, b = await started(processes), await started(processes)
    await a.queue.balance(force=True)
    await b.queue.balance(force=True)
    await a.queue.balance(force=True)
    await b.queue.balance(force=True)
    # the same messageId under many visitors lands on shards of both processors
    await a.append_inbound([event("dup", f"visitor-{i}") for i in range(40)])
    batches = [await a.read_inbound(500), await b.read_inbound(500)]
    assert all(batches)
    now = time.time()
    for backend, batch in zip((a, b), batches, strict=True):
        deliveries = [NewDelivery("hook", "dup", "track", False, orjson.dumps(body(e))) for e in batch[:1]]
        await backend.commit_processed(batch, [], [("dup", now)], deliveries, [])
    assert (await a.queue_depths())["hook"] == 1


async def test_a_processor_that_lost_its_shard_commits_nothing(processes: Opener) -> None:
    a = await started(processes)
    await a.append_inbound([event("m1", "v1")])
    batch = await a.read_inbound(10)
    stream, _ = a.queue._tokens[batch[0].token]
    await a.redis.set(f"{stream}:owner", "someone-else")
    deliveries = [NewDelivery("hook", "m1", "track", False, b"{}")]
    with pytest.raises(LostShard):
        await a.commit_processed(batch, [], [("m1", time.time())], deliveries, [])
    assert await a.queue_depths() == {}
    assert await a.seen_message_ids(["m1"], 0) == set()


async def test_a_dead_workers_lease_is_taken_and_not_settled_twice(processes: Opener) -> None:
    a, b = await started(processes), await started(processes)
    await a.append_inbound([event(f"m{i}", f"v{i}") for i in range(5)])
    batch = await a.read_inbound(100)
    deliveries = [NewDelivery("hook", body(e)["messageId"], "track", False, b"{}") for e in batch]
    await a.commit_processed(batch, [], [(d.message_id, time.time()) for d in deliveries], deliveries, [])
    leased = await a.lease("hook", 100, time.time(), 600)
    assert len(leased) == 5
    assert await b.lease("hook", 100, time.time(), 600) == []
    for task in a._tasks:  # a stops beating, as if killed
        task.cancel()
    await a.redis.zadd(CONSUMERS, {a.queue.me: time.time() - 60})
    assert (await b.next_due("hook") or 1e18) <= time.time()
    taken = await b.lease("hook", 100, time.time(), 600)
    assert sorted(i.id for i in taken) == sorted(i.id for i in leased)
    assert await a.queue.settle("hook", [i.id for i in leased], [], [], []) == 0  # no longer a's
    assert await b.queue.settle("hook", [i.id for i in taken], [], [], []) == 5
    assert (await b.queue_depths())["hook"] == 0


async def test_migrate_is_idempotent(processes: Opener, scaled_urls: dict[str, str]) -> None:
    backend = processes()
    first = await backend.migrate()
    again = await processes().migrate()
    assert first == again == 1
    import asyncpg

    conn = await asyncpg.connect(scaled_urls["storage"])
    try:
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == 1
    finally:
        await conn.close()


async def test_unreachable_servers_are_clear_errors(tmp_path: Path) -> None:
    dead_redis, dead_pg = free_port(), free_port()
    backend = open_scaled_backend(
        Config(
            storage=f"postgresql://u:secret@127.0.0.1:{dead_pg}/db", queue=f"redis://127.0.0.1:{dead_redis}/0"
        ),
        "",
    )
    await backend.start()
    try:
        started_at = time.monotonic()
        with pytest.raises(StorageUnavailable, match=f"Redis at redis://127.0.0.1:{dead_redis}"):
            await backend.append_inbound([event("m1", "v1")])
        assert time.monotonic() - started_at < 5
        assert await backend.healthy() is False
        assert await backend.read_inbound(10) == []
        assert await backend.next_due("hook") is None
        with pytest.raises(StorageUnavailable, match=f"PostgreSQL at 127.0.0.1:{dead_pg}/db") as info:
            await backend.list_documents("integration")
        assert "secret" not in str(info.value)
    finally:
        await backend.close()


async def test_open_needs_both_servers() -> None:
    from datafly.errors import DataflyError

    with pytest.raises(DataflyError, match="needs both"):
        open_scaled_backend(Config(queue="redis://127.0.0.1:1/0"), "")


async def test_shared_rate_limit(processes: Opener) -> None:
    a, b = await started(processes), await started(processes)
    assert await a.take_tokens("web", 10, 100, 60) == 0
    assert await b.take_tokens("web", 10, 100, 40) == 0
    wait = await a.take_tokens("web", 10, 100, 20)
    assert 1.5 < wait <= 2.1


def test_a_request_of_many_visitors_is_split_by_shard() -> None:
    from datafly.processing.normalise import events_in
    from datafly.store.scaled.redis_queue import by_shard, shard_of

    meta = {"s": "web", "ip": "1.2.3.4", "ua": "x", "v": "cookie", "at": 1.0, "t": None, "w": "batch"}
    events = [{"type": "track", "event": "e", "anonymousId": f"visitor-{i}"} for i in range(6)]
    events.append({"type": "track", "event": "no id"})  # the cookie's visitor
    body = {"batch": events, "context": {"ip": "5.6.7.8"}}
    record = orjson.dumps({"m": meta, "b": body})
    placed = by_shard([record])
    assert len(placed) > 1
    seen = []
    for shard, stored in placed:
        doc = orjson.loads(stored)
        assert doc["m"] == {**meta, "w": "list"}  # (the wire format of datafly.inbox)
        for raw in events_in(doc["b"], doc["m"]["w"]):
            assert raw["context"] == {"ip": "5.6.7.8"}  # the batch-level context went with each event
            assert shard_of(raw.get("anonymousId", "cookie")) == shard
            seen.append(raw["event"] + raw.get("anonymousId", ""))
    assert sorted(seen) == sorted(e["event"] + e.get("anonymousId", "") for e in events)
    one_visitor = orjson.dumps({"m": meta, "b": {"batch": events[:1] * 3}})
    assert by_shard([one_visitor]) == [(shard_of("visitor-0"), one_visitor)]  # stored as it came
