"""Meta Conversions API: batched JSON POSTs of server events to a pixel's ``/events`` edge.

``POST {origin}/{api_version}/{pixel_id}/events?access_token=…`` with ``{"data": [...],
"test_event_code"?}``, at most 1,000 events a request. ``endpoint`` (optional) is an origin that
replaces ``https://graph.facebook.com``; the path and query follow it unchanged.

Meta refuses a whole request for one invalid event; :mod:`~datafly.destinations.meta.responses`
answers ``SPLIT`` then, and the delivery worker halves the batch until the bad event is alone.
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
from datafly.destinations.meta.responses import classify_meta
from datafly.destinations.meta.server_event import build_server_event, problem_of

__all__ = ["API_VERSION", "MetaDestination"]

API_VERSION = "v26.0"  # the newest Graph API version in Meta's changelog when this was written (2026-12)
ORIGIN = "https://graph.facebook.com"


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class MetaDestination(Destination):
    vendor = "meta"
    title = "Meta Conversions API"
    settings_schema = (
        SettingField(
            "pixel_id",
            description="The pixel (dataset) ID from Meta Events Manager.",
            pattern=r"[0-9]{5,32}",
            format_hint="the digits of the pixel ID, as Events Manager shows it",
        ),
        SettingField(
            "access_token",
            secret=True,
            description="The Conversions API access token generated for this pixel in Events Manager.",
            pattern=r"[A-Za-z0-9_\-|.]{16,}",
            format_hint="the token as Events Manager generated it: letters and digits, at least 16",
        ),
        SettingField(
            "test_event_code",
            required=False,
            description="A code from Events Manager > Test Events: events show up there and are not used for ads.",
            pattern=r"[A-Za-z0-9_\-]{1,64}",
            format_hint="letters and digits, such as TEST12345",
        ),
        SettingField(
            "api_version",
            required=False,
            default=API_VERSION,
            description=f"The Graph API version to call (default {API_VERSION}).",
            pattern=r"v[0-9]{1,3}\.[0-9]{1,2}",
            format_hint="such as v26.0",
        ),
    )
    presets = load_presets(os.path.dirname(__file__))
    default_endpoint = ORIGIN
    max_batch = 1000  # the real API's bound per request
    max_wait = 0.5
    reserved_fields = {
        "event_time": "is the event's timestamp, checked against Meta's 7-day window",
        "action_source": "is website: this destination sends website events",
    }
    known_fields = (
        "event_name", "event_source_url", "referrer_url", "event_id", "opt_out",
        "user_data.em", "user_data.ph", "user_data.external_id", "user_data.client_ip_address",
        "user_data.client_user_agent", "user_data.fbc", "user_data.fbp",
        "custom_data.value", "custom_data.currency", "custom_data.order_id", "custom_data.contents",
        "custom_data.content_ids", "custom_data.content_type", "custom_data.content_name",
        "custom_data.num_items", "custom_data.search_string",
    )  # fmt: skip

    def endpoint(self, settings: Settings, override: str | None) -> str:
        """The origin requests go to: the override's scheme, host and port, else Meta's."""
        return _origin(override) if override else ORIGIN

    def check_fields(self, fields: Mapping[str, Any]) -> Skip | None:
        return problem_of(fields)

    def format_item(self, item: Item, settings: Settings, *, now: float | None = None) -> Formatted | Skip:
        """The server event of one item; ``now`` (epoch seconds) defaults to the clock."""
        record = build_server_event(item.event, item.mapping, time.time() if now is None else now)
        return record if isinstance(record, Skip) else Formatted(item.id, record)

    def build_requests(
        self, formatted: Sequence[Formatted], settings: Settings, endpoint: str
    ) -> list[OutboundRequest]:
        version = str(settings.get("api_version") or API_VERSION)
        pixel = urllib.parse.quote(str(settings["pixel_id"]), safe="")
        token = urllib.parse.quote(str(settings["access_token"]), safe="")
        url = f"{endpoint.rstrip('/')}/{urllib.parse.quote(version, safe='')}/{pixel}/events?access_token={token}"
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        test_code = settings.get("test_event_code")
        requests = []
        for group in chunks(formatted, self.max_batch):
            body: dict[str, Any] = {"data": [f.payload for f in group]}
            if test_code:
                body["test_event_code"] = str(test_code)
            requests.append(
                OutboundRequest(
                    "POST", url, dict(headers), orjson.dumps(body), tuple(f.item_id for f in group)
                )
            )
        return requests

    def classify(self, request: OutboundRequest, response: VendorResponse) -> dict[str, ItemOutcome]:
        return classify_meta(request, response)
