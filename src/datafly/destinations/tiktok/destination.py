"""TikTok Events API 2.0: web events to a pixel, batched JSON POSTs with an ``Access-Token`` header.

What each rule follows (facts checked against the public sources named; where TikTok's reference
is silent, what Segment's ``tiktok-conversions`` and RudderStack's ``tiktok_ads`` destinations do):

- request: ``POST https://business-api.tiktok.com/open_api/v1.3/event/track/`` with the header
  ``Access-Token: <token>`` (no ``Bearer``), body ``{"event_source": "web", "event_source_id":
  <pixel_code>, "test_event_code"?, "data": [...]}`` (TikTok Events API 2.0; RudderStack
  ``transformV2.js``). The integration's ``endpoint`` is an origin: it replaces the scheme, host
  and port, the path stays TikTok's (CONTRACT.md), so a loopback stand-in sees the real path;
- batches: at most 1,000 events in ``data`` (RudderStack ``maxBatchSizeV2 = 1000``, citing
  TikTok's Events API 2.0 reference); with a ``test_event_code`` each event goes alone, as
  RudderStack sends test events ("batching is not supported" for them); no ``partner_name``
  (it names a registered TikTok partner);
- each event: web_event.py (fields) and identity.py (hashes, click id, cookie);
- answers: responses.py (HTTP 200 with TikTok's ``code``).

Settings are CONTRACT.md's: ``pixel_code``, ``access_token`` (secret), ``test_event_code``.
"""

from __future__ import annotations

import os
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from datafly.destinations.base import (
    Destination,
    Event,
    Formatted,
    Item,
    ItemOutcome,
    OutboundRequest,
    SettingField,
    Settings,
    Skip,
    VendorResponse,
    chunks,
    load_presets,
)
from datafly.destinations.tiktok.identity import normalised_hash
from datafly.destinations.tiktok.responses import classify_tiktok
from datafly.destinations.tiktok.web_event import build_web_event, number

__all__ = ["EVENT_SOURCE", "MAX_EVENTS", "PATH", "TikTokDestination"]

ORIGIN = "https://business-api.tiktok.com"
PATH = "/open_api/v1.3/event/track/"
EVENT_SOURCE = "web"
MAX_EVENTS = 1000
_HASHED = ("email", "phone", "external_id")


def track_url(origin: str) -> str:
    """TikTok's track URL on ``origin`` (scheme, host and port of it; any path is TikTok's)."""
    parts = urllib.parse.urlsplit(origin.strip())
    if not parts.scheme or not parts.netloc:
        return origin
    return f"{parts.scheme}://{parts.netloc}{PATH}"


class TikTokDestination(Destination):
    vendor = "tiktok"
    title = "TikTok"
    settings_schema = (
        SettingField(
            "pixel_code",
            description=(
                "The code of your TikTok pixel (TikTok Events Manager, Web, the pixel's details). "
                "Events are sent to it as event_source_id."
            ),
            pattern=r"[A-Za-z0-9]+",
            format_hint="the pixel code as Events Manager shows it: letters and digits, such as CB6RBI3C77U5UN6BNA8G",
        ),
        SettingField(
            "access_token",
            secret=True,
            description=(
                "An Events API access token generated in the pixel's settings (Events Manager, the "
                "pixel, Settings, Events API, Generate Access Token). Sent as the Access-Token header."
            ),
            pattern=r"\S+",
            format_hint="the token exactly as TikTok generated it, without spaces or a Bearer prefix",
        ),
        SettingField(
            "test_event_code",
            required=False,
            description=(
                "A code from the Test Events tab of Events Manager: events are shown there as test "
                "events and not used for ads. Remove it for real traffic."
            ),
            pattern=r"\S+",
            format_hint="the test event code as Events Manager shows it, such as TEST12345",
        ),
    )
    presets = load_presets(os.path.dirname(__file__))
    default_endpoint = ORIGIN + PATH
    max_batch = MAX_EVENTS
    max_wait = 0.5
    known_fields = (
        "event", "event_time", "event_id", "user.email", "user.phone", "user.external_id", "user.ttclid",
        "user.ttp", "user.ip", "user.user_agent", "user.locale", "page.url", "page.referrer",
        "properties.currency", "properties.value", "properties.content_type", "properties.contents",
        "properties.order_id", "properties.query", "limited_data_use",
    )  # fmt: skip

    def endpoint(self, settings: Settings, override: str | None) -> str:
        return track_url(override) if override else self.default_endpoint

    def format_item(self, item: Item, settings: Settings, *, now: float | None = None) -> Formatted | Skip:
        """The ``data`` entry of one event; ``now`` (epoch seconds) defaults to the clock."""
        record = build_web_event(item.event, item.mapping, time.time() if now is None else now)
        return record if isinstance(record, Skip) else Formatted(item.id, record)

    def apply_field_sources(
        self, formatted: Formatted, event: Event, sources: Mapping[str, str | None]
    ) -> Formatted | Skip:
        """The base overrides, then ``user.email``/``phone``/``external_id`` made hashes as TikTok
        takes them, whatever a source put there (a raw value is hashed, an unusable one dropped)."""
        shaped = super().apply_field_sources(formatted, event, sources)
        if isinstance(shaped, Skip) or shaped is formatted:
            return shaped
        user = shaped.payload.get("user")
        if isinstance(user, dict):
            for kind in _HASHED:
                if kind in user:
                    digest = normalised_hash(kind, user[kind])
                    if digest is None:
                        user.pop(kind)
                    else:
                        user[kind] = digest
            if not user:
                shaped.payload.pop("user")
        return shaped

    def check_fields(self, fields: Mapping[str, Any]) -> Skip | None:
        if not isinstance(fields.get("event"), str) or not fields["event"].strip():
            return Skip("no event: the field sources removed the TikTok event name")
        seconds = number(fields.get("event_time"))
        if not isinstance(seconds, int) or seconds <= 0:
            return Skip("no event_time: TikTok needs the event's time in unix seconds")
        return None

    def build_requests(
        self, formatted: Sequence[Formatted], settings: Settings, endpoint: str
    ) -> list[OutboundRequest]:
        headers = {"Access-Token": str(settings["access_token"]).strip(), "Content-Type": "application/json"}
        head: dict[str, Any] = {
            "event_source": EVENT_SOURCE,
            "event_source_id": str(settings["pixel_code"]).strip(),
        }
        test_code = str(settings.get("test_event_code") or "").strip()
        if test_code:
            head["test_event_code"] = test_code
        size = 1 if test_code else self.max_batch
        return [
            OutboundRequest(
                "POST",
                endpoint,
                dict(headers),
                orjson.dumps({**head, "data": [entry.payload for entry in group]}),
                tuple(entry.item_id for entry in group),
            )
            for group in chunks(formatted, size)
        ]

    def classify(self, request: OutboundRequest, response: VendorResponse) -> dict[str, ItemOutcome]:
        return classify_tiktok(request, response)
