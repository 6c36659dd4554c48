"""The event vocabulary every layer shares: event types and the key an event is mapped by.
Imports nothing of the rest of the package."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["EVENT_TYPES", "event_key"]

EVENT_TYPES = frozenset({"track", "page", "identify", "group"})


def event_key(event: Mapping[str, Any]) -> str:
    """The key an event is mapped by: ``page``, ``identify``, ``group``, or a track event's name."""
    kind = event.get("type", "")
    return str(event.get("event", "")) if kind == "track" else str(kind)
