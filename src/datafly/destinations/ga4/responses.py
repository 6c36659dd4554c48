"""Reading a GA4 Measurement Protocol answer into one outcome per event (pure).

``/mp/collect`` answers 2xx to whatever it receives (the reference: "does not return an error code
if the payload data was malformed"): a 2xx is done for every event, since the events were checked
against GA's rules before they were sent (see :mod:`validation`). ``/debug/mp/collect`` (the
``validate`` setting) answers ``{"validationMessages": [{fieldPath, description, validationCode}]}``:
a message that names an event (``events[N]`` in its path, or "Event at index: [N]" in its
description, as GA words it) rejects that event with GA's code and text; a message about the
request as a whole (``client_id``, ``user_id``, ...) rejects every event of the request; no message
means done. Anything else is HTTP as usual: 429/5xx and transport failures are retried (after
``Retry-After``), 401/403 are credential failures, other 4xx are rejected with GA's text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from datafly.destinations.base import (
    DONE,
    ItemOutcome,
    OutboundRequest,
    Outcome,
    VendorResponse,
    classify_status,
)

__all__ = ["AUTH_HINT", "DEBUG_PATH", "classify_ga4", "validation_outcomes"]

DEBUG_PATH = "/debug/mp/collect"
AUTH_HINT = (
    "Google Analytics refused the request. Check the measurement_id (G-…) is the web stream's Measurement ID "
    "and the api_secret was created for that stream (Admin > Data streams > Measurement Protocol API secrets)."
)
_EVENT_PATH = re.compile(r"events\[(\d+)\]")
_EVENT_TEXT = re.compile(r"index:?\s*\[(\d+)\]", re.IGNORECASE)


def _json(data: bytes) -> Any:
    try:
        return orjson.loads(data) if data else None
    except orjson.JSONDecodeError:
        return None


def _event_index(message: Mapping[str, Any]) -> int | None:
    for pattern, text in ((_EVENT_PATH, message.get("fieldPath")), (_EVENT_TEXT, message.get("description"))):
        if isinstance(text, str):
            found = pattern.search(text)
            if found:
                return int(found.group(1))
    return None


def _reason(message: Mapping[str, Any]) -> str:
    code = str(message.get("validationCode") or "VALIDATION_MESSAGE")
    description = str(message.get("description") or "GA4's validation server refused the event")
    path = message.get("fieldPath")
    return f"{code}: {description}" + (f" ({path})" if path else "")


def validation_outcomes(request: OutboundRequest, body: Any) -> dict[str, ItemOutcome]:
    """Outcomes from a validation server's answer body (already parsed JSON)."""
    ids = request.item_ids
    messages = body.get("validationMessages") if isinstance(body, Mapping) else None
    if not isinstance(messages, list):
        outcome = ItemOutcome(Outcome.RETRY, "the validation server answered without validationMessages")
        return dict.fromkeys(ids, outcome)
    per_event: dict[int, list[str]] = {}
    everyone: list[str] = []
    for message in messages:
        if not isinstance(message, Mapping):
            continue
        index = _event_index(message)
        if index is not None and 0 <= index < len(ids):
            per_event.setdefault(index, []).append(_reason(message))
        else:
            everyone.append(_reason(message))
    outcomes: dict[str, ItemOutcome] = {}
    for index, item_id in enumerate(ids):
        reasons = everyone + per_event.get(index, [])
        outcomes[item_id] = ItemOutcome(Outcome.REJECTED, "; ".join(reasons)) if reasons else DONE
    return outcomes


def classify_ga4(request: OutboundRequest, response: VendorResponse) -> dict[str, ItemOutcome]:
    if 200 <= response.status < 300 and DEBUG_PATH in request.url.split("?", 1)[0]:
        return validation_outcomes(request, _json(response.body))
    outcome = classify_status(response, auth_hint=AUTH_HINT)
    return dict.fromkeys(request.item_ids, outcome)
