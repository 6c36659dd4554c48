"""GA4 Measurement Protocol: ``POST {origin}/mp/collect?measurement_id=…&api_secret=…``.

Each formatted item is the body GA4 would take for that event alone (``client_id``, ``user_id``,
``user_data``, ``consent``, ``ip_override``, ``events: [one event]``). Building requests merges the
bodies that share every request-level field (one ``client_id`` and one ``user_id`` per request, as
GA4 requires), at most 25 events and under 130 kB per body; groups are sent in the order their
first event came, each group's events in their own order. Every event carries its own
``timestamp_micros`` (the reference's timestamp hierarchy: an event's own time first), so events
of different moments share a request.
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
    load_presets,
)
from datafly.destinations.ga4 import identity
from datafly.destinations.ga4.params import event_params
from datafly.destinations.ga4.responses import DEBUG_PATH, classify_ga4
from datafly.destinations.ga4.validation import MAX_EVENTS, Message, validate_event, validate_request
from datafly.destinations.wire import visitor_ip
from datafly.processing.timestamps import format_ts, parse_ts

__all__ = ["MAX_AGE", "MAX_BODY", "NO_CLIENT_ID", "Ga4Destination"]

_FOLDER = os.path.dirname(__file__)
COLLECT_PATH = "/mp/collect"
MAX_BODY = 130_000  # "the POST body must be smaller than 130kB" (Send events, limitations)
MAX_AGE = 72 * 3600  # "events can be backdated up to 72 hours"
MAX_SKEW = 300  # a client clock this far ahead is tolerated (clamped to now)
DEFAULT_ENGAGEMENT_MSEC = 1  # GA asks for the time since the previous event; a server cannot know it
NO_CLIENT_ID = (
    "VALUE_REQUIRED: client_id is required. The event has no _ga cookie, anonymousId or userId to derive it "
    "from; send events through Datafly.js or set anonymousId."
)
REGIONS = {"eu": "https://region1.google-analytics.com", "global": "https://www.google-analytics.com"}


def is_enabled(value: Any) -> bool:
    """A boolean setting that may arrive as text from an environment variable."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _engagement(event: Mapping[str, Any]) -> int:
    properties = event.get("properties")
    value = properties.get("engagement_time_msec") if isinstance(properties, Mapping) else None
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63:
        return value
    return DEFAULT_ENGAGEMENT_MSEC


def _refusal(messages: list[Message]) -> Skip:
    return Skip("; ".join(message.reason() for message in messages))


def _origin(endpoint: str) -> str:
    parts = urllib.parse.urlsplit(endpoint.strip())
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else endpoint.rstrip("/")


