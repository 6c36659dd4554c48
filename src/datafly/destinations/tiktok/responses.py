"""Reading a TikTok Events API answer into one outcome per event (pure).

TikTok answers HTTP 200 whatever happened, with ``{"code", "message", "request_id", "data"}``;
the ``code`` says what (RudderStack's ``tiktok_ads/networkHandler.js`` for 0, 20001, 40100,
40700, 40001/40002; TikTok's Marketing API return codes for the authentication family 401xx):

===========================  =============================================================
``0``                        done
``20001`` partial success    done, with TikTok's message as the reason. Neither TikTok's
                             reference nor RudderStack (which counts 20001 as success) says
                             which events of the request failed, so no event is singled out
``40100`` too many requests  retry (after ``Retry-After`` when the answer has one)
``40700``, ``5xxxx``         TikTok's internal errors: retry
``40104``, ``40105``,        the access token is empty, wrong, expired or revoked:
other ``401xx``              auth failure, with :data:`AUTH_HINT`
``40001``                    no permission: an auth failure with :data:`PERMISSION_HINT` when
                             TikTok's message speaks of permission, authorisation or the token;
                             else rejected like 40002
``40002`` and other codes    the request is invalid: rejected with TikTok's message (never
                             retried: the same request would fail the same way)
===========================  =============================================================

An HTTP status other than 2xx (a proxy, an outage) is read as everywhere else
(:func:`~datafly.destinations.base.classify_status`: 401/403 auth failure, 408/429/5xx retried,
other 4xx rejected), with TikTok's message when the body carries one. A 2xx whose body has no
``code`` is retried: TikTok always sends one, and a resend is harmless (TikTok deduplicates
``event`` + ``event_id``).
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

__all__ = [
    "AUTH_HINT",
    "CODE_OK",
    "CODE_PARTIAL",
    "CODE_THROTTLED",
    "PERMISSION_HINT",
    "classify_tiktok",
    "outcome_of_code",
]

AUTH_HINT = (
    "TikTok refused the access token. Generate a new one in TikTok Events Manager (the pixel's "
    "Settings, Events API, Generate Access Token) and enter it as access_token."
)
PERMISSION_HINT = (
    "The access token has no permission for this pixel. Generate the token in the settings of "
    "the same pixel as pixel_code, in an ad account you can manage."
)
CODE_OK = 0
CODE_PARTIAL = 20001
CODE_THROTTLED = 40100
CODE_INTERNAL = 40700
CODE_NO_PERMISSION = 40001
_PERMISSION_WORDS = re.compile(r"permission|authori[sz]|access[ _-]?token|unauthori", re.IGNORECASE)


def _json(data: bytes) -> Any:
    try:
        return orjson.loads(data) if data else None
    except orjson.JSONDecodeError:
        return None


def _said(message: str) -> str:
    return f" TikTok said: {message}" if message else ""


def outcome_of_code(code: int, message: str, retry_after: float | None = None) -> ItemOutcome:
    """What TikTok's ``code`` (in an HTTP 200) means for every event of the request."""
    if code == CODE_OK:
        return DONE
    if code == CODE_PARTIAL:
        return ItemOutcome(Outcome.DONE, f"{code} partial success: {message or 'no message'}")
    if code == CODE_THROTTLED:
        return ItemOutcome(Outcome.RETRY, f"{code} throttled: {message or 'too many requests'}", retry_after)
    if code == CODE_INTERNAL or code >= 50000:
        return ItemOutcome(
            Outcome.RETRY, f"{code} TikTok internal error: {message or 'no message'}", retry_after
        )
    if 40101 <= code <= 40199:
        return ItemOutcome(Outcome.AUTH_FAILED, f"{code}: {AUTH_HINT}{_said(message)}")
    if code == CODE_NO_PERMISSION and _PERMISSION_WORDS.search(message):
        return ItemOutcome(Outcome.AUTH_FAILED, f"{code}: {PERMISSION_HINT}{_said(message)}")
    return ItemOutcome(Outcome.REJECTED, f"{code}: {message or 'TikTok refused the request'}")


def _code(body: Any) -> int | None:
    if not isinstance(body, Mapping):
        return None
    code = body.get("code")
    if isinstance(code, bool):
        return None
    if isinstance(code, int):
        return code
    if isinstance(code, str) and code.strip().isdigit():
        return int(code.strip())
    return None


def _message(body: Any) -> str:
    message = body.get("message") if isinstance(body, Mapping) else None
    return str(message).strip()[:500] if message is not None else ""


def classify_tiktok(request: OutboundRequest, response: VendorResponse) -> dict[str, ItemOutcome]:
    """One outcome for every event of ``request`` (they share it: TikTok answers per request)."""
    status = response.status
    body = _json(response.body) if status else None
    code = _code(body)
    if 200 <= status < 300:
        if code is None:
            excerpt = response.body[:300].decode("utf-8", "replace").strip()
            outcome = ItemOutcome(Outcome.RETRY, f"{status} without TikTok's code: {excerpt or 'empty body'}")
        else:
            outcome = outcome_of_code(code, _message(body), response.retry_after())
    else:
        outcome = classify_status(response, auth_hint=AUTH_HINT)
        if code is not None and outcome.outcome is not Outcome.RETRY:
            reason = f"{status} (code {code}): {_message(body) or outcome.reason}"
            if outcome.outcome is Outcome.AUTH_FAILED:
                reason = f"{status} (code {code}): {AUTH_HINT}{_said(_message(body))}"
            outcome = ItemOutcome(outcome.outcome, reason)
    return {item_id: outcome for item_id in request.item_ids}
