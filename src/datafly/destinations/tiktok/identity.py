"""The ids TikTok matches a web event on, read from a processed event (pure).

``user`` of an Events API 2.0 event (sources: Segment's ``tiktok-conversions/reportWebEvent``
``utils.ts`` and ``formatter.ts``; RudderStack's ``tiktok_ads/transformV2.js``):

- ``email``: SHA-256 hex of the trimmed, lower-cased address. The gateway already replaced a raw
  ``email`` by ``email_sha256``; a raw value found anyway is hashed here, never sent.
- ``phone``: SHA-256 hex of the number in E.164 (``+`` and digits), as TikTok prescribes. The
  gateway's ``phone_sha256`` is that hash; a raw number is hashed only when it carries its
  country code (``+44…`` or ``0044…``), since no region can be guessed.
- ``external_id``: SHA-256 hex of the trimmed, lower-cased ``userId``, else ``anonymousId``
  (Segment's default mapping: ``userId`` when it exists, else ``anonymousId``).
- ``ttclid``: the ``ttclid`` in the query of the page URL of this event (Segment reads the URL
  first), else the one stored for the visitor (``context.clickIds.ttclid``), else
  ``properties.ttclid`` (Segment's and RudderStack's default source). Never hashed.
- ``ttp``: the site's own ``_ttp`` cookie (``context.cookies._ttp``, set by the TikTok pixel),
  else ``properties.ttp`` (Segment's and RudderStack's default source). Never hashed.

Every reader is defensive: a missing or odd-typed ``context.cookies`` or ``context.clickIds``
gives None, never an error.
"""

from __future__ import annotations

import hashlib
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

from datafly.processing import pii

__all__ = [
    "email_hash",
    "external_id_hash",
    "mapping",
    "normalised_hash",
    "phone_hash",
    "text",
    "ttclid",
    "ttp",
]


def mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def text(value: Any) -> str | None:
    """A non-empty trimmed text from a string or a number; None for anything else."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str | int | float):
        found = str(value).strip()
        return found or None
    return None


def _first(sources: Iterable[Mapping[str, Any]], keys: tuple[str, ...]) -> str | None:
    for source in sources:
        for key in keys:
            found = text(source.get(key))
            if found:
                return found
    return None


def _sources(event: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
    context = mapping(event.get("context"))
    return (mapping(context.get("traits")), mapping(event.get("traits")), mapping(event.get("properties")))


def _hash_phone_text(value: str) -> str | None:
    value = value.strip()
    if value.startswith("00"):
        value = "+" + value[2:]
    if not (value.startswith("+") or pii.is_sha256(value)):
        return None
    return pii.hash_phone(value)


def email_hash(event: Mapping[str, Any]) -> str | None:
    """``user.email``: the hashed email of the event (identify traits first, then properties)."""
    value = _first(_sources(event), ("email_sha256", "email"))
    return pii.hash_email(value) if value else None


def phone_hash(event: Mapping[str, Any]) -> str | None:
    """``user.phone``: the hashed E.164 phone of the event, or None when there is none usable."""
    value = _first(_sources(event), ("phone_sha256", "phone"))
    return _hash_phone_text(value) if value else None


def external_id_hash(event: Mapping[str, Any]) -> str | None:
    """``user.external_id``: SHA-256 of the trimmed, lower-cased userId, else anonymousId."""
    value = text(event.get("userId")) or text(event.get("anonymousId"))
    if value is None:
        return None
    return hashlib.sha256(value.lower().encode("utf-8")).hexdigest()


def normalised_hash(kind: str, value: Any) -> str | None:
    """A value placed in ``user.<kind>`` by a field-source override, as TikTok takes it: a hash
    kept (lower-cased), anything else hashed with the rule of its kind (None: unusable)."""
    found = text(value)
    if found is None:
        return None
    if pii.is_sha256(found):
        return found.lower()
    if kind == "email":
        return pii.hash_email(found)
    if kind == "phone":
        return _hash_phone_text(found)
    return hashlib.sha256(found.lower().encode("utf-8")).hexdigest()


def _url_ttclid(url: Any) -> str | None:
    if not isinstance(url, str) or "ttclid" not in url:
        return None
    try:
        query = urllib.parse.urlsplit(url.strip()).query
    except ValueError:
        return None
    values = urllib.parse.parse_qs(query).get("ttclid")
    return text(values[0]) if values else None


def ttclid(event: Mapping[str, Any]) -> str | None:
    """``user.ttclid``: from this page's URL, else stored for the visitor, else the properties."""
    context = mapping(event.get("context"))
    return (
        _url_ttclid(mapping(context.get("page")).get("url"))
        or text(mapping(context.get("clickIds")).get("ttclid"))
        or text(mapping(event.get("properties")).get("ttclid"))
    )


def ttp(event: Mapping[str, Any]) -> str | None:
    """``user.ttp``: the site's ``_ttp`` cookie, else ``properties.ttp``."""
    context = mapping(event.get("context"))
    return text(mapping(context.get("cookies")).get("_ttp")) or text(
        mapping(event.get("properties")).get("ttp")
    )
