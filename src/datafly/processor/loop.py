"""The processor role: reads accepted events, runs the pure pipeline, fills the queues.

It processes events in the order they were accepted. Profiles are cached in memory when the
backend says only one processor runs (the embedded default).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from datafly.config import ProcessingConfig
from datafly.errors import InvalidEvent
from datafly.inbox import encode
from datafly.observe import DebugBus, Metrics
from datafly.outcomes import LogOutcome
from datafly.processing.normalise import (
    MAX_DEPTH,
    RequestInfo,
    nested_too_deep,
    nesting_possible,
    normalise_event,
)
from datafly.processing.pipeline import process_event
from datafly.processing.profile import Profile, trim_traits
from datafly.processing.routing import Route
from datafly.store.records import UNPROCESSABLE, InboundEvent, LogRow, NewDelivery, Unprocessable, dedup_key

log = logging.getLogger("datafly.processor")


class ProcessorStore(Protocol):
    """What the processor needs of storage: every :class:`~datafly.store.base.Backend` has it,
    and so has the processor's own process's store (``processor/child.py``)."""

    async def read_inbound(self, limit: int, max_bytes: int | None = None) -> list[InboundEvent]: ...

    async def load_profiles(self, anonymous_ids: Sequence[str]) -> dict[str, Profile]: ...

    async def seen_message_ids(self, message_ids: Sequence[str], since: float) -> set[str]: ...

    async def commit_processed(
        self,
        upto: Sequence[InboundEvent],
        profiles: Sequence[Profile],
        message_ids: Sequence[tuple[str, float]],
        deliveries: Sequence[NewDelivery],
        log: Sequence[LogRow],
        unprocessable: Sequence[Unprocessable] = (),
    ) -> None: ...

    async def wait(self, channel: str, timeout: float) -> None: ...


class RouteSource(Protocol):
    """Where the processor gets the integrations as routing sees them (an IntegrationSet)."""

    def routes(self) -> list[Route]: ...

_BATCH = 200  # stored requests per step (each holds one event or a batch)
_BATCH_BYTES = 4 * 1024 * 1024  # and at most this much of them (beyond the first): memory stays flat
_GROUP = 500  # events per commit
# While the gateway is saturated, process in small groups and pause this many times the time a
# group took: accepting keeps priority (measured: ~4% of a flood of single events is processed
# during it); the inbox is durable and the backlog is processed at full speed as soon as the
# burst ends. (The groups are small so that the pause, capped at _MAX_PAUSE to resume quickly,
# stays 9x the group: 500 events took ~60 ms on a slow machine, and a capped 100 ms pause gave
# processing ~40% of the loop in the middle of a flood.) See docs/architecture.md, and
# processor/child.py for the processor in a process of its own.
_BUSY_GROUP = 25
_YIELD_FACTOR = 9.0
_MAX_PAUSE = 0.1
_CACHE = 50_000


class Processor:
    def __init__(
        self,
        backend: ProcessorStore,
        integrations: RouteSource,
        config: ProcessingConfig,
        metrics: Metrics,
        bus: DebugBus,
        cache_profiles: bool = True,
        gateway_busy: Callable[[], bool] | None = None,
    ) -> None:
        self.backend = backend
        self.integrations = integrations
        self.config = config
        self.metrics = metrics
        self.bus = bus
        self.gateway_busy = gateway_busy or (lambda: False)
        self._cache: OrderedDict[str, Profile] | None = OrderedDict() if cache_profiles else None

    async def run(self, stop: asyncio.Event) -> None:
        """Process until ``stop`` is set and nothing accepted is left unprocessed. An error here
        comes from storage (an event that fails is set aside by :meth:`process`): wait, retry."""
        while True:
            try:
                count = await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("processing failed; retrying in 1s")
                await asyncio.sleep(1.0)
                continue
            if count == 0:
                if stop.is_set():
                    return
                await self.backend.wait("inbound", 0.5)

    async def step(self) -> int:
        """Process the next stored requests in groups of about :data:`_GROUP` events, each group
        committed on its own; while the gateway is saturated, pause between groups so accepting
        events keeps priority over processing them (the inbox is durable)."""
        batch = await self.backend.read_inbound(_BATCH, _BATCH_BYTES)
        start = 0
        while start < len(batch):
            busy = self.gateway_busy()
            group = _BUSY_GROUP if busy else _GROUP
            began = time.perf_counter()
            end, count = start, 0
            while end < len(batch) and count < group:
                count += _event_count(batch[end])
                end += 1
            await self.process(batch[start:end])
            start = end
            if busy or self.gateway_busy():
                await asyncio.sleep(min(_MAX_PAUSE, (time.perf_counter() - began) * _YIELD_FACTOR))
        return len(batch)

    async def process(self, batch: Sequence[InboundEvent]) -> None:
        """Process and commit stored requests. An event that raises anything while it is
        processed is set aside as an unprocessable dead letter (with the error) and the group is
        processed again without it; nothing else waits on it. Errors of the storage itself
        propagate: the caller retries the group."""
        poison: dict[tuple[int, int], str] = {}
        strict = False  # check each profile after each event: finds which event spoils a commit
        while True:
            work = self.expand(batch, time.time(), poison)
            try:
                await self._process(batch, work, strict)
                return
            except _EventFailed as failed:
                if failed.key in poison:  # cannot happen: a set-aside event is not processed again
                    raise RuntimeError(f"event {failed.key} failed again after it was set aside") from failed
                poison[failed.key] = failed.reason
                log.warning("event %s of stored request %s set aside: %s", failed.key[1], failed.key[0], failed.reason)
            except orjson.JSONEncodeError:
                if strict:
                    raise
                strict = True  # a profile could not be stored: find the event that made it so

    async def _profiles(self, anonymous_ids: set[str]) -> dict[str, Profile]:
        found: dict[str, Profile] = {}
        missing = []
        for aid in anonymous_ids:
            cached = self._cache.get(aid) if self._cache is not None else None
            if cached is not None:
                found[aid] = cached
            else:
                missing.append(aid)
        if missing:
            found.update(await self.backend.load_profiles(missing))
        for aid in anonymous_ids:
            found.setdefault(aid, Profile(anonymous_id=aid))
        return found

    def expand(
        self, batch: Sequence[InboundEvent], now: float, poison: Mapping[tuple[int, int], str] | None = None
    ) -> _Work:
        """The normalised events of the stored requests (see ``datafly.gateway.ingest``); events
        that cannot be normalised, or are in ``poison``, are set aside."""
        work = _Work(now)
        region = self.config.phone_region
        for record in batch:
            stored = record.record
            if stored is None:
                work.set_aside(record, None, record.problem or "the stored request could not be decoded")
                continue
            try:
                info = RequestInfo.of(stored.meta, region)
                raws = stored.events()
                deep = nesting_possible(record.raw)
            except Exception as exc:
                work.set_aside(record, None, _reason(exc))
                continue
            forced, single = stored.meta.forced_type, stored.meta.shape == "single"
            for index, raw in enumerate(raws):
                reason = poison.get((record.token, index)) if poison else None
                if reason is None:
                    try:
                        if deep and nested_too_deep(raw):
                            raise InvalidEvent(f"nested deeper than {MAX_DEPTH} levels")
                        where = "" if single else f"batch[{index}]"
                        work.events.append((record.token, index, normalise_event(raw, info, forced, where)))
                        continue
                    except Exception as exc:  # the gateway validated it: a bug, or stored by an older version
                        reason = _reason(exc)
                work.set_aside(record, raw, reason)
        return work

    async def _process(self, batch: Sequence[InboundEvent], work: _Work, strict: bool) -> None:
        now = work.now
        events = work.events
        logs = work.logs
        profiles = await self._profiles({e["anonymousId"] for _, _, e in events}) if events else {}
        keys = [dedup_key(e["sourceId"], e["messageId"]) for _, _, e in events]  # per source
        seen = await self.backend.seen_message_ids(keys, now - self.config.dedup_window)
        routes = self.integrations.routes()
        deliveries: list[NewDelivery] = []
        message_ids: list[tuple[str, float]] = []
        touched: dict[str, Profile] = {}
        published: list[tuple[dict[str, Any], list[Any], list[Any]]] = []
        for (token, index, event), key in zip(events, keys, strict=True):
            mid = event["messageId"]
            if key in seen:
                self.metrics.duplicates.inc()
                self._publish({"stage": "duplicate", "message_id": mid})
                continue
            profile = profiles[event["anonymousId"]]
            try:
                brings_traits = event["type"] == "identify" or bool(event["context"].get("traits"))
                result = process_event(event, profile, routes, self.config.session_timeout)
                trimmed = trim_traits(profile, self.config.max_traits_bytes) if brings_traits else []
                body = orjson.dumps(result.event) if result.routed else b""
                if strict:
                    orjson.dumps(profile)
            except Exception as exc:
                self._forget(profiles)
                raise _EventFailed((token, index), _reason(exc)) from exc
            seen.add(key)
            message_ids.append((key, now))
            touched[profile.anonymous_id] = profile
            if trimmed:
                self.metrics.traits_trimmed.inc(len(trimmed))
                logs.append(LogRow(now, "", (mid,), LogOutcome.TRIMMED, "identify traits over the bound, dropped: " + ", ".join(trimmed)))
            for routed in result.routed:
                deliveries.append(NewDelivery(routed.integration_id, mid, routed.mapping, routed.first_in_session, body))
            for filtered in result.filtered:
                logs.append(LogRow(now, filtered.integration_id, (mid,), LogOutcome.FILTERED, filtered.reason))
            if self.bus.active:
                published.append((result.event, result.routed, result.filtered))
        for aside in work.unprocessable:
            logs.append(LogRow(now, "", (aside.message_id,) if aside.message_id else (), UNPROCESSABLE, aside.reason))
        try:
            await self.backend.commit_processed(
                batch, list(touched.values()), message_ids, deliveries, logs, work.unprocessable
            )
        except BaseException:
            self._forget(profiles)  # the cached profiles were changed by a batch that was not stored
            raise
        self.metrics.processed.inc(len(message_ids))
        for delivery in deliveries:
            self.metrics.routed.labels(delivery.integration_id).inc()
        for row in logs:
            if row.outcome == LogOutcome.FILTERED:
                self.metrics.filtered.labels(row.integration_id).inc()
        if work.unprocessable:
            self.metrics.unprocessable.inc(len(work.unprocessable))
            for aside in work.unprocessable:
                self._publish({"stage": UNPROCESSABLE, "message_id": aside.message_id, "reason": aside.reason})
        for entry in published:
            self._publish_event(*entry)
        if self._cache is not None:
            for aid, profile in touched.items():
                self._cache[aid] = profile
                self._cache.move_to_end(aid)
            while len(self._cache) > _CACHE:
                self._cache.popitem(last=False)

    def _forget(self, profiles: Mapping[str, Profile]) -> None:
        """Drop cached profiles that were changed in memory by a group that is not stored."""
        if self._cache is not None:
            for aid in profiles:
                self._cache.pop(aid, None)

    def _publish(self, entry: dict[str, Any]) -> None:
        if self.bus.active:
            self.bus.publish({"at": time.time(), **entry})

    def _publish_event(self, event: dict[str, Any], routed: list[Any], filtered: list[Any]) -> None:
        mid = event["messageId"]
        self._publish({"stage": "received", "message_id": mid, "event": event})
        for f in filtered:
            self._publish(
                {
                    "stage": "consent",
                    "message_id": mid,
                    "integration_id": f.integration_id,
                    "decision": "filtered",
                    "reason": f.reason,
                }
            )
        for r in routed:
            self._publish(
                {
                    "stage": "consent",
                    "message_id": mid,
                    "integration_id": r.integration_id,
                    "decision": "granted",
                    "mapping": r.mapping,
                }
            )


class _EventFailed(Exception):
    """Processing one event raised: ``key`` is (stored request token, index of the event in it)."""

    def __init__(self, key: tuple[int, int], reason: str) -> None:
        super().__init__(reason)
        self.key = key
        self.reason = reason


@dataclass
class _Work:
    """A group of stored requests taken apart: the events to process and those set aside."""

    now: float
    events: list[tuple[int, int, dict[str, Any]]] = field(default_factory=list)
    unprocessable: list[Unprocessable] = field(default_factory=list)
    logs: list[LogRow] = field(default_factory=list)

    def set_aside(self, record: InboundEvent, raw: Any, reason: str) -> None:
        """Keep ``raw`` (an event of ``record``; None: the whole request) as an unprocessable
        dead letter: an inbox record that holds it alone, so that a replay processes it again."""
        meta = record.record.meta if record.record is not None else None
        stored = record.raw
        if raw is not None and meta is not None:
            try:
                stored = encode(meta.with_shape("single"), orjson.dumps(raw))
            except (TypeError, ValueError):  # e.g. nested past the encoder: keep the request as stored
                stored = record.raw
        mid = raw.get("messageId", raw.get("message_id")) if isinstance(raw, dict) else None
        self.unprocessable.append(
            Unprocessable(
                message_id=str(mid)[:256] if isinstance(mid, str | int | float) and mid != "" else "",
                source_id=meta.source_id if meta is not None else "",
                record=stored,
                reason=reason,
                received_at=meta.received_at if meta is not None else self.now,
            )
        )


def _reason(exc: BaseException) -> str:
    message = str(exc) if isinstance(exc, InvalidEvent) else f"{type(exc).__name__}: {exc}"
    return message[:500]


def _event_count(record: InboundEvent) -> int:
    """How many events a stored request holds (for sizing groups; 1 when it cannot tell)."""
    stored = record.record
    if stored is None:
        return 1
    body, shape = stored.body, stored.meta.shape
    if shape == "list" and isinstance(body, list):
        return max(1, len(body))
    if shape == "batch" and isinstance(body, dict) and isinstance(body.get("batch"), list):
        return max(1, len(body["batch"]))
    return 1