class Ga4Destination(Destination):
    vendor = "ga4"
    title = "Google Analytics 4"
    settings_schema = (
        SettingField(
            "measurement_id",
            description="The web stream's Measurement ID (Admin > Data streams > your stream), e.g. G-ABC123DEF4.",
            pattern=r"G-[A-Z0-9]{4,20}",
            format_hint="G- followed by capital letters and digits, e.g. G-ABC123DEF4",
        ),
        SettingField(
            "api_secret",
            secret=True,
            description="A Measurement Protocol API secret of the same stream (Google documents no format).",
        ),
        SettingField(
            "region",
            required=False,
            default="global",
            description="eu sends to region1.google-analytics.com, so the data is collected in the EU.",
            pattern=r"eu|global",
            format_hint="eu or global",
        ),
        SettingField(
            "validate",
            required=False,
            kind="boolean",
            default=False,
            description=(
                "Send to GA4's validation server (/debug/mp/collect) instead: nothing is recorded in GA4, "
                "and every event gets GA4's verdict in the debugger."
            ),
        ),
    )
    presets = load_presets(_FOLDER)
    default_endpoint = REGIONS["global"]
    max_batch = MAX_EVENTS
    max_wait = 0.5
    known_fields = ("client_id", "user_id", "user_data", "consent", "ip_override", "user_properties")

    def endpoint(self, settings: Settings, override: str | None) -> str:
        if override:
            return override
        return REGIONS.get(str(settings.get("region") or "global").strip().lower(), self.default_endpoint)

    def check_fields(self, fields: Mapping[str, Any]) -> Skip | None:
        messages = validate_request(fields)
        events = fields.get("events")
        for index, event in enumerate(events if isinstance(events, list) else []):
            messages.extend(validate_event(event if isinstance(event, Mapping) else {}, index))
        return _refusal(messages) if messages else None

    def format_item(self, item: Item, settings: Settings, *, now: float | None = None) -> Formatted | Skip:
        """The one-event body of ``item``; ``now`` (epoch seconds) defaults to the clock."""
        event = item.event
        name = item.mapping
        if not name:
            return Skip("no GA4 event name: the event is not mapped for this integration")
        clock = time.time() if now is None else now
        moment = parse_ts(event.get("timestamp"))
        if moment is None:
            moment = parse_ts(event.get("receivedAt"))
        if moment is None:
            return Skip(f"unreadable timestamp {str(event.get('timestamp'))[:40]!r}")
        if moment < clock - MAX_AGE:
            return Skip(
                f"VALUE_OUT_OF_BOUNDS: timestamp {format_ts(moment)} is more than 72 hours before now "
                f"({format_ts(clock)}); GA4 takes events up to 72 hours back"
            )
        if moment > clock + MAX_SKEW:
            return Skip(
                f"VALUE_OUT_OF_BOUNDS: timestamp {format_ts(moment)} is in the future (now {format_ts(clock)})"
            )
        moment = min(moment, clock)

        client = identity.client_id(event)
        if client is None:
            return Skip(NO_CLIENT_ID)
        params = event_params(name, event)
        if isinstance(params, tuple):
            return Skip(f"{params[0]}: {params[1]}")
        session = identity.session_id(event)
        if session is not None:
            params["session_id"] = session
        params["engagement_time_msec"] = _engagement(event)
        body: dict[str, Any] = {"client_id": client}
        user = identity.user_id(event)
        if user is not None:
            body["user_id"] = user
        found = identity.user_data(event)
        if found:
            body["user_data"] = found
        body["consent"] = identity.consent(event)
        context = event.get("context")
        address = visitor_ip(context.get("ip")) if isinstance(context, Mapping) else None
        if address is not None:
            body["ip_override"] = address
        ga_event = {"name": name, "params": params, "timestamp_micros": round(moment * 1_000_000)}
        messages = validate_request(body) + validate_event(ga_event)
        if messages:
            return _refusal(messages)
        body["events"] = [ga_event]
        size = len(orjson.dumps(body))
        if size >= MAX_BODY:
            return Skip(
                f"VALUE_OUT_OF_BOUNDS: the event is {size} bytes; GA4 takes bodies smaller than 130 kB"
            )
        return Formatted(item.id, body)

    def build_requests(
        self, formatted: Sequence[Formatted], settings: Settings, endpoint: str
    ) -> list[OutboundRequest]:
        path = DEBUG_PATH if is_enabled(settings.get("validate")) else COLLECT_PATH
        query = urllib.parse.urlencode(
            {"measurement_id": str(settings["measurement_id"]), "api_secret": str(settings["api_secret"])},
            quote_via=urllib.parse.quote,
        )
        url = f"{_origin(endpoint)}{path}?{query}"
        headers = {"Content-Type": "application/json"}
        groups: dict[bytes, list[Formatted]] = {}
        for shaped in formatted:
            shared = {key: value for key, value in shaped.payload.items() if key != "events"}
            groups.setdefault(orjson.dumps(shared, option=orjson.OPT_SORT_KEYS), []).append(shaped)
        requests: list[OutboundRequest] = []
        for members in groups.values():
            shared = {key: value for key, value in members[0].payload.items() if key != "events"}
            base = len(orjson.dumps({**shared, "events": []}))
            batch: list[Formatted] = []
            events: list[Any] = []
            size = base
            for shaped in members:
                own = shaped.payload.get("events") or []
                grown = size + sum(len(orjson.dumps(e)) + 1 for e in own)
                if batch and (len(events) + len(own) > MAX_EVENTS or grown >= MAX_BODY):
                    requests.append(self._request(url, headers, shared, events, batch))
                    batch, events = [], []
                    grown = base + sum(len(orjson.dumps(e)) + 1 for e in own)
                batch.append(shaped)
                events.extend(own)
                size = grown
            if batch:
                requests.append(self._request(url, headers, shared, events, batch))
        return requests

    @staticmethod
    def _request(
        url: str,
        headers: Mapping[str, str],
        shared: Mapping[str, Any],
        events: list[Any],
        batch: list[Formatted],
    ) -> OutboundRequest:
        body = orjson.dumps({**shared, "events": events})
        return OutboundRequest("POST", url, dict(headers), body, tuple(f.item_id for f in batch))

    def classify(self, request: OutboundRequest, response: VendorResponse) -> dict[str, ItemOutcome]:
        return classify_ga4(request, response)
