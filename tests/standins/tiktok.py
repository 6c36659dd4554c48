"""TikTok Events API 2.0 stand-in: ``POST /open_api/v1.3/event/track/`` with an ``Access-Token``
header and a JSON body.

TikTok answers HTTP 200 whatever happened; ``{"code", "message", "request_id", "data"}`` says
what (see src/datafly/destinations/tiktok/responses.py for the codes). The stand-in checks what
TikTok checks and answers the same way:

- ``Access-Token`` missing: code 40104; not the valid token: 40105 (no ``Bearer`` prefix: TikTok
  takes the token alone);
- a body that is not a JSON object, an ``event_source`` other than web/app/offline/crm, no
  ``event_source_id``, ``data`` not a list of 1 to 1,000 events, an event without ``event``, with
  an ``event_time`` that is not unix seconds (an integer, not in the future, not in
  milliseconds), a ``user.email``/``phone``/``external_id`` that is not 64 lower-case hex, a
  ``user.ip`` that is not an IP address (a port, a list), a ``limited_data_use`` that is not a
  boolean: code 40002 with the reason, nothing of the request ingested (TikTok validates the
  request as a whole);
- an ``event_source_id`` other than the stand-in's ``pixel_code``: 40001 "No permission";
- otherwise code 0; events with a ``test_event_code`` are kept apart (shown in Test Events, not
  ingested).

``fail_next_code(n, code, message)`` answers the next ``n`` requests with HTTP 200 and that code
(a throttle 40100, an internal 40700, ...), ingesting nothing.
"""

from __future__ import annotations

import ipaddress
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from . import RecordedRequest, StandIn

__all__ = ["TikTokStandIn"]

HASH = re.compile(r"^[0-9a-f]{64}$")
HASHED = ("email", "phone", "external_id")
SOURCES = ("web", "app", "offline", "crm")
MAX_EVENTS = 1000


def _answer(code: int, message: str, **data: Any) -> web.Response:
    body = {"code": code, "message": message, "request_id": uuid.uuid4().hex.upper(), "data": data}
    return web.json_response(body, status=200)


