"""GA4: ids from the site's cookies, GA's rules, batching invariants the golden cases cannot show,
the settings schema, and round trips against the loopback stand-in."""

from __future__ import annotations

import hashlib
import re
import urllib.parse
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from datafly.config import parse_config
from datafly.destinations.base import Formatted, Item, OutboundRequest, Outcome, Skip
from datafly.destinations.ga4 import identity
from datafly.destinations.ga4.destination import MAX_BODY, Ga4Destination
from datafly.destinations.ga4.validation import validate_event, validate_request
from datafly.destinations.registry import all_destinations
from datafly.errors import ConfigError
from standins import RecordedRequest, send
from standins.ga4 import Ga4StandIn

NOW = 1780740005.0  # 2026-06-06T10:00:05Z
TS = "2026-06-06T10:00:00.000Z"
MID, SECRET = "G-UNIT123456", "unit-api-secret-0001"
GA4 = Ga4Destination()


def settings(**extra: Any) -> dict[str, Any]:
    return {"measurement_id": MID, "api_secret": SECRET, **extra}


def search(visitor: str = "anon-1", query: str = "hat", **more: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "track",
        "event": "Products Searched",
        "timestamp": TS,
        "anonymousId": visitor,
        "properties": {"query": query},
        "context": {},
    }
    event.update(more)
    return event


def formatted(item_id: str, event: dict[str, Any], mapping: str = "search") -> Formatted:
    shaped = GA4.format_for(Item(item_id, event, mapping), settings(), None, now=NOW)
    assert isinstance(shaped, Formatted), shaped
    return shaped


# ids -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cookie", "expected"),
    [
        ("GA1.1.1234567890.1700000000", "1234567890.1700000000"),
        ("GA1.2.987654321.1600000000", "987654321.1600000000"),
        ("GA1.3.5.6", "5.6"),
        (" GA1.1.1.2 ", "1.2"),
        ("GA1.1.abc.1700000000", None),
        ("1234567890.1700000000", None),
        ("GA1.1.1234567890", None),
        ("", None),
        (42, None),
        (None, None),
    ],
)
def test_client_id_from_the_ga_cookie(cookie: Any, expected: str | None) -> None:
    assert identity.ga_cookie_client_id(cookie) == expected


@pytest.mark.parametrize(
    ("cookie", "expected"),
    [
        ("GS1.1.1700000000.5.1.1700000300.0.0.0", (1700000000, 5)),
        ("GS1.1.1700000000.5", (1700000000, 5)),
        ("GS2.1.s1700000000$o12$g1$t1700000300$j60$l0$h0", (1700000000, 12)),
        ("GS2.1.s1700000000$o1", (1700000000, 1)),
        ("GS2.1.1700000000$o1", None),
        ("GS1.1.99999999999999999999.1", None),  # beyond int64: never a session id
        ("GS1.1.x.5", None),
        ("garbage", None),
        (None, None),
    ],
)
def test_session_from_the_ga_container_cookie(cookie: Any, expected: tuple[int, int] | None) -> None:
    assert identity.ga_cookie_session(cookie) == expected


def test_a_derived_client_id_is_stable_per_visitor_and_shaped_like_ga_s() -> None:
    first = identity.client_id({"anonymousId": "visitor-1"})
    assert first == identity.client_id({"anonymousId": "visitor-1", "userId": "u"})
    assert first != identity.client_id({"anonymousId": "visitor-2"})
    assert first is not None and re.fullmatch(r"\d{1,10}\.\d{10}", first)
    assert identity.client_id({"userId": "only-user"}) == identity.client_id({"anonymousId": "only-user"})
    assert identity.client_id({}) is None


def test_the_ga_cookie_wins_over_the_anonymous_id_and_absent_context_never_fails() -> None:
    event = {"anonymousId": "v", "context": {"cookies": {"_ga": "GA1.1.11.22"}}}
    assert identity.client_id(event) == "11.22"
    contexts: list[Any] = [None, "text", [], {"cookies": "x"}, {"cookies": {"_ga": None}}, {"session": 5}]
    for context in contexts:
        assert identity.client_id({"anonymousId": "v", "context": context}) is not None
        assert identity.session_id({"context": context}) is None


