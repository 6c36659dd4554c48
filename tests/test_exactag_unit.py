"""Exactag: conversion rules, masking, and round trips against the loopback stand-in.

The webhook stand-in has no unit file of its own: its smoke tests close this file.
"""

from __future__ import annotations

import re
import urllib.parse
import urllib.request
from typing import Any

import pytest

from datafly.destinations.base import Formatted, Item, OutboundRequest, Outcome
from datafly.destinations.exactag.destination import AUTH_HINT, ExactagDestination
from datafly.destinations.exactag.query import is_conversion
from datafly.destinations.registry import all_destinations
from datafly.destinations.webhook.destination import WebhookDestination
from standins import ExactagStandIn, WebhookStandIn, send

CODE = "FAKE0000111122223333444455556666"
EXACTAG = ExactagDestination()


def event(kind: str = "track", name: str | None = "Order Completed", **extra: Any) -> dict[str, Any]:
    e: dict[str, Any] = {
        "type": kind,
        "properties": {"order_id": "ORD-001", "revenue": 129.99, "affiliation": "web"},
        "userId": "user-123",
        "anonymousId": "anon-1",
        "messageId": "msg-1",
        "timestamp": "2026-06-06T10:00:00.000Z",
        "context": {
            "ip": "198.51.100.7",
            "userAgent": "Mozilla/5.0 (Test)",
            "page": {"url": "https://shop.example.com/checkout"},
            "session": {"id": "sess_1", "number": 2},
            "consent": {"canonical": {"marketing": True}},
        },
        **extra,
    }
    if name:
        e["event"] = name
    return e


def build(item: Item, endpoint: str, code: str = CODE) -> OutboundRequest:
    formatted = EXACTAG.format_item(item, {"campaign_code": code})
    assert isinstance(formatted, Formatted)
    [request] = EXACTAG.build_requests([formatted], {"campaign_code": code}, endpoint)
    return request


def test_registered_with_schema_and_preset() -> None:
    assert isinstance(all_destinations()["exactag"], ExactagDestination)
    assert EXACTAG.secret_fields() == ("campaign_code",)
    assert EXACTAG.max_batch == 1
    assert dict(EXACTAG.presets["default"].events) == {
        "page": "pageview",
        "Products Searched": "pageview",
        "Product Viewed": "pageview",
        "Order Completed": "conversion",
    }
    assert EXACTAG.endpoint({}, None) == "https://m.exactag.com/s2s/pi.ashx"


@pytest.mark.parametrize(
    ("name", "sitegroup", "expected"),
    [
        ("Order Completed", "conversion", True),
        ("Order Completed", "sale_42", True),  # the brand's own code for the conversion sitegroup
        ("Purchase", "conversion", True),  # any event mapped to the default conversion sitegroup
        ("Product Viewed", "pageview", False),
        (None, "pageview", False),
    ],
)
def test_conversion_rule(name: str | None, sitegroup: str, expected: bool) -> None:
    assert is_conversion(event(name=name, kind="track" if name else "page"), sitegroup) is expected


def test_customer_id_only_on_conversions() -> None:
    page = build(Item("p", event("page", None), "pageview"), EXACTAG.default_endpoint)
    assert "customerid" not in page.url and "orderid" not in page.url and "totalprice" not in page.url
    conversion = build(Item("c", event(), "conversion"), EXACTAG.default_endpoint)
    assert "customerid=user-123" in conversion.url


def test_campaign_code_is_masked_in_the_display_view() -> None:
    request = build(Item("c", event(), "conversion"), EXACTAG.default_endpoint)
    assert CODE in request.url
    assert CODE not in str(request.masked(EXACTAG.secrets_of({"campaign_code": CODE})))


def test_no_raw_email_or_phone_in_the_request() -> None:
    e = event(traits={"email": "jane.doe@example.com", "phone": "+44 7700 900123"})
    e["properties"].update({"email": "jane.doe@example.com", "phone": "+44 7700 900123"})
    e["context"]["traits"] = {"email": "jane.doe@example.com", "phone": "+44 7700 900123"}
    request = build(Item("c", e, "conversion"), EXACTAG.default_endpoint)
    text = urllib.parse.unquote(request.url) + str(dict(request.headers))
    assert not re.search(r"@|7700", text), text