def _is_ip(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


class TikTokStandIn(StandIn):
    """Answers like TikTok's Events API 2.0.

    Constructor: ``access_token`` (the valid token), ``pixel_code`` (the pixel it owns),
    ``clock`` (epoch seconds, for event_time checks), plus the :class:`StandIn` keywords.
    """

    path = "/open_api/v1.3/event/track/"

    def __init__(
        self,
        access_token: str = "tt-test-access-token-000000",
        pixel_code: str = "CTESTPIXEL1234567890",
        *,
        clock: Callable[[], float] = time.time,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.access_token = access_token
        self.pixel_code = pixel_code
        self.clock = clock
        self.accepted_events: list[dict[str, Any]] = []  # ingested events, in order
        self.test_events: list[dict[str, Any]] = []  # sent with a test_event_code: not ingested

    def clear(self) -> None:
        super().clear()
        self.accepted_events.clear()
        self.test_events.clear()

    def fail_next_code(self, n: int, code: int, message: str, headers: dict[str, str] | None = None) -> None:
        """Answer the next ``n`` requests with HTTP 200 and TikTok's ``code`` (nothing ingested)."""
        body = orjson.dumps({"code": code, "message": message, "request_id": "PLANNED", "data": {}})
        self.fail_next(n, 200, {"Content-Type": "application/json", **(headers or {})}, body)

    def event_problem(self, index: int, event: Any) -> str | None:
        """Why TikTok would refuse this ``data`` entry (code 40002), or None."""
        where = f"data[{index}]"
        if not isinstance(event, dict):
            return f"{where}: must be an object"
        if not isinstance(event.get("event"), str) or not event["event"].strip():
            return f"{where}.event: is required"
        seconds = event.get("event_time")
        if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds <= 0:
            return f"{where}.event_time: must be a unix timestamp in seconds"
        if seconds > self.clock() + 300:
            return f"{where}.event_time: is in the future (or in milliseconds)"
        if "event_id" in event and not isinstance(event["event_id"], str):
            return f"{where}.event_id: must be a string"
        user = event.get("user", {})
        if not isinstance(user, dict):
            return f"{where}.user: must be an object"
        for name in HASHED:
            if name in user:
                values = user[name] if isinstance(user[name], list) else [user[name]]
                if not values or not all(isinstance(v, str) and HASH.match(v) for v in values):
                    return f"{where}.user.{name}: must be a SHA-256 hex digest (64 lower-case hex)"
        if "ip" in user and not _is_ip(user["ip"]):
            return f"{where}.user.ip: must be an IPv4 or IPv6 address"
        for name in ("ttclid", "ttp", "user_agent", "locale"):
            if name in user and not isinstance(user[name], str):
                return f"{where}.user.{name}: must be a string"
        page = event.get("page", {})
        if not isinstance(page, dict) or not all(
            isinstance(page.get(k, ""), str) for k in ("url", "referrer")
        ):
            return f"{where}.page: url and referrer must be strings"
        properties = event.get("properties", {})
        if not isinstance(properties, dict):
            return f"{where}.properties: must be an object"
        if "value" in properties and (
            not isinstance(properties["value"], int | float) or isinstance(properties["value"], bool)
        ):
            return f"{where}.properties.value: must be a number"
        contents = properties.get("contents", [])
        if not isinstance(contents, list) or not all(isinstance(c, dict) for c in contents):
            return f"{where}.properties.contents: must be a list of objects"
        if "limited_data_use" in event and not isinstance(event["limited_data_use"], bool):
            return f"{where}.limited_data_use: must be a boolean"
        return None

    async def answer(self, request: web.Request, record: RecordedRequest) -> web.Response:
        if request.method != "POST":
            return web.json_response({"code": 40002, "message": "method not allowed"}, status=405)
        token = record.header("Access-Token")
        if not token:
            return _answer(40104, "Access token is null, you should set it in http header")
        if token != self.access_token:
            return _answer(40105, "Access token is incorrect or has been revoked.")
        try:
            body = orjson.loads(record.body)
        except orjson.JSONDecodeError:
            return _answer(40002, "Invalid JSON in the request body")
        if not isinstance(body, dict):
            return _answer(40002, "The request body must be a JSON object")
        if body.get("event_source") not in SOURCES:
            return _answer(40002, f"event_source: must be one of {', '.join(SOURCES)}")
        source_id = body.get("event_source_id")
        if not isinstance(source_id, str) or not source_id:
            return _answer(40002, "event_source_id: is required")
        if source_id != self.pixel_code:
            return _answer(40001, f"No permission to operate pixel code: {source_id}")
        data = body.get("data")
        if not isinstance(data, list) or not 1 <= len(data) <= MAX_EVENTS:
            return _answer(40002, f"data: must be a list of 1 to {MAX_EVENTS} events")
        if "test_event_code" in body and not isinstance(body["test_event_code"], str):
            return _answer(40002, "test_event_code: must be a string")
        for index, event in enumerate(data):
            problem = self.event_problem(index, event)
            if problem:
                return _answer(40002, problem)
        (self.test_events if body.get("test_event_code") else self.accepted_events).extend(data)
        return _answer(0, "OK")

    # views for assertions
    def count_by_event_id(self) -> Counter[str]:
        return Counter(str(e.get("event_id")) for e in self.accepted_events)

    def count_by_dedup_key(self) -> Counter[str]:
        """Ingested events per TikTok dedup key ``event/event_id``."""
        return Counter(f"{e.get('event')}/{e.get('event_id')}" for e in self.accepted_events)

    def duplicates(self) -> dict[str, int]:
        """Dedup keys ingested more than once (TikTok would keep the first; the stand-in keeps all)."""
        return self.duplicates_of(self.count_by_dedup_key())

    def ingested(self, event: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.accepted_events if event in (None, e.get("event"))]
