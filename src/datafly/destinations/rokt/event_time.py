"""Reading an event's timestamp and checking it against the window Rokt accepts (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["MAX_AGE", "MAX_SKEW", "parse_timestamp", "rfc3339", "window_problem"]

MAX_SKEW = timedelta(minutes=5)  # a client clock this far ahead is tolerated (clamped to now)
MAX_AGE = timedelta(days=365)  # "older than 12 months" is rejected by the real API


def parse_timestamp(value: Any) -> datetime | None:
    """An aware UTC datetime from ISO 8601 text (any offset, any fraction) or epoch seconds/ms."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = float(value) / 1000.0 if abs(value) > 1e11 else float(value)
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.endswith(("z", "Z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def rfc3339(moment: datetime) -> str:
    """``2026-06-06T10:00:00Z``: UTC, whole seconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def window_problem(moment: datetime, now: datetime) -> str:
    """Why Rokt would refuse this event time, or ``""`` when it is acceptable."""
    if moment > now + MAX_SKEW:
        return f"eventTime {rfc3339(moment)} is in the future (now {rfc3339(now)}): Rokt rejects it"
    if moment < now - MAX_AGE:
        return f"eventTime {rfc3339(moment)} is older than 12 months: Rokt rejects it"
    return ""
