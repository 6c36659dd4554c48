"""One incoming event: its checks (the gateway and the processor both run ``validate_event``),
email and phone hashing (the gateway, before storing), and normalisation (spellings, defaults;
the processor). The hashing runs before anything is stored, so a stored event never holds a
raw email or phone.
"""

from __future__ import annotations

import functools
import random
import urllib.parse
from dataclasses import dataclass
from typing import Any

import orjson

from datafly.errors import InvalidEvent
from datafly.events import EVENT_TYPES
from datafly.inbox import RequestMeta, events_in
from datafly.processing.pii import scrub_pii
from datafly.processing.timestamps import format_ts, in_window, parse_ts

__all__ = [
    "EVENT_TYPES",
    "MAX_DEPTH",
    "RequestInfo",
    "check_nesting",
    "events_in",
    "may_hold_pii",
    "nested_too_deep",
    "nesting_possible",
    "normalise_event",
    "scrub_event",
    "validate_event",
]

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
_MAX_INT = 2**63 - 1
_MAX_SESSION = 2**31 - 1
MAX_DEPTH = 32
_ENCODER_DEPTH = 254  # orjson's encoder: the deepest value it writes
"""Objects and arrays nested in one request body, at most (the pipeline's JSON encoder stops at
254; data layers rarely pass 10)."""
_URL_KEYS = ("url", "referrer", "search")
_IDENTIFIERS = (
    ("userId", "user_id"),
    ("anonymousId", "anonymous_id"),
    ("messageId", "message_id"),
    ("groupId", "group_id"),
)


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

    @classmethod
    def of(cls, meta: RequestMeta, phone_region: str | None) -> RequestInfo:
        """What the gateway stored of the request (see :mod:`datafly.inbox`)."""
        return cls(meta.source_id, meta.ip, meta.user_agent, meta.visitor_id, meta.received_at, phone_region)


def _fail(where: str, message: str) -> InvalidEvent:
    return InvalidEvent(f"{where}: {message}" if where else message)


def validate_event(raw: Any, forced_type: str | None = None, where: str = "") -> None:
    """Raise :class:`InvalidEvent` saying what is wrong with an incoming event; reads only.

    The gateway runs this on every event before answering 200; :func:`normalise_event` accepts
    exactly what passes it. (Written for speed: it is on every request's path.)"""
    if not isinstance(raw, dict):
        raise _fail(where, "an event must be a JSON object")
    get = raw.get
    kind = forced_type or get("type")
    if not isinstance(kind, str) or kind not in EVENT_TYPES:
        raise _fail(where, f"unknown event type {kind!r} (expected one of track, page, identify, group)")
    if kind == "track":
        name = get("event")
        if not isinstance(name, str) or not name.strip():
            raise _fail(where, "a track event needs an event name in 'event'")
        if len(name) > 200:
            raise _fail(where, "the event name is longer than 200 characters")
    for camel, snake in _IDENTIFIERS:
        value = get(camel)
        if value is None:
            value = get(snake)
            if value is None:
                continue
        if value.__class__ is str:
            if len(value) > _MAX_ID:
                raise _fail(where, f"{camel} is longer than {_MAX_ID} characters")
            continue
        if value == "":
            continue
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise _fail(where, f"{camel} must be a string")
        if len(str(value)) > _MAX_ID:
            raise _fail(where, f"{camel} is longer than {_MAX_ID} characters")
    name = get("name")
    if name is not None and not isinstance(name, str):
        raise _fail(where, "name must be a string")
    for key in ("properties", "traits", "context"):
        value = get(key)
        if value is not None and not isinstance(value, dict):
            raise _fail(where, f"{key} must be an object")
    timestamp = get("timestamp")
    if timestamp is not None:
        _check_timestamp(timestamp, where)
    if kind == "page":
        properties = get("properties")
        if properties:
            _check_urls(properties, "properties", where)
    context = get("context")
    if not context:
        return
    for key in ("page", "traits", "cookies", "clickIds", "click_ids"):
        value = context.get(key)
        if value is not None and not isinstance(value, dict):
            raise _fail(where, f"context.{key} must be an object")
    page = context.get("page")
    if page:
        _check_urls(page, "context.page", where)
    if "session" in context:
        _check_session(context, where)
    if "consent" in context:
        _check_consent(context, where)


def check_nesting(body: bytes, payload: Any) -> None:
    """Refuse a request body nested deeper than :data:`MAX_DEPTH` objects and arrays."""
    if nesting_possible(body) and nested_too_deep(payload):
        raise InvalidEvent(f"the body is nested deeper than {MAX_DEPTH} levels of objects and arrays")


def nesting_possible(body: bytes) -> bool:
    """False when ``body`` has too few brackets to nest past :data:`MAX_DEPTH` (two byte counts:
    the walk of :func:`nested_too_deep` is only needed otherwise)."""
    return body.count(b"{") + body.count(b"[") > MAX_DEPTH


