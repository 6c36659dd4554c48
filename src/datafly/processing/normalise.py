"""Gateway-side normalisation of one incoming event: spellings, defaults, checks, PII hashing.

Runs before anything is stored, so the stored event never holds a raw email or phone.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from datafly.errors import BadRequest
from datafly.processing.pii import scrub_pii
from datafly.processing.timestamps import format_ts, parse_ts

__all__ = ["EVENT_TYPES", "RequestInfo", "normalise_event"]

EVENT_TYPES = frozenset({"track", "page", "identify", "group"})
_TOP_ALIASES = {
    "user_id": "userId",
    "anonymous_id": "anonymousId",
    "message_id": "messageId",
    "sent_at": "sentAt",
    "original_timestamp": "originalTimestamp",
    "group_id": "groupId",
    "write_key": "writeKey",
}
_CONTEXT_ALIASES = {"user_agent": "userAgent", "click_ids": "clickIds"}
_MAX_ID = 256


@dataclass(frozen=True)
class RequestInfo:
    """What the gateway knows of the request an event came in."""

    source_id: str
    ip: str
    user_agent: str
    anonymous_id: str  # the visitor cookie's id (issued now if the request had none)
    received_at: float
    phone_region: str | None = None
    received_iso: str = ""  # received_at formatted once per request

    def __post_init__(self) -> None:
        if not self.received_iso:
            object.__setattr__(self, "received_iso", format_ts(self.received_at))


def _fail(where: str, message: str) -> BadRequest:
    return BadRequest(400, f"{where}: {message}" if where else message)


def _identifier(event: dict[str, Any], key: str, where: str) -> None:
    value = event.get(key)
    if value is None or value == "":
        event.pop(key, None)
        return
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _fail(where, f"{key} must be a string")
    text = str(value)
    if len(text) > _MAX_ID:
        raise _fail(where, f"{key} is longer than {_MAX_ID} characters")
    event[key] = text


def _mapping(event: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = event.get(key)
    if value is None:
        value = {}
        event[key] = value
    if not isinstance(value, dict):
        raise _fail(where, f"{key} must be an object")
    return value


def normalise_event(
    raw: Any, info: RequestInfo, forced_type: str | None = None, where: str = ""
) -> dict[str, Any]:
    """Return the normalised event, or raise :class:`BadRequest` saying what is wrong."""
    if not isinstance(raw, dict):
        raise _fail(where, "an event must be a JSON object")
    event: dict[str, Any] = {}
    for key, value in raw.items():
        event[_TOP_ALIASES.get(str(key), str(key))] = value
    event.pop("writeKey", None)
    kind = forced_type or event.get("type")
    if not isinstance(kind, str) or kind not in EVENT_TYPES:
        raise _fail(where, f"unknown event type {kind!r} (expected one of track, page, identify, group)")
    event["type"] = kind
    if kind == "track":
        name = event.get("event")
        if not isinstance(name, str) or not name.strip():
            raise _fail(where, "a track event needs an event name in 'event'")
        if len(name) > 200:
            raise _fail(where, "the event name is longer than 200 characters")
    for key in ("userId", "anonymousId", "messageId", "groupId"):
        _identifier(event, key, where)
    if "name" in event and event["name"] is not None and not isinstance(event["name"], str):
        raise _fail(where, "name must be a string")
    properties = _mapping(event, "properties", where)
    traits = _mapping(event, "traits", where)
    context = _mapping(event, "context", where)
    for key, alias in _CONTEXT_ALIASES.items():
        if key in context:
            context[alias] = context.pop(key)

    event.setdefault("anonymousId", info.anonymous_id)
    if "messageId" not in event:
        event["messageId"] = f"{random.getrandbits(128):032x}"  # unique, not secret: no urandom call
    if "timestamp" in event:
        epoch = parse_ts(event["timestamp"])
        if epoch is None:
            raise _fail(where, f"timestamp {event['timestamp']!r} is not an ISO 8601 date-time")
        event["timestamp"] = format_ts(epoch)
    else:
        event["timestamp"] = info.received_iso
    event["receivedAt"] = info.received_iso
    event["sourceId"] = info.source_id

    if not isinstance(context.get("ip"), str) or not context.get("ip"):
        context["ip"] = info.ip
    if not isinstance(context.get("userAgent"), str) or not context.get("userAgent"):
        context["userAgent"] = info.user_agent
    page = context.get("page")
    if page is not None and not isinstance(page, dict):
        raise _fail(where, "context.page must be an object")
    if kind == "page" and not page:
        page = {k: properties[k] for k in ("url", "path", "referrer", "search", "title") if k in properties}
        if page:
            context["page"] = page
    _check_session(context, where)
    _check_consent(context, where)

    region = info.phone_region
    scrub_pii(traits, region)
    scrub_pii(properties, region)
    context_traits = context.get("traits")
    if isinstance(context_traits, dict):
        scrub_pii(context_traits, region)
    elif context_traits is not None:
        raise _fail(where, "context.traits must be an object")
    if not traits:
        event.pop("traits")
    return event


def _check_session(context: dict[str, Any], where: str) -> None:
    session = context.get("session")
    if session is None:
        return
    if not isinstance(session, dict):
        raise _fail(where, "context.session must be an object with id and number")
    if not session:
        context.pop("session")
        return
    sid = session.get("id")
    number = session.get("number")
    if sid is None or isinstance(sid, bool) or not isinstance(sid, str | int):
        raise _fail(where, "context.session.id must be a string")
    session["id"] = str(sid)
    if number is not None:
        if isinstance(number, bool) or not isinstance(number, int | float) or number < 1:
            raise _fail(where, "context.session.number must be a positive integer")
        session["number"] = int(number)


def _check_consent(context: dict[str, Any], where: str) -> None:
    consent = context.get("consent")
    if consent is None:
        return
    if not isinstance(consent, dict):
        raise _fail(where, "context.consent must be an object")
    if "tcfString" in consent:
        consent["tcf_string"] = consent.pop("tcfString")
    canonical = consent.get("canonical")
    if canonical is not None and not isinstance(canonical, dict):
        raise _fail(where, "context.consent.canonical must be an object of category: true/false")
