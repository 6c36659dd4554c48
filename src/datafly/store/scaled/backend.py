"""The scale-out backend: Redis for everything on an event's path, PostgreSQL for the rest.

Chosen by the config keys ``queue: redis://...`` and ``storage: postgresql://...`` (both
required). Any number of gateway, processor and delivery processes on any number of machines
share the two servers; docs/scaling.md explains the design, what "200" guarantees and what a
Redis failover can lose.

- Redis (:mod:`datafly.store.redis_queue`): inbound shards, visitor profiles, dedup keys,
  one delivery stream per integration, retries, and the sink stream that carries log rows and
  dead letters to PostgreSQL. Atomic steps are Lua scripts (:mod:`datafly.store.redis_scripts`).
- PostgreSQL (:mod:`datafly.store.postgres`): management documents (encrypted secrets among
  them), dead letters and the delivery log, filled from the sink by whichever process is free.

Connection failures never crash a role: the gateway answers 503 while Redis is away (the
:class:`StorageUnavailable` contract), the processor and delivery workers wait, and everything
resumes when the server is back, without a restart. One line is logged when a server goes away
and one when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from datafly.config import Config
from datafly.errors import DataflyError, StorageUnavailable
from datafly.store.base import Backend
from datafly.store.home import private_home
from datafly.store.records import (
    UNPROCESSABLE,
    DeadLetter,
    InboundEvent,
    LogRow,
    NewDelivery,
    QueuedItem,
    Retry,
    Unprocessable,
)
from datafly.store.scaled.postgres import PostgresStore
from datafly.store.scaled.redis_queue import WAKE, LostShard, RedisQueue, connect
from datafly.store.signals import LocalSignals
from datafly.visitor import Profile

__all__ = ["LostShard", "ScaledBackend", "open_scaled_backend"]

log = logging.getLogger("datafly.store.scaled")
T = TypeVar("T")
_UNREACHABLE: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    OSError,
)
_PING_FAILED: tuple[type[BaseException], ...] = (*_UNREACHABLE, RedisError, TimeoutError)
_SINK_UNREACHABLE: tuple[type[BaseException], ...] = (*_UNREACHABLE, TimeoutError)
_HEARTBEAT = 2.0
_SINK_POLL = 0.5
_WRITE_RETRY_FOR = 30.0  # commit and settle are idempotent: they are retried while Redis is away


def open_scaled_backend(config: Config, home: str) -> ScaledBackend:
    storage, queue = config.storage or "", config.queue or ""
    if not storage.startswith(("postgresql://", "postgres://")) or not queue.startswith(
        ("redis://", "rediss://")
    ):
        raise DataflyError(
            "the scale-out backend needs both `storage: postgresql://...` and `queue: redis://...`"
            f" (got storage={_safe(storage) or 'unset'}, queue={_safe(queue) or 'unset'})"
        )
    if home:
        private_home(home)  # the secret key lives there
    return ScaledBackend(
        storage,
        queue,
        dedup_window=config.processing.dedup_window,
        profile_ttl=float(config.gateway.cookie_max_age),
    )


def _safe(url: str) -> str:
    """A URL without its password, for messages."""
    parts = urlsplit(url)
    if not parts.scheme:
        return url
    return f"{parts.scheme}://{parts.hostname or ''}{':' + str(parts.port) if parts.port else ''}{parts.path}"


class ScaledBackend(Backend):
    single_process: ClassVar[bool] = False  # profiles are shared: the processor must not cache them

    def __init__(self, storage: str, queue: str, dedup_window: float, profile_ttl: float) -> None:
        self.redis_where = _safe(queue)
        self.redis = connect(queue)
        self.queue = RedisQueue(self.redis, dedup_window, profile_ttl)
        self.pg = PostgresStore(storage)
        self._signals = LocalSignals()
        self._tasks: list[asyncio.Task[None]] = []
        self._listening = False
        self._redis_down_since: float | None = None
        self._flush_lock = asyncio.Lock()
        self._closing = False

    # lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        self._closing = False
        try:
            await self.queue.heartbeat()
            await self._check_durability()
            self._redis_ok()
        except _UNREACHABLE as exc:
            self._redis_failed(exc)
        with contextlib.suppress(StorageUnavailable):  # logged by the store; retried on first use
            await self.pg.migrate(manual=False)
        self._tasks = [
            asyncio.create_task(self._heartbeat_loop(), name="scaled:heartbeat"),
            asyncio.create_task(self._listen_loop(), name="scaled:signals"),
            asyncio.create_task(self._sink_loop(), name="scaled:sink"),
        ]

    async def close(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=3)
        self._tasks = []
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.flush_sink(), 3)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.queue.leave(), 2)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.redis.aclose(), 2)
        await self.pg.close()

    async def migrate(self) -> int:
        """``datafly migrate``: apply every pending PostgreSQL migration, manual ones included."""
        try:
            return await self.pg.migrate(manual=True)
        finally:
            await self.pg.close()
            with contextlib.suppress(Exception):
                await self.redis.aclose()

    async def healthy(self) -> bool:
        """Ready when Redis answers: every role's work goes through it. PostgreSQL is reported by
        :meth:`health`; ingestion and delivery go on without it."""
        try:
            await asyncio.wait_for(self.redis.ping(), 1.0)
        except _PING_FAILED as exc:
            self._redis_failed(exc)
            return False
        self._redis_ok()
        return True

    async def health(self) -> dict[str, bool]:
        redis_ok = await self.healthy()
        pg_ok = await self.pg.ping()
        return {"redis": redis_ok, "postgresql": pg_ok}

    async def _check_durability(self) -> None:
        settings: dict[Any, Any] = {}
        try:
            for name in ("appendonly", "appendfsync", "maxmemory-policy"):
                settings.update(await self.redis.config_get(name))
        except RedisError:
            log.info(
                "cannot read Redis settings at %s (CONFIG disabled?); see docs/scaling.md", self.redis_where
            )
            return
        values = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
                  for k, v in settings.items()}  # fmt: skip
        if values.get("appendonly") != "yes" or values.get("appendfsync") != "always":
            log.warning(
                "Redis at %s runs appendonly=%s appendfsync=%s: an event answered 200 can be lost if Redis"
                " stops abruptly; docs/scaling.md recommends appendonly yes, appendfsync always",
                self.redis_where,
                values.get("appendonly"),
                values.get("appendfsync"),
            )
        if values.get("maxmemory-policy") not in (None, "noeviction"):
            log.warning(
                "Redis at %s evicts keys (maxmemory-policy=%s): queued events can vanish; use noeviction",
                self.redis_where,
                values.get("maxmemory-policy"),
            )

    # connection state ------------------------------------------------------------------------
    def _redis_failed(self, exc: BaseException) -> None:
        if self._redis_down_since is None:
            self._redis_down_since = time.monotonic()
            log.error("Redis at %s is unreachable: %s: %s", self.redis_where, type(exc).__name__, exc)

    def _redis_ok(self) -> None:
        if self._redis_down_since is not None:
            log.warning(
                "Redis at %s is reachable again after %.1fs",
                self.redis_where,
                time.monotonic() - self._redis_down_since,
            )
            self._redis_down_since = None

    async def _or(self, call: Callable[[], Awaitable[T]], fallback: T) -> T:
        """``call()``, or ``fallback`` while Redis is unreachable (background roles just wait)."""
        try:
            result = await call()
        except _UNREACHABLE as exc:
            self._redis_failed(exc)
            return fallback
        self._redis_ok()
        return result

    async def _retrying(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        """``call()`` retried while Redis is unreachable, for at most ``_WRITE_RETRY_FOR`` seconds."""
        deadline = time.monotonic() + _WRITE_RETRY_FOR
        while True:
            try:
                result = await call()
            except _UNREACHABLE as exc:
                self._redis_failed(exc)
                if time.monotonic() > deadline or self._closing:
                    raise StorageUnavailable(
                        f"{what}: Redis at {self.redis_where} is unreachable: {exc}"
                    ) from exc
                await asyncio.sleep(0.25)
                continue
            self._redis_ok()
            return result

    # gateway -----------------------------------------------------------------------------
    async def append_inbound(self, events: Sequence[bytes]) -> None:
        try:
            await self.queue.append_inbound(events)
        except RedisError as exc:
            if isinstance(exc, _UNREACHABLE):
                self._redis_failed(exc)
            raise StorageUnavailable(f"Redis at {self.redis_where}: {exc}") from exc
        self._redis_ok()

    async def take_tokens(self, bucket: str, rate: float, capacity: float, count: int) -> float:
        """A token bucket shared by every gateway: 0 when ``count`` tokens were taken, else the
        seconds to wait. While Redis is away nothing is limited (the request fails anyway)."""
        return await self._or(lambda: self.queue.take_tokens(bucket, rate, capacity, count), 0.0)

    # processor ---------------------------------------------------------------------------
    async def read_inbound(self, limit: int, max_bytes: int | None = None) -> list[InboundEvent]:
        return await self._or(lambda: self.queue.read_inbound(limit), [])

    async def load_profiles(self, anonymous_ids: Sequence[str]) -> dict[str, Profile]:
        return await self._retrying(lambda: self.queue.load_profiles(anonymous_ids), "loading profiles")

    async def seen_message_ids(self, message_ids: Sequence[str], since: float) -> set[str]:
        return await self._retrying(lambda: self.queue.seen_message_ids(message_ids, since), "dedup lookup")

    async def commit_processed(
        self,
        upto: Sequence[InboundEvent],
        profiles: Sequence[Profile],
        message_ids: Sequence[tuple[str, float]],
        deliveries: Sequence[NewDelivery],
        log: Sequence[LogRow],
        unprocessable: Sequence[Unprocessable] = (),
    ) -> None:
        if upto:
            await self._retrying(
                lambda: self.queue.commit_processed(upto, profiles, message_ids, deliveries, log, unprocessable),
                "commit",
            )

    # delivery ----------------------------------------------------------------------------
    async def next_due(self, integration_id: str) -> float | None:
        return await self._or(lambda: self.queue.next_due(integration_id), None)

    async def ready_count(self, integration_id: str, now: float, cap: int) -> int:
        return await self._or(lambda: self.queue.ready_count(integration_id, now, cap), 0)

    async def lease(self, integration_id: str, limit: int, now: float, lease_for: float) -> list[QueuedItem]:
        return await self._or(lambda: self.queue.lease(integration_id, limit, now, lease_for), [])

    async def settle(
        self,
        integration_id: str,
        done: Sequence[str],
        retries: Sequence[Retry],
        dead: Sequence[DeadLetter],
        log: Sequence[LogRow],
    ) -> None:
        await self._retrying(lambda: self.queue.settle(integration_id, done, retries, dead, log), "settle")

    async def append_log(self, rows: Sequence[LogRow]) -> None:
        if rows:
            await self._retrying(lambda: self.queue.append_log(rows), "delivery log")

    async def queue_depths(self) -> dict[str, int]:
        return await self._or(self.queue.queue_depths, {})

    # dead letters and the delivery log (PostgreSQL, after the sink is copied) ----------------
    async def flush_sink(self) -> int:
        """Copy the sink's log rows and dead letters to PostgreSQL; returns how many."""
        total = 0
        async with self._flush_lock:
            while True:
                entries = await self.queue.read_sink(500, claim_after=30.0)
                if not entries:
                    return total
                logs: list[dict[str, Any]] = []
                dead: list[dict[str, Any]] = []
                for entry_id, kind, row in entries:
                    row["sink_id"] = entry_id.decode()
                    if kind == "log":
                        logs.append(row)
                    elif kind == "dead":
                        dead.append(row)
                await self.pg.insert_sink(logs, dead)
                await self.queue.ack_sink([e[0] for e in entries])
                total += len(entries)

    async def _fresh_sink(self) -> None:
        """Before a read of the log or dead letters: copy what is waiting (read your writes)."""
        try:
            await asyncio.wait_for(self.flush_sink(), 5)
        except _SINK_UNREACHABLE as exc:
            self._redis_failed(exc)

    async def dead_letters(self, integration_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        await self._fresh_sink()
        return await self.pg.dead_letters(integration_id, limit)

    async def replay_dead_letters(
        self, ids: Sequence[str] | None, integration_id: str | None, now: float
    ) -> int:
        await self._fresh_sink()
        async with self.pg.taking_dead_letters(ids, integration_id) as rows:
            by_integration: dict[str, list[tuple[str, str, bool, bytes]]] = {}
            inbox: list[bytes] = []  # unprocessable events: processed again
            for r in rows:
                if r.outcome == UNPROCESSABLE:
                    inbox.append(r.event)
                    continue
                by_integration.setdefault(r.integration_id, []).append(
                    (r.message_id, r.mapping, r.first_in_session, r.event)
                )
            for iid, items in by_integration.items():
                await self.queue.enqueue(iid, items, now)
            if inbox:
                await self.queue.append_inbound(inbox)
        for iid in by_integration:
            self.notify(f"queue:{iid}")
        return len(rows)

    async def discard_dead_letters(self, ids: Sequence[str] | None, integration_id: str | None) -> int:
        await self._fresh_sink()
        return await self.pg.discard_dead_letters(ids, integration_id)

    async def delivery_log(
        self, integration_id: str | None = None, message_id: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        await self._fresh_sink()
        return await self.pg.delivery_log(integration_id, message_id, limit)

    async def prune(self, seen_before: float, log_before: float) -> None:
        """Dedup keys expire by themselves in Redis; old log rows are deleted here."""
        with contextlib.suppress(StorageUnavailable):
            await self.pg.prune(log_before)

    # management documents ------------------------------------------------------------------
    async def list_documents(self, kind: str) -> list[dict[str, Any]]:
        return await self.pg.list_documents(kind)

    async def get_document(self, kind: str, doc_id: str) -> dict[str, Any] | None:
        return await self.pg.get_document(kind, doc_id)

    async def put_document(self, kind: str, doc_id: str, document: dict[str, Any]) -> None:
        await self.pg.put_document(kind, doc_id, document)

    async def delete_document(self, kind: str, doc_id: str) -> bool:
        return await self.pg.delete_document(kind, doc_id)

    # signals: local events, woken across processes by Redis pub/sub --------------------------
    def notify(self, channel: str) -> None:
        self._signals.notify(channel)

    async def wait(self, channel: str, timeout: float) -> None:
        if not self._listening:
            timeout = min(timeout, 0.25)  # no wake-ups from other processes: poll
        await self._signals.wait(channel, timeout)

    # background tasks ----------------------------------------------------------------------
    async def _heartbeat_loop(self) -> None:
        while True:
            try:
                await self.queue.heartbeat()
                self._redis_ok()
            except _UNREACHABLE as exc:
                self._redis_failed(exc)
            except Exception:
                log.exception("heartbeat failed")
            await asyncio.sleep(_HEARTBEAT)

    async def _listen_loop(self) -> None:
        prefix = len(WAKE)
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.psubscribe(WAKE + "*")
                self._listening = True
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None:
                        channel = message["channel"]
                        name = channel.decode() if isinstance(channel, bytes) else str(channel)
                        self._signals.notify(name[prefix:])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._listening = False
                if isinstance(exc, _UNREACHABLE):
                    self._redis_failed(exc)
                else:
                    log.exception("signal listener failed")
                await asyncio.sleep(0.5)
            finally:
                self._listening = False
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pubsub.aclose(), 1)  # type: ignore[no-untyped-call]

    async def _sink_loop(self) -> None:
        while True:
            copied = 0
            try:
                copied = await self.flush_sink()
            except asyncio.CancelledError:
                raise
            except StorageUnavailable:
                pass  # PostgreSQL is away: the rows wait in Redis
            except _UNREACHABLE as exc:
                self._redis_failed(exc)
            except Exception:
                log.exception("copying the sink to PostgreSQL failed")
            if not copied:
                await asyncio.sleep(_SINK_POLL)
