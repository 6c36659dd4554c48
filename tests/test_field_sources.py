"""Field-source overrides (``integrations[].fields``): validation, and what each vendor then sends."""

from __future__ import annotations

import hashlib
import time
import urllib.parse
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from datafly.config import parse_config
from datafly.destinations.base import Formatted, Item, Skip
from datafly.destinations.exactag.destination import ExactagDestination
from datafly.destinations.fields import resolve_path
from datafly.destinations.rokt.conversion import NO_IDENTIFIER
from datafly.destinations.rokt.destination import RoktDestination
from datafly.destinations.webhook.destination import WebhookDestination
from datafly.errors import ConfigError

EXACTAG = ExactagDestination()
ROKT = RoktDestination()
WEBHOOK = WebhookDestination()
EMAIL_SHA = hashlib.sha256(b"jane.doe@example.com").hexdigest()


def problems(fields: str, vendor: str = "exactag") -> list[str]:
    settings = {
        "exactag": "{campaign_code: cccccccccccccccccccccccccccccccc}",
        "rokt": "{account_id: '1', api_key: rpub-key1, api_secret: rsec-secret1}",
        "webhook": "{url: 'http://127.0.0.1:9/hook'}",
    }[vendor]
    text = f"integrations:\n  - {{id: x, vendor: {vendor}, settings: {settings}, fields: {fields}}}\n"
    with pytest.raises(ConfigError) as exc:
        parse_config(text, {})
    return exc.value.problems


def order(**properties: Any) -> dict[str, Any]:
    """A processed Order Completed event, as the delivery worker reads it from the queue."""
    return {
        "type": "track",
        "event": "Order Completed",
        "messageId": "msg-1",
        "anonymousId": "anon-1",
        "userId": "user-123",
        "timestamp": datetime.fromtimestamp(time.time() - 60, UTC).isoformat().replace("+00:00", "Z"),
        "properties": {"order_id": "ORD-1", "revenue": 129.99, "currency": "EUR", "affiliation": "web",
                       **properties},
        "context": {
            "ip": "203.0.113.50",
            "userAgent": "UA/1.0",
            "page": {"url": "https://shop.example/checkout"},
            "session": {"id": "sess-1", "number": 2},
            "consent": {"canonical": {"marketing": True, "advertising": True}},
            "traits": {"email_sha256": EMAIL_SHA},
            "clickIds": {"rclid": "rclid-1"},
        },
    }


def exactag_query(event: dict[str, Any], fields: dict[str, str | None]) -> dict[str, str] | Skip:
    shaped = EXACTAG.format_for(Item("i1", event, "conversion"), {"campaign_code": "CODE"}, fields)
    if isinstance(shaped, Skip):
        return shaped
    (request,) = EXACTAG.build_requests([shaped], {"campaign_code": "CODE"}, EXACTAG.default_endpoint)
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(request.url).query))


def rokt_record(event: dict[str, Any], fields: dict[str, str | None]) -> dict[str, Any] | Skip:
    settings = {"account_id": "1", "api_key": "k", "api_secret": "s"}
    shaped = ROKT.format_for(Item("i1", event, "purchase"), settings, fields)
    if isinstance(shaped, Skip):
        return shaped
    (request,) = ROKT.build_requests([shaped], settings, ROKT.default_endpoint)
    assert request.body is not None
    record: dict[str, Any] = orjson.loads(request.body)["events"][0]
    return record


# config validation -----------------------------------------------------------------------------


def test_the_config_file_takes_paths_constants_and_null() -> None:
    config = parse_config(
        "integrations:\n"
        "  - id: x\n    vendor: exactag\n    settings: {campaign_code: cccccccccccccccccccccccccccccccc}\n    fields:\n"
        "      uk: context.traits.email_sha256\n      euk: null\n      level: =web\n"
        "      totalprice: properties.total\n      params.currency: properties.currency\n",
        {},
    )
    assert config.integrations[0].fields == {
        "uk": "context.traits.email_sha256",
        "euk": None,
        "level": "=web",
        "totalprice": "properties.total",
        "params.currency": "properties.currency",
    }
    assert parse_config("integrations: [{id: y, vendor: exactag, settings: {campaign_code: cccccccccccccccccccccccccccccccc}}]", {}) \
        .integrations[0].fields == {}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ("{uk: context.traits.email}", "integrations[0].fields.uk: 'context.traits.email' names a raw email"),
        ("{uk: traits.phone}", "integrations[0].fields.uk: 'traits.phone' names a raw phone"),
        ("{uk: properties.Email}", "integrations[0].fields.uk: 'properties.Email' names a raw Email"),
        ("{level: 5}", "integrations[0].fields.level: expected a dotted path such as properties.total"),
        ("{level: [a]}", "integrations[0].fields.level: expected a dotted path"),
        ("{level: 'properties..x'}", "integrations[0].fields.level: expected a dotted path"),
        ("{level: 'properties total'}", "integrations[0].fields.level: expected a dotted path"),
        ("{level: '='}", "integrations[0].fields.level: an empty constant is never sent"),
        ("{'bad name': x}", "integrations[0].fields.bad name: expected a field name"),
        ("{campaign: =x}", "integrations[0].fields.campaign: cannot be overridden: it comes from settings"),
        ("{version: =2}", "integrations[0].fields.version: cannot be overridden"),
        ("[uk]", "integrations[0].fields: expected a mapping"),
    ],
)
def test_each_bad_field_source_is_one_line_naming_its_key(fields: str, expected: str) -> None:
    found = problems(fields)
    assert len(found) == 1 and found[0].startswith(expected), found


