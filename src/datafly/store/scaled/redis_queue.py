"""Redis half of the scale-out backend: inbound shards, profiles, dedup keys, delivery queues.

Every key name is here (``df:`` prefix):

================================  =====================================================================
``df:in:<k>``                     inbound stream shard k (0..15, by crc32 of the visitor id), group
                                  ``processors``; one processor owns a shard at a time, so a visitor's
                                  events are processed in order by one process
``df:in:<k>:owner``               the shard's lock: the owning processor's consumer name, PX 10 s
``df:processors``                 zset consumer -> last heartbeat of every processor (fair shares)
``df:seen:<messageId>``           dedup key, ``SET NX EX <dedup window>``
``df:profile:<anonymousId>``      the visitor profile (JSON), expires with the visitor cookie
``df:q:<integration>``            the integration's delivery stream, group ``delivery``
``df:q:<integration>:delayed``    zset entry id -> due time of items waiting for a retry
``df:q:<integration>:retry``      hash entry id -> the fields of a retrying item (JSON)
``df:q:<integration>:leases``     zset entry id -> lease deadline of items being delivered
``df:integrations``               set of integration ids that have a queue
``df:consumers``                  zset consumer -> last heartbeat of every process (dead after 15 s)
``df:sink``                       stream of log rows and dead letters on their way to PostgreSQL,
                                  group ``pgsink``
``df:wake:<channel>``             pub/sub channel: ``inbound``, ``queue:<integration>``
``df:rate:<source>``              a shared token bucket (hash)
================================  =====================================================================
"""

from __future__ import annotations

import math
import os
import random
import socket
import time
import uuid
import zlib
from collections.abc import Sequence
from typing import Any, cast

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from datafly.inbox import InvalidRecord, decode, encode_events
from datafly.store.records import (
    UNPROCESSABLE,
    DeadLetter,
    InboundEvent,
    LogRow,
    NewDelivery,
    QueuedItem,
    Unprocessable,
    inbound_record,
    message_id_of,
)
from datafly.store.records import Retry as RetryRow
from datafly.store.scaled import redis_scripts
from datafly.visitor import Profile

SHARDS = 16
PROCESSORS_GROUP = "processors"
DELIVERY_GROUP = "delivery"
SINK_GROUP = "pgsink"
SHARD_LOCK_MS = 10_000  # a processor that stops renewing loses its shards after this
PROCESS_DEAD_AFTER = 15.0  # a process without a heartbeat for this long is dead: its leases are taken
SINK = "df:sink"
PROCESSORS = "df:processors"
CONSUMERS = "df:consumers"
INTEGRATIONS = "df:integrations"
WAKE = "df:wake:"


def inbound_key(shard: int) -> str:
    return f"df:in:{shard}"


def shard_lock(shard: int) -> str:
    return f"df:in:{shard}:owner"


def queue_key(integration_id: str) -> str:
    return f"df:q:{integration_id}"


def queue_keys(integration_id: str) -> list[str]:
    q = queue_key(integration_id)
    return [q, f"{q}:delayed", f"{q}:retry", CONSUMERS, f"{q}:leases"]


def seen_key(message_id: str) -> str:
    return f"df:seen:{message_id}"


def profile_key(anonymous_id: str) -> str:
    return f"df:profile:{anonymous_id}"


def rate_key(name: str) -> str:
    return f"df:rate:{name}"


def shard_of(anonymous_id: str) -> int:
    return zlib.crc32(anonymous_id.encode()) % SHARDS


def _visitor(event: Any, fallback: str) -> str:
    if isinstance(event, dict):
        found = event.get("anonymousId") or event.get("anonymous_id")
        if found:
            return str(found)
    return fallback


def by_shard(records: Sequence[bytes]) -> list[tuple[int, bytes]]:
    """Where each stored record goes: the shard of its visitor, so that one processor sees a
    visitor's events in order. A stored request whose events belong to visitors of several shards
    is split into one request per shard, its events listed (see :mod:`datafly.inbox`)."""
    placed: list[tuple[int, bytes]] = []
    for raw in records:
        try:
            record = decode(raw)
        except InvalidRecord:  # (a replayed unprocessable request): the processor sets it aside
            placed.append((shard_of(""), raw))
            continue
        meta = record.meta
        groups: dict[int, list[Any]] = {}
        for event in record.events():
            groups.setdefault(shard_of(_visitor(event, meta.visitor_id)), []).append(event)
        if len(groups) <= 1:
            placed.append((next(iter(groups), shard_of(meta.visitor_id)), raw))
            continue
        for shard, part in groups.items():
            placed.append((shard, encode_events(meta, part)))
    return placed


