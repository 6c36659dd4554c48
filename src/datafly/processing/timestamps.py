"""ISO 8601 timestamps as the pipeline writes and reads them (UTC, milliseconds, ``Z``).

What an event's ``timestamp`` may be (the gateway refuses anything else, so the pipeline never
meets an instant it cannot carry):

- an ISO 8601 date-time string (``2026-12-03T09:30:00.123Z``; no offset means UTC), or
- a number: epoch seconds when below ``1e11``, epoch milliseconds otherwise;

and the instant must lie between :data:`EARLIEST` (2000-01-01T00:00:00Z) and
:data:`AHEAD` (ten years) after the moment it is checked.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

__all__ = ["AHEAD", "EARLIEST", "MILLIS_FROM", "format_ts", "in_window", "parse_ts"]

EARLIEST = 946_684_800.0  # 2000-01-01T00:00:00Z
AHEAD = 10 * 365.25 * 86_400  # ten years
MILLIS_FROM = 1e11  # a number at or above this is epoch milliseconds (1e11 s is in the year 5138)


def format_ts(epoch: float) -> str:
    # isoformat is C and ends in "+00:00" for UTC: the same text as strftime, in a third of the time
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def parse_ts(value: object) -> float | None:
    """Epoch seconds of an ISO 8601 string (or a number of seconds/milliseconds); None if
    unreadable. The result may still be out of the window: see :func:`in_window`."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
        if number != number:  # NaN (orjson never yields it, Python callers might)
            return None
        return number / 1000.0 if abs(number) >= MILLIS_FROM else number
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    try:
        dt = datetime.fromisoformat(value.strip().replace("z", "Z"))
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return dt.timestamp()
    except (ValueError, OverflowError, OSError):
        return None


def in_window(epoch: float, now: float | None = None) -> bool:
    """Whether ``epoch`` lies between :data:`EARLIEST` and :data:`AHEAD` after ``now``."""
    return EARLIEST <= epoch <= (time.time() if now is None else now) + AHEAD
