"""When to try again: exponential backoff with jitter, never sooner than the vendor asked."""

from __future__ import annotations

import random

from datafly.config import DeliveryConfig


def retry_delay(
    attempt: int, config: DeliveryConfig, retry_after: float | None = None, rand: float | None = None
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
    base = min(config.max_backoff, config.initial_backoff * float(2 ** max(0, attempt - 1)))
    jitter = random.random() if rand is None else rand
    delay = base * (0.5 + jitter / 2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, config.max_age))
    return delay
