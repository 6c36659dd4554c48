"""Identity: user id, identify traits, click ids and vendor cookies remembered per visitor and
carried on.

What a processed event carries (for the destinations):

- ``context.clickIds``: ``{name: value}`` for every click id of :data:`CLICK_IDS` seen in the
  query of a page URL (``context.page.url`` / ``search``, or a page event's ``properties``) of
  this or an earlier event of the visitor, plus the click ids the page passed itself in
  ``context.clickIds``; the latest value wins for each name.
- ``context.clickIdsAt``: ``{name: epoch milliseconds}`` when that value was first seen (the
  event's timestamp, never later than its ``receivedAt``); the same value again keeps its time,
  a new value gets a new time.
- ``context.cookies``: the site's own vendor cookies (names in :data:`COOKIE_NAMES`, and at most
  :data:`MAX_PREFIXED` starting with one of :data:`COOKIE_PREFIXES`) sent on this or an earlier
  event, the latest value winning; plus, when missing, Meta's ``_fbp`` generated once per visitor and ``_fbc`` built once
  per fbclid from the fbclid and the time it was first seen.

Everything is bounded (:data:`MAX_IDS` click ids, 28 cookies, :data:`MAX_VALUE` characters a
value); what does not fit, or is not a string, is dropped without an error.
"""

from __future__ import annotations

import random
import urllib.parse
from collections.abc import Callable
from typing import Any

from datafly.processing.profile import Profile
from datafly.processing.timestamps import parse_ts

__all__ = [
    "CLICK_IDS",
    "CLICK_ID_PARAMS",
    "COOKIE_NAMES",
    "COOKIE_PREFIXES",
    "MAX_IDS",
    "MAX_PREFIXED",
    "MAX_VALUE",
    "apply_identity",
    "click_ids_in",
    "cookie_allowed",
]

CLICK_IDS = (
    "rclid",
    "gclid",
    "gbraid",
    "wbraid",
    "fbclid",
    "ttclid",
    "ScCid",
    "epik",
    "msclkid",
    "li_fat_id",
)
"""The click ids read from a page URL's query, by their stored names (the vendors' spelling)."""
CLICK_ID_PARAMS = {name.lower(): name for name in CLICK_IDS} | {"rtid": "rclid"}
"""URL parameter, lower case -> stored click id name (parameters are matched in any case; the
vendor's own spelling wins over another spelling or an alias in the same URL)."""
# every parameter name of CLICK_ID_PARAMS ends in one of these (a cheap test before parsing)
_CLICK_ID_ENDS = ("clid=", "clkid=", "braid=", "sccid=", "epik=", "rtid=", "fat_id=")

# Keep in step with collector/src/cookies.js (tests/collector/test_collector_cookies.py checks).
COOKIE_NAMES = frozenset(
    {
        "_fbp",  # Meta browser id
        "_fbc",  # Meta click id
        "_ga",  # GA4 client id
        "_ttp",  # TikTok browser id
        "_gcl_aw",  # Google Ads click (gclid)
        "_gcl_gb",  # Google Ads click (gbraid / wbraid)
        "_gcl_dc",  # Campaign Manager / DV360 click
        "_gcl_au",  # Google Ads conversion linker
        "_epik",  # Pinterest click id
        "_scid",  # Snapchat browser id
        "_uetmsclkid",  # Microsoft click id
        "li_fat_id",  # LinkedIn first-party ad tracking id
    }
)
COOKIE_PREFIXES = ("_ga_",)  # GA4 session cookie per container: _ga_<container>
MAX_PREFIXED = 16
"""Cookies of a prefix (``_ga_<container>``) kept per visitor, at most; with the fixed names,
at most 28 cookies."""
MAX_IDS = 30
"""Click ids kept per visitor (at most)."""
MAX_VALUE = 512
"""Characters of one cookie or click id value (at most)."""
_MAX_NAME = 64

RandInt = Callable[[int, int], int]


def cookie_allowed(name: str) -> bool:
    return name in COOKIE_NAMES or (name.startswith(COOKIE_PREFIXES) and len(name) <= _MAX_NAME)


def _value(value: Any) -> str | None:
    """A click id value as stored: a non-empty string (an integer is written out) within bounds."""
    if value.__class__ is int:
        value = str(value)
    elif value.__class__ is not str:
        return None
    return value if value and len(value) <= MAX_VALUE else None