def test_session_id_prefers_the_cookie_then_the_session() -> None:
    cookies = {"_ga": "GA1.1.1.2", "_ga_ABC": "GS2.1.s1780000000$o4"}
    assert identity.session_id({"context": {"cookies": cookies, "session": {"id": "7"}}}) == 1780000000
    assert identity.session_id({"context": {"session": {"id": "1780000001"}}}) == 1780000001
    derived = identity.session_id({"context": {"session": {"id": "a" * 32}}})
    assert derived == identity.session_id({"context": {"session": {"id": "a" * 32}}})
    assert derived is not None and 1_000_000_000 <= derived < 10_000_000_000


def test_an_email_is_never_a_user_id() -> None:
    assert identity.user_id({"userId": "user-1"}) == "user-1"
    assert identity.user_id({"userId": 42}) == "42"
    assert identity.user_id({"userId": " Jane@Example.com "}) is None
    assert identity.user_id({"userId": True}) is None


def test_consent_mode_follows_marketing_or_advertising() -> None:
    def signals(canonical: Any) -> str:
        return identity.consent({"context": {"consent": {"canonical": canonical}}})["ad_user_data"]

    assert signals({"marketing": True}) == "GRANTED"
    assert signals({"advertising": True}) == "GRANTED"
    assert signals({"analytics": True, "marketing": False}) == "DENIED"
    assert signals({"marketing": "yes"}) == "DENIED"
    assert identity.consent({}) == {"ad_user_data": "DENIED", "ad_personalization": "DENIED"}


def test_user_data_hashes_are_sent_once_and_a_raw_value_is_hashed() -> None:
    digest = hashlib.sha256(b"jane@example.com").hexdigest()
    found = identity.user_data({"context": {"traits": {"email_sha256": digest.upper()}}})
    assert found == {"sha256_email_address": [digest]}  # a hash is kept (lower-cased), never hashed again
    phone = identity.user_data(
        {"traits": {"phone_sha256": "+44 7700 900123"}}
    )  # defensive: not hashed upstream
    assert phone == {"sha256_phone_number": [hashlib.sha256(b"+447700900123").hexdigest()]}
    assert identity.user_data({"context": {"traits": {"email_sha256": ""}}}) == {}


# GA's rules --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("purchase", None),
        ("page_view", None),
        ("a" * 40, None),
        ("a" * 41, "NAME_INVALID"),
        ("1st_event", "NAME_INVALID"),
        ("my-event", "NAME_INVALID"),
        ("évènement", "NAME_INVALID"),
        ("", "VALUE_REQUIRED"),
        ("user_engagement", "NAME_RESERVED"),
        ("screen_view", "NAME_RESERVED"),
        ("firebase_campaign", "NAME_RESERVED"),
        ("google_thing", "NAME_RESERVED"),
    ],
)
def test_event_names(name: str, code: str | None) -> None:
    found = validate_event({"name": name, "params": {}})
    assert (found[0].code if found else None) == code


def test_parameter_rules() -> None:
    assert validate_event({"name": "e", "params": {f"p{i}": i for i in range(25)}}) == []
    (too_many,) = validate_event({"name": "e", "params": {f"p{i}": i for i in range(26)}})
    assert too_many.code == "EXCEEDED_MAX_ENTITIES"
    assert validate_event({"name": "e", "params": {"ga_x": 1}})[0].code == "NAME_RESERVED"
    assert validate_event({"name": "e", "params": {"obj": {"a": 1}}})[0].code == "VALUE_INVALID"
    assert (
        validate_event({"name": "e", "params": {"page_referrer": "r" * 420, "page_title": "t" * 300}}) == []
    )
    assert (
        validate_event({"name": "e", "params": {"page_referrer": "r" * 421}})[0].code == "VALUE_OUT_OF_BOUNDS"
    )
    custom = {f"c{i}": "x" for i in range(11)}
    (item,) = validate_event({"name": "e", "params": {"items": [{"item_id": "1", **custom}]}})
    assert item.code == "EXCEEDED_MAX_ENTITIES" and item.field_path == "events[0].params.items[0]"


