"""ISO 8601 timestamps as the pipeline writes and reads them (UTC, milliseconds, ``Z``)."""

from __future__ import annotations

from datetime import UTC, datetime


def format_ts(epoch: float) -> str:
    # isoformat is C and ends in "+00:00" for UTC: the same text as strftime, in a third of the time
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def parse_ts(value: object) -> float | None:
    """Epoch seconds of an ISO 8601 string (or a number of seconds/milliseconds); None if unreadable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) / 1000.0 if value > 1e11 else float(value)
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()
