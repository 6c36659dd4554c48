"""One processed event -> one Rokt conversion record (pure: the field table of VENDOR-NOTES).

Hostile values (see datafly.destinations.wire): the record travels as JSON, so text values are
sent as JSON strings, whatever characters they hold (no header or URL is built from the event).

- ``ipAddress`` is ``context.ip`` only when it is an IP address: IPv4, or IPv6 in its compressed
  form (the field is the visitor's address as text; the doc names no version); an IPv4-mapped
  IPv6 address goes as its IPv4 address. Anything else is left out (the event does not keep the
  request's own address when it has a ``context.ip``); the conversion is still sent, matched by
  its other identifiers.
- ``userAgent`` is ``context.userAgent`` as received, ends trimmed; a raw header's bytes that the
  gateway kept as latin-1 text are read as the UTF-8 they were.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from datafly.destinations.base import Event, Skip
from datafly.destinations.rokt.event_time import parse_timestamp, rfc3339, window_problem
from datafly.destinations.rokt.identity import email_sha256, phone_sha256
from datafly.destinations.wire import undo_latin1, visitor_ip

__all__ = ["NO_IDENTIFIER", "RETAIL_FIELDS", "build_conversion"]

NO_IDENTIFIER = (
    "no identifier: A required identifier is missing. Ensure at least one of rclid, emailsha256, "
    "or mobilesha256 is present — call datafly.identify() with email or phone, "
    "or preserve the rclid URL parameter."
)
RETAIL_FIELDS = frozenset({"margin", "quantity"})


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    text = str(value).strip()
    return text or None


def _number(value: Any) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return int(number) if number.is_integer() and "." not in value else number
    return None


def _quantity(properties: Mapping[str, Any]) -> int | float | None:
    direct = _number(properties.get("quantity"))
    if direct is not None:
        return direct
    products = properties.get("products")
    if not isinstance(products, list):
        return None
    found = [q for q in (_number(_mapping(p).get("quantity")) for p in products) if q is not None]
    return sum(found) if found else None


def _rclid(event: Event) -> str | None:
    context = _mapping(event.get("context"))
    click_ids = _mapping(context.get("clickIds"))
    properties = _mapping(event.get("properties"))
    for value in (click_ids.get("rclid"), properties.get("rclid"), properties.get("rtid")):
        text = _text(value)
        if text:
            return text
    return None


def build_conversion(
    event: Event, conversion_type: str, now: datetime, extra_fields: frozenset[str] = frozenset()
) -> dict[str, Any] | Skip:
    """The Rokt ``events[]`` record for ``event``, or the reason it cannot be sent.

    ``extra_fields`` names optional fields of the preset (the retail preset's margin, quantity).
    """
    if not conversion_type:
        return Skip("no conversionType: the event is not mapped for this integration")
    moment = parse_timestamp(event.get("timestamp"))
    if moment is None:
        moment = parse_timestamp(event.get("receivedAt"))
    if moment is None:
        return Skip(f"unreadable timestamp {event.get('timestamp')!r}")
    problem = window_problem(moment, now)
    if problem:
        return Skip(problem)
    moment = min(moment, now)  # within the tolerated clock skew: never send a future time

    properties = _mapping(event.get("properties"))
    context = _mapping(event.get("context"))
    sources = (properties, _mapping(event.get("traits")), _mapping(context.get("traits")))
    order_id = _text(properties.get("order_id"))

    record: dict[str, Any] = {
        "conversionType": conversion_type,
        "conversionId": order_id or _text(event.get("messageId")),
        "eventTime": rfc3339(moment),
        "confirmationRef": order_id,
        "value": _number(properties.get("revenue")),
        "currency": _text(properties.get("currency")),
    }
    if "margin" in extra_fields:
        record["margin"] = _number(properties.get("margin"))
    if "quantity" in extra_fields:
        record["quantity"] = _quantity(properties)
    record["rclid"] = _rclid(event)
    record["emailsha256"] = email_sha256(sources)
    record["mobilesha256"] = phone_sha256(sources)
    record["ipAddress"] = visitor_ip(context.get("ip"))
    user_agent = context.get("userAgent")
    record["userAgent"] = _text(undo_latin1(user_agent)) if isinstance(user_agent, str) else None

    if not (record["rclid"] or record["emailsha256"] or record["mobilesha256"]):
        return Skip(NO_IDENTIFIER)
    return {key: value for key, value in record.items() if value is not None}
