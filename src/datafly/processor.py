"""The processor role: reads accepted events, runs the pure pipeline, fills the queues.

It processes events in the order they were accepted. Profiles are cached in memory when the
backend says only one processor runs (the embedded default).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

import orjson

from datafly.config import ProcessingConfig
from datafly.errors import BadRequest
from datafly.observe import DebugBus, Metrics
from datafly.processing.normalise import events_in, normalise_event, request_info
from datafly.processing.pipeline import process_event
from datafly.processing.profile import Profile
from datafly.processing.routing import Route
from datafly.store.base import Backend
from datafly.store.records import InboundEvent, LogRow, NewDelivery

log = logging.getLogger("datafly.processor")


class RouteSource(Protocol):
    """Where the processor gets the integrations as routing sees them (an IntegrationSet)."""

    def routes(self) -> list[Route]: ...

_BATCH = 200  # stored requests per step (each holds one event or a batch)
_GROUP = 500  # events per commit
# While the gateway is saturated, process in small groups and pause this many times the time a
# group took: accepting keeps priority (measured: ~4% of a flood of single events is processed
# during it); the inbox is durable and the backlog is processed at full speed as soon as the
# burst ends. (The groups are small so that the pause, capped at _MAX_PAUSE to resume quickly,
# stays 9x the group: 500 events took ~60 ms on a slow machine, and a capped 100 ms pause gave
# processing ~40% of the loop in the middle of a flood.) See docs/architecture.md, and
# processor_process.py for the processor in a process of its own.
_BUSY_GROUP = 25
_YIELD_FACTOR = 9.0
_MAX_PAUSE = 0.1
_CACHE = 50_000


class Processor:
    def __init__(
        self,
        backend: Backend,
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
        """Process until ``stop`` is set and nothing accepted is left unprocessed."""
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
        batch = await self.backend.read_inbound(_BATCH)
        start = 0
        while start < len(batch):
            busy = self.gateway_busy()
            group = _BUSY_GROUP if busy else _GROUP
            began = time.perf_counter()
            now = time.time()
            logs: list[LogRow] = []
            events: list[dict[str, Any]] = []
            end = start
            while end < len(batch) and len(events) < group:
                events.extend(self.expand(batch[end : end + 1], now, logs))
                end += 1
            await self.process(batch[start:end], events, logs)
            start = end
            if busy or self.gateway_busy():
                await asyncio.sleep(min(_MAX_PAUSE, (time.perf_counter() - began) * _YIELD_FACTOR))
        return len(batch)

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

    def expand(self, batch: list[InboundEvent], now: float, logs: list[LogRow]) -> list[dict[str, Any]]:
        """The normalised events of the stored requests (see ``datafly.gateway.ingest``)."""
        events: list[dict[str, Any]] = []
        region = self.config.phone_region
        for record in batch:
            meta, body = record.event["m"], record.event["b"]
            info = request_info(meta, region)
            forced = meta.get("t")
            for index, raw in enumerate(events_in(body, meta["w"])):
                try:
                    events.append(normalise_event(raw, info, forced, f"batch[{index}]"))
                except BadRequest as exc:  # the gateway validated it: this is a bug, record it loudly
                    log.error("accepted event could not be normalised: %s", exc.message)
                    logs.append(LogRow(now, "", (), "rejected", f"could not normalise an accepted event: {exc.message}"))
        return events

    async def process(
        self, batch: list[InboundEvent], events: list[dict[str, Any]] | None = None, logs: list[LogRow] | None = None
    ) -> None:
        now = time.time()
        logs = [] if logs is None else logs
        events = self.expand(batch, now, logs) if events is None else events
        profiles = await self._profiles({e["anonymousId"] for e in events}) if events else {}
        seen = await self.backend.seen_message_ids(
            [e["messageId"] for e in events], now - self.config.dedup_window
        )
        routes = self.integrations.routes()
        deliveries: list[NewDelivery] = []
        message_ids: list[tuple[str, float]] = []
        touched: dict[str, Profile] = {}
        for event in events:
            mid = event["messageId"]
            if mid in seen:
                self.metrics.duplicates.inc()
                self._publish({"stage": "duplicate", "message_id": mid})
                continue
            seen.add(mid)
            message_ids.append((mid, now))
            profile = profiles[event["anonymousId"]]
            result = process_event(event, profile, routes, self.config.session_timeout)
            touched[profile.anonymous_id] = profile
            body = orjson.dumps(result.event) if result.routed else b""
            for routed in result.routed:
                deliveries.append(
                    NewDelivery(routed.integration_id, mid, routed.mapping, routed.first_in_session, body)
                )
                self.metrics.routed.labels(routed.integration_id).inc()
            for filtered in result.filtered:
                logs.append(LogRow(now, filtered.integration_id, (mid,), "filtered", filtered.reason))
                self.metrics.filtered.labels(filtered.integration_id).inc()
            if self.bus.active:
                self._publish_event(result.event, result.routed, result.filtered)
        try:
            await self.backend.commit_processed(batch, list(touched.values()), message_ids, deliveries, logs)
        except BaseException:
            if self._cache is not None:
                self._cache.clear()  # the cached profiles were changed by a batch that was not stored
            raise
        self.metrics.processed.inc(len(message_ids))
        if self._cache is not None:
            for aid, profile in touched.items():
                self._cache[aid] = profile
                self._cache.move_to_end(aid)
            while len(self._cache) > _CACHE:
                self._cache.popitem(last=False)

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
