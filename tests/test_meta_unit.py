"""Meta: any value in an event builds a request Meta can take or a skip with its reason (Hypothesis),
settings checked by the config, and round trips against the loopback stand-in."""

from __future__ import annotations

import hashlib
import ipaddress
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datafly.config import parse_config
from datafly.delivery.http import header_lines, request_url
from datafly.destinations.base import Formatted, Item, Outcome, Skip
from datafly.destinations.meta.destination import MetaDestination
from datafly.destinations.meta.user_data import COOKIE_FORMAT, client_ip
from datafly.destinations.registry import all_destinations
from datafly.errors import ConfigError
from standins import send
from standins.meta import MetaStandIn

NOW = 1780740005.0  # 2026-06-06T10:00:05Z
META = MetaDestination()
SETTINGS = {"pixel_id": "1234567890", "access_token": "EAAunit0123456789abcdef"}
ANY = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=False),
                st.text(max_size=60), st.just({"nested": "object"}), st.just(["a", 1]))  # fmt: skip


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def event(**context: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Order Completed",
        "properties": {"order_id": "ORD-1", "revenue": 10, "currency": "EUR"},
        "messageId": "msg-1",
        "timestamp": "2026-06-06T10:00:00.000Z",
        "context": {"ip": "203.0.113.50", "userAgent": "UA/1", "page": {"url": "https://shop.example/"}, **context},
    }


def test_registered_with_schema_and_presets() -> None:
    assert isinstance(all_destinations()["meta"], MetaDestination)
    assert META.secret_fields() == ("access_token",)
    assert META.presets["default"].events["Order Completed"] == "Purchase"
    assert META.presets["default"].events["page"] == "PageView"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ip=ANY, ua=ANY, fbp=ANY, fbc=ANY, fbclid=ANY, seen=ANY, url=ANY, revenue=ANY, currency=ANY, product=ANY)
def test_any_event_values_give_a_sendable_request_or_a_skip(
    ip: Any, ua: Any, fbp: Any, fbc: Any, fbclid: Any, seen: Any, url: Any, revenue: Any, currency: Any, product: Any
) -> None:
    item = event(ip=ip, userAgent=ua, page={"url": url}, cookies={"_fbp": fbp, "_fbc": fbc},
                 clickIds={"fbclid": fbclid}, clickIdsAt={"fbclid": seen})  # fmt: skip
    item["properties"] = {"revenue": revenue, "currency": currency, "products": [{"product_id": product}, product]}
    shaped = META.format_item(Item("i1", item, "Purchase"), SETTINGS, now=NOW)
    if isinstance(shaped, Skip):
        assert shaped.reason
        return
    (request,) = META.build_requests([shaped], SETTINGS, META.endpoint(SETTINGS, None))
    assert request.body is not None
    request_url(request.url)
    header_lines(request.headers, True)
    (sent,) = orjson.loads(request.body)["data"]
    user = sent["user_data"]
    assert isinstance(user["client_user_agent"], str) and user["client_user_agent"].strip()  # website events need it
    assert isinstance(sent["event_source_url"], str) and sent["event_source_url"]
    if "client_ip_address" in user:
        assert str(ipaddress.ip_address(user["client_ip_address"])) == user["client_ip_address"]
    for key in ("fbc", "fbp"):
        assert key not in user or COOKIE_FORMAT.fullmatch(user[key])
    assert sent["event_time"] == 1780740000
    custom = sent["custom_data"]
    assert custom["value"] is not None and custom["currency"]  # a Purchase is sent only with both


@pytest.mark.parametrize(
    ("given_ip", "sent"),
    [("203.0.113.5", "203.0.113.5"), ("203.0.113.5:8443", "203.0.113.5"), ("[2001:db8::1]:443", "2001:db8::1"),
     ("2001:DB8:0::1", "2001:db8::1"), ("::ffff:203.0.113.5", "203.0.113.5"), ("203.0.113.5:99999", "203.0.113.5"),
     ("example.com:80", None), ("", None)],
)  # fmt: skip
def test_the_client_ip_is_an_ip_without_a_port(given_ip: str, sent: str | None) -> None:
    assert client_ip(given_ip) == sent