def test_every_bad_field_is_reported_at_once() -> None:
    found = problems("{uk: context.traits.email, level: 5, totalprice: properties.total}")
    assert [p.split(":")[0] for p in found] == ["integrations[0].fields.uk", "integrations[0].fields.level"]


def test_raw_pii_paths_are_refused_for_every_vendor() -> None:
    assert problems("{emailsha256: context.traits.email}", "rokt")[0].startswith(
        "integrations[0].fields.emailsha256: 'context.traits.email' names a raw email"
    )
    assert "phone_sha256" in problems("{x: context.traits.phone}", "webhook")[0]


def test_paths_resolve_through_objects_and_lists() -> None:
    event = {"properties": {"products": [{"sku": "A"}, {"sku": "B"}]}}
    assert resolve_path(event, "properties.products.1.sku") == "B"
    assert resolve_path(event, "properties.products.5.sku") is None
    assert resolve_path(event, "properties.missing.x") is None


# Exactag -------------------------------------------------------------------------------------------


def test_exactag_uk_from_the_hashed_email_instead_of_euk() -> None:
    query = exactag_query(order(), {"uk": "context.traits.email_sha256", "euk": None})
    assert isinstance(query, dict)
    assert query["uk"] == EMAIL_SHA and "euk" not in query
    assert query["campaign"] == "CODE" and query["sitegroup"] == "conversion" and query["orderid"] == "ORD-1"


def test_exactag_totalprice_from_another_property_and_a_constant() -> None:
    query = exactag_query(order(total=150, net=True), {"totalprice": "properties.total", "level": "=web",
                                                       "host": "=shop.example", "site": "properties.net"})
    assert isinstance(query, dict)
    assert query["totalprice"] == "150" and query["level"] == "web" and query["host"] == "shop.example"
    assert query["site"] == "1"  # query values are text; booleans as 1/0 like the formatter's


def test_exactag_a_missing_path_removes_the_field() -> None:
    query = exactag_query(order(), {"totalprice": "properties.total", "search": "properties.query"})
    assert isinstance(query, dict)
    assert "totalprice" not in query and "search" not in query
    assert query["orderid"] == "ORD-1"  # the others are untouched


def test_exactag_currency_inside_the_params_json_field() -> None:
    query = exactag_query(order(), {"params.currency": "properties.currency", "params.channel": "=web"})
    assert isinstance(query, dict)
    assert orjson.loads(query["params"]) == {"currency": "EUR", "channel": "web"}
    gone = exactag_query(order(), {"params.currency": "properties.nothing"})
    assert isinstance(gone, dict) and "params" not in gone


def test_exactag_without_any_user_key_is_skipped_not_sent() -> None:
    skipped = exactag_query(order(), {"euk": None, "uk": "context.traits.missing_sha256"})
    assert isinstance(skipped, Skip) and "euk or uk" in skipped.reason


def test_the_formatted_payload_is_not_changed_in_place() -> None:
    event = order()
    shaped = EXACTAG.format_item(Item("i1", event, "conversion"), {"campaign_code": "CODE"})
    assert isinstance(shaped, Formatted)
    before = orjson.dumps(shaped.payload)
    after = EXACTAG.apply_field_sources(shaped, event, {"euk": None, "uk": "context.traits.email_sha256"})
    assert isinstance(after, Formatted) and after.payload != shaped.payload
    assert orjson.dumps(shaped.payload) == before
    assert EXACTAG.apply_field_sources(shaped, event, {}) is shaped


# Rokt ----------------------------------------------------------------------------------------------


def test_rokt_value_from_another_property_keeps_its_number_type() -> None:
    record = rokt_record(order(total=150.5, items=3), {"value": "properties.total", "quantity": "properties.items"})
    assert isinstance(record, dict)
    assert record["value"] == 150.5 and isinstance(record["value"], float)
    assert record["quantity"] == 3 and isinstance(record["quantity"], int)
    assert record["currency"] == "EUR" and record["emailsha256"] == EMAIL_SHA


def test_rokt_constant_removal_and_a_missing_path() -> None:
    record = rokt_record(order(), {"currency": "=USD", "ipAddress": None, "confirmationRef": "properties.nope"})
    assert isinstance(record, dict)
    assert record["currency"] == "USD"
    assert "ipAddress" not in record and "confirmationRef" not in record


def test_rokt_removing_every_identifier_skips_the_event() -> None:
    skipped = rokt_record(order(), {"rclid": None, "emailsha256": None})
    assert isinstance(skipped, Skip) and skipped.reason == NO_IDENTIFIER


# webhook -------------------------------------------------------------------------------------------


def test_webhook_fields_are_paths_into_the_forwarded_event() -> None:
    event = order()
    shaped = WEBHOOK.format_for(
        Item("i1", event, "track"),
        {"url": "http://127.0.0.1:9/hook"},
        {"context.traits.email_sha256": None, "channel": "=web", "properties.total": "properties.revenue"},
    )
    assert isinstance(shaped, Formatted)
    assert shaped.payload["channel"] == "web" and shaped.payload["properties"]["total"] == 129.99
    assert "traits" not in shaped.payload["context"]  # emptied by the removal: not sent empty
    assert event["context"]["traits"] == {"email_sha256": EMAIL_SHA}  # the queued event is untouched
