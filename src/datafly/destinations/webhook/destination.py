"""The generic webhook: POSTs each event's canonical JSON (or ``{"batch": [...]}``) to your URL.

Hostile values: the event travels only in the JSON body, unchanged (any text is a valid JSON
string there, ``context.ip`` and ``context.userAgent`` included, as received); no header or URL
is built from the event. The headers are the integration's own (``settings.headers``) and the
``X-Signature`` hex digest.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence

import orjson

from datafly.destinations.base import (
    Destination,
    Formatted,
    Item,
    OutboundRequest,
    SettingField,
    Settings,
    Skip,
    chunks,
    load_presets,
)


class WebhookDestination(Destination):
    vendor = "webhook"
    title = "Webhook"
    settings_schema = (
        SettingField("url", format="url", description="Where events are POSTed: an http:// or https:// URL."),
        SettingField(
            "headers",
            required=False,
            kind="mapping",
            format="headers",
            description="Extra request headers (not Host, Content-Length, Transfer-Encoding or Connection).",
        ),
        SettingField(
            "secret",
            required=False,
            secret=True,
            description="Signs each body: X-Signature: sha256=<HMAC-SHA256 hex>. At least 8 characters.",
        ),
        SettingField(
            "batch_size", required=False, kind="integer", default=1, description="Events per request."
        ),
    )
    presets = load_presets(os.path.dirname(__file__))
    max_batch = 100
    max_wait = 0.1

    def endpoint(self, settings: Settings, override: str | None) -> str:
        return override or str(settings["url"])

    def format_item(self, item: Item, settings: Settings) -> Formatted | Skip:
        return Formatted(item.id, item.event)

    def build_requests(
        self, formatted: Sequence[Formatted], settings: Settings, endpoint: str
    ) -> list[OutboundRequest]:
        size = int(settings.get("batch_size") or 1)
        headers = {
            "Content-Type": "application/json",
            **{str(k): str(v) for k, v in (settings.get("headers") or {}).items()},
        }
        requests = []
        for group in chunks(formatted, size):
            body = (
                orjson.dumps(group[0].payload)
                if size <= 1
                else orjson.dumps({"batch": [f.payload for f in group]})
            )
            request_headers = dict(headers)
            secret = settings.get("secret")
            if secret:
                digest = hmac.new(str(secret).encode(), body, hashlib.sha256).hexdigest()
                request_headers["X-Signature"] = f"sha256={digest}"
            requests.append(
                OutboundRequest("POST", endpoint, request_headers, body, tuple(f.item_id for f in group))
            )
        return requests
