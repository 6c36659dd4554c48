"""Webhook receiver stand-in: accepts POSTed JSON, verifies ``X-Signature`` when given a secret."""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from typing import Any

import orjson
from aiohttp import web

from . import RecordedRequest, StandIn

__all__ = ["WebhookStandIn"]


class WebhookStandIn(StandIn):
    """405 for non-POST; 401 when ``secret`` is set and ``X-Signature`` is not
    ``sha256=<HMAC-SHA256 hex of the raw body>``; 400 for a body that is not JSON; else 200.
    """

    path = "/hook"

    def __init__(self, secret: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.secret = secret

    def signature_ok(self, record: RecordedRequest) -> bool:
        if not self.secret:
            return True
        expected = "sha256=" + hmac.new(self.secret.encode(), record.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(record.header("X-Signature") or "", expected)

    async def answer(self, request: web.Request, record: RecordedRequest) -> web.Response:
        if request.method != "POST":
            return web.Response(status=405, text="method not allowed")
        if not self.signature_ok(record):
            return web.json_response({"error": "bad signature"}, status=401)
        try:
            orjson.loads(record.body)
        except orjson.JSONDecodeError:
            return web.json_response({"error": "body is not JSON"}, status=400)
        return web.json_response({"ok": True})

    # views for assertions
    def events(self) -> list[dict[str, Any]]:
        """Every event of every accepted request, batches flattened, in arrival order."""
        found: list[dict[str, Any]] = []
        for record in self.requests:
            if not (record.accepted and record.path == self.path):
                continue
            body = record.json()
            found.extend(body["batch"] if isinstance(body, dict) and "batch" in body else [body])
        return found

    def count_by_message_id(self) -> Counter[str]:
        return Counter(str(e.get("messageId")) for e in self.events() if isinstance(e, dict))

    def duplicates(self) -> dict[str, int]:
        return self.duplicates_of(self.count_by_message_id())
