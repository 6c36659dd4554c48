"""One processed event -> one Meta server event (pure: Meta's server event parameters).

| field | value |
|---|---|
| ``event_name`` | from the preset's event mapping (a Meta standard event such as ``Purchase``) |
| ``event_time`` | the event's timestamp, unix seconds; a clock up to 5 minutes ahead is clamped to now |
| ``action_source`` | ``website`` |
| ``event_source_url`` | ``context.page.url`` (required for website events) |
| ``referrer_url`` | ``context.page.referrer`` |
| ``event_id`` | the event's ``messageId``: Meta deduplicates it against a pixel event given the same id |
| ``user_data`` | see :mod:`datafly.destinations.meta.user_data` |
| ``custom_data`` | ``value`` (``revenue``, else ``total``, ``value``, ``price``), ``currency`` (upper case), ``order_id``, ``contents`` ``[{id, quantity, item_price}]`` and ``content_ids`` from ``products[]`` (or the event's own product fields), ``content_type: product``, ``num_items``, ``search_string`` (``query``) |

Not sent, with the reason (:class:`Skip`), because Meta refuses the whole request for one such
event: an ``event_time`` older than 7 days or more than 5 minutes ahead, a website event without
``event_source_url`` or ``client_user_agent``, a ``Purchase`` without ``value`` and ``currency``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from datafly.destinations.base import Event, Skip
from datafly.destinations.meta.user_data import build_user_data
from datafly.processing.timestamps import parse_ts

__all__ = ["MAX_AGE", "MAX_SKEW", "build_server_event", "problem_of"]

# "If any event_time in data is greater than 7 days in the past, we return an error for the entire
# request and process no events" (Meta's server event parameters)
MAX_AGE = 7 * 86_400  # seconds
MAX_SKEW = 300  # seconds a client clock may run ahead (clamped to now)
_EMPTY: Mapping[str, Any] = {}


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else _EMPTY


def _text(value: Any) -> str | None:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        return None
    text = str(value).strip()
    return text or None


def _number(value: Any) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        if not math.isfinite(number):
            return None
        whole = number.is_integer() and "." not in value and abs(number) < 2**53  # (an int JSON can carry)
        return int(number) if whole else number
    return None


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _contents(properties: Mapping[str, Any]) -> list[dict[str, Any]]:
    products = properties.get("products")
    listed = products if isinstance(products, list) else [properties]
    contents = []
    for product in listed:
        product = _mapping(product)
        product_id = _text(product.get("product_id")) or _text(product.get("sku")) or _text(product.get("id"))
        if product_id is None:
            continue
        quantity = _number(product.get("quantity"))
        content: dict[str, Any] = {"id": product_id}
        if isinstance(quantity, int) and quantity > 0:
            content["quantity"] = quantity
        price = _number(product.get("price"))
        if price is not None:
            content["item_price"] = price
        contents.append(content)
    return contents


def build_custom_data(properties: Mapping[str, Any]) -> dict[str, Any]:
    value = next(
        (
            n
            for key in ("revenue", "total", "value", "price")
            if (n := _number(properties.get(key))) is not None
        ),
        None,
    )
    currency = _text(properties.get("currency"))
    contents = _contents(properties)
    data: dict[str, Any] = {
        "value": value,
        "currency": currency.upper() if currency else None,
        "order_id": _text(properties.get("order_id")),
        "contents": contents or None,
        "content_ids": [c["id"] for c in contents] or None,
        "content_type": "product" if contents else None,
        "num_items": sum(c.get("quantity", 1) for c in contents) if contents else None,
        "search_string": _text(properties.get("query")),
    }
    return {key: item for key, item in data.items() if item is not None}


def problem_of(server_event: Mapping[str, Any]) -> Skip | None:
    """Why Meta would refuse the request carrying this server event (after any field overrides)."""
    if not server_event.get("event_name"):
        return Skip("no event_name: the event is not mapped for this integration")
    if not server_event.get("event_source_url"):
        return Skip("no event_source_url: Meta requires the page URL (context.page.url) of a website event")
    if not _mapping(server_event.get("user_data")).get("client_user_agent"):
        return Skip(
            "no client_user_agent: Meta requires the visitor's user agent (context.userAgent) on a website event"
        )
    custom = _mapping(server_event.get("custom_data"))
    if server_event.get("event_name") == "Purchase" and (
        custom.get("value") is None or not custom.get("currency")
    ):
        return Skip(
            "a Purchase needs custom_data.value and currency (properties.revenue and properties.currency): "
            "Meta refuses it without them"
        )
    return None


def build_server_event(event: Event, event_name: str, now: float) -> dict[str, Any] | Skip:
    """The ``data[]`` entry for ``event``, or the reason it cannot be sent (``now``: epoch seconds)."""
    if not event_name:
        return Skip("no event_name: the event is not mapped for this integration")
    moment = parse_ts(event.get("timestamp"))
    if moment is None:
        moment = parse_ts(event.get("receivedAt"))
    if moment is None:
        return Skip(f"unreadable timestamp {str(event.get('timestamp'))[:80]!r}")
    if moment < now - MAX_AGE:
        return Skip(f"event_time {_iso(moment)} is older than 7 days (now {_iso(now)}): Meta refuses it")
    if moment > now + MAX_SKEW:
        return Skip(f"event_time {_iso(moment)} is in the future (now {_iso(now)}): Meta refuses it")
    moment = min(moment, now)

    context = _mapping(event.get("context"))
    page = _mapping(context.get("page"))
    record: dict[str, Any] = {
        "event_name": event_name,
        "event_time": int(moment),
        "action_source": "website",
        "event_source_url": _text(page.get("url")),
        "referrer_url": _text(page.get("referrer")),
        "event_id": _text(event.get("messageId")),
        "user_data": build_user_data(event, int(moment * 1000)),
        "custom_data": build_custom_data(_mapping(event.get("properties"))) or None,
    }
    record = {key: value for key, value in record.items() if value is not None}
    return problem_of(record) or record
