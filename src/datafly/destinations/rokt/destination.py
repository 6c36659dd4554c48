"""Rokt Conversions API: batched JSON POSTs with HTTP Basic auth (vendor-docs/rokt.txt)."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import yaml

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
    basic_auth,
    chunks,
    load_presets,
)
from datafly.destinations.rokt.conversion import NO_IDENTIFIER, build_conversion
from datafly.destinations.rokt.responses import classify_rokt

__all__ = ["RoktDestination"]

_FOLDER = os.path.dirname(__file__)


def _preset_fields(folder: str) -> dict[str, frozenset[str]]:
    with open(os.path.join(folder, "presets.yaml"), encoding="utf-8") as fh:
        raw: Mapping[str, Any] = yaml.safe_load(fh)
    return {name: frozenset(spec.get("fields") or ()) for name, spec in raw.items()}


def is_enabled(value: Any) -> bool:
    """A boolean setting that may arrive as text from an environment variable."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


class RoktDestination(Destination):
    vendor = "rokt"
    title = "Rokt"
    settings_schema = (
        SettingField("account_id", description="Your Rokt advertiser Account ID."),
        SettingField(
            "api_key",
            secret=True,
            description="API public key (rpub-…). Used as the Basic-auth username.",
            pattern=r"rpub-[A-Za-z0-9._~+\/=\-]+",
            format_hint="the public key Rokt issued, starting with rpub-",
        ),
        SettingField(
            "api_secret",
            secret=True,
            description="API secret key (rsec-…). Used as the Basic-auth password.",
            pattern=r"rsec-[A-Za-z0-9._~+\/=\-]+",
            format_hint="the secret key Rokt issued, starting with rsec-",
        ),
        SettingField(
            "test",
            required=False,
            kind="boolean",
            default=False,
            description="Rokt validates the conversions without ingesting them (for trying a setup).",
        ),
    )
    presets = load_presets(_FOLDER)
    preset_fields = _preset_fields(_FOLDER)
    default_endpoint = "https://api.rokt.com/v1/conversions"
    max_batch = 100  # the real API's bound per request
    max_wait = 0.5
    known_fields = (
        "conversionType", "conversionId", "eventTime", "confirmationRef", "value", "currency", "margin",
        "quantity", "rclid", "emailsha256", "mobilesha256", "ipAddress", "userAgent",
    )  # fmt: skip

    def check_fields(self, fields: Mapping[str, Any]) -> Skip | None:
        if not (fields.get("rclid") or fields.get("emailsha256") or fields.get("mobilesha256")):
            return Skip(NO_IDENTIFIER)
        return None

    def format_item(self, item: Item, settings: Settings, *, now: float | None = None) -> Formatted | Skip:
        """The conversion record of one event; ``now`` (epoch seconds) defaults to the clock.

        The preset's optional fields are chosen by ``settings["preset"]`` (default: ``default``).
        """
        moment = datetime.fromtimestamp(time.time() if now is None else now, UTC)
        fields = self.preset_fields.get(str(settings.get("preset") or "default"), frozenset())
        record = build_conversion(item.event, item.mapping, moment, fields)
        return record if isinstance(record, Skip) else Formatted(item.id, record)

    def build_requests(
        self, formatted: Sequence[Formatted], settings: Settings, endpoint: str
    ) -> list[OutboundRequest]:
        headers = {
            "Authorization": basic_auth(str(settings["api_key"]), str(settings["api_secret"])),
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        requests = []
        for group in chunks(formatted, self.max_batch):
            body: dict[str, Any] = {
                "accountId": str(settings["account_id"]),
                "events": [f.payload for f in group],
            }
            if is_enabled(settings.get("test")):
                body["test"] = True
            requests.append(
                OutboundRequest(
                    "POST", endpoint, dict(headers), orjson.dumps(body), tuple(f.item_id for f in group)
                )
            )
        return requests

    def classify(self, request: OutboundRequest, response: VendorResponse) -> dict[str, ItemOutcome]:
        return classify_rokt(request, response)
