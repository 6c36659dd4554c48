"""Who an event is about, in GA4's terms (pure): ``client_id``, ``session_id``, ``user_id``,
``user_data`` and the Consent Mode signals.

- ``client_id``: the site's own ``_ga`` cookie when Datafly.js read it (``GA1.1.<a>.<b>`` ->
  ``<a>.<b>``; any ``GA<n>.<m>.`` prefix), so server events join the browser's GA4 user. Else a
  stable id per visitor in GA's ``<int>.<int>`` shape, derived from the ``anonymousId`` (the
  ``userId`` when there is none): two numbers from its SHA-256, the second a ten-digit number like
  GA's first-visit time. Neither Google nor Segment/RudderStack say more than "a unique id per
  browser", and both of theirs fall back to the anonymous id.
- ``session_id``: from the ``_ga_<container>`` cookie, either format: ``GS1.1.<session>.<n>....``
  or ``GS2.1.s<session>$o<n>$...`` (the first ``_ga_`` cookie that reads). Else from
  ``context.session.id``: its number when it is one, else a stable ten-digit number from its
  SHA-256 (GA's session ids are numbers; the server's own are hex). The session number is read
  too but not sent: the Measurement Protocol reference documents ``session_id`` and
  ``engagement_time_msec`` only.
- ``user_data``: ``sha256_email_address`` / ``sha256_phone_number`` (arrays of one hash) from the
  gateway's ``email_sha256`` / ``phone_sha256``. Google's normalisation (uid-data page) is the
  trimmed, lower-cased email, dots removed before ``@`` for gmail.com/googlemail.com, and the
  phone in E.164. The gateway hashes the trimmed, lower-cased email without the gmail rule: a hash
  cannot be normalised again, so it is sent as received (Segment and RudderStack also send an
  already hashed value unchanged). The phone hash is of E.164 already.
- consent: ``ad_user_data`` and ``ad_personalization`` are ``GRANTED`` when the visitor granted
  ``marketing`` or ``advertising`` (``context.consent.canonical``), else ``DENIED``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from datafly.processing import pii

__all__ = [
    "client_id",
    "consent",
    "ga_cookie_client_id",
    "ga_cookie_session",
    "session_id",
    "user_data",
    "user_id",
]

_GA_COOKIE = re.compile(r"^GA\d+\.\d+\.(\d{1,20}\.\d{1,20})$")
_GS1 = re.compile(r"^GS1\.\d+\.(\d{1,18})\.(\d{1,10})(?:\.|$)")
_GS2 = re.compile(r"^GS2\.\d+\.s(\d{1,18})\$o(\d{1,10})(?:\$|$)")
_DIGITS = re.compile(r"^\d{1,19}$")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: Any) -> str | None:
    if not isinstance(value, str | int) or isinstance(value, bool):
        return None
    text = str(value).strip()
    return text or None


def ga_cookie_client_id(value: Any) -> str | None:
    """``<a>.<b>`` of a ``_ga`` cookie value such as ``GA1.1.1234567890.1700000000``; None otherwise."""
    text = _text(value)
    if text is None:
        return None
    found = _GA_COOKIE.match(text)
    return found.group(1) if found else None


def ga_cookie_session(value: Any) -> tuple[int, int] | None:
    """``(session_id, session_number)`` of a ``_ga_<container>`` cookie value (GS1 or GS2)."""
    text = _text(value)
    if text is None:
        return None
    found = _GS1.match(text) or _GS2.match(text)
    return (int(found.group(1)), int(found.group(2))) if found else None


def _numbers(text: str) -> tuple[int, int]:
    digest = hashlib.sha256(text.encode("utf-8", "replace")).digest()
    first = int.from_bytes(digest[:4], "big") & 0x7FFFFFFF
    second = 1_000_000_000 + int.from_bytes(digest[4:12], "big") % 9_000_000_000
    return first, second


def client_id(event: Mapping[str, Any]) -> str | None:
    """The GA4 ``client_id`` of ``event`` (see the module docstring); None without any visitor id."""
    cookies = _mapping(_mapping(event.get("context")).get("cookies"))
    from_cookie = ga_cookie_client_id(cookies.get("_ga"))
    if from_cookie:
        return from_cookie
    visitor = _text(event.get("anonymousId")) or _text(event.get("userId"))
    if visitor is None:
        return None
    first, second = _numbers(visitor)
    return f"{first}.{second}"


def session_id(event: Mapping[str, Any]) -> int | None:
    """The GA4 ``session_id`` of ``event``: the ``_ga_<container>`` cookie, else ``context.session``."""
    context = _mapping(event.get("context"))
    cookies = _mapping(context.get("cookies"))
    for name in sorted(cookies):
        if name.startswith("_ga_"):
            found = ga_cookie_session(cookies[name])
            if found:
                return found[0]
    sid = _text(_mapping(context.get("session")).get("id"))
    if sid is None:
        return None
    if _DIGITS.match(sid) and int(sid) < 2**63:
        return int(sid)
    return _numbers("session:" + sid)[1]


def user_id(event: Mapping[str, Any]) -> str | None:
    """``userId`` as GA4's ``user_id``; never an email address (Google's policy forbids PII in it)."""
    text = _text(event.get("userId"))
    if text is None or _EMAIL.search(text):
        return None
    return text


def _first(sources: tuple[Mapping[str, Any], ...], key: str) -> str | None:
    for source in sources:
        value = source.get(key)
        if isinstance(value, str) and value.strip():
            return value
    return None


def user_data(event: Mapping[str, Any]) -> dict[str, list[str]]:
    """``{"sha256_email_address": [...], "sha256_phone_number": [...]}`` (keys only when known)."""
    context = _mapping(event.get("context"))
    sources = (
        _mapping(context.get("traits")),
        _mapping(event.get("traits")),
        _mapping(event.get("properties")),
    )
    found: dict[str, list[str]] = {}
    email = _first(sources, "email_sha256")
    email_hash = pii.hash_email(email) if email else None
    if email_hash:
        found["sha256_email_address"] = [email_hash]
    phone = _first(sources, "phone_sha256")
    phone_hash = pii.hash_phone(phone) if phone else None
    if phone_hash:
        found["sha256_phone_number"] = [phone_hash]
    return found


def consent(event: Mapping[str, Any]) -> dict[str, str]:
    """GA4's Consent Mode fields from ``context.consent.canonical`` (absent: denied)."""
    canonical = _mapping(_mapping(_mapping(event.get("context")).get("consent")).get("canonical"))
    granted = canonical.get("marketing") is True or canonical.get("advertising") is True
    signal = "GRANTED" if granted else "DENIED"
    return {"ad_user_data": signal, "ad_personalization": signal}
