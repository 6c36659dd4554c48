"""Wake-ups inside one process: a worker waits on its channel until notified or timed out."""

from __future__ import annotations

import asyncio
import contextlib


class LocalSignals:
    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def _event(self, channel: str) -> asyncio.Event:
        event = self._events.get(channel)
        if event is None:
            event = self._events[channel] = asyncio.Event()
        return event

    def notify(self, channel: str) -> None:
        self._event(channel).set()

    async def wait(self, channel: str, timeout: float) -> None:
        """Return when ``channel`` is notified (now or since the last wait) or after ``timeout``."""
        event = self._event(channel)
        if not event.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), max(0.0, timeout))
        event.clear()
