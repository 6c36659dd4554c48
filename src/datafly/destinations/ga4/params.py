"""Segment e-commerce properties -> the parameters of GA4's recommended events (pure).

The parameter names are GA4's (Measurement Protocol "recommended events" reference); where a
Segment property has several candidates the order follows RudderStack's GA4 mapping
(``value``: ``total``, then ``value``, then ``revenue``; ``item_id``: ``product_id``, then
``sku``, then ``id``), and where Google marks a parameter as required Segment's GA4 actions refuse
the event (``transaction_id`` of ``purchase`` and ``refund``; ``currency`` whenever ``value`` is
set), so does this module: :func:`event_params` answers ``(code, message)`` instead.

An event name this table does not know (a custom mapping) carries the event's own properties
whose names GA4 accepts and whose values are text, numbers or booleans; other properties are
left out (GA4 takes no objects in event parameters but ``items``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["COMMERCE_EVENTS", "INT64", "event_params", "item_params"]

Params = dict[str, Any]
Problem = tuple[str, str]
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
INT64 = 2**63 - 1  # GA stores integers as int64; a larger one cannot even be encoded as JSON by orjson


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return None if isinstance(value, float) and not math.isfinite(value) else str(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    return text or None


def _number(value: Any) -> int | float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value if -INT64 <= value <= INT64 else None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        if not math.isfinite(number):
            return None
        return (
            int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number
        )
    return None


def _first(source: Mapping[str, Any], keys: tuple[str, ...], read: Callable[[Any], Any]) -> Any:
    for key in keys:
        value = read(source.get(key))
        if value is not None:
            return value
    return None


def item_params(product: Mapping[str, Any], index: int | None = None) -> Params:
    """One GA4 ``items[]`` entry from a Segment product."""
    item: Params = {
        "item_id": _first(product, ("product_id", "sku", "id"), _text),
        "item_name": _text(product.get("name")),
        "affiliation": _text(product.get("affiliation")),
        "coupon": _text(product.get("coupon")),
        "discount": _number(product.get("discount")),
        "index": _number(product.get("position")) if product.get("position") is not None else index,
        "item_brand": _text(product.get("brand")),
        "item_category": _text(product.get("category")),
        "item_variant": _text(product.get("variant")),
        "price": _number(product.get("price")),
        "quantity": _number(product.get("quantity")),
    }
    return {key: value for key, value in item.items() if value is not None}


def _items(properties: Mapping[str, Any], single: bool) -> list[Params]:
    """``products[]`` as items; for a single-product event (Product Added, ...) the properties."""
    products = properties.get("products")
    if isinstance(products, list) and products:
        return [item_params(_mapping(p)) for p in products if isinstance(p, Mapping)]
    if single:
        item = item_params(properties)
        return [item] if ("item_id" in item or "item_name" in item) else []
    return []


def _money(properties: Mapping[str, Any], keys: tuple[str, ...]) -> tuple[Params, Problem | None]:
    params: Params = {}
    value = _first(properties, keys, _number)
    currency = _text(properties.get("currency"))
    if currency is not None:
        currency = currency.upper()
        if not _CURRENCY.match(currency):
            return params, ("VALUE_INVALID", f"currency [{currency[:20]}] is not a 3-letter ISO 4217 code")
        params["currency"] = currency
    if value is not None:
        if currency is None:
            return params, ("VALUE_REQUIRED", "currency is required when value is set")
        params["value"] = value
    return params, None


def _page(event: Mapping[str, Any], properties: Mapping[str, Any]) -> Params:
    page = _mapping(_mapping(event.get("context")).get("page"))
    return {
        "page_location": _text(properties.get("url")) or _text(page.get("url")),
        "page_referrer": _text(properties.get("referrer")) or _text(page.get("referrer")),
        "page_title": _text(properties.get("title")) or _text(page.get("title")),
    }


_ORDER_VALUE = ("total", "value", "revenue")
_CART_VALUE = ("value", "total", "revenue", "price")
_SINGLE_PRODUCT = frozenset(
    {"add_to_cart", "remove_from_cart", "view_item", "add_to_wishlist", "select_item"}
)
# GA4 event -> the Segment properties it takes beside value/currency/items: (GA4 name, Segment keys)
_EXTRA: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "purchase": (("transaction_id", ("order_id",)), ("affiliation", ("affiliation",)), ("coupon", ("coupon",)),
                 ("shipping", ("shipping",)), ("tax", ("tax",))),
    "refund": (("transaction_id", ("order_id",)), ("affiliation", ("affiliation",)), ("coupon", ("coupon",)),
               ("shipping", ("shipping",)), ("tax", ("tax",))),
    "begin_checkout": (("coupon", ("coupon",)),),
    "add_payment_info": (("coupon", ("coupon",)), ("payment_type", ("payment_method", "payment_type"))),
    "add_shipping_info": (("coupon", ("coupon",)), ("shipping_tier", ("shipping_method", "shipping_tier"))),
    "view_item_list": (("item_list_id", ("list_id",)), ("item_list_name", ("category", "list_name"))),
    "select_item": (("item_list_id", ("list_id",)), ("item_list_name", ("list_name",))),
    "search": (("search_term", ("query", "search_term")),),
    "sign_up": (("method", ("method", "type")),),
    "login": (("method", ("method", "type")),),
}  # fmt: skip
_NUMERIC_EXTRA = frozenset({"shipping", "tax"})
_REQUIRED = {"purchase": "transaction_id", "refund": "transaction_id"}
COMMERCE_EVENTS = frozenset(
    {"purchase", "refund", "add_to_cart", "remove_from_cart", "view_item", "view_item_list", "view_cart",
     "begin_checkout", "add_payment_info", "add_shipping_info", "add_to_wishlist", "select_item",
     "generate_lead"}
)  # fmt: skip
KNOWN_EVENTS = COMMERCE_EVENTS | {"search", "sign_up", "login", "page_view"}


def _custom(properties: Mapping[str, Any]) -> Params:
    params: Params = {}
    for key, raw in properties.items():
        if not isinstance(key, str) or not _NAME.match(key):
            continue
        if isinstance(raw, bool):
            params[key] = raw
        elif isinstance(raw, int | float):
            number = _number(raw)
            if number is not None:
                params[key] = number
        elif isinstance(raw, str) and raw.strip():
            params[key] = raw.strip()
    return params


def event_params(name: str, event: Mapping[str, Any]) -> Params | Problem:
    """The parameters of GA4 event ``name`` built from ``event``, or ``(code, message)`` when a
    parameter Google requires is missing or invalid."""
    properties = _mapping(event.get("properties"))
    if name == "page_view":
        params = _page(event, properties)
    elif name not in KNOWN_EVENTS:
        params = _custom(properties)
    else:
        params = {}
        if name in COMMERCE_EVENTS:
            money, problem = _money(
                properties, _ORDER_VALUE if name in ("purchase", "refund") else _CART_VALUE
            )
            if problem:
                return problem
            params.update(money)
        for ga_name, keys in _EXTRA.get(name, ()):
            params[ga_name] = _first(properties, keys, _number if ga_name in _NUMERIC_EXTRA else _text)
        required = _REQUIRED.get(name)
        if required and params.get(required) is None:
            return "VALUE_REQUIRED", f"{required} is required for {name} (Segment property order_id)"
        if name in COMMERCE_EVENTS:
            items = _items(properties, name in _SINGLE_PRODUCT)
            if items:
                params["items"] = items
    return {key: value for key, value in params.items() if value is not None}