def test_the_phone_meta_hashes_is_the_gateways_digits_hash() -> None:
    traits = {"phone_sha256": sha("+447700900123"), "phone_digits_sha256": sha("447700900123")}
    shaped = META.format_item(Item("i1", event(traits=traits), "Purchase"), SETTINGS, now=NOW)
    assert isinstance(shaped, Formatted)
    assert shaped.payload["user_data"]["ph"] == [sha("447700900123")]


def config(settings_yaml: str, endpoint: str = "") -> str:
    return f"""
sources: [{{id: web, key: dk_live_meta}}]
integrations:
  - id: meta-main
    vendor: meta
    settings: {settings_yaml}
{f"    endpoint: {endpoint}" if endpoint else ""}
"""


def test_settings_are_checked_by_the_config() -> None:
    parsed = parse_config(config("{pixel_id: 1234567890, access_token: EAAunit0123456789abcdef}"), {})
    assert parsed.integrations[0].vendor == "meta"
    with pytest.raises(ConfigError) as info:
        parse_config(config("{pixel_id: px-1, access_token: short, api_version: '26', test_event_code: 'a b'}"), {})
    found = "\n".join(info.value.problems)
    for key in ("pixel_id", "access_token", "api_version", "test_event_code"):
        assert f"integrations[0].settings.{key}" in found, key


def test_the_endpoint_is_an_origin() -> None:
    assert META.endpoint(SETTINGS, None) == "https://graph.facebook.com"
    assert META.endpoint(SETTINGS, "http://127.0.0.1:9200/anything?x=1") == "http://127.0.0.1:9200"


async def test_a_batch_with_one_invalid_event_is_refused_whole_by_the_stand_in() -> None:
    async with MetaStandIn("1234567890", SETTINGS["access_token"], clock=lambda: NOW) as meta:
        good = META.format_item(Item("g", event(), "Purchase"), SETTINGS, now=NOW)
        bad_event = event()
        bad_event["properties"]["currency"] = "EURO"
        bad = META.format_item(Item("b", bad_event, "Purchase"), SETTINGS, now=NOW)
        assert isinstance(good, Formatted) and isinstance(bad, Formatted)
        (request,) = META.build_requests([good, bad], SETTINGS, meta.base_url)
        outcomes = META.classify(request, await send(request))
        assert {o.outcome for o in outcomes.values()} == {Outcome.SPLIT}
        assert "Invalid Currency Code" in outcomes["b"].reason and meta.accepted_events == []
        (alone,) = META.build_requests([good], SETTINGS, meta.base_url)
        assert META.classify(alone, await send(alone))["g"].outcome is Outcome.DONE
        assert [e["event_id"] for e in meta.accepted_events] == ["msg-1"]


async def test_the_stand_in_refuses_a_raw_email_and_a_wrong_token() -> None:
    async with MetaStandIn("1234567890", SETTINGS["access_token"], clock=lambda: NOW) as meta:
        shaped = META.format_item(Item("i", event(), "Purchase"), SETTINGS, now=NOW)
        assert isinstance(shaped, Formatted)
        wrong = {**SETTINGS, "access_token": "EAAwrong0123456789abcdef"}
        (request,) = META.build_requests([shaped], wrong, meta.base_url)
        assert META.classify(request, await send(request))["i"].outcome is Outcome.AUTH_FAILED
        shaped.payload["user_data"]["em"] = ["jane@example.com"]
        (request,) = META.build_requests([shaped], SETTINGS, meta.base_url)
        refused = META.classify(request, await send(request))["i"]
        assert refused.outcome is Outcome.SPLIT and "Unhashed Customer Information" in refused.reason
        assert meta.accepted_events == []
