"""One processed event -> the ``user_data`` of a Meta server event (pure: Meta's customer
information parameters, as far as a website event has them).

| field | value |
|---|---|
| ``em`` | SHA-256 hex of each trimmed, lower-cased email: ``email_sha256`` (hashed at the gateway) of ``properties``, ``traits``, ``context.traits`` |
| ``ph`` | SHA-256 hex of each phone's digits with the country code, no ``+`` (``447700900123``): ``phone_digits_sha256`` (the gateway's), else a ``phone_sha256`` the sender hashed itself |
| ``external_id`` | SHA-256 hex of the trimmed ``userId`` (a user id that already is a hash is kept) |
| ``client_ip_address`` | ``context.ip`` when it is an IP address, without a port (``203.0.113.5:443`` -> ``203.0.113.5``) |
| ``client_user_agent`` | ``context.userAgent`` as received, ends trimmed (required for website events) |
| ``fbc`` | ``context.cookies._fbc``, else ``fb.1.<ms>.<fbclid>`` from ``context.clickIds.fbclid`` and the time it was first seen (``context.clickIdsAt.fbclid``, else the event's time) |
| ``fbp`` | ``context.cookies._fbp`` |

Identifier fields are arrays (Meta takes several values); ``fbc``, ``fbp``, the IP and the user
agent are never hashed. A cookie that is not in Meta's ``fb.<n>.<ms>.<value>`` format is not sent
(Meta would refuse the request for it). Absent fields are omitted, never sent empty.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

from datafly.destinations.wire import undo_latin1, visitor_ip
from datafly.processing import pii

__all__ = ["COOKIE_FORMAT", "build_user_data", "client_ip"]

COOKIE_FORMAT = re.compile(r"fb\.\d\.\d{1,16}\.[!-~]{1,500}")
"""``_fbc`` / ``_fbp`` as Meta writes them: ``fb.<subdomain index>.<ms>.<click id or random>``."""
_PORTED = re.compile(r"\[([0-9A-Fa-f:.]+)\]:\d{1,5}|(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}")
_EMPTY: Mapping[str, Any] = {}


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else _EMPTY


def _text(value: Any) -> str | None:
    if not isinstance(value, str | int) or isinstance(value, bool):
        return None
    text = str(value).strip()
    return text or None


def client_ip(value: Any) -> str | None:
    """The visitor's IP address without a port, in canonical form; None when there is none."""
    if isinstance(value, str):
        ported = _PORTED.fullmatch(value.strip())
        if ported:
            value = ported.group(1) or ported.group(2)
    return visitor_ip(value)


def _distinct(values: Iterable[str | None]) -> list[str] | None:
    found = list(dict.fromkeys(v for v in values if v))
    return found or None


def _emails(sources: tuple[Mapping[str, Any], ...]) -> list[str] | None:
    return _distinct(
        pii.hash_email(text)
        for s in sources
        for key in ("email_sha256", "email")
        if (text := _text(s.get(key)))
    )


def _phones(sources: tuple[Mapping[str, Any], ...]) -> list[str] | None:
    found: list[str | None] = []
    for source in sources:
        digits = _text(source.get(pii.PHONE_DIGITS_KEY))
        given = digits or _text(source.get("phone_sha256"))
        if given and pii.is_sha256(given):
            found.append(given.lower())
    return _distinct(found)


def _external_id(user_id: Any) -> list[str] | None:
    text = _text(user_id)
    if text is None:
        return None
    return [text.lower() if pii.is_sha256(text) else hashlib.sha256(text.encode("utf-8")).hexdigest()]


def _cookie(value: Any) -> str | None:
    text = _text(value)
    return text if text and COOKIE_FORMAT.fullmatch(text) else None


def _fbc(context: Mapping[str, Any], event_ms: int) -> str | None:
    cookie = _cookie(_mapping(context.get("cookies")).get("_fbc"))
    if cookie:
        return cookie
    fbclid = _text(_mapping(context.get("clickIds")).get("fbclid"))
    if not fbclid:
        return None
    seen = _mapping(context.get("clickIdsAt")).get("fbclid")
    ms = seen if isinstance(seen, int) and not isinstance(seen, bool) and seen > 0 else event_ms
    return _cookie(f"fb.1.{ms}.{fbclid}")


def build_user_data(event: Mapping[str, Any], event_ms: int) -> dict[str, Any]:
    """``user_data`` for ``event`` (``event_ms``: the event's time, epoch milliseconds)."""
    context = _mapping(event.get("context"))
    sources = (
        _mapping(event.get("properties")),
        _mapping(event.get("traits")),
        _mapping(context.get("traits")),
    )
    user_agent = context.get("userAgent")
    data: dict[str, Any] = {
        "em": _emails(sources),
        "ph": _phones(sources),
        "external_id": _external_id(event.get("userId")),
        "client_ip_address": client_ip(context.get("ip")),
        "client_user_agent": _text(undo_latin1(user_agent)) if isinstance(user_agent, str) else None,
        "fbc": _fbc(context, event_ms),
        "fbp": _cookie(_mapping(context.get("cookies")).get("_fbp")),
    }
    return {key: value for key, value in data.items() if value is not None}