def consumer_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def connect(url: str) -> aioredis.Redis:
    """A client that fails fast (2 s to connect) and retries once on a dropped connection."""
    return aioredis.Redis.from_url(
        url,
        decode_responses=False,
        socket_connect_timeout=2.0,
        socket_timeout=10.0,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        health_check_interval=15,
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _fields(raw: Sequence[Any]) -> dict[str, bytes]:
    return {_text(raw[i]): raw[i + 1] for i in range(0, len(raw), 2)}


class LostShard(Exception):
    """This processor no longer owns a shard of the batch; another one will process it."""


class RedisQueue:
    def __init__(self, client: aioredis.Redis, dedup_window: float, profile_ttl: float) -> None:
        self.redis = client
        self.me = consumer_name()
        self.dedup_window = dedup_window
        self.profile_ttl = profile_ttl
        self._owned: list[int] = []
        self._balanced_at = 0.0
        self._offset = random.randrange(SHARDS)
        self._tokens: dict[int, tuple[str, bytes]] = {}
        self._next_token = 0
        self._lease = client.register_script(redis_scripts.LEASE)
        self._next_due = client.register_script(redis_scripts.NEXT_DUE)
        self._ready = client.register_script(redis_scripts.READY_COUNT)
        self._settle = client.register_script(redis_scripts.SETTLE)
        self._commit = client.register_script(redis_scripts.COMMIT)
        self._balance = client.register_script(redis_scripts.BALANCE)
        self._release = client.register_script(redis_scripts.RELEASE)
        self._take = client.register_script(redis_scripts.TAKE_TOKENS)

    # liveness ----------------------------------------------------------------------------
    async def heartbeat(self) -> None:
        now = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(CONSUMERS, {self.me: now})
            pipe.zremrangebyscore(CONSUMERS, "-inf", now - 86400)
            await pipe.execute()

    async def leave(self) -> None:
        """A clean stop: hand the shards over and stop counting as a processor."""
        async with self.redis.pipeline(transaction=False) as pipe:
            await self._release(keys=[shard_lock(k) for k in range(SHARDS)], args=[self.me], client=pipe)
            pipe.zrem(PROCESSORS, self.me)
            await pipe.execute()
        self._owned = []

    # gateway -----------------------------------------------------------------------------
    async def append_inbound(self, events: Sequence[bytes]) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            for shard, record in by_shard(events):
                pipe.xadd(inbound_key(shard), {"e": record})
            pipe.publish(WAKE + "inbound", b"1")
            await pipe.execute()

    async def take_tokens(self, bucket: str, rate: float, capacity: float, count: int) -> float:
        wait = await self._take(keys=[rate_key(bucket)], args=[rate, capacity, count, time.time()])
        return float(wait)

    # processor ---------------------------------------------------------------------------
    async def balance(self, force: bool = False) -> list[int]:
        now = time.time()
        if force or now - self._balanced_at >= 1.0 or not self._owned:
            doc = {
                "me": self.me,
                "now": repr(now),
                "dead_before": repr(now - SHARD_LOCK_MS / 1000),
                "ttl": str(SHARD_LOCK_MS),
                "shards": str(SHARDS),
                "offset": str(self._offset),
                "procs": PROCESSORS,
                "stream": "df:in:",
            }
            owned = await self._balance(args=[orjson.dumps(doc)])
            self._owned = sorted(int(k) for k in owned)
            self._balanced_at = now
        return self._owned

    async def read_inbound(self, limit: int, max_bytes: int | None = None) -> list[InboundEvent]:
        self._tokens = {}
        owned = await self.balance()
        if not owned:
            return []
        per_shard = max(50, limit // len(owned))
        batch = await self._read(owned, "0", per_shard)  # what this process was given and did not commit
        if not batch:
            batch = await self._read(owned, ">", per_shard)
        return batch

    async def _read(self, shards: Sequence[int], start: str, count: int) -> list[InboundEvent]:
        streams: dict[Any, Any] = {inbound_key(k): start for k in shards}
        reply: Any = await self.redis.xreadgroup(PROCESSORS_GROUP, self.me, streams, count=count)
        found: list[InboundEvent] = []
        gone: list[tuple[str, bytes]] = []
        for stream, entries in reply or []:
            key = _text(stream)
            for entry_id, fields in entries:
                if not fields:  # deleted while pending
                    gone.append((key, entry_id))
                    continue
                self._next_token += 1
                self._tokens[self._next_token] = (key, entry_id)
                found.append(inbound_record(self._next_token, fields[b"e"]))
        if gone:
            async with self.redis.pipeline(transaction=True) as pipe:
                for key, entry_id in gone:
                    pipe.xack(key, PROCESSORS_GROUP, entry_id)
                await pipe.execute()
        return found

    async def load_profiles(self, anonymous_ids: Sequence[str]) -> dict[str, Profile]:
        ids = list(anonymous_ids)
        found: dict[str, Profile] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            values = await self.redis.mget([profile_key(a) for a in chunk])
            for aid, value in zip(chunk, values, strict=True):
                if value is not None:
                    found[aid] = Profile.from_json(aid, value)
        return found

    async def seen_message_ids(self, message_ids: Sequence[str], since: float) -> set[str]:
        ids = list(message_ids)
        seen: set[str] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            values = await self.redis.mget([seen_key(m) for m in chunk])
            seen.update(m for m, v in zip(chunk, values, strict=True) if v is not None and float(v) >= since)
        return seen

    async def commit_processed(
        self,
        upto: Sequence[InboundEvent],
        profiles: Sequence[Profile],
        message_ids: Sequence[tuple[str, float]],
        deliveries: Sequence[NewDelivery],
        log: Sequence[LogRow],
        unprocessable: Sequence[Unprocessable] = (),
    ) -> int:
        acks = [self._tokens[e.token] for e in upto if e.token in self._tokens]
        streams = {key for key, _ in acks}
        locks = sorted(f"{key}:owner" for key in streams)
        now = time.time()
        doc = {
            "me": self.me,
            "lock_ms": str(SHARD_LOCK_MS),
            "now": repr(now),
            "dedup_s": str(max(1, math.ceil(self.dedup_window))),
            "profile_ttl": str(max(1, math.ceil(self.profile_ttl))),
            "locks": locks,
            "mids": [[key, message_id_of(key)] for key, _ in message_ids],
            "profiles": [[p.anonymous_id, orjson.dumps(p.to_dict()).decode()] for p in profiles],
            "deliveries": [
                [
                    d.integration_id,
                    d.message_id,
                    d.mapping,
                    "1" if d.first_in_session else "0",
                    d.event.decode(),
                ]
                for d in deliveries
            ],
            "logs": [
                [r.message_ids[0] if r.message_ids else "", orjson.dumps(r.to_dict()).decode()] for r in log
            ],
            "dead": [orjson.dumps(unprocessable_row(u, now)).decode() for u in unprocessable],
            "acks": [[key, _text(entry_id)] for key, entry_id in acks],
            "seen": "df:seen:",
            "profile": "df:profile:",
            "queue": "df:q:",
            "sink": SINK,
            "integrations": INTEGRATIONS,
            "wake": WAKE + "queue:",
        }
        try:
            accepted = await self._commit(args=[orjson.dumps(doc)])
        except ResponseError as exc:
            if "DATAFLY_LOST_SHARD" in str(exc):
                self._balanced_at = 0.0
                raise LostShard(str(exc)) from exc
            raise
        for token in [e.token for e in upto]:
            self._tokens.pop(token, None)
        return int(accepted)

    # delivery ----------------------------------------------------------------------------
    async def next_due(self, integration_id: str) -> float | None:
        now = time.time()
        due = await self._next_due(
            keys=queue_keys(integration_id),
            args=[DELIVERY_GROUP, self.me, repr(now), repr(now - PROCESS_DEAD_AFTER)],
        )
        return None if due is None else float(due)

    async def ready_count(self, integration_id: str, now: float, cap: int) -> int:
        count = await self._ready(
            keys=queue_keys(integration_id),
            args=[DELIVERY_GROUP, self.me, repr(now), repr(time.time() - PROCESS_DEAD_AFTER), cap],
        )
        return int(count)

    async def lease(self, integration_id: str, limit: int, now: float, lease_for: float) -> list[QueuedItem]:
        entries = await self._lease(
            keys=queue_keys(integration_id),
            args=[
                DELIVERY_GROUP,
                self.me,
                limit,
                repr(now),
                repr(lease_for),
                repr(time.time() - PROCESS_DEAD_AFTER),
            ],
        )
        items = []
        for entry in entries:
            if not entry or not entry[1]:
                continue
            f = _fields(entry[1])
            items.append(
                QueuedItem(
                    id=_text(entry[0]),
                    integration_id=integration_id,
                    message_id=f["m"].decode(),
                    mapping=f["p"].decode(),
                    first_in_session=f["f"] == b"1",
                    event=f["e"],
                    attempts=int(f["a"]),
                    enqueued_at=float(f["t"]),
                )
            )
        return items

    async def settle(
        self,
        integration_id: str,
        done: Sequence[str],
        retries: Sequence[RetryRow],
        dead: Sequence[DeadLetter],
        log: Sequence[LogRow],
    ) -> int:
        now = time.time()
        doc = {
            "group": DELIVERY_GROUP,
            "me": self.me,
            "done": list(done),
            "retries": [[r.id, repr(r.due_at), str(r.attempts)] for r in retries],
            "dead": [[d.item.id, orjson.dumps(dead_letter_row(d, now)).decode()] for d in dead],
            "logs": [orjson.dumps(r.to_dict()).decode() for r in log],
        }
        stream, delayed, retry, _, leases = queue_keys(integration_id or "-")
        keys = [stream, delayed, retry, SINK, leases]
        settled = await self._settle(keys=keys, args=[orjson.dumps(doc)])
        return int(settled)

    async def enqueue(
        self, integration_id: str, items: Sequence[tuple[str, str, bool, bytes]], now: float
    ) -> None:
        """Put ``(message id, mapping, first in session, event)`` items on a queue (dead-letter replay)."""
        key = queue_key(integration_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            for message_id, mapping, first, event in items:
                pipe.xadd(
                    key,
                    {
                        "m": message_id,
                        "p": mapping,
                        "f": "1" if first else "0",
                        "e": event,
                        "a": "0",
                        "t": repr(now),
                    },
                )
            pipe.sadd(INTEGRATIONS, integration_id)
            pipe.publish(f"{WAKE}queue:{integration_id}", b"1")
            await pipe.execute()

    async def append_log(self, rows: Sequence[LogRow]) -> None:
        """Log rows outside a settle (filtered events and the like), to the sink like a settle's."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for row in rows:
                pipe.xadd(SINK, {"k": "log", "d": orjson.dumps(row.to_dict())})
            await pipe.execute()

    async def queue_depths(self) -> dict[str, int]:
        ids = sorted(_text(i) for i in await self.redis.smembers(INTEGRATIONS))
        if not ids:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for iid in ids:
                pipe.xlen(queue_key(iid))
                pipe.zcard(f"{queue_key(iid)}:delayed")
            counts = await pipe.execute()
        return {iid: int(counts[2 * i]) + int(counts[2 * i + 1]) for i, iid in enumerate(ids)}

    # the sink -----------------------------------------------------------------------------
    async def read_sink(self, count: int, claim_after: float) -> list[tuple[bytes, str, dict[str, Any]]]:
        """Sink entries for this process to copy: its own unfinished ones, abandoned ones, new ones."""
        try:
            await self.redis.xgroup_create(SINK, SINK_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        reply: Any = await self.redis.xreadgroup(SINK_GROUP, self.me, {SINK: "0"}, count=count)
        entries: Any = reply[0][1] if reply else []
        if not entries:
            claimed: Any = await self.redis.xautoclaim(
                SINK, SINK_GROUP, self.me, int(claim_after * 1000), count=count
            )
            entries = claimed[1]
        if not entries:
            reply = await self.redis.xreadgroup(SINK_GROUP, self.me, {SINK: ">"}, count=count)
            entries = reply[0][1] if reply else []
        found: list[tuple[bytes, str, dict[str, Any]]] = []
        for entry_id, fields in entries:
            if fields:
                found.append(
                    (entry_id, fields[b"k"].decode(), cast(dict[str, Any], orjson.loads(fields[b"d"])))
                )
            else:
                found.append((entry_id, "", {}))
        return found

    async def ack_sink(self, entry_ids: Sequence[bytes]) -> None:
        if entry_ids:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.xack(SINK, SINK_GROUP, *entry_ids)
                pipe.xdel(SINK, *entry_ids)
                await pipe.execute()


def dead_letter_row(dead: DeadLetter, now: float) -> dict[str, Any]:
    item = dead.item
    return {
        "integration_id": item.integration_id,
        "message_id": item.message_id,
        "mapping": item.mapping,
        "first_in_session": item.first_in_session,
        "event": item.event.decode(),
        "attempts": dead.attempts,
        "outcome": dead.outcome,
        "reason": dead.reason,
        "last_request": dead.last_request,
        "enqueued_at": item.enqueued_at,
        "created_at": now,
    }


def unprocessable_row(aside: Unprocessable, now: float) -> dict[str, Any]:
    """The sink's dead-letter row of an event the processor set aside (no integration)."""
    return {
        "integration_id": "",
        "message_id": aside.message_id,
        "mapping": "",
        "first_in_session": False,
        "event": aside.record.decode("utf-8", "replace"),
        "attempts": 0,
        "outcome": UNPROCESSABLE,
        "reason": aside.reason,
        "last_request": "",
        "enqueued_at": aside.received_at,
        "created_at": now,
    }