def _from_query(text: str, found: dict[str, str]) -> None:
    lower = text.lower()
    for end in _CLICK_ID_ENDS:
        if end in lower:
            break
    else:
        return
    try:
        query = urllib.parse.urlsplit(text).query if "?" in text else text
    except ValueError:  # the gateway refuses such URLs; one stored before it did carries none
        return
    for name, raw in urllib.parse.parse_qsl(query):
        target = CLICK_ID_PARAMS.get(name.lower())
        value = _value(raw) if target else None
        if target and value and (target not in found or name == target):
            found[target] = value


def click_ids_in(event: dict[str, Any]) -> dict[str, str]:
    """The click ids an event brings: from its page URLs, then those it passes itself."""
    found: dict[str, str] = {}
    context = event["context"]
    page = context.get("page") or {}
    texts = [page.get("url"), page.get("search")]
    if event.get("type") == "page":
        properties = event.get("properties") or {}
        texts += (properties.get("url"), properties.get("search"))
    seen: set[str] = set()
    for text in texts:
        if isinstance(text, str) and text and text not in seen:
            seen.add(text)
            _from_query(text, found)
    given = context.get("clickIds")
    if isinstance(given, dict):
        for name, raw in given.items():
            value = _value(raw)
            if value and isinstance(name, str) and len(name) <= _MAX_NAME:
                found[CLICK_ID_PARAMS.get(name.lower()) or name] = value
    return found


def _event_ms(event: dict[str, Any], at: float | None) -> int:
    """Epoch milliseconds of the event: ``at`` when given, else its timestamp, never later than
    when the gateway received it (a browser's clock may run ahead)."""
    if at is None:
        at = parse_ts(event.get("timestamp"))
        received = parse_ts(event.get("receivedAt"))
        if at is None or (received is not None and received < at):
            at = received
    return int((at or 0.0) * 1000)


def apply_identity(
    event: dict[str, Any],
    profile: Profile,
    *,
    at: float | None = None,
    randint: RandInt = random.randint,
) -> None:
    """Update the profile from the event, then carry the profile onto the event.

    ``at`` is the event's time in epoch seconds (default: from the event, see :func:`_event_ms`);
    ``randint`` draws the random part of a generated ``_fbp`` (tests pass their own)."""
    context = event["context"]
    if event.get("userId"):
        profile.user_id = event["userId"]
    if event["type"] == "identify" and isinstance(event.get("traits"), dict):
        profile.traits.update(event["traits"])
    given_traits = context.get("traits")
    if isinstance(given_traits, dict) and given_traits:
        profile.traits.update(given_traits)

    ms = -1  # the event's time, worked out only when something new needs it
    click_ids = profile.click_ids
    click_ids_at = profile.click_ids_at
    new_fbclid = False
    for name, value in click_ids_in(event).items():
        if click_ids.get(name) == value:
            continue
        if name not in click_ids and len(click_ids) >= MAX_IDS:
            continue
        if ms < 0:
            ms = _event_ms(event, at)
        click_ids[name] = value
        click_ids_at[name] = ms
        new_fbclid = new_fbclid or name == "fbclid"
    if len(click_ids_at) != len(click_ids):  # a profile stored before the times were kept
        if ms < 0:
            ms = _event_ms(event, at)
        for name in click_ids:
            click_ids_at.setdefault(name, ms)
        for name in [n for n in click_ids_at if n not in click_ids]:
            del click_ids_at[name]

    cookies = profile.cookies
    given = context.get("cookies")
    if given and isinstance(given, dict):
        for name, value in given.items():
            if value.__class__ is not str or not value or len(value) > MAX_VALUE:
                continue
            if (
                name in COOKIE_NAMES
                or name in cookies
                or (cookie_allowed(name) and sum(n not in COOKIE_NAMES for n in cookies) < MAX_PREFIXED)
            ):
                cookies[name] = value
    if "_fbp" not in cookies:
        if ms < 0:
            ms = _event_ms(event, at)
        cookies["_fbp"] = f"fb.1.{ms}.{randint(1_000_000_000, 9_999_999_999)}"
    fbclid = click_ids.get("fbclid")
    if (
        fbclid
        and (new_fbclid or "_fbc" not in cookies)
        and not cookies.get("_fbc", "").endswith("." + fbclid)
    ):
        # Meta's format: fb.1.<ms when the click id was first seen>.<fbclid>; a site's own _fbc
        # for this fbclid is kept, one for an earlier fbclid is replaced on a new landing
        cookies["_fbc"] = f"fb.1.{click_ids_at['fbclid']}.{fbclid}"

    if profile.user_id and not event.get("userId"):
        event["userId"] = profile.user_id
    if profile.traits:
        context["traits"] = {**profile.traits, **(given_traits or {})}
    if click_ids:
        context["clickIds"] = dict(click_ids)
        context["clickIdsAt"] = dict(click_ids_at)
    context["cookies"] = dict(cookies)
