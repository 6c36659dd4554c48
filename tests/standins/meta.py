"""Meta Conversions API stand-in: ``POST /{api_version}/{pixel_id}/events?access_token=…`` with a
JSON body ``{"data": [...], "test_event_code"?}``.

Like Meta, it takes a request whole or not at all: one invalid event refuses the whole request
with HTTP 400 and one Graph API error, ``{"error": {"message", "type": "OAuthException", "code":
100, "error_subcode", "is_transient": false, "error_user_title", "error_user_msg",
"fbtrace_id"}}``; nothing of it is ingested. A missing or wrong token answers 400 with code 190.
Accepted: ``{"events_received": N, "messages": [], "fbtrace_id": ...}``.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from . import RecordedRequest, StandIn

__all__ = ["MetaStandIn"]

HASH = re.compile(r"^[0-9a-f]{64}$")
COOKIE = re.compile(r"^fb\.\d\.\d+\.\S+$")
CURRENCY = re.compile(r"^[A-Z]{3}$")
MAX_EVENTS = 1000
SEVEN_DAYS = 7 * 86_400
ACTION_SOURCES = {"website", "app", "email", "phone_call", "chat", "physical_store", "system_generated",
                  "business_messaging", "other"}
HASHED = ("em", "ph", "external_id")


class Invalid(Exception):
    def __init__(self, subcode: int, title: str, message: str) -> None:
        super().__init__(message)
        self.subcode, self.title, self.message = subcode, title, message


def graph_error(status: int, code: int, message: str, *, subcode: int | None = None, title: str = "",
                user_message: str = "", transient: bool = False, kind: str = "OAuthException") -> web.Response:
    error: dict[str, Any] = {"message": message, "type": kind, "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    error["is_transient"] = transient
    if title:
        error["error_user_title"] = title
    if user_message:
        error["error_user_msg"] = user_message
    error["fbtrace_id"] = secrets.token_urlsafe(9)
    return web.json_response({"error": error}, status=status)


class MetaStandIn(StandIn):
    """Answers like Meta's ``/events`` edge for one pixel.

    Constructor: ``pixel_id``, ``access_token`` (the valid one), ``api_version`` (the path's
    version), ``clock`` (epoch seconds, for the 7-day window), plus the :class:`StandIn` keywords.
    ``reject_event_ids``: events with these ``event_id`` are invalid (to plan a refusal).
    """

    def __init__(
        self,
        pixel_id: str = "1234567890",
        access_token: str = "EAAtest0123456789",
        api_version: str = "v26.0",
        *,
        clock: Callable[[], float] = time.time,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.pixel_id = pixel_id
        self.access_token = access_token
        self.path = f"/{api_version}/{pixel_id}/events"
        self.clock = clock
        self.reject_event_ids: set[str] = set()
        self.accepted_events: list[dict[str, Any]] = []  # ingested server events, in order
        self.test_events: list[dict[str, Any]] = []  # sent with a test_event_code: Test Events only

    def clear(self) -> None:
        super().clear()
        self.accepted_events.clear()
        self.test_events.clear()

    def event_problem(self, event: Any) -> None:
        """Raises :class:`Invalid` when Meta would refuse this server event (and its request)."""
        if not isinstance(event, dict):
            raise Invalid(2804001, "Invalid Event", "each event must be an object")
        name = event.get("event_name")
        if not isinstance(name, str) or not name.strip():
            raise Invalid(2804001, "Missing Event Name", "event_name is required")
        moment = event.get("event_time")
        if isinstance(moment, bool) or not isinstance(moment, int):
            raise Invalid(2804002, "Invalid Event Time", "event_time must be a unix timestamp in seconds")
        now = self.clock()
        if moment < now - SEVEN_DAYS:
            raise Invalid(2804003, "Event Timestamp Too Old",
                          "The timestamp for this event is more than 7 days in the past.")
        if moment > now + 60:
            raise Invalid(2804004, "Event Timestamp In Future", "The timestamp for this event is in the future.")
        source = event.get("action_source")
        if source not in ACTION_SOURCES:
            raise Invalid(2804005, "Invalid Action Source", f"action_source {source!r} is not supported")
        user = event.get("user_data")
        if not isinstance(user, dict) or not user:
            raise Invalid(2804006, "Missing User Data", "user_data is required")
        if source == "website":
            if not isinstance(event.get("event_source_url"), str) or not event["event_source_url"]:
                raise Invalid(2804007, "Missing Event Source URL", "event_source_url is required for website events")
            if not isinstance(user.get("client_user_agent"), str) or not user["client_user_agent"]:
                raise Invalid(2804050, "Missing User Agent",
                              "client_user_agent is required for events whose action_source is website")
        for key in HASHED:
            values = user.get(key)
            if values is None:
                continue
            values = values if isinstance(values, list) else [values]
            if key != "external_id" and not all(isinstance(v, str) and HASH.match(v) for v in values):
                raise Invalid(2804008, "Unhashed Customer Information", f"user_data.{key} must be SHA-256 hashes")
        ip = user.get("client_ip_address")
        if ip is not None:
            try:
                ipaddress.ip_address(ip)
            except (ValueError, TypeError):
                raise Invalid(2804009, "Invalid IP Address", f"client_ip_address {ip!r} is not an IP address") from None
        for key in ("fbc", "fbp"):
            if key in user and not (isinstance(user[key], str) and COOKIE.match(user[key])):
                raise Invalid(2804010, f"Invalid {key}", f"user_data.{key} must look like fb.1.<ms>.<value>")
        custom = event.get("custom_data", {})
        if not isinstance(custom, dict):
            raise Invalid(2804011, "Invalid Custom Data", "custom_data must be an object")
        if "currency" in custom and not (isinstance(custom["currency"], str) and CURRENCY.match(custom["currency"])):
            raise Invalid(2804019, "Invalid Currency Code",
                          f"The currency code {custom['currency']!r} is not a valid ISO 4217 code.")
        if "value" in custom and (isinstance(custom["value"], bool) or not isinstance(custom["value"], int | float)):
            raise Invalid(2804020, "Invalid Value", "custom_data.value must be a number")
        if name == "Purchase" and ("value" not in custom or "currency" not in custom):
            raise Invalid(2804021, "Missing Purchase Value",
                          "value and currency are required for Purchase events")
        if str(event.get("event_id")) in self.reject_event_ids:
            raise Invalid(2804099, "Rejected", "rejected by the test's plan")

    async def answer(self, request: web.Request, record: RecordedRequest) -> web.Response:
        if request.method != "POST":
            return graph_error(400, 100, "Unsupported get request.", kind="GraphMethodException")
        token = record.query.get("access_token")
        if not token:
            return graph_error(400, 104, "An access token is required to request this resource.")
        if token != self.access_token:
            return graph_error(400, 190, "Invalid OAuth access token - Cannot parse access token")
        if b"@" in record.body:
            return graph_error(400, 100, "Invalid parameter", subcode=2804008, title="Unhashed Customer Information",
                               user_message="raw email addresses are not accepted: hash them (em)")
        try:
            body = orjson.loads(record.body)
        except orjson.JSONDecodeError:
            return graph_error(400, 100, "Invalid parameter", user_message="the body is not JSON")
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or not 1 <= len(data) <= MAX_EVENTS:
            return graph_error(400, 100, "Invalid parameter", subcode=2804001, title="Invalid Events",
                               user_message=f"data must be a list of 1 to {MAX_EVENTS} events")
        test_code = body.get("test_event_code")
        if test_code is not None and not isinstance(test_code, str):
            return graph_error(400, 100, "Invalid parameter", user_message="test_event_code must be a string")
        for index, event in enumerate(data):
            try:
                self.event_problem(event)
            except Invalid as bad:  # one bad event: the whole request is refused, nothing ingested
                return graph_error(400, 100, "Invalid parameter", subcode=bad.subcode, title=bad.title,
                                   user_message=f"{bad.message} (event {index})")
        (self.test_events if test_code else self.accepted_events).extend(data)
        return web.json_response({"events_received": len(data), "messages": [],
                                  "fbtrace_id": secrets.token_urlsafe(9)})

    # views for assertions
    def count_by_event_id(self) -> Counter[str]:
        return Counter(str(e.get("event_id")) for e in self.accepted_events)

    def duplicates(self) -> dict[str, int]:
        """``event_id`` values ingested more than once (Meta would deduplicate them; kept here to see)."""
        return self.duplicates_of(self.count_by_event_id())

    def refused(self) -> list[RecordedRequest]:
        """Requests refused whole (HTTP 400)."""
        return [r for r in self.requests if r.status == 400]
