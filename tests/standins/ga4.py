"""GA4 Measurement Protocol stand-in: ``POST /mp/collect`` and ``POST /debug/mp/collect``.

Like GA4, ``/mp/collect`` answers ``204`` to anything: a wrong api_secret, a body that is not JSON,
an event GA4 would drop. What a real GA4 would have dropped is recorded in :attr:`dropped` (with
GA's validation code), what it would have kept in :attr:`accepted_events`, so a test can assert
that nothing droppable was sent. ``/debug/mp/collect`` answers ``200 {"validationMessages":
[...]}`` with the same rules, worded like GA's validation server ("Event at index: [N] ...").

The rules are written here again from GA's documentation (not imported from the destination):
at most 25 events and a body under 130 kB; ``client_id`` required; ``user_id`` at most 256
characters; ``timestamp_micros`` (event or request) within 72 hours before now and not in the
future; event and parameter names of at most 40 letters, digits and ``_`` starting with a
letter, no reserved event name, no ``google_``/``ga_``/``firebase_`` prefix; at most 25
parameters; values text (at most 100 characters; page_location 1,000, page_referrer 420,
page_title 300), numbers or booleans; ``items`` a list of at most 200 objects with ``item_id`` or
``item_name``; at most 25 user properties; ``user_data`` hashes are arrays of 64 lower-case hex
characters; consent values ``GRANTED``/``DENIED``; never a raw email address anywhere.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from . import RecordedRequest, StandIn

__all__ = ["Ga4StandIn"]

COLLECT = "/mp/collect"
DEBUG = "/debug/mp/collect"
HEX64 = re.compile(r"^[0-9a-f]{64}$")
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")
RAW_EMAIL = re.compile(rb"[\w.+-]+@[\w-]+\.[\w.-]+")
RESERVED = frozenset(
    [
        "ad_click",
        "ad_exposure",
        "ad_query",
        "ad_reward",
        "adunit_exposure",
        "app_clear_data",
        "app_exception",
        "app_install",
        "app_remove",
        "app_store_refund",
        "app_store_subscription_cancel",
        "app_store_subscription_convert",
        "app_store_subscription_renew",
        "app_update",
        "app_upgrade",
        "dynamic_link_app_open",
        "dynamic_link_app_update",
        "error",
        "first_open",
        "first_visit",
        "in_app_purchase",
        "notification_dismiss",
        "notification_foreground",
        "notification_open",
        "notification_receive",
        "notification_send",
        "os_update",
        "screen_view",
        "session_start",
        "user_engagement",
    ]
)
PREFIXES = ("google_", "ga_", "firebase_")
LONG = {"page_location": 1000, "page_referrer": 420, "page_title": 300}


def _message(path: str, description: str, code: str) -> dict[str, str]:
    return {"fieldPath": path, "description": description, "validationCode": code}


class Ga4StandIn(StandIn):
    """Answers like GA4's Measurement Protocol. Configure the integration's ``endpoint`` with
    :attr:`origin` (the destination adds the path). ``clock`` gives "now" in epoch seconds."""

    path = COLLECT
    paths = (DEBUG,)  # GA4's validation server, under the same origin

    def __init__(
        self,
        measurement_id: str = "G-TEST123456",
        api_secret: str = "test-api-secret",
        *,
        clock: Callable[[], float] = time.time,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.measurement_id = measurement_id
        self.api_secret = api_secret
        self.clock = clock
        self.accepted_events: list[dict[str, Any]] = []  # kept by GA4: request fields + the event
        self.dropped: list[dict[str, Any]] = []  # what GA4 would have dropped: {"message", "body"}
        self.validated: list[dict[str, Any]] = []  # events sent to the validation server

    @property
    def origin(self) -> str:
        return self.base_url

    def clear(self) -> None:
        super().clear()
        self.accepted_events.clear()
        self.dropped.clear()
        self.validated.clear()

    # GA's rules -----------------------------------------------------------------------------

    def _value(self, index: int, name: str, value: Any, limit: int) -> dict[str, str] | None:
        if isinstance(value, bool | int | float):
            return None
        if isinstance(value, str):
            if len(value) > limit:
                return _message(
                    "events",
                    f"Event at index: [{index}] has param [{name}] with value longer than {limit}.",
                    "VALUE_OUT_OF_BOUNDS",
                )
            return None
        return _message(
            "events", f"Event at index: [{index}] has param [{name}] of an invalid type.", "VALUE_INVALID"
        )

    def _items(self, index: int, items: Any) -> list[dict[str, str]]:
        if not isinstance(items, list) or len(items) > 200:
            return [_message("events", f"Event at index: [{index}] has invalid items.", "VALUE_INVALID")]
        found = []
        for position, item in enumerate(items):
            if not isinstance(item, dict) or not (item.get("item_id") or item.get("item_name")):
                found.append(
                    _message(
                        "events",
                        f"Event at index: [{index}] has item at index [{position}] "
                        "without item_id or item_name.",
                        "VALUE_REQUIRED",
                    )
                )
                continue
            for key, value in item.items():
                problem = self._value(index, f"items[{position}].{key}", value, 100)
                if problem:
                    found.append(problem)
        return found

    def _event(self, index: int, event: Any, request_micros: Any) -> list[dict[str, str]]:
        if not isinstance(event, dict):
            return [_message("events", f"Event at index: [{index}] is not an object.", "VALUE_INVALID")]
        name = event.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            return [
                _message(
                    "events",
                    f"Event at index: [{index}] has invalid name [{name}]. Names must start with "
                    "an alphabetic character.",
                    "NAME_INVALID",
                )
            ]
        if name in RESERVED or name.startswith(PREFIXES):
            return [
                _message(
                    "events",
                    f"Event at index: [{index}] has name [{name}] which is reserved.",
                    "NAME_RESERVED",
                )
            ]
        micros = event.get("timestamp_micros", request_micros)
        now = self.clock()
        if micros is not None and (
            not isinstance(micros, int) or not now - 72 * 3600 <= micros / 1e6 <= now + 60
        ):
            return [
                _message(
                    "events",
                    f"Event at index: [{index}] has timestamp_micros out of the 72 hour window.",
                    "VALUE_OUT_OF_BOUNDS",
                )
            ]
        params = event.get("params", {})
        if not isinstance(params, dict):
            return [
                _message(
                    "events", f"Event at index: [{index}] has params that are not an object.", "VALUE_INVALID"
                )
            ]
        found = []
        if len(params) > 25:
            found.append(
                _message(
                    "events", f"Event at index: [{index}] has more than 25 params.", "EXCEEDED_MAX_ENTITIES"
                )
            )
        for key, value in params.items():
            if not NAME.match(key) or key.startswith(PREFIXES):
                found.append(
                    _message(
                        "events", f"Event at index: [{index}] has invalid param name [{key}].", "NAME_INVALID"
                    )
                )
            elif key == "items":
                found.extend(self._items(index, value))
            else:
                problem = self._value(index, key, value, LONG.get(key, 100))
                if problem:
                    found.append(problem)
        return found

    def validation_messages(self, record: RecordedRequest) -> list[dict[str, str]]:
        """What GA4's validation server would say about this request ([] when it would keep it all)."""
        if (
            record.query.get("measurement_id") != self.measurement_id
            or record.query.get("api_secret") != self.api_secret
        ):
            # (the real validation server does not check them; /mp/collect drops everything silently)
            return [
                _message(
                    "api_secret", "measurement_id or api_secret does not match the stream.", "VALUE_INVALID"
                )
            ]
        if len(record.body) >= 130_000:
            return [_message("", "The POST body must be smaller than 130kB.", "VALUE_OUT_OF_BOUNDS")]
        if RAW_EMAIL.search(record.body):
            return [
                _message(
                    "", "Raw email address found: personal information must not be sent.", "VALUE_INVALID"
                )
            ]
        try:
            body = orjson.loads(record.body)
        except orjson.JSONDecodeError:
            return [_message("", "Unable to parse the request body as JSON.", "VALUE_INVALID")]
        if not isinstance(body, dict):
            return [_message("", "The request body must be a JSON object.", "VALUE_INVALID")]
        found = []
        if not isinstance(body.get("client_id"), str) or not body["client_id"]:
            found.append(_message("client_id", "Measurement requires a client_id.", "VALUE_REQUIRED"))
        user_id = body.get("user_id")
        if user_id is not None and (not isinstance(user_id, str) or len(user_id) > 256):
            found.append(
                _message("user_id", "user_id must be text of at most 256 characters.", "VALUE_OUT_OF_BOUNDS")
            )
        user_data = body.get("user_data", {})
        for key in ("sha256_email_address", "sha256_phone_number"):
            values = user_data.get(key, []) if isinstance(user_data, dict) else None
            if not isinstance(values, list) or not all(isinstance(v, str) and HEX64.match(v) for v in values):
                found.append(
                    _message(f"user_data.{key}", "Must be a list of SHA-256 hex digests.", "VALUE_INVALID")
                )
        consent = body.get("consent", {})
        if not isinstance(consent, dict) or any(v not in ("GRANTED", "DENIED") for v in consent.values()):
            found.append(_message("consent", "Consent values must be GRANTED or DENIED.", "VALUE_INVALID"))
        properties = body.get("user_properties", {})
        if not isinstance(properties, dict) or len(properties) > 25:
            found.append(_message("user_properties", "At most 25 user properties.", "EXCEEDED_MAX_ENTITIES"))
        events = body.get("events")
        if not isinstance(events, list) or not events:
            return [*found, _message("events", "Measurement requires at least one event.", "VALUE_REQUIRED")]
        if len(events) > 25:
            return [
                *found,
                _message("events", "A request can have at most 25 events.", "EXCEEDED_MAX_ENTITIES"),
            ]
        for index, event in enumerate(events):
            found.extend(self._event(index, event, body.get("timestamp_micros")))
        return found

    # serving ---------------------------------------------------------------------------------

    async def answer(self, request: web.Request, record: RecordedRequest) -> web.Response:
        if request.method != "POST":
            return web.Response(status=405, text="Method Not Allowed")
        messages = self.validation_messages(record)
        if request.path == DEBUG:
            self.validated.append({"body": record.body, "messages": messages})
            return web.json_response({"validationMessages": messages})
        if messages:
            self.dropped.append({"messages": messages, "body": record.body})
            return web.Response(status=204)
        body = orjson.loads(record.body)
        shared = {key: value for key, value in body.items() if key != "events"}
        self.accepted_events.extend({**shared, **event} for event in body["events"])
        return web.Response(status=204)

    # views for assertions ---------------------------------------------------------------------

    def events_named(self, name: str) -> list[dict[str, Any]]:
        return [event for event in self.accepted_events if event.get("name") == name]

    def count_by_transaction_id(self) -> Counter[str]:
        return Counter(
            str(e["params"].get("transaction_id"))
            for e in self.accepted_events
            if e.get("name") == "purchase"
        )

    def count_by_event(self) -> Counter[str]:
        """Kept events per (client_id, name, timestamp_micros, params): one delivery each."""
        return Counter(
            orjson.dumps(
                [e.get("client_id"), e.get("name"), e.get("timestamp_micros"), e.get("params")],
                option=orjson.OPT_SORT_KEYS,
            ).decode()
            for e in self.accepted_events
        )

    def duplicates(self) -> dict[str, int]:
        return self.duplicates_of(self.count_by_event())
