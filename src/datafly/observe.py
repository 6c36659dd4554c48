"""What the running pipeline tells the outside: Prometheus metrics and the live debug stream."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily

__all__ = ["Activity", "DebugBus", "Metrics", "SourceCounter"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.accepted = SourceCounter("datafly_events_accepted", "Events accepted by the gateway", r)
        self.refused = Counter("datafly_requests_refused", "Gateway requests refused", ["status"], registry=r)
        self.processed = Counter("datafly_events_processed", "Events processed", registry=r)
        self.duplicates = Counter("datafly_events_duplicate", "Events ignored as duplicates", registry=r)
        self.unprocessable = Counter(
            "datafly_events_unprocessable", "Accepted events set aside as unprocessable dead letters", registry=r
        )
        self.traits_trimmed = Counter(
            "datafly_traits_trimmed", "Visitor traits dropped to keep a profile within its bound", registry=r
        )
        self.routed = Counter(
            "datafly_events_routed", "Events queued for an integration", ["integration"], registry=r
        )
        self.filtered = Counter(
            "datafly_events_filtered",
            "Events withheld from an integration by consent",
            ["integration"],
            registry=r,
        )
        self.outcomes = Counter(
            "datafly_delivery_outcomes", "Delivery outcomes per event", ["integration", "outcome"], registry=r
        )
        self.latency = Histogram(
            "datafly_delivery_seconds",
            "From gateway receipt to the vendor's answer",
            ["integration"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
            registry=r,
        )
        self.queue_depth = Gauge(
            "datafly_queue_depth", "Events waiting per integration", ["integration"], registry=r
        )


class SourceCounter:
    """A counter per source that the gateway adds to on every request: a plain dict (the gateway
    runs in the loop's one thread), exported as a Prometheus counter with a ``source`` label. A
    ``prometheus_client`` counter takes a lock per increment, which showed on the request path."""

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.counts: dict[str, float] = {}
        registry.register(self)

    def add(self, source: str, amount: float) -> None:
        self.counts[source] = self.counts.get(source, 0) + amount

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.documentation, labels=["source"])
        for source, value in list(self.counts.items()):
            family.add_metric([source], value)
        yield family


class Activity:
    """How many requests the gateway is working on right now. The processor pauses between its
    groups only while the gateway is saturated (many requests in flight), so a burst is accepted
    at full speed while a steady stream is processed as it comes."""

    def __init__(self, saturated_at: int = 8, memory: float = 0.1) -> None:
        self.saturated_at = saturated_at
        self.memory = memory  # seconds a saturation is remembered
        self.inflight = 0
        self._last_saturated = -1e9

    def enter(self) -> None:
        self.inflight += 1
        if self.inflight >= self.saturated_at:
            self._last_saturated = time.monotonic()

    def leave(self) -> None:
        self.inflight -= 1

    def in_flight(self) -> int:
        return self.inflight

    def saturated(self) -> bool:
        """Saturated now, or within the last ``memory`` seconds. (The processor asks right after a
        group of its own, which held the loop: the requests that came in meanwhile are not read
        yet, so "in flight now" alone reads as idle in the middle of a flood.)"""
        return self.inflight >= self.saturated_at or time.monotonic() - self._last_saturated < self.memory


class DebugBus:
    """Fan-out of pipeline stages to live subscribers (the Event Debugger). Never blocks the
    pipeline: a subscriber that falls behind loses the oldest entries."""

    def __init__(self, buffer: int = 1000) -> None:
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._buffer = buffer
        self.on_activity: Callable[[bool], None] | None = None  # told when ``active`` changes

    @property
    def active(self) -> bool:
        return bool(self._subscribers)

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self._buffer)
        self._subscribers.add(queue)
        if len(self._subscribers) == 1 and self.on_activity is not None:
            self.on_activity(True)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        if queue in self._subscribers:
            self._subscribers.discard(queue)
            if not self._subscribers and self.on_activity is not None:
                self.on_activity(False)

    def publish(self, entry: dict[str, Any]) -> None:
        for queue in self._subscribers:
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(entry)
