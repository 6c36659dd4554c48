"""Reading a Meta Conversions API answer into one outcome per event (pure).

Meta takes a request whole or not at all: a 2xx (``{"events_received": N, ...}``) accepts every
event; an error is one ``{"error": {"message", "type", "code", "error_subcode", "is_transient",
"error_user_title", "error_user_msg", "fbtrace_id"}}`` for the request. By its code:

| code | what | outcome |
|---|---|---|
| 190, 102 (and 104: no token) | the access token is invalid, expired or missing | AUTH_FAILED, hint |
| 10, 200-299; 100 with subcode 33 | the token may not send to this pixel, or the pixel does not exist | AUTH_FAILED, hint |
| 4, 17, 32, 613, 80004; 1, 2; ``is_transient`` | rate limits, passing trouble | RETRY (``Retry-After`` honoured) |
| any other, HTTP 4xx | an event is invalid (``invalid parameter``, subcodes 2804xxx) | SPLIT |

5xx, timeouts and connection errors are retried; an answer without a Meta error object is read
by the shared rules (:func:`~datafly.destinations.base.classify_status`).
"""

from __future__ import annotations

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

__all__ = ["PIXEL_HINT", "TOKEN_HINT", "classify_meta", "error_text"]

TOKEN_HINT = (
    "Meta refused the access token (invalid, expired or revoked): generate a new one in Events Manager "
    "> the dataset's Settings > Conversions API, and update access_token."
)
PIXEL_HINT = (
    "Meta does not let this access token send events to this pixel: check pixel_id (the dataset ID in "
    "Events Manager) and that the token was generated for that dataset."
)
_TOKEN_CODES = frozenset({102, 104, 190})
_PERMISSION_CODES = frozenset({10, *range(200, 300)})
_PASSING_CODES = frozenset({1, 2, 4, 17, 32, 341, 613, 80004})  # unknown/temporary errors and rate limits
_NO_OBJECT = 33  # subcode of code 100: the object (the pixel) does not exist or cannot be reached


def _error(body: bytes) -> Mapping[str, Any] | None:
    try:
        parsed = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None
    error = parsed.get("error") if isinstance(parsed, Mapping) else None
    return error if isinstance(error, Mapping) else None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def error_text(status: int, error: Mapping[str, Any]) -> str:
    """Meta's error in one line: status, type, code/subcode, message, the user-facing title and
    text, and the fbtrace_id Meta support asks for."""
    code, subcode = error.get("code"), error.get("error_subcode")
    head = f"{status} {error.get('type') or 'error'} code {code}" + (f"/{subcode}" if subcode else "")
    parts = [
        str(part).strip()
        for part in (error.get("message"), error.get("error_user_title"), error.get("error_user_msg"))
        if part and str(part).strip()
    ]
    trace = f" (fbtrace_id {error['fbtrace_id']})" if error.get("fbtrace_id") else ""
    return f"{head}: {' — '.join(dict.fromkeys(parts)) or 'no message'}{trace}"


def classify_meta(request: OutboundRequest, response: VendorResponse) -> dict[str, ItemOutcome]:
    status = response.status
    error = _error(response.body) if status >= 300 else None
    if 200 <= status < 300:
        outcome = DONE
    elif error is None:
        outcome = classify_status(response, auth_hint=TOKEN_HINT)
    else:
        code, subcode = _int(error.get("code")), _int(error.get("error_subcode"))
        text = error_text(status, error)
        if code in _TOKEN_CODES:
            outcome = ItemOutcome(Outcome.AUTH_FAILED, f"{TOKEN_HINT} Meta said: {text}")
        elif code in _PERMISSION_CODES or (code == 100 and subcode == _NO_OBJECT):
            outcome = ItemOutcome(Outcome.AUTH_FAILED, f"{PIXEL_HINT} Meta said: {text}")
        elif code in _PASSING_CODES or error.get("is_transient") is True or status >= 500 or status == 429:
            outcome = ItemOutcome(Outcome.RETRY, text, response.retry_after())
        elif 400 <= status < 500:
            outcome = ItemOutcome(Outcome.SPLIT, text)
        else:
            outcome = ItemOutcome(Outcome.REJECTED, text)
    return {item_id: outcome for item_id in request.item_ids}
