"""Reading a Rokt Conversions API answer into one outcome per item (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from datafly.destinations.base import ItemOutcome, OutboundRequest, Outcome, VendorResponse, classify_status

__all__ = ["AUTH_HINT", "BAD_REQUEST_HINT", "classify_rokt"]

AUTH_HINT = "Check the api_key (rpub-…) and api_secret (rsec-…) are correct and belong to the same account."
BAD_REQUEST_HINT = (
    "A required identifier is missing. Ensure at least one of rclid, emailsha256, or mobilesha256 "
    "is present — call datafly.identify() with email or phone, or preserve the rclid URL parameter."
)


def _json(data: bytes | None) -> Any:
    try:
        return orjson.loads(data) if data else None
    except orjson.JSONDecodeError:
        return None


def _sent_records(request: OutboundRequest) -> list[Mapping[str, Any]]:
    body = _json(request.body)
    events = body.get("events") if isinstance(body, Mapping) else None
    return [e if isinstance(e, Mapping) else {} for e in events] if isinstance(events, list) else []


def _unprocessed(response: VendorResponse) -> list[Mapping[str, Any]]:
    body = _json(response.body)
    data = body.get("data") if isinstance(body, Mapping) else None
    records = data.get("unprocessedRecords") if isinstance(data, Mapping) else None
    return [r for r in records if isinstance(r, Mapping)] if isinstance(records, list) else []


def _reason(entry: Mapping[str, Any]) -> str:
    error = entry.get("error")
    error = error if isinstance(error, Mapping) else {}
    code = str(error.get("code") or "UNPROCESSED")
    message = str(error.get("message") or "Rokt did not process this conversion")
    return f"{code}: {message}"


def _match(entry: Mapping[str, Any], sent: list[Mapping[str, Any]], free: list[int]) -> int | None:
    """The index of the sent record an unprocessed entry refers to: same record, else same conversionId."""
    record = entry.get("record")
    if not isinstance(record, Mapping):
        return None
    for index in free:
        if sent[index] == record:
            return index
    conversion_id = record.get("conversionId")
    for index in free:
        if conversion_id is not None and sent[index].get("conversionId") == conversion_id:
            return index
    return None


def classify_rokt(request: OutboundRequest, response: VendorResponse) -> dict[str, ItemOutcome]:
    status = response.status
    if 200 <= status < 300:
        outcomes = {item_id: ItemOutcome(Outcome.DONE) for item_id in request.item_ids}
        sent = _sent_records(request)
        free = list(range(min(len(sent), len(request.item_ids))))
        for entry in _unprocessed(response):
            index = _match(entry, sent, free)
            if index is not None:
                free.remove(index)
                outcomes[request.item_ids[index]] = ItemOutcome(Outcome.REJECTED, _reason(entry))
        return outcomes
    if status == 400:
        excerpt = response.body[:300].decode("utf-8", "replace").strip()
        outcome = ItemOutcome(Outcome.REJECTED, f"400: {BAD_REQUEST_HINT} Rokt said: {excerpt}".strip())
    else:
        outcome = classify_status(response, auth_hint=AUTH_HINT)
    return {item_id: outcome for item_id in request.item_ids}
