"""Rokt Conversions API stand-in: ``POST /v1/conversions`` with Basic auth and a JSON body.

Request-level problems answer 401/400; record-level problems go into
``{"data": {"unprocessedRecords": [{"error": {"code", "message"}, "record": {...}}]}}`` of a 200.
When *every* record of a request is unusable the answer is 400 (the doc's troubleshooting
table: "400 Bad Request: A required identifier is missing"), carrying the same list.
"""

from __future__ import annotations

import base64
import re
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiohttp import web

from . import RecordedRequest, StandIn

__all__ = ["RoktStandIn"]

HASH = re.compile(r"^[0-9a-f]{64}$")
IDENTIFIERS = ("rclid", "emailsha256", "mobilesha256")
MAX_EVENTS = 100


def _error(code: str, message: str, status: int, **extra: Any) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}, **extra}, status=status)


class RoktStandIn(StandIn):
    """Answers like Rokt's Conversions API.

    Constructor: ``api_key``, ``api_secret`` (the valid Basic-auth pair), optional ``account_id``
    (when given, another ``accountId`` answers 401), ``clock`` (epoch seconds, for eventTime checks),
    plus the :class:`StandIn` keywords. ``reject_conversion_ids``: records with these conversionIds
    come back unprocessed with code ``REJECTED`` (to test partial failures).
    """

    path = "/v1/conversions"

    def __init__(
        self,
        api_key: str = "rpub-test",
        api_secret: str = "rsec-test",
        *,
        account_id: str | None = None,
        clock: Callable[[], float] = time.time,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.api_key = api_key
        self.api_secret = api_secret
        self.account_id = account_id
        self.clock = clock
        self.reject_conversion_ids: set[str] = set()
        self.accepted_events: list[dict[str, Any]] = []  # ingested records, in order
        self.test_events: list[dict[str, Any]] = []  # validated under "test": true, not ingested

    def clear(self) -> None:
        super().clear()
        self.accepted_events.clear()
        self.test_events.clear()

    def _authorised(self, record: RecordedRequest) -> bool:
        header = record.header("Authorization") or ""
        expected = base64.b64encode(f"{self.api_key}:{self.api_secret}".encode()).decode()
        return header == f"Basic {expected}"

    def record_problem(self, event: Any) -> tuple[str, str] | None:
        """``(code, message)`` when Rokt would not process this record."""
        if not isinstance(event, dict):
            return "INVALID_RECORD", "each event must be an object"
        for name in ("conversionType", "eventTime"):
            if not isinstance(event.get(name), str) or not event[name]:
                return "MISSING_FIELD", f"{name} is required"
        try:
            moment = datetime.fromisoformat(event["eventTime"].replace("Z", "+00:00"))
        except ValueError:
            return "INVALID_EVENT_TIME", "eventTime must be RFC 3339"
        if moment.tzinfo is None:
            return "INVALID_EVENT_TIME", "eventTime must carry a time zone"
        now = datetime.fromtimestamp(self.clock(), UTC)
        if moment > now + timedelta(seconds=60):
            return "INVALID_EVENT_TIME", "eventTime is in the future"
        if moment < now - timedelta(days=365):
            return "INVALID_EVENT_TIME", "eventTime is older than 12 months"
        if not any(event.get(name) for name in IDENTIFIERS):
            return "MISSING_IDENTIFIER", "at least one of rclid, emailsha256, mobilesha256 is required"
        for name in ("emailsha256", "mobilesha256"):
            if name in event and not (isinstance(event[name], str) and HASH.match(event[name])):
                return "INVALID_HASH", f"{name} must be a lower-case SHA-256 hex digest"
        if str(event.get("conversionId")) in self.reject_conversion_ids:
            return "REJECTED", "rejected by the test's plan"
        return None

    async def answer(self, request: web.Request, record: RecordedRequest) -> web.Response:
        if request.method != "POST":
            return _error("METHOD_NOT_ALLOWED", "use POST", 405)
        if not self._authorised(record):
            return _error("UNAUTHORIZED", "invalid API key or secret", 401)
        if b"@" in record.body:
            return _error("INVALID_REQUEST", "raw email addresses are not accepted: send emailsha256", 400)
        try:
            body = orjson.loads(record.body)
        except orjson.JSONDecodeError:
            return _error("INVALID_REQUEST", "body is not JSON", 400)
        if not isinstance(body, dict) or not body.get("accountId"):
            return _error("INVALID_REQUEST", "accountId is required", 400)
        if self.account_id is not None and str(body["accountId"]) != self.account_id:
            return _error("UNAUTHORIZED", "credentials do not belong to this account", 401)
        events = body.get("events")
        if not isinstance(events, list) or not 1 <= len(events) <= MAX_EVENTS:
            return _error("INVALID_REQUEST", f"events must be a list of 1 to {MAX_EVENTS} records", 400)
        if "test" in body and not isinstance(body["test"], bool):
            return _error("INVALID_REQUEST", "test must be a boolean", 400)

        unprocessed: list[dict[str, Any]] = []
        good: list[dict[str, Any]] = []
        for event in events:
            problem = self.record_problem(event)
            if problem is None:
                good.append(event)
            else:
                unprocessed.append({"error": {"code": problem[0], "message": problem[1]}, "record": event})
        if not good:
            first = unprocessed[0]["error"]
            return _error(first["code"], first["message"], 400, data={"unprocessedRecords": unprocessed})
        (self.test_events if body.get("test") is True else self.accepted_events).extend(good)
        return web.json_response({"data": {"unprocessedRecords": unprocessed}})

    # views for assertions
    def count_by_confirmation_ref(self, conversion_type: str | None = None) -> Counter[str]:
        """Ingested records per confirmationRef (of one conversionType, when given)."""
        return Counter(
            str(e["confirmationRef"])
            for e in self.accepted_events
            if e.get("confirmationRef") and conversion_type in (None, e.get("conversionType"))
        )

    def count_by_dedup_key(self) -> Counter[str]:
        """Ingested records per Rokt dedup key ``conversionType/confirmationRef``."""
        return Counter(
            f"{e.get('conversionType')}/{e['confirmationRef']}"
            for e in self.accepted_events
            if e.get("confirmationRef")
        )

    def count_by_conversion_id(self) -> Counter[str]:
        return Counter(str(e.get("conversionId")) for e in self.accepted_events)

    def duplicates(self) -> dict[str, int]:
        """Dedup keys (``conversionType/confirmationRef``) ingested more than once.

        The real Rokt would drop the repeats silently; the stand-in keeps them so tests can see them.
        """
        return self.duplicates_of(self.count_by_dedup_key())

    def ingested(self, conversion_type: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.accepted_events if conversion_type in (None, e.get("conversionType"))]
