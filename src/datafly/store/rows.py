"""What both backends show of their stored rows: one view of a dead letter, one of a delivery-log
row, and one reading of the ids a user names. The embedded and the scale-out backend select the
same columns in the same order and hand each row to these functions, so the management API
answers alike on both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from datafly.errors import InvalidId

__all__ = ["DEAD_LETTER_COLUMNS", "LOG_COLUMNS", "dead_letter_view", "log_view", "parse_ids", "stored_json"]

DEAD_LETTER_COLUMNS = (
    "id", "integration_id", "message_id", "mapping", "event", "attempts", "outcome", "reason",
    "last_request", "enqueued_at", "created_at",
)  # fmt: skip
LOG_COLUMNS = (
    "id", "at", "integration_id", "message_ids", "outcome", "reason", "request", "status", "response",
    "latency_ms", "attempt",
)  # fmt: skip


def stored_json(data: bytes | str | None) -> Any:
    """A JSON column as the management API shows it: decoded, or, when it cannot be (an
    unprocessable request kept as it came), its text cut to 4 KiB."""
    if not data:
        return None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        text = data.decode("utf-8", "replace") if isinstance(data, bytes | bytearray | memoryview) else str(data)
        return {"undecodable": text[:4096]}


def dead_letter_view(row: Sequence[Any]) -> dict[str, Any]:
    """A dead letter selected as :data:`DEAD_LETTER_COLUMNS`."""
    entry = dict(zip(DEAD_LETTER_COLUMNS, row, strict=True))
    entry["id"] = str(entry["id"])
    entry["event"] = stored_json(bytes(entry["event"]) if entry["event"] is not None else None)
    entry["last_request"] = stored_json(entry["last_request"])
    return entry


def log_view(row: Sequence[Any]) -> dict[str, Any]:
    """A delivery-log row selected as :data:`LOG_COLUMNS` (``message_ids`` a JSON text or a list)."""
    entry = dict(zip(LOG_COLUMNS, row, strict=True))
    ids = entry["message_ids"]
    entry["message_ids"] = list(ids) if isinstance(ids, list | tuple) else orjson.loads(ids)
    entry["request"] = stored_json(entry["request"])
    return entry


def parse_ids(ids: Sequence[str]) -> list[int]:
    """Dead-letter ids as stored (positive integers); anything else is :class:`InvalidId`."""
    parsed: list[int] = []
    for raw in ids:
        text = str(raw).strip()
        if not text.isdigit() or len(text) > 18:
            raise InvalidId(f"{str(raw)[:40]!r} is not a dead letter id")
        parsed.append(int(text))
    return parsed
