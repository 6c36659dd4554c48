"""TikTok: settings and config check, identity rules, request invariants, the classifier over the
stand-in's own answers (round trips on loopback), and what the golden cases do not show."""

from __future__ import annotations

import hashlib
import inspect
import ipaddress
import json
import re
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st

from datafly.config import parse_config
from datafly.destinations.base import Formatted, Item, OutboundRequest, Outcome, Skip, VendorResponse
from datafly.destinations.registry import all_destinations
from datafly.destinations.tiktok import DESTINATION
from datafly.destinations.tiktok.destination import MAX_EVENTS, PATH, TikTokDestination, track_url
from datafly.destinations.tiktok.identity import external_id_hash, normalised_hash, ttclid, ttp
from datafly.destinations.tiktok.responses import AUTH_HINT, classify_tiktok, outcome_of_code
from datafly.destinations.tiktok.web_event import build_web_event, event_seconds, number
from datafly.errors import ConfigError
from standins import send
from standins.tiktok import TikTokStandIn

TOKEN = "tt-unit-access-token-0123456789"
PIXEL = "CUNITPIXEL0123456789"
NOW = 1780740005.0  # 2026-06-06T10:00:05Z
TIKTOK = TikTokDestination()
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def settings(**extra: Any) -> dict[str, Any]:
    return {"pixel_code": PIXEL, "access_token": TOKEN, **extra}


def event(n: int = 1, **context: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Order Completed",
        "messageId": f"msg-{n}",
        "timestamp": "2026-06-06T10:00:00.000Z",
        "anonymousId": "anon-1",
        "userId": "User-1",
        "properties": {"order_id": f"ORD-{n}", "revenue": 20, "currency": "EUR"},
        "context": {
            "ip": "203.0.113.50",
            "userAgent": "UA/1",
            "traits": {"email_sha256": sha("jane@example.com"), "phone_sha256": sha("+447700900123")},
            "clickIds": {"ttclid": "E.C.P.click"},
            "cookies": {"_ttp": "ttp-cookie"},
            **context,
        },
    }


def build(items: list[Item], url: str, cfg: dict[str, Any] | None = None) -> list[OutboundRequest]:
    out = [TIKTOK.format_item(item, cfg or settings(), now=NOW) for item in items]
    ready = [f for f in out if isinstance(f, Formatted)]
    assert len(ready) == len(out), out
    return TIKTOK.build_requests(ready, cfg or settings(), TIKTOK.endpoint(cfg or settings(), url))


# registration, settings and the config check -------------------------------------------------------


def test_registered_with_the_contract_settings_and_presets() -> None:
    assert all_destinations()["tiktok"].__class__ is DESTINATION
    fields = {f.name: f for f in TIKTOK.settings_schema}
    assert list(fields) == ["pixel_code", "access_token", "test_event_code"]
    assert fields["pixel_code"].required and not fields["pixel_code"].secret
    assert fields["access_token"].required and fields["access_token"].secret
    assert not fields["test_event_code"].required and not fields["test_event_code"].secret
    assert TIKTOK.secret_fields() == ("access_token",)
    assert TIKTOK.max_batch == MAX_EVENTS == 1000
    default = TIKTOK.presets["default"].events
    assert default["Order Completed"] == "CompletePayment"
    assert {default[k] for k in ("Product Added", "Product Viewed", "Checkout Started", "Products Searched",
                                 "Signed Up", "page", "Payment Info Entered", "Product Added to Wishlist")} == {
        "AddToCart", "ViewContent", "InitiateCheckout", "Search", "CompleteRegistration", "Pageview",
        "AddPaymentInfo", "AddToWishlist"}  # fmt: skip
    assert {"Contact", "SubmitForm", "Subscribe"} <= set(default.values())
    assert "Order Refunded" not in default  # TikTok has no refund event
    assert TIKTOK.presets["place_an_order"].events["Order Completed"] == "PlaceAnOrder"
    assert TIKTOK.presets["place_an_order"].events["Product Added"] == "AddToCart"


def test_the_ui_guide_has_setup_and_a_hint_per_failure() -> None:
    guide = TIKTOK.guide()
    assert guide.summary and guide.consent_hint and guide.suggested_consent == ("advertising",)
    assert guide.mapping_label == "TikTok event name"
    assert any("Generate Access Token" in step for step in guide.setup)
    for code in ("40104/40105", "40001", "40002", "40100", "20001"):
        assert guide.troubleshooting[code]


def config_text(settings_yaml: dict[str, Any]) -> str:
    return yaml.safe_dump(
        {
            "sources": [{"id": "web", "key": "dk_unit"}],
            "integrations": [{"id": "tt", "vendor": "tiktok", "settings": settings_yaml}],
        }
    )