def test_request_rules() -> None:
    assert validate_request({"client_id": "1.2"}) == []
    assert validate_request({"client_id": " "})[0].code == "VALUE_REQUIRED"
    good = {"client_id": "1.2", "user_properties": {"tier": {"value": "gold"}}}
    assert validate_request(good) == []
    assert (
        validate_request({**good, "user_properties": {"user_id": {"value": "x"}}})[0].code == "NAME_RESERVED"
    )
    assert validate_request({**good, "user_properties": {"t" * 25: {"value": "x"}}})[0].code == "NAME_INVALID"
    assert (
        validate_request({**good, "user_properties": {"tier": {"value": "v" * 37}}})[0].code
        == "VALUE_OUT_OF_BOUNDS"
    )
    many = {f"p{i}": {"value": 1} for i in range(26)}
    assert validate_request({**good, "user_properties": many})[0].code == "EXCEEDED_MAX_ENTITIES"


def test_a_user_property_added_by_a_field_override_is_checked() -> None:
    item = Item("i", search(), "search")
    shaped = GA4.format_for(item, settings(), {"user_properties.user_id": "=x"}, now=NOW)
    assert isinstance(shaped, Skip) and "user_properties.user_id" in shaped.reason


# batching ------------------------------------------------------------------------------------------


def carried(requests: list[OutboundRequest]) -> list[str]:
    return [item_id for request in requests for item_id in request.item_ids]


def test_interleaved_visitors_are_grouped_each_in_its_own_order() -> None:
    """The golden runner checks that items travel in the order they came; for GA4 that holds per
    visitor (one client_id per request), so interleaved visitors are checked here instead."""
    items = [
        formatted("a1", search("A", "a1")),
        formatted("b1", search("B", "b1")),
        formatted("a2", search("A", "a2")),
        formatted("b2", search("B", "b2")),
        formatted("a3", search("A", "a3")),
    ]
    requests = GA4.build_requests(items, settings(), GA4.endpoint(settings(), None))
    assert [list(r.item_ids) for r in requests] == [["a1", "a2", "a3"], ["b1", "b2"]]
    for request in requests:
        body = orjson.loads(request.body or b"")
        assert [e["params"]["search_term"] for e in body["events"]] == list(request.item_ids)


def test_bodies_stay_under_130_kb_and_25_events() -> None:
    products = [
        {"product_id": f"SKU-{i:04d}", "name": "n" * 90, "category": "c" * 90, "brand": "b" * 90}
        for i in range(120)
    ]
    orders = [
        formatted(
            f"o{i}",
            {**search("A"), "event": "Cart Viewed", "properties": {"products": products}},
            "view_cart",
        )
        for i in range(30)
    ]
    one = len(orjson.dumps(orders[0].payload))
    assert 30_000 < one < MAX_BODY
    requests = GA4.build_requests(orders, settings(), GA4.endpoint(settings(), None))
    assert carried(requests) == [f"o{i}" for i in range(30)]
    for request in requests:
        assert request.body is not None and len(request.body) < MAX_BODY
        assert len(orjson.loads(request.body)["events"]) == len(request.item_ids) <= 25
    assert len(requests) >= 30 * one // MAX_BODY + 1


def test_an_event_too_big_for_one_body_is_skipped() -> None:
    products = [
        {
            "product_id": f"SKU-{i:04d}",
            "name": "n" * 99,
            "category": "c" * 99,
            "brand": "b" * 99,
            "variant": "v" * 99,
            "coupon": "k" * 99,
            "affiliation": "a" * 99,
        }
        for i in range(200)
    ]
    item = Item(
        "big", {**search(), "event": "Cart Viewed", "properties": {"products": products}}, "view_cart"
    )
    shaped = GA4.format_for(item, settings(), None, now=NOW)
    assert isinstance(shaped, Skip) and "smaller than 130 kB" in shaped.reason


# settings, presets, UI ---------------------------------------------------------------------------


