"""Reading Google's answers into outcomes (pure): the upload's, one per conversion, and the token endpoint's.

``uploadClickConversions`` with ``partialFailure: true`` answers HTTP 200 when every error is
inside the conversions: ``results[]`` has one entry per conversion (empty for a failed row) and
``partialFailureError.details[].errors[]`` names each failed row by
``location.fieldPathElements[{fieldName: "conversions", index: N}]``. Each failed row becomes its
own event's outcome, with every error Google gave for it (its code and message); the other rows
are done. Anything outside the conversions is an RPC-level error for the whole request:

| answer | outcome |
|---|---|
| 200, row without error | done |
| 200, row with errors | rejected, ``CODE: message`` per error; ``TOO_RECENT_EVENT`` and ``TOO_RECENT_CONVERSION_ACTION`` (Google: "retry after 6 hours") are retried after 6 hours, an ``internalError`` soon |
| 400 ``INVALID_ARGUMENT`` | rejected, Google's codes and messages |
| 401 ``UNAUTHENTICATED`` | auth failure (the worker already tried a fresh access token once) |
| 403 ``PERMISSION_DENIED`` | auth failure, with what to check: the developer token's access level, the customer's access, ``login_customer_id`` |
| 408, 429 ``RESOURCE_EXHAUSTED``, 5xx, no answer | retried (``Retry-After`` honoured) |
| other 4xx | rejected |

The token endpoint (OAuth2, RFC 6749 section 5.2) answers ``{"access_token", "expires_in",
"token_type"}`` or ``{"error", "error_description"}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from datafly.destinations.base import (
    AccessToken,
    ItemOutcome,
    OutboundRequest,
    Outcome,
    VendorResponse,
    classify_status,
)

__all__ = ["AUTH_HINT", "PERMISSION_HINT", "REVOKED_HINT", "classify_upload", "read_token"]

AUTH_HINT = (
    "Google refused the access token: check client_id, client_secret and refresh_token belong to "
    "the same OAuth client and to a user with access to the account."
)
PERMISSION_HINT = (
    "check the developer token (approved for Basic or Standard access: a test-only token works "
    "with test accounts only), that the OAuth user can access customer {customer}, and, when a "
    "manager account grants that access, set login_customer_id to the manager's id."
)
REVOKED_HINT = "the refresh token was revoked or expired: reconnect (create a new refresh token and set refresh_token)"
TOKEN_ERRORS = {
    "invalid_grant": REVOKED_HINT,
    "invalid_client": "the OAuth client was not found or its secret is wrong: check client_id and client_secret",
    "unauthorized_client": "this OAuth client may not use refresh tokens: check the OAuth client's type",
    "invalid_request": "the token request was refused: check client_id, client_secret and refresh_token",
}
SIX_HOURS = 6 * 3600.0
LATER = {"TOO_RECENT_EVENT": SIX_HOURS, "TOO_RECENT_CONVERSION_ACTION": SIX_HOURS}


def _json(data: bytes | None) -> Any:
    try:
        return orjson.loads(data) if data else None
    except orjson.JSONDecodeError:
        return None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def error_code(error: Mapping[str, Any]) -> tuple[str, str]:
    """``(kind, CODE)`` of a GoogleAdsError's ``errorCode`` (``{"conversionUploadError": "UNPARSEABLE_GCLID"}``)."""
    for kind, value in _mapping(error.get("errorCode")).items():
        return str(kind), str(value)
    return "", "UNKNOWN"


