"""Delivery health per integration over a recent window (default: the last hour).

Computed from the delivery log, the storage's own record, so it survives restarts and counts
every process of a scaled-out deployment. Per event:

- ``sent``: accepted by the vendor;
- ``failed``: refused by the vendor (rejected, credentials refused) or not sendable (skipped);
- ``retrying``: attempts that met a passing failure and were scheduled again;
- ``filtered``: withheld because a required consent category was not granted;
- ``dead_lettered``: dead letters created in the window (still waiting for replay or discard);
- ``p50_ms``/``p99_ms``: the vendor's answer time per request.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from datafly.outcomes import LogOutcome
from datafly.store.base import Backend

__all__ = ["WINDOW", "health_report", "percentile", "summarise"]

WINDOW = 3600.0
_FAILED = {LogOutcome.REJECTED, LogOutcome.AUTH_FAILED, LogOutcome.SKIPPED, LogOutcome.UNPROCESSABLE}
_PAGE = 2000
_MAX_ROWS = 200_000


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return round(ordered[rank - 1], 2)


def summarise(
    rows: Iterable[Mapping[str, Any]], dead: Iterable[Mapping[str, Any]], since: float
) -> dict[str, Any]:
    """Counts for one integration from its log rows and dead letters (both any age)."""
    counts = {"sent": 0, "failed": 0, "retrying": 0, "filtered": 0, "dead_lettered": 0}
    latencies: list[float] = []
    dead_recent = [d for d in dead if float(d.get("created_at") or 0) >= since]
    counts["dead_lettered"] = len(dead_recent)
    dead_ids = {(str(d["message_id"])) for d in dead_recent}
    last_error: dict[str, Any] | None = None
    for row in rows:
        if float(row["at"]) < since:
            continue
        n = len(row.get("message_ids") or ()) or 1
        outcome = row["outcome"]
        if outcome == LogOutcome.DONE:
            counts["sent"] += n
        elif outcome == LogOutcome.RETRY:
            counts["retrying"] += n
        elif outcome in _FAILED:
            counts["failed"] += n
        elif outcome == LogOutcome.FILTERED:
            counts["filtered"] += n
        elif outcome == LogOutcome.PARTIAL:
            refused = sum(1 for m in row.get("message_ids") or () if m in dead_ids) or 1
            refused = min(refused, n - 1) if n > 1 else refused
            counts["failed"] += refused
            counts["sent"] += n - refused
        if row.get("latency_ms") is not None and row.get("status"):
            latencies.append(float(row["latency_ms"]))
        if outcome not in (LogOutcome.DONE, LogOutcome.FILTERED) and last_error is None:
            last_error = {"at": row["at"], "outcome": outcome, "reason": row.get("reason", "")}
    attempts = counts["sent"] + counts["failed"]
    return {
        **counts,
        "success_rate": round(counts["sent"] / attempts, 4) if attempts else None,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "requests": len(latencies),
        "last_error": last_error,
    }


async def _recent_rows(backend: Backend, integration_id: str, since: float) -> list[dict[str, Any]]:
    """The log rows of the window, fetching more until the window is covered."""
    limit = _PAGE
    while True:
        rows = await backend.delivery_log(integration_id=integration_id, limit=limit)
        if len(rows) < limit or float(rows[-1]["at"]) < since or limit >= _MAX_ROWS:
            return rows
        limit *= 4


async def health_report(
    backend: Backend, integration_ids: Sequence[str], window: float = WINDOW, now: float | None = None
) -> dict[str, Any]:
    now = time.time() if now is None else now
    since = now - window
    depths = await backend.queue_depths()
    report: list[dict[str, Any]] = []
    for iid in integration_ids:
        rows = await _recent_rows(backend, iid, since)
        dead = await backend.dead_letters(integration_id=iid, limit=10_000)
        entry = {"integration_id": iid, **summarise(rows, dead, since)}
        entry["queued"] = depths.get(iid, 0)
        entry["dead_letters_waiting"] = len(dead)
        report.append(entry)
    return {"window_seconds": window, "since": since, "until": now, "integrations": report}
