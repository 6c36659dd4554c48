"""What the running pipeline tells the outside: Prometheus metrics and the live debug stream."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Activity", "DebugBus", "Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.accepted = Counter(
            "datafly_events_accepted", "Events accepted by the gateway", ["source"], registry=r
        )
        self.refused = Counter("datafly_requests_refused", "Gateway requests refused", ["status"], registry=r)
        self.processed = Counter("datafly_events_processed", "Events processed", registry=r)
        self.duplicates = Counter("datafly_events_duplicate", "Events ignored as duplicates", registry=r)
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


class Activity:
    """When something last happened (the gateway touches it on every request)."""

    def __init__(self, window: float = 0.05) -> None:
        self.window = window
        self.last = 0.0

    def touch(self) -> None:
        self.last = time.monotonic()

    def recent(self) -> bool:
        return time.monotonic() - self.last < self.window


class DebugBus:
    """Fan-out of pipeline stages to live subscribers (the Event Debugger). Never blocks the
    pipeline: a subscriber that falls behind loses the oldest entries."""

    def __init__(self, buffer: int = 1000) -> None:
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._buffer = buffer

    @property
    def active(self) -> bool:
        return bool(self._subscribers)

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self._buffer)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._subscribers.discard(queue)

    def publish(self, entry: dict[str, Any]) -> None:
        for queue in self._subscribers:
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(entry)
