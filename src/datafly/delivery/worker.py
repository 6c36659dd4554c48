"""The delivery worker of one integration: lease, format, send, classify, settle.

Each integration has its own worker and its own queue, so one vendor that is slow or down
never delays another. Delivery is at-least-once: an item leaves the queue only after the
vendor's answer was classified and that decision was stored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import orjson

from datafly.config import DeliveryConfig, Integration
from datafly.delivery.backoff import retry_delay
from datafly.delivery.http import send
from datafly.destinations.base import (
    Destination,
    Formatted,
    Item,
    ItemOutcome,
    OutboundRequest,
    Outcome,
    Skip,
    VendorResponse,
    mask_text,
)
from datafly.observe import DebugBus, Metrics
from datafly.processing.timestamps import parse_ts
from datafly.store.base import Backend
from datafly.store.records import DeadLetter, LogRow, QueuedItem, Retry

log = logging.getLogger("datafly.delivery")
_EXCERPT = 2000


@dataclass
class Settlement:
    done: list[str]
    retries: list[Retry]
    dead: list[DeadLetter]
    log: list[LogRow]


def excerpt(body: bytes, limit: int = _EXCERPT) -> str:
    return body[:limit].decode("utf-8", "replace")


def decide(
    items: Sequence[QueuedItem],
    request: OutboundRequest,
    masked: str,
    response: VendorResponse,
    outcomes: dict[str, ItemOutcome],
    config: DeliveryConfig,
    now: float,
    into: Settlement,
) -> str:
    """Turn the outcome of each item of one request into done, retry or dead; returns the
    request's summary outcome for the delivery log."""
    seen: set[str] = set()
    for item in items:
        outcome = outcomes.get(item.id, ItemOutcome(Outcome.RETRY, "no outcome from the classifier"))
        seen.add(outcome.outcome.value)
        attempts = item.attempts + 1
        if outcome.outcome is Outcome.DONE:
            into.done.append(item.id)
        elif outcome.outcome is Outcome.RETRY:
            delay = retry_delay(attempts, config, outcome.retry_after)
            too_old = now + delay - item.enqueued_at > config.max_age
            if attempts >= config.max_attempts or too_old:
                why = f"gave up after {attempts} attempts" if not too_old else "older than delivery.max_age"
                into.dead.append(DeadLetter(item, attempts, "retry", f"{why}: {outcome.reason}", masked))
            else:
                into.retries.append(Retry(item.id, now + delay, attempts, outcome.reason))
        else:
            into.dead.append(DeadLetter(item, attempts, outcome.outcome.value, outcome.reason, masked))
    return seen.pop() if len(seen) == 1 else "partial"