def config_problems(settings_yaml: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(config_text(settings_yaml), {})
    return info.value.problems


def test_the_config_check_names_a_missing_pixel_code_and_token() -> None:
    assert config_problems({"access_token": TOKEN}) == ["integrations[0].settings.pixel_code: required"]
    assert config_problems({"pixel_code": PIXEL}) == ["integrations[0].settings.access_token: required"]


def test_the_config_check_refuses_malformed_values() -> None:
    found = config_problems({"pixel_code": "C4 PIXEL/1", "access_token": "Bearer abc def ghi"})
    assert [p.split(":")[0] for p in found] == [
        "integrations[0].settings.pixel_code", "integrations[0].settings.access_token"]  # fmt: skip
    assert "not in the expected format" in found[0]
    assert config_problems({**settings(), "pixel": "x"})[0].startswith(
        "integrations[0].settings.pixel: unknown"
    )


def test_a_valid_config_parses_with_the_default_preset() -> None:
    config = parse_config(config_text(settings(test_event_code="TEST123")), {})
    integration = config.integrations[0]
    assert integration.preset == "default" and integration.mapping()["Order Completed"] == "CompletePayment"


def test_the_endpoint_is_an_origin() -> None:
    assert TIKTOK.endpoint(settings(), None) == "https://business-api.tiktok.com/open_api/v1.3/event/track/"
    assert track_url("http://127.0.0.1:9200") == "http://127.0.0.1:9200" + PATH
    assert track_url("http://127.0.0.1:9200/") == "http://127.0.0.1:9200" + PATH
    assert track_url("http://[::1]:9200/x?y=1#z") == "http://[::1]:9200" + PATH


# identity ----------------------------------------------------------------------------------------


def test_external_id_is_the_hashed_lower_cased_user_id_else_anonymous_id() -> None:
    assert external_id_hash({"userId": "  User-1 ", "anonymousId": "a"}) == sha("user-1")
    assert external_id_hash({"userId": "", "anonymousId": "Anon-9"}) == sha("anon-9")
    assert external_id_hash({"userId": 42}) == sha("42")
    assert external_id_hash({}) is None


def test_the_masked_case_hash_is_sha256_of_a() -> None:
    """The masked view in cases/format.json is text, so its hash is written out: check it here."""
    folder = Path(inspect.getfile(TikTokDestination)).parent
    cases = orjson.loads((folder / "cases" / "format.json").read_bytes())["cases"]
    case = next(c for c in cases if c["name"] == "the_access_token_is_masked_in_logs")
    body = orjson.loads(case["expect"]["requests"][0]["masked"]["body"])
    assert body["data"][0]["user"]["external_id"] == sha("a")


def test_click_id_and_cookie_are_read_defensively() -> None:
    assert (
        ttclid({"context": {"page": {"url": "https://s.example/?ttclid=U"}, "clickIds": {"ttclid": "S"}}})
        == "U"
    )
    assert ttclid({"context": {"page": {"url": "https://s.example/"}, "clickIds": {"ttclid": " S "}}}) == "S"
    assert ttclid({"context": {"page": {"url": "http://[bad/?ttclid=x"}}}) is None
    for broken in ({}, {"context": None}, {"context": {"clickIds": "x", "cookies": 3, "page": []}}):
        assert ttclid(broken) is None and ttp(broken) is None
    assert ttp({"context": {"cookies": {"_ttp": "c"}}, "properties": {"ttp": "p"}}) == "c"
    assert ttp({"context": {"cookies": {"_ttp": ""}}, "properties": {"ttp": "p"}}) == "p"


def test_a_hash_placed_by_an_override_is_normalised() -> None:
    assert normalised_hash("email", " A@B.example ") == sha("a@b.example")
    assert normalised_hash("phone", "+44 7700 900123") == sha("+447700900123")
    assert normalised_hash("phone", "07700 900123") is None  # no country code: not guessed
    assert normalised_hash("external_id", "ID-7") == sha("id-7")
    assert normalised_hash("email", "F" * 64) == "f" * 64
    assert normalised_hash("email", None) is None


def test_an_unusable_phone_from_an_override_is_dropped() -> None:
    item = Item("i", event(), "CompletePayment")
    shaped = TIKTOK.format_for(item, settings(), {"user.phone": "properties.order_id"}, now=NOW)
    assert isinstance(shaped, Formatted) and "phone" not in shaped.payload["user"]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("2026-06-06T10:00:00.999Z", 1780740000), ("2026-06-06T10:00:00", 1780740000),
     (1780740000123, 1780740000), (1780740000, 1780740000), ("", None), (True, None), ("x", None),
     (float("nan"), None), (0.5, None), (-5, None), ("1969-12-31T23:59:59Z", None),
     ("0001-01-01T00:00:00Z", None)],
)  # fmt: skip
def test_event_seconds(value: Any, seconds: int | None) -> None:
    assert event_seconds(value) == seconds