def test_the_settings_schema() -> None:
    fields = {f.name: f for f in GA4.settings_schema}
    assert set(fields) == {"measurement_id", "api_secret", "region", "validate"}
    assert GA4.secret_fields() == ("api_secret",)
    assert fields["measurement_id"].required and fields["api_secret"].required
    assert not fields["region"].required and not fields["validate"].required
    assert fields["validate"].kind == "boolean" and fields["validate"].default is False
    assert fields["measurement_id"].problems("G-ABC123DEF4") == []
    for wrong in ("UA-12345-1", "G-", "ABC123", "g-abc123def4"):
        assert fields["measurement_id"].problems(wrong), wrong
    assert fields["region"].problems("eu") == [] and fields["region"].problems("us")


def test_region_and_endpoint() -> None:
    assert GA4.endpoint(settings(region="eu"), None) == "https://region1.google-analytics.com"
    assert GA4.endpoint(settings(region="EU"), None) == "https://region1.google-analytics.com"
    assert GA4.endpoint(settings(), None) == "https://www.google-analytics.com"
    assert GA4.endpoint(settings(region="eu"), "http://127.0.0.1:9") == "http://127.0.0.1:9"


def test_a_missing_measurement_id_names_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("integrations: [{id: g, vendor: ga4, settings: {api_secret: abcdefghijkl}}]", {})
    assert any("integrations[0].settings.measurement_id: required" in p for p in info.value.problems)
    with pytest.raises(ConfigError) as info:
        parse_config(
            "integrations: [{id: g, vendor: ga4, settings: {measurement_id: UA-1, api_secret: abcdefghijkl}}]",
            {},
        )
    assert any("integrations[0].settings.measurement_id" in p for p in info.value.problems)
    config = parse_config(
        "integrations: [{id: g, vendor: ga4, settings: {measurement_id: G-ABC123DEF4, api_secret: abcdefghijkl,"
        " validate: '${V}'}}]",
        {"V": "true"},
    )
    assert config.integrations[0].mapping()["Order Completed"] == "purchase"


def test_the_default_preset_maps_what_contract_md_lists() -> None:
    events = GA4.presets["default"].events
    expected = {
        "Order Completed": "purchase",
        "Product Added": "add_to_cart",
        "Product Viewed": "view_item",
        "Checkout Started": "begin_checkout",
        "Products Searched": "search",
        "Signed Up": "sign_up",
        "Lead Generated": "generate_lead",
        "page": "page_view",
        "Product List Viewed": "view_item_list",
        "Cart Viewed": "view_cart",
        "Product Removed": "remove_from_cart",
        "Order Refunded": "refund",
    }
    assert {k: events[k] for k in expected} == expected
    for name in events.values():  # every preset name passes GA's rules
        assert validate_event({"name": name, "params": {}}) == []


def test_the_ui_guide() -> None:
    guide = all_destinations()["ga4"].guide()
    assert guide.summary and guide.consent_hint and guide.mapping_label == "GA4 event name"
    assert any("Measurement ID" in step for step in guide.setup)
    assert any("api_secret" in step for step in guide.setup)
    assert "401/403" in guide.troubleshooting and any(
        "validate" in hint for hint in guide.troubleshooting.values()
    )


# against the stand-in --------------------------------------------------------------------------


async def test_collect_answers_204_and_keeps_the_events() -> None:
    async with Ga4StandIn(MID, SECRET, clock=lambda: NOW) as ga:
        items = [formatted("a", search("A", "one")), formatted("b", search("A", "two"))]
        (request,) = GA4.build_requests(items, settings(), ga.origin)
        response = await send(request)
        assert response.status == 204
        assert {o.outcome for o in GA4.classify(request, response).values()} == {Outcome.DONE}
        assert [e["params"]["search_term"] for e in ga.accepted_events] == ["one", "two"]
        assert ga.dropped == [] and ga.duplicates() == {}


async def test_collect_drops_silently_what_ga4_would_drop() -> None:
    async with Ga4StandIn(MID, SECRET, clock=lambda: NOW) as ga:
        body = {"client_id": "1.2", "events": [{"name": "session_start", "params": {}}]}
        url = f"{ga.origin}/mp/collect?measurement_id={MID}&api_secret={SECRET}"
        request = OutboundRequest(
            "POST", url, {"Content-Type": "application/json"}, orjson.dumps(body), ("x",)
        )
        response = await send(request)
        assert response.status == 204  # like GA4: no error, whatever the body
        assert ga.accepted_events == [] and ga.dropped[0]["messages"][0]["validationCode"] == "NAME_RESERVED"
        wrong = OutboundRequest(
            "POST", url.replace(SECRET, "wrong-secret"), {}, orjson.dumps({"client_id": "1"}), ("y",)
        )
        assert (await send(wrong)).status == 204 and len(ga.dropped) == 2