async def test_accepted_hit_carries_the_fields_and_forwarded_headers() -> None:
    async with ExactagStandIn(valid_codes=[CODE]) as exactag:
        item = Item("c", event(), "conversion")
        request = build(item, exactag.url)
        outcome = EXACTAG.classify(request, await send(request))["c"]
        assert outcome.outcome is Outcome.DONE
        [hit] = exactag.hits()
        assert hit.method == "GET" and hit.path == "/s2s/pi.ashx"
        assert hit.query == {
            "campaign": CODE,
            "version": "1.0",
            "sitegroup": "conversion",
            "euk": "anon-1",
            "sessionid": "sess_1",
            "sescount": "2",
            "sesevent": "0",
            "referrer": "https://shop.example.com/checkout",
            "orderid": "ORD-001",
            "totalprice": "129.99",
            "customerid": "user-123",
            "level": "web",
            "optout": "0",
        }
        assert hit.header("X-Forwarded-For") == "198.51.100.7"
        assert hit.header("User-Agent") == "Mozilla/5.0 (Test)"
        assert exactag.count_by_orderid() == {"ORD-001": 1} and exactag.duplicates() == {}


@pytest.mark.parametrize(("code", "status"), [("UNKNOWN-CODE", 401), ("INACTIVE-CODE", 403)])
async def test_wrong_or_inactive_campaign_code_is_auth_failed(code: str, status: int) -> None:
    async with ExactagStandIn(valid_codes=[CODE], inactive_codes=["INACTIVE-CODE"]) as exactag:
        request = build(Item("c", event(), "conversion"), exactag.url, code=code)
        outcome = EXACTAG.classify(request, await send(request))["c"]
        assert outcome.outcome is Outcome.AUTH_FAILED
        assert outcome.reason == f"{status}: {AUTH_HINT}"
        assert exactag.hits() == []


async def test_missing_euk_is_rejected() -> None:
    async with ExactagStandIn(valid_codes=[CODE]) as exactag:
        request = OutboundRequest(
            "GET", f"{exactag.url}?campaign={CODE}&sitegroup=pageview", {}, None, ("x",)
        )
        outcome = EXACTAG.classify(request, await send(request))["x"]
        assert outcome.outcome is Outcome.REJECTED and "euk" in outcome.reason


async def test_failure_plan_then_success_without_duplicates() -> None:
    async with ExactagStandIn(valid_codes=[CODE]) as exactag:
        exactag.fail_next(2, 503, {"Retry-After": "1"})
        request = build(Item("c", event(), "conversion"), exactag.url)
        outcomes = [EXACTAG.classify(request, await send(request))["c"] for _ in range(3)]
        assert [o.outcome for o in outcomes] == [Outcome.RETRY, Outcome.RETRY, Outcome.DONE]
        assert outcomes[0].retry_after == 1.0
        assert [r.status for r in exactag.requests] == [503, 503, 200]
        assert exactag.count_by_orderid() == {"ORD-001": 1}


def test_stand_in_runs_in_a_thread_for_synchronous_tests() -> None:
    with ExactagStandIn(valid_codes=[CODE]).running_in_thread() as exactag:
        url = f"{exactag.url}?campaign={CODE}&sitegroup=pageview&euk=e1"
        with urllib.request.urlopen(url, timeout=5) as answer:
            assert answer.status == 200 and answer.headers["Content-Type"] == "image/gif"
        assert exactag.wait_for_sync(1)[0].query["euk"] == "e1"


# the webhook stand-in -----------------------------------------------------------------------------


async def test_webhook_stand_in_verifies_the_signature() -> None:
    webhook = WebhookDestination()
    async with WebhookStandIn(secret="whsec-1") as receiver:
        for secret, status in (("whsec-1", 200), ("whsec-wrong", 401)):
            cfg = {"url": receiver.url, "secret": secret, "batch_size": 2}
            items = [Item(f"w{n}", {"messageId": f"m{n}", "type": "track"}, "event") for n in range(2)]
            formatted = [webhook.format_item(i, cfg) for i in items]
            [request] = webhook.build_requests(
                [f for f in formatted if isinstance(f, Formatted)], cfg, receiver.url
            )
            assert (await send(request)).status == status
        assert receiver.count_by_message_id() == {"m0": 1, "m1": 1}
        assert receiver.duplicates() == {}