def test_numbers() -> None:
    assert [number(v) for v in (3, 2.5, "4", "4.0", " 1e2 ", "x", True, None, float("inf"), "nan")] == [
        3, 2.5, 4, 4.0, 100.0, None, None, None, None, None]  # fmt: skip


def test_now_defaults_to_the_clock_and_a_future_time_is_clamped() -> None:
    future = {**event(), "timestamp": "2999-01-01T00:00:00Z"}
    shaped = TIKTOK.format_item(Item("i", future, "CompletePayment"), settings())
    assert isinstance(shaped, Formatted)
    assert abs(shaped.payload["event_time"] - time.time()) < 5


def test_no_raw_email_or_phone_in_any_request() -> None:
    raw = event(context=None)
    raw["context"] = {"traits": {"email": "Jane.Doe@Example.com", "phone": "+44 7700 900123"}}
    raw["properties"] = {"email": "x@y.example", "phone": "+1 415 555 0132"}
    record = build_web_event(raw, "CompleteRegistration", NOW)
    assert not isinstance(record, Skip)
    text = orjson.dumps(record).decode()
    assert "@" not in text and "7700" not in text and "555" not in text
    assert all(HEX64.match(record["user"][k]) for k in ("email", "phone", "external_id"))


def test_every_request_is_valid_json_with_at_most_1000_events() -> None:
    items = [Item(f"i{n}", event(n), "CompletePayment") for n in range(2345)]
    requests = build(items, "http://127.0.0.1:1")
    assert [len(r.item_ids) for r in requests] == [1000, 1000, 345]
    for request in requests:
        body = orjson.loads(request.body or b"")
        assert len(body["data"]) == len(request.item_ids)
        assert [e["event_id"] for e in body["data"]] == [f"msg-{i[1:]}" for i in request.item_ids]


# the classifier ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "outcome"),
    [(0, Outcome.DONE), (20001, Outcome.DONE), (40100, Outcome.RETRY), (40700, Outcome.RETRY),
     (50000, Outcome.RETRY), (51001, Outcome.RETRY), (40104, Outcome.AUTH_FAILED), (40105, Outcome.AUTH_FAILED),
     (40002, Outcome.REJECTED), (40001, Outcome.REJECTED), (12345, Outcome.REJECTED)],
)  # fmt: skip
def test_outcome_of_each_code(code: int, outcome: Outcome) -> None:
    assert outcome_of_code(code, "Something").outcome is outcome


def test_every_item_gets_the_request_s_outcome() -> None:
    request = OutboundRequest("POST", "u", {}, b"{}", ("a", "b"))
    answer = VendorResponse(200, {}, json.dumps({"code": 40105, "message": "revoked"}).encode())
    outcomes = classify_tiktok(request, answer)
    assert set(outcomes) == {"a", "b"}
    assert all(o.outcome is Outcome.AUTH_FAILED and AUTH_HINT in o.reason for o in outcomes.values())


# round trips against the stand-in -------------------------------------------------------------------


async def test_a_batch_is_ingested_once_with_its_ids() -> None:
    async with TikTokStandIn(TOKEN, PIXEL) as tiktok:
        items = [Item(f"i{n}", event(n), "CompletePayment") for n in range(1500)]
        requests = build(items, tiktok.base_url)
        for request in requests:
            outcomes = TIKTOK.classify(request, await send(request))
            assert {o.outcome for o in outcomes.values()} == {Outcome.DONE}
        assert len(tiktok.accepted_events) == 1500 and tiktok.duplicates() == {}
        first = tiktok.accepted_events[0]
        assert first["user"]["ttclid"] == "E.C.P.click" and first["user"]["ttp"] == "ttp-cookie"
        assert first["user"]["external_id"] == sha("user-1")
        recorded = tiktok.requests[0]
        assert recorded.path == PATH and recorded.header("Access-Token") == TOKEN


async def test_a_wrong_or_missing_token_is_an_auth_failure() -> None:
    async with TikTokStandIn("another-token-000000000000", PIXEL) as tiktok:
        [request] = build([Item("a", event(), "CompletePayment")], tiktok.base_url)
        outcome = TIKTOK.classify(request, await send(request))["a"]
        assert outcome.outcome is Outcome.AUTH_FAILED and outcome.reason.startswith("40105: ")
        no_token = OutboundRequest(request.method, request.url, {"Content-Type": "application/json"},
                                   request.body, request.item_ids)  # fmt: skip
        outcome = TIKTOK.classify(no_token, await send(no_token))["a"]
        assert outcome.outcome is Outcome.AUTH_FAILED and outcome.reason.startswith("40104: ")
        assert tiktok.accepted_events == []