async def test_the_validation_server_s_messages_become_outcomes_per_event() -> None:
    async with Ga4StandIn(MID, SECRET, clock=lambda: NOW) as ga:
        good = formatted("good", search("A", "fine"))
        bad = Formatted("bad", {**good.payload, "events": [{"name": "Bad Name", "params": {}}]})
        later = formatted("later", search("A", "later"))
        (request,) = GA4.build_requests([good, bad, later], settings(validate=True), ga.origin)
        assert "/debug/mp/collect?" in request.url
        outcomes = GA4.classify(request, await send(request))
        assert outcomes["good"].outcome is Outcome.DONE and outcomes["later"].outcome is Outcome.DONE
        assert outcomes["bad"].outcome is Outcome.REJECTED
        assert outcomes["bad"].reason.startswith(
            "NAME_INVALID: Event at index: [1] has invalid name [Bad Name]"
        )
        assert ga.accepted_events == []  # validated, never recorded


async def test_a_failure_plan_is_retried_with_retry_after() -> None:
    async with Ga4StandIn(MID, SECRET, clock=lambda: NOW) as ga:
        ga.fail_next(1, 429, {"Retry-After": "7"})
        (request,) = GA4.build_requests([formatted("a", search())], settings(), ga.origin)
        first = GA4.classify(request, await send(request))["a"]
        assert (first.outcome, first.retry_after) == (Outcome.RETRY, 7.0)
        assert GA4.classify(request, await send(request))["a"].outcome is Outcome.DONE
        assert len(ga.accepted_events) == 1


# any value -------------------------------------------------------------------------------------

_ANY = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=300),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
)


@hypothesis_settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mapping=st.sampled_from(
        [*sorted(set(GA4.presets["default"].events.values())), "custom_event", "Bad Name"]
    ),
    properties=st.dictionaries(
        st.sampled_from(
            [
                "query",
                "order_id",
                "total",
                "value",
                "currency",
                "price",
                "sku",
                "name",
                "products",
                "list_id",
                "method",
                "x y",
                "ok",
            ]
        ),
        _ANY,
        max_size=8,
    ),
    products=st.lists(
        st.dictionaries(
            st.sampled_from(["product_id", "sku", "name", "price", "quantity", "position"]), _ANY, max_size=6
        ),
        max_size=4,
    ),
    context=st.dictionaries(
        st.sampled_from(["ip", "page", "cookies", "session", "consent", "traits"]), _ANY, max_size=6
    ),
    user=_ANY,
)
def test_any_event_is_sent_only_in_a_shape_ga4_keeps(
    mapping: str, properties: dict[str, Any], products: list[Any], context: dict[str, Any], user: Any
) -> None:
    """Whatever the event holds, the formatter either refuses it or builds a request the stand-in's
    independent copy of GA's rules keeps whole (nothing is sent that GA4 would silently drop)."""
    event: dict[str, Any] = {
        "type": "track",
        "event": "E",
        "timestamp": TS,
        "anonymousId": "v",
        "properties": {**properties, "products": products},
        "context": context,
        "userId": user,
    }
    shaped = GA4.format_for(Item("i", event, mapping), settings(), None, now=NOW)
    if isinstance(shaped, Skip):
        return
    (request,) = GA4.build_requests([shaped], settings(), "http://127.0.0.1:1")
    split = urllib.parse.urlsplit(request.url)
    record = RecordedRequest(
        "POST",
        split.path,
        dict(urllib.parse.parse_qsl(split.query)),
        split.query,
        dict(request.headers),
        request.body or b"",
        NOW,
    )
    stand_in = Ga4StandIn(MID, SECRET, clock=lambda: NOW)
    assert stand_in.validation_messages(record) == []
