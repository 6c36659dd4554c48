"""One processed event -> one Google Ads ``ClickConversion`` (pure: the table below).

| field | value |
|---|---|
| ``gclid`` / ``gbraid`` / ``wbraid`` | the first of them in ``context.clickIds`` (in that order), else the gclid in the site's ``_gcl_aw`` cookie (``GCL.<time>.<gclid>``); only one is sent (Google takes one click identifier per conversion) |
| ``conversionAction`` | ``customers/{customer_id}/conversionActions/{id}``: the id is the event's mapping value when it is a number, else ``settings.conversion_action_id`` |
| ``conversionDateTime`` | the event's timestamp in UTC as ``yyyy-mm-dd hh:mm:ss+00:00`` (Google's format, whole seconds); a time ahead of the clock (client skew) is sent as now |
| ``conversionValue``, ``currencyCode`` | ``properties.revenue``, else ``total``, else ``value``; ``properties.currency`` (upper-cased) |
| ``orderId`` | ``properties.order_id`` (Google's deduplication key for the conversion action) |
| ``userIdentifiers`` | ``[{"hashedEmail"}, {"hashedPhoneNumber"}]``, one identifier per entry (enhanced conversions) |
| ``consent`` | ``adUserData`` and ``adPersonalization``: ``GRANTED`` when the visitor granted ``marketing`` or ``advertising``, else ``DENIED`` (Consent Mode v2, until the privacy issue derives them) |

Hashing: Google prescribes SHA-256 hex of the email trimmed and lower-cased, and of the phone in
E.164. The gateway hashes raw values before anything is stored (``email_sha256``,
``phone_sha256``), so what reaches this module is already a hash; a raw value found anyway is
normalised and hashed here, never sent. Google also asks to remove the dots before the ``@`` of
gmail.com and googlemail.com addresses: that cannot be redone on a hash, so those addresses are
hashed with their dots, as Segment's and RudderStack's Google Ads destinations do when they
receive pre-hashed identifiers (a shop that wants it can send the email with the dots removed).

A conversion Google cannot attribute (no click identifier and no hashed email or phone) is not
sent: :data:`NO_IDENTIFIER` says why, where the user looks.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from datafly.destinations.base import Event, Skip
from datafly.processing import pii
from datafly.processing.timestamps import parse_ts

__all__ = [
    "CLICK_ID_NAMES",
    "MAX_SKEW",
    "NO_IDENTIFIER",
    "build_conversion",
    "conversion_action",
    "conversion_date_time",
]

CLICK_ID_NAMES = ("gclid", "gbraid", "wbraid")
MAX_SKEW = 300.0  # seconds a client clock may run ahead: such a time is sent as now
NO_IDENTIFIER = (
    "no click id or user identifier: Google Ads matches a click conversion by its gclid, gbraid "
    "or wbraid, or (enhanced conversions for leads) by a hashed email or phone number; this "
    "visitor has none. Keep the gclid landing-page parameter (or the _gcl_aw cookie), or call "
    "datafly.identify() with the email or phone."
)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or value is None or isinstance(value, Mapping | list):
        return None
    text = str(value).strip()
    return text or None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if value == value else None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if number == number and abs(number) != float("inf") else None
    return None


def conversion_action(customer_id: str, mapping: str, default_id: str) -> str:
    """The conversion action's resource name; a numeric mapping value names the action itself."""
    action = mapping.strip() if mapping.strip().isdigit() else default_id
    return f"customers/{customer_id}/conversionActions/{action}"


def conversion_date_time(epoch: float) -> str:
    """``2026-06-06 10:00:00+00:00``: Google's ``yyyy-mm-dd hh:mm:ss+|-hh:mm``, in UTC."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S+00:00")


def click_id(event: Event) -> tuple[str, str] | None:
    """``(field, value)`` of the click identifier to send, or None."""
    context = _mapping(event.get("context"))
    click_ids = _mapping(context.get("clickIds"))
    for name in CLICK_ID_NAMES:
        value = _text(click_ids.get(name))
        if value:
            return name, value
    cookie = _text(_mapping(context.get("cookies")).get("_gcl_aw"))
    if cookie:
        parts = cookie.split(".")
        if len(parts) >= 3 and parts[0] == "GCL" and parts[-1]:
            return "gclid", ".".join(parts[2:])
    return None


def _first(sources: Iterable[Mapping[str, Any]], keys: tuple[str, ...]) -> str:
    for source in sources:
        for key in keys:
            value = source.get(key)
            if isinstance(value, str) and value.strip():
                return value
    return ""


def hashed_email(sources: Iterable[Mapping[str, Any]]) -> str | None:
    value = _first(sources, ("email_sha256", "email"))
    return pii.hash_email(value) if value else None


def hashed_phone(sources: Iterable[Mapping[str, Any]]) -> str | None:
    """The phone's hash; a raw number is hashed only when it carries its country code (E.164)."""
    value = _first(sources, ("phone_sha256", "phone")).strip()
    if value.startswith("00"):
        value = "+" + value[2:]
    if not value or not (value.startswith("+") or pii.is_sha256(value)):
        return None
    return pii.hash_phone(value)


def _consent(context: Mapping[str, Any]) -> dict[str, str]:
    canonical = _mapping(_mapping(context.get("consent")).get("canonical"))
    granted = canonical.get("marketing") is True or canonical.get("advertising") is True
    value = "GRANTED" if granted else "DENIED"
    return {"adUserData": value, "adPersonalization": value}


def build_conversion(
    event: Event,
    customer_id: str,
    mapping: str,
    default_action_id: str,
    now: float | None = None,
) -> dict[str, Any] | Skip:
    """The ``conversions[]`` entry for ``event``, or the reason it is not sent."""
    moment = parse_ts(event.get("timestamp"))
    if moment is None:
        moment = parse_ts(event.get("receivedAt"))
    if moment is None:
        return Skip(f"unreadable timestamp {event.get('timestamp')!r}")
    clock = time.time() if now is None else now
    if moment > clock + MAX_SKEW:
        return Skip(f"conversion time {conversion_date_time(moment)} is in the future: Google Ads rejects it")
    moment = min(moment, clock)

    properties = _mapping(event.get("properties"))
    context = _mapping(event.get("context"))
    sources = (_mapping(context.get("traits")), _mapping(event.get("traits")), properties)
    identifiers = []
    email = hashed_email(sources)
    if email:
        identifiers.append({"hashedEmail": email})
    phone = hashed_phone(sources)
    if phone:
        identifiers.append({"hashedPhoneNumber": phone})
    click = click_id(event)
    if click is None and not identifiers:
        return Skip(NO_IDENTIFIER)

    conversion: dict[str, Any] = {}
    if click is not None:
        conversion[click[0]] = click[1]
    conversion["conversionAction"] = conversion_action(customer_id, mapping, default_action_id)
    conversion["conversionDateTime"] = conversion_date_time(moment)
    value = next(
        (v for v in (_number(properties.get(k)) for k in ("revenue", "total", "value")) if v is not None), None
    )
    if value is not None:
        conversion["conversionValue"] = value
    currency = _text(properties.get("currency"))
    if currency:
        conversion["currencyCode"] = currency.upper()
    order_id = _text(properties.get("order_id"))
    if order_id:
        conversion["orderId"] = order_id
    if identifiers:
        conversion["userIdentifiers"] = identifiers
    conversion["consent"] = _consent(context)
    return conversion