async def test_another_pixel_is_a_permission_failure() -> None:
    async with TikTokStandIn(TOKEN, "COTHERPIXEL000000000") as tiktok:
        [request] = build([Item("a", event(), "CompletePayment")], tiktok.base_url)
        outcome = TIKTOK.classify(request, await send(request))["a"]
        assert outcome.outcome is Outcome.AUTH_FAILED and outcome.reason.startswith("40001: ")


async def test_throttle_and_internal_errors_are_retried_then_done() -> None:
    async with TikTokStandIn(TOKEN, PIXEL) as tiktok:
        tiktok.fail_next_code(1, 40100, "Too many requests", {"Retry-After": "1"})
        tiktok.fail_next_code(1, 40700, "Internal error")
        [request] = build([Item("a", event(), "CompletePayment")], tiktok.base_url)
        first = TIKTOK.classify(request, await send(request))["a"]
        assert (first.outcome, first.retry_after) == (Outcome.RETRY, 1.0)
        assert TIKTOK.classify(request, await send(request))["a"].outcome is Outcome.RETRY
        assert TIKTOK.classify(request, await send(request))["a"].outcome is Outcome.DONE
        assert tiktok.count_by_event_id() == {"msg-1": 1}


async def test_the_stand_in_refuses_what_tiktok_refuses() -> None:
    async with TikTokStandIn(TOKEN, PIXEL) as tiktok:
        good = {"event": "Pageview", "event_time": int(NOW), "event_id": "m"}
        bad_events = [
            {**good, "event_time": int(NOW) * 1000},
            {**good, "event": ""},
            {**good, "user": {"email": "jane@example.com"}},
            {**good, "user": {"phone": sha("+1").upper()}},
            {**good, "user": {"ip": "203.0.113.7:443"}},
            {**good, "limited_data_use": "yes"},
            {**good, "properties": {"value": "10"}},
        ]
        for bad in bad_events:
            body = orjson.dumps({"event_source": "web", "event_source_id": PIXEL, "data": [good, bad]})
            request = OutboundRequest("POST", tiktok.url, {"Access-Token": TOKEN}, body, ("g", "b"))
            outcomes = TIKTOK.classify(request, await send(request))
            assert {o.outcome for o in outcomes.values()} == {Outcome.REJECTED}, bad
            assert outcomes["b"].reason.startswith("40002: data[1]")
        too_many = orjson.dumps({"event_source": "web", "event_source_id": PIXEL, "data": [good] * 1001})
        request = OutboundRequest("POST", tiktok.url, {"Access-Token": TOKEN}, too_many, ("x",))
        assert TIKTOK.classify(request, await send(request))["x"].outcome is Outcome.REJECTED
        assert tiktok.accepted_events == []


async def test_test_events_are_kept_apart() -> None:
    async with TikTokStandIn(TOKEN, PIXEL) as tiktok:
        cfg = settings(test_event_code="TEST42")
        requests = build([Item(f"t{n}", event(n), "CompletePayment") for n in range(3)], tiktok.base_url, cfg)
        assert len(requests) == 3
        for request in requests:
            assert TIKTOK.classify(request, await send(request))[request.item_ids[0]].outcome is Outcome.DONE
        assert len(tiktok.test_events) == 3 and tiktok.accepted_events == []
        assert all(r.json()["test_event_code"] == "TEST42" for r in tiktok.requests)


# any input -----------------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
CONTEXT_KEYS = ("ip", "userAgent", "page", "traits", "clickIds", "cookies", "locale")


@examples(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    context=st.fixed_dictionaries({}, optional={k: JSON for k in CONTEXT_KEYS}),
    properties=st.dictionaries(st.sampled_from(["products", "contents", "value", "revenue", "price", "quantity",
                                                "currency", "product_id", "order_id", "query", "limited_data_use",
                                                "content_type", "url", "ttp", "ttclid"]), JSON, max_size=6),
    user_id=JSON,
    timestamp=JSON,
)  # fmt: skip
def test_any_event_formats_into_what_tiktok_accepts_or_a_skip(
    context: dict[str, Any], properties: dict[str, Any], user_id: Any, timestamp: Any
) -> None:
    raw = {"type": "track", "event": "X", "messageId": "m", "anonymousId": "a", "userId": user_id,
           "timestamp": timestamp, "receivedAt": "2026-06-06T10:00:00Z", "context": context,
           "properties": properties}  # fmt: skip
    shaped = TIKTOK.format_item(Item("i", raw, "ViewContent"), settings(), now=NOW)
    assert isinstance(shaped, Formatted)
    [request] = TIKTOK.build_requests([shaped], settings(), TIKTOK.endpoint(settings(), None))
    record = orjson.loads(request.body or b"")["data"][0]
    assert TikTokStandIn(TOKEN, PIXEL, clock=lambda: NOW).event_problem(0, record) is None
    user = record["user"]
    assert "ip" not in user or str(ipaddress.ip_address(user["ip"])) == user["ip"]