class IntegrationWorker:
    def __init__(
        self,
        integration: Integration,
        destination: Destination,
        backend: Backend,
        config: DeliveryConfig,
        session: aiohttp.ClientSession,
        metrics: Metrics,
        bus: DebugBus,
        settings: Callable[[Integration], dict[str, Any]] | None = None,
    ) -> None:
        self.integration = integration
        self.destination = destination
        self.backend = backend
        self.config = config
        self.session = session
        self.metrics = metrics
        self.bus = bus
        self._settings = settings or (lambda i: {**i.settings, "preset": i.preset})
        self.channel = f"queue:{integration.id}"
        batch = destination.max_batch
        self.lease_size = batch * 4 if batch > 1 else max(16, config.concurrency)
        self.lease_for = config.timeout * 3 + 30
        self._limit = asyncio.Semaphore(config.concurrency)
        self._outcome_counters: dict[str, Any] = {}
        self._latency = metrics.latency.labels(integration.id)

    @property
    def loops(self) -> int:
        """Concurrent lease-send-settle loops: while one waits on the vendor or on storage, another
        sends (one-event-per-request vendors need more of them to keep requests in flight)."""
        return 4 if self.destination.max_batch == 1 else 2

    async def run(self, stop: asyncio.Event, loops: int | None = None) -> None:
        await asyncio.gather(*(self._loop(stop) for _ in range(loops or self.loops)))

    async def _loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.step(stop)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivery worker %s failed; retrying in 1s", self.integration.id)
                await asyncio.sleep(1.0)

    async def step(self, stop: asyncio.Event | None = None) -> int:
        """Deliver one leased batch when something is due; returns how many items were leased."""
        iid = self.integration.id
        now = time.time()
        due = await self.backend.next_due(iid)
        if due is None or due > now:
            wait = 5.0 if due is None else min(5.0, due - now)
            await self.backend.wait(self.channel, wait)
            return 0
        dest = self.destination
        if (
            dest.max_batch > 1
            and dest.max_wait > 0
            and due + dest.max_wait > now
            and not (stop and stop.is_set())
        ):
            ready = await self.backend.ready_count(iid, now, dest.max_batch)
            if ready < dest.max_batch:
                await self.backend.wait(self.channel, due + dest.max_wait - now)
                if time.time() < due + dest.max_wait:
                    return 0
        items = await self.backend.lease(iid, self.lease_size, time.time(), self.lease_for)
        if items:
            await self.deliver(items)
        return len(items)

    async def deliver(self, items: Sequence[QueuedItem]) -> None:
        integration = self.integration
        settings = self._settings(integration)
        secrets = self.destination.secrets_of(settings)
        endpoint = self.destination.endpoint(settings, integration.endpoint)
        by_id = {item.id: item for item in items}
        events: dict[str, dict[str, Any]] = {}
        formatted: list[Formatted] = []
        result = Settlement([], [], [], [])
        now = time.time()
        for item in items:
            event = orjson.loads(item.event)
            events[item.id] = event
            try:
                # the vendor payload, then the integration's field-source overrides (``fields:``)
                shaped = self.destination.format_for(
                    Item(item.id, event, item.mapping, item.first_in_session), settings, integration.fields
                )
            except Exception as exc:  # a formatter bug must not block the queue
                log.exception("formatting failed for %s", integration.id)
                shaped = Skip(f"could not format the event: {type(exc).__name__}: {exc}")
            if isinstance(shaped, Skip):
                result.dead.append(DeadLetter(item, item.attempts, "skipped", shaped.reason, ""))
                result.log.append(
                    LogRow(
                        now,
                        integration.id,
                        (item.message_id,),
                        "skipped",
                        shaped.reason,
                        attempt=item.attempts,
                    )
                )
                self._publish("skipped", item.message_id, reason=shaped.reason)
            else:
                formatted.append(shaped)
        requests = self.destination.build_requests(formatted, settings, endpoint) if formatted else []
        answers = await asyncio.gather(*(self._send(r) for r in requests))
        now = time.time()
        for request, response in zip(requests, answers, strict=True):
            request_items = [by_id[i] for i in request.item_ids]
            masked = orjson.dumps(request.masked(secrets)).decode()
            outcomes = {  # a vendor may echo the request back: its answer is masked like the request
                item_id: replace(o, reason=mask_text(o.reason, secrets)) if secrets and o.reason else o
                for item_id, o in self.destination.classify(request, response).items()
            }
            summary = decide(request_items, request, masked, response, outcomes, self.config, now, result)
            reasons = sorted({o.reason for o in outcomes.values() if o.reason})
            result.log.append(
                LogRow(
                    at=now,
                    integration_id=integration.id,
                    message_ids=tuple(i.message_id for i in request_items),
                    outcome=summary,
                    reason="; ".join(reasons)[:1000],
                    request=masked,
                    status=response.status or None,
                    response=mask_text(excerpt(response.body) if response.status else response.error, secrets),
                    latency_ms=round(response.latency_ms, 2),
                    attempt=max(i.attempts for i in request_items) + 1,
                )
            )
            self._observe(request_items, events, outcomes, response, masked, now, secrets)
        await self.backend.settle(integration.id, result.done, result.retries, result.dead, result.log)

    async def _send(self, request: OutboundRequest) -> VendorResponse:
        async with self._limit:
            return await send(self.session, request, self.config.timeout)

    def _observe(
        self,
        items: Sequence[QueuedItem],
        events: dict[str, dict[str, Any]],
        outcomes: dict[str, ItemOutcome],
        response: VendorResponse,
        masked: str,
        now: float,
        secrets: list[str],
    ) -> None:
        iid = self.integration.id
        for item in items:
            outcome = outcomes.get(item.id)
            name = outcome.outcome.value if outcome else "retry"
            counter = self._outcome_counters.get(name)
            if counter is None:
                counter = self._outcome_counters[name] = self.metrics.outcomes.labels(iid, name)
            counter.inc()
            if name == "done":
                received = parse_ts(events[item.id].get("receivedAt"))
                if received:
                    self._latency.observe(max(0.0, now - received))
        if self.bus.active:
            for item in items:
                outcome = outcomes.get(item.id)
                self._publish(
                    "response",
                    item.message_id,
                    outcome=outcome.outcome.value if outcome else "retry",
                    reason=outcome.reason if outcome else "",
                    status=response.status,
                    request=orjson.loads(masked),
                    response=mask_text(excerpt(response.body, 500) if response.status else response.error, secrets),
                    latency_ms=round(response.latency_ms, 2),
                )

    def _publish(self, stage: str, message_id: str, **data: Any) -> None:
        if self.bus.active:
            self.bus.publish(
                {
                    "stage": stage,
                    "at": time.time(),
                    "integration_id": self.integration.id,
                    "message_id": message_id,
                    **data,
                }
            )
