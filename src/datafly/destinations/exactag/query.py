"""One processed event -> the Exactag S2S query and forwarded headers (pure: VENDOR-NOTES table).

Hostile values (see datafly.destinations.wire):

- query values are percent-encoded UTF-8 by ``encode_query`` (destination.py): any text is sent,
  nothing raises;
- ``X-Forwarded-For`` carries ``context.ip`` only when it is an IP address (IPv4, or IPv6 in its
  compressed form: the header takes both; an IPv4-mapped IPv6 address goes as its IPv4 address).
  Anything else is not forwarded: the header is left out (the event does not keep the request's
  own address when it has a ``context.ip``), and Exactag sees the server's address for that hit;
- ``User-Agent`` is one line of printable ASCII: control characters (CR, LF, NUL, ...) become a
  space, other non-ASCII characters are percent-encoded UTF-8 (``é`` -> ``%C3%A9``); a raw header's
  bytes that the gateway kept as latin-1 text are read as the UTF-8 they were. Nothing left: the
  header is left out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from datafly.destinations.base import Event, Skip, event_key
from datafly.destinations.wire import header_text, visitor_ip

__all__ = ["CONVERSION_EVENT", "CONVERSION_SITEGROUP", "build_hit", "is_conversion", "query_text"]

CONVERSION_EVENT = "Order Completed"
CONVERSION_SITEGROUP = "conversion"
SEARCH_EVENT = "Products Searched"


_EMPTY: Mapping[str, Any] = {}


def _mapping(value: Any) -> Mapping[str, Any]:
    if type(value) is dict:  # what a decoded event holds: skips the costlier ABC check
        return value
    return value if isinstance(value, Mapping) else _EMPTY


def _text(value: Any) -> str | None:
    """The query-string form of a value; None for absent, empty, or structured values."""
    if type(value) is str:  # the common case first: this runs a dozen times per event
        return value.strip() or None
    if value is None or isinstance(value, Mapping | list):  # (not hot: values are mostly text)
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    text = str(value).strip()
    return text or None


query_text = _text


def is_conversion(event: Event, sitegroup: str) -> bool:
    """Conversions carry order fields and the customer id.

    An event is a conversion when it is ``Order Completed`` (whatever sitegroup code the brand maps
    it to) or when it is mapped to the default conversion sitegroup ``conversion``.
    """
    return event_key(event) == CONVERSION_EVENT or sitegroup == CONVERSION_SITEGROUP


def _customer_id(user_id: Any) -> str | None:
    text = _text(user_id)
    if text and "@" in text:  # a user id that is an email is PII: Exactag gets its hash only
        return hashlib.sha256(text.lower().encode()).hexdigest()
    return text


def build_hit(
    event: Event, sitegroup: str, first_in_session: bool
) -> tuple[dict[str, str], dict[str, str]] | Skip:
    """``(query without campaign/version, headers)`` for one event, or why it is not sent."""
    if not sitegroup:
        return Skip("no sitegroup: the event is not mapped for this integration")
    euk = _text(event.get("anonymousId"))
    if not euk:
        return Skip("no anonymousId: Exactag needs the first-party user key (euk)")
    properties = _mapping(event.get("properties"))
    context = _mapping(event.get("context"))
    session = _mapping(context.get("session"))
    consent = _mapping(context.get("consent"))
    conversion = is_conversion(event, sitegroup)

    fields: dict[str, str | None] = {
        "sitegroup": sitegroup,
        "euk": euk,
        "sessionid": _text(session.get("id")),
        "sescount": _text(session.get("number")),
        "sesevent": "1" if first_in_session else "0",
        "referrer": _text(_mapping(context.get("page")).get("url")),
        "search": _text(properties.get("query")) if event_key(event) == SEARCH_EVENT else None,
        "orderid": _text(properties.get("order_id")) if conversion else None,
        "totalprice": _text(properties.get("revenue")) if conversion else None,
        "customerid": _customer_id(event.get("userId")) if conversion else None,
        "level": _text(properties.get("affiliation")) if conversion else None,
        "optout": "0" if _mapping(consent.get("canonical")).get("marketing") is True else "1",
        "consent_string": _text(consent.get("tcf_string")),
    }
    headers: dict[str, str] = {}
    ip = visitor_ip(context.get("ip"))
    if ip:
        headers["X-Forwarded-For"] = ip
    user_agent = _text(context.get("userAgent"))
    if user_agent:
        user_agent = header_text(user_agent)
        if user_agent:
            headers["User-Agent"] = user_agent
    return {k: v for k, v in fields.items() if v is not None}, headers
