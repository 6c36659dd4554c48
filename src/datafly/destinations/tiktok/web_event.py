"""One processed event -> one TikTok Events API 2.0 web event, an entry of ``data`` (pure).

The fields and where each comes from (TikTok's Events API 2.0 reference for the names; Segment's
``tiktok-conversions/reportWebEvent`` default mappings and RudderStack's ``TikTokTrackV2.json``
where TikTok does not say which event value feeds a field):

=================  ==========================================================================
``event``          the mapping value (the TikTok event name, see presets.yaml)
``event_time``     the event's ``timestamp`` (else ``receivedAt``) in unix seconds; a time
                   ahead of the clock is sent as now (never a future time)
``event_id``       the event's ``messageId``: the dedup key a browser pixel given the same id
                   shares (TikTok keeps the first of one ``event`` + ``event_id`` in 48 h)
``user``           ``email``, ``phone``, ``external_id`` (SHA-256), ``ttclid``, ``ttp``
                   (see identity.py), ``ip`` (``context.ip`` when it is an IP address, in
                   canonical form, see datafly.destinations.wire; else left out), ``user_agent``
                   (``context.userAgent``), ``locale`` (``context.locale``, as Segment maps it)
``page``           ``url`` (``context.page.url``, else ``properties.url``), ``referrer``
``properties``     ``currency``, ``value`` (``value``, else ``revenue`` as Segment maps it, else
                   ``total``, else a product event's ``price`` times ``quantity``),
                   ``content_type`` (``properties.content_type`` when it is ``product`` or
                   ``product_group``, else ``product`` when there are contents: Segment's and
                   RudderStack's default), ``contents`` (``properties.contents``, else
                   ``products[]`` as RudderStack reads them: ``product_id`` (else ``sku``,
                   ``id``) → ``content_id``, ``name`` → ``content_name``, ``category`` →
                   ``content_category``, ``price``, ``quantity``, ``brand``; else the product of
                   a single-product event such as ``Product Added``), ``order_id``, ``query``
``limited_data_use``  ``properties.limited_data_use`` when it is a boolean (Segment's and
                   RudderStack's source); left out otherwise
=================  ==========================================================================

Empty values are never sent. Text travels as JSON strings, whatever characters it holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from datafly.destinations.base import Event, Skip
from datafly.destinations.tiktok.identity import (
    email_hash,
    external_id_hash,
    mapping,
    phone_hash,
    text,
    ttclid,
    ttp,
)
from datafly.destinations.wire import undo_latin1, visitor_ip

__all__ = ["CONTENT_TYPES", "build_web_event", "event_seconds", "number"]

CONTENT_TYPES = ("product", "product_group")
_CONTENT_TEXT = (("content_id", ("product_id", "sku", "id")), ("content_name", ("name",)),
                 ("content_category", ("category",)), ("brand", ("brand",)))  # fmt: skip


def number(value: Any) -> int | float | None:
    """A JSON number from a number or numeric text; None for anything else (NaN and infinities too)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, str):
        try:
            found = float(value.strip())
        except ValueError:
            return None
        if found != found or abs(found) == float("inf"):
            return None
        return int(found) if found.is_integer() and "." not in value and "e" not in value.lower() else found
    return None


def event_seconds(value: Any) -> int | None:
    """Unix seconds of an ISO 8601 time (any offset; no offset: UTC) or of epoch seconds/ms;
    None for anything else, and for a time before 1970 (TikTok takes positive seconds)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = float(value) / 1000.0 if abs(value) > 1e11 else float(value)
        return int(seconds) if seconds == seconds and 1 <= seconds < 1e11 else None
    if not isinstance(value, str) or not value.strip():
        return None
    raw = value.strip()
    if raw.endswith(("z", "Z")):
        raw = raw[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = int(moment.timestamp())
    return seconds if seconds >= 1 else None


def _content(source: Mapping[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, keys in _CONTENT_TEXT:
        value = next((t for t in (text(source.get(k)) for k in (name, *keys)) if t), None)
        if value is not None:
            found[name] = value
    for name in ("quantity", "price"):
        amount = number(source.get(name))
        if amount is not None:
            found[name] = amount
    return found


def _contents(properties: Mapping[str, Any]) -> list[dict[str, Any]]:
    for key in ("contents", "products"):
        listed = properties.get(key)
        if isinstance(listed, Mapping):
            listed = [listed]
        if isinstance(listed, list) and listed:
            return [c for c in (_content(mapping(entry)) for entry in listed) if c]
    if any(text(properties.get(k)) for k in ("product_id", "sku")):
        single = _content(properties)
        return [single] if single else []
    return []


def _value(properties: Mapping[str, Any]) -> int | float | None:
    for key in ("value", "revenue", "total"):
        found = number(properties.get(key))
        if found is not None:
            return found
    if not any(text(properties.get(k)) for k in ("product_id", "sku")):
        return None
    price = number(properties.get("price"))
    quantity = number(properties.get("quantity"))
    if price is None or quantity is None:
        return price
    return round(price * quantity, 6)


def _properties(properties: Mapping[str, Any]) -> dict[str, Any]:
    contents = _contents(properties)
    declared = text(properties.get("content_type"))
    content_type = declared if declared in CONTENT_TYPES else ("product" if contents else None)
    currency = text(properties.get("currency"))
    found: dict[str, Any] = {
        "currency": currency.upper() if currency else None,
        "value": _value(properties),
        "content_type": content_type,
        "contents": contents or None,
        "order_id": text(properties.get("order_id")),
        "query": text(properties.get("query")),
    }
    return {k: v for k, v in found.items() if v is not None}


def _user(event: Event, context: Mapping[str, Any]) -> dict[str, Any]:
    agent = context.get("userAgent")
    found: dict[str, Any] = {
        "email": email_hash(event),
        "phone": phone_hash(event),
        "external_id": external_id_hash(event),
        "ttclid": ttclid(event),
        "ttp": ttp(event),
        "ip": visitor_ip(context.get("ip")),
        "user_agent": text(undo_latin1(agent)) if isinstance(agent, str) else None,
        "locale": text(context.get("locale")),
    }
    return {k: v for k, v in found.items() if v is not None}


def _page(context: Mapping[str, Any], properties: Mapping[str, Any]) -> dict[str, Any]:
    page = mapping(context.get("page"))
    found = {
        "url": text(page.get("url")) or text(properties.get("url")),
        "referrer": text(page.get("referrer")) or text(properties.get("referrer")),
    }
    return {k: v for k, v in found.items() if v is not None}


def build_web_event(event: Event, event_name: str, now: float) -> dict[str, Any] | Skip:
    """The ``data`` entry for ``event`` sent as TikTok's ``event_name``, or why it is not sent."""
    if not event_name:
        return Skip("no TikTok event name: the event is not mapped for this integration")
    seconds = event_seconds(event.get("timestamp"))
    if seconds is None:
        seconds = event_seconds(event.get("receivedAt"))
    if seconds is None:
        return Skip(f"unreadable timestamp {event.get('timestamp')!r}: TikTok needs event_time")
    context = mapping(event.get("context"))
    properties = mapping(event.get("properties"))
    record: dict[str, Any] = {
        "event": event_name,
        "event_time": min(seconds, int(now)),
        "event_id": text(event.get("messageId")),
        "user": _user(event, context),
        "page": _page(context, properties),
        "properties": _properties(properties),
    }
    limited = properties.get("limited_data_use")
    if isinstance(limited, bool):
        record["limited_data_use"] = limited
    return {k: v for k, v in record.items() if v is not None and v != {}}