def _errors(status: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Every GoogleAdsError inside a ``google.rpc.Status`` (its ``details[].errors[]``)."""
    return [e for d in _list(status.get("details")) for e in _list(_mapping(d).get("errors")) if isinstance(e, Mapping)]


def _row(error: Mapping[str, Any]) -> int | None:
    for element in _list(_mapping(error.get("location")).get("fieldPathElements")):
        element = _mapping(element)
        if element.get("fieldName") == "conversions" and isinstance(element.get("index"), int):
            return int(element["index"])
    return None


def _describe(errors: list[Mapping[str, Any]]) -> str:
    return "; ".join(f"{error_code(e)[1]}: {e.get('message') or 'no message'}" for e in errors)


def _row_outcome(errors: list[Mapping[str, Any]]) -> ItemOutcome:
    reason = _describe(errors)
    codes = [error_code(e) for e in errors]
    if all(code in LATER for _, code in codes):
        return ItemOutcome(Outcome.RETRY, reason, max(LATER[code] for _, code in codes))
    if all(kind == "internalError" for kind, _ in codes):
        return ItemOutcome(Outcome.RETRY, reason)
    return ItemOutcome(Outcome.REJECTED, reason)


def _partial(request: OutboundRequest, body: Mapping[str, Any]) -> dict[str, ItemOutcome]:
    done = ItemOutcome(Outcome.DONE)
    outcomes = dict.fromkeys(request.item_ids, done)
    failure = _mapping(body.get("partialFailureError"))
    if not failure:
        return outcomes
    by_row: dict[int, list[Mapping[str, Any]]] = {}
    for error in _errors(failure):
        row = _row(error)
        if row is not None and 0 <= row < len(request.item_ids):
            by_row.setdefault(row, []).append(error)
    for row, errors in by_row.items():
        outcomes[request.item_ids[row]] = _row_outcome(errors)
    results = _list(body.get("results"))
    if len(results) == len(request.item_ids):  # a failed row's result is empty: none may pass as done
        message = str(failure.get("message") or "Google Ads did not record this conversion")
        for row, result in enumerate(results):
            if row not in by_row and not result:
                outcomes[request.item_ids[row]] = ItemOutcome(Outcome.REJECTED, message)
    return outcomes


def _rpc_reason(response: VendorResponse) -> tuple[str, str]:
    """``(status name, "CODE: message; ...")`` of an RPC-level error body."""
    error = _mapping(_mapping(_json(response.body)).get("error"))
    found = _errors(error)
    text = _describe(found) if found else str(error.get("message") or "")
    if not text:
        text = response.body[:300].decode("utf-8", "replace").strip()
    return str(error.get("status") or ""), text


def classify_upload(request: OutboundRequest, response: VendorResponse, customer: str) -> dict[str, ItemOutcome]:
    """One outcome per conversion of an ``uploadClickConversions`` request (see the module's table)."""
    status = response.status
    if 200 <= status < 300:
        body = _json(response.body)
        return _partial(request, body if isinstance(body, Mapping) else {})
    if status in (400, 401, 403):
        name, text = _rpc_reason(response)
        label = f"{status} {name}".strip()
        if status == 400:
            outcome = ItemOutcome(Outcome.REJECTED, f"{label}: {text}")
        elif status == 401:
            outcome = ItemOutcome(Outcome.AUTH_FAILED, f"{label}: {AUTH_HINT} Google said: {text}")
        else:
            hint = PERMISSION_HINT.format(customer=customer)
            outcome = ItemOutcome(Outcome.AUTH_FAILED, f"{label}: {text.rstrip('.')}. Hint: {hint}")
        return dict.fromkeys(request.item_ids, outcome)
    outcome = classify_status(response)
    if outcome.outcome is not Outcome.DONE and status >= 400:
        name, text = _rpc_reason(response)
        label = f"{status} {name}".strip()
        outcome = ItemOutcome(outcome.outcome, f"{label}: {text}" if text else label, outcome.retry_after)
    return dict.fromkeys(request.item_ids, outcome)


def read_token(response: VendorResponse) -> AccessToken | ItemOutcome:
    """The access token of a token endpoint's answer, or the outcome of the items waiting for it."""
    body = _mapping(_json(response.body))
    if response.status == 200:
        token, lifetime = body.get("access_token"), body.get("expires_in")
        if isinstance(token, str) and token and isinstance(lifetime, int | float) and not isinstance(lifetime, bool):
            return AccessToken(token, float(lifetime))
        return ItemOutcome(Outcome.RETRY, "the token endpoint answered 200 without an access_token and expires_in")
    if response.status == 0:
        return ItemOutcome(Outcome.RETRY, f"token endpoint: connection failed: {response.error}")
    code = str(body.get("error") or "")
    description = str(body.get("error_description") or "").strip()
    said = f"{code} ({description})" if code and description else code or description
    said = said or response.body[:200].decode("utf-8", "replace").strip()
    if response.status in (408, 425, 429) or response.status >= 500:
        return ItemOutcome(Outcome.RETRY, f"token endpoint {response.status}: {said}".strip(), response.retry_after())
    hint = TOKEN_ERRORS.get(code, "check client_id, client_secret and refresh_token")
    return ItemOutcome(Outcome.AUTH_FAILED, f"token endpoint {response.status}: {said}: {hint}")
