"""Token buckets: a source over its events-per-second budget gets 429."""

from __future__ import annotations

import time


class TokenBucket:
    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.capacity = burst if burst is not None else max(rate, 100.0)
        self.tokens = self.capacity
        self.updated = time.monotonic()

    def take(self, count: int) -> float:
        """Take ``count`` tokens; returns 0 when allowed, else the seconds to wait."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if count <= self.tokens:
            self.tokens -= count
            return 0.0
        return (count - self.tokens) / self.rate