def nested_too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` nests more than ``limit`` levels of objects and arrays (``value`` itself
    is level 1). orjson's encoder stops at 254 levels: wrapped in ``254 - limit`` more, ``value``
    encodes exactly when it is within ``limit`` (a walk in Python cost 16 times as much). The
    wrapping lists are made once per limit and reused (no await in between: one thread uses them)."""
    outer, inner = _wrapping(limit)
    inner[0] = value
    try:
        orjson.dumps(outer)
    except orjson.JSONEncodeError:
        return True
    finally:
        inner[0] = None
    return False


@functools.cache
def _wrapping(limit: int) -> tuple[list[Any], list[Any]]:
    """``254 - limit`` nested lists: the outermost and the innermost (whose one slot takes a value)."""
    inner: list[Any] = [None]
    outer = inner
    for _ in range(_ENCODER_DEPTH - limit - 1):
        outer = [outer]
    return outer, inner


def _check_timestamp(timestamp: Any, where: str) -> None:
    epoch = parse_ts(timestamp)
    if epoch is None:
        raise _fail(
            where,
            f"timestamp {str(timestamp)[:80]!r} is not an ISO 8601 date-time or epoch seconds/milliseconds",
        )
    if not in_window(epoch):
        raise _fail(where, f"timestamp {str(timestamp)[:80]!r} is before 2000 or more than ten years ahead")


def _check_urls(fields: dict[str, Any], prefix: str, where: str) -> None:
    for key in _URL_KEYS:
        value = fields.get(key)
        if value.__class__ is not str or (value.isascii() and "[" not in value and "]" not in value):
            continue  # (urlsplit refuses only bracketed hosts and some non-ASCII hosts)
        try:
            urllib.parse.urlsplit(value)
        except ValueError as exc:
            raise _fail(where, f"{prefix}.{key} is not a URL that parses: {exc}") from None


def scrub_event(raw: dict[str, Any], phone_region: str | None) -> None:
    """Hash email and phone of an incoming (validated) event in place."""
    for key in ("traits", "properties"):
        value = raw.get(key)
        if isinstance(value, dict):
            scrub_pii(value, phone_region)
    context = raw.get("context")
    if isinstance(context, dict) and isinstance(context.get("traits"), dict):
        scrub_pii(context["traits"], phone_region)


def may_hold_pii(body: bytes) -> bool:
    """False only when the raw body certainly has no email or phone key (the gateway's fast path)."""
    find = body.lower().find  # (written out, with find: "in" and a generator cost 1.6-3x the time)
    return (
        find(b'"email') >= 0
        or find(b'"phone') >= 0
        or find(b'"mobile') >= 0
        or find(b"phonenumber") >= 0
        or find(b"phone_number") >= 0
        or find(b"\\u") >= 0
    )


def normalise_event(raw: Any, info: RequestInfo, forced_type: str | None = None, where: str = "") -> dict[str, Any]:
    """Return the normalised event (a new dict; the nested objects of ``raw`` are reused and
    changed), or raise :class:`InvalidEvent` saying what is wrong."""
    validate_event(raw, forced_type, where)
    event: dict[str, Any] = {}
    for key, value in raw.items():
        event[_TOP_ALIASES.get(str(key), str(key))] = value
    event.pop("writeKey", None)
    kind = forced_type or event["type"]
    event["type"] = kind
    for key in ("userId", "anonymousId", "messageId", "groupId"):
        value = event.get(key)
        if value is None or value == "":
            event.pop(key, None)
        else:
            event[key] = str(value)
    properties = event.get("properties") or {}
    event["properties"] = properties
    traits = event.get("traits") or {}
    event["traits"] = traits
    context = event.get("context") or {}
    event["context"] = context
    for key, alias in _CONTEXT_ALIASES.items():
        if key in context:
            context[alias] = context.pop(key)

    event.setdefault("anonymousId", info.anonymous_id)
    if "messageId" not in event:
        event["messageId"] = f"{random.getrandbits(128):032x}"  # unique, not secret: no urandom call
    timestamp = event.get("timestamp")
    event["timestamp"] = info.received_iso if timestamp is None else format_ts(parse_ts(timestamp) or info.received_at)
    event["receivedAt"] = info.received_iso
    event["sourceId"] = info.source_id

    if not isinstance(context.get("ip"), str) or not context.get("ip"):
        context["ip"] = info.ip
    if not isinstance(context.get("userAgent"), str) or not context.get("userAgent"):
        context["userAgent"] = info.user_agent
    if kind == "page" and not context.get("page"):
        page = {k: properties[k] for k in ("url", "path", "referrer", "search", "title") if k in properties}
        if page:
            context["page"] = page
    if context.get("session") == {}:
        context.pop("session")
    session = context.get("session")
    if session:
        session["id"] = str(session["id"])
        if session.get("number") is not None:
            session["number"] = int(session["number"])
    consent = context.get("consent")
    if consent and "tcfString" in consent:
        consent["tcf_string"] = consent.pop("tcfString")
    scrub_event(event, info.phone_region)
    if not traits:
        event.pop("traits")
    return event


def _check_session(context: dict[str, Any], where: str) -> None:
    session = context.get("session")
    if session is None:
        return
    if not isinstance(session, dict):
        raise _fail(where, "context.session must be an object with id and number")
    if not session:  # (an empty session is dropped by normalise_event)
        return
    sid = session.get("id")
    number = session.get("number")
    if sid is None or isinstance(sid, bool) or not isinstance(sid, str | int):
        raise _fail(where, "context.session.id must be a string")
    if isinstance(sid, int) and not -_MAX_INT <= sid <= _MAX_INT:
        raise _fail(where, "context.session.id is out of range")
    if len(str(sid)) > _MAX_ID:
        raise _fail(where, f"context.session.id is longer than {_MAX_ID} characters")
    if number is not None and (
        isinstance(number, bool) or not isinstance(number, int | float) or not 1 <= number <= _MAX_SESSION
    ):
        raise _fail(where, f"context.session.number must be an integer from 1 to {_MAX_SESSION}")


def _check_consent(context: dict[str, Any], where: str) -> None:
    consent = context.get("consent")
    if consent is None:
        return
    if not isinstance(consent, dict):
        raise _fail(where, "context.consent must be an object")
    canonical = consent.get("canonical")
    if canonical is not None and not isinstance(canonical, dict):
        raise _fail(where, "context.consent.canonical must be an object of category: true/false")
