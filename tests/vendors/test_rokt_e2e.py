"""Rokt through the real server: ``datafly serve`` delivering to the loopback Rokt stand-in.

Hashes are computed here with hashlib from the raw values the test sends (never copied from the
vendor document); what is asserted is what went over the wire and what the user can read in the
delivery log and the dead letters.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from e2e_support import db, wait_until
from http_client import post
from standins import RoktStandIn

KEY = "dk_rokt_e2e"
API_KEY = "rpub-5f1e2d3c4b5a69788796a5b4c3d2e1f0"
API_SECRET = "rsec-0a1b2c3d4e5f60718293a4b5c6d7e8f9"
ACCOUNT = "12345"
AUTH_HINT = "Check the api_key (rpub-…) and api_secret (rsec-…) are correct and belong to the same account."
BAD_REQUEST_HINT = "A required identifier is missing."
IP = "203.0.113.50"
UA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) DataflyE2E/1.0"
EMAIL = "  Jane.Doe@Example.com "
PHONE = "+44 7700 900123"
EMAIL_SHA = hashlib.sha256(b"jane.doe@example.com").hexdigest()
PHONE_SHA = hashlib.sha256(b"+447700900123").hexdigest()


# helpers ---------------------------------------------------------------------------------------


def rokt_integration(iid: str, url: str, preset: str = "default", secret: str = API_SECRET,
                     **extra: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {"account_id": ACCOUNT, "api_key": API_KEY, "api_secret": secret}
    settings.update(extra.pop("settings", {}))
    return {"id": iid, "vendor": "rokt", "preset": preset, "settings": settings, "endpoint": url, **extra}


def make_config(*integrations: dict[str, Any], **delivery: Any) -> dict[str, Any]:
    return {
        "sources": [{"id": "web", "key": KEY}],
        "integrations": list(integrations),
        "delivery": {"initial_backoff": "100ms", "max_backoff": "1s", "timeout": "2s", **delivery},
    }


def send(server: Any, *events: dict[str, Any]) -> list[str]:
    batch = [{"messageId": uuid.uuid4().hex, **e} for e in events]
    answer = post(f"{server.url}/v1/batch?key={KEY}", {"batch": batch})
    assert answer.status == 200, answer.body
    return [e["messageId"] for e in batch]






def settle(seconds: float = 0.8) -> None:
    """Longer than the Rokt batch wait (0.5s): anything that would be sent has been by then."""
    time.sleep(seconds)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def recent(seconds_ago: int = 30) -> str:
    return iso(datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=seconds_ago))


def ctx(path: str = "/", advertising: bool | None = None, **more: Any) -> dict[str, Any]:
    context: dict[str, Any] = {"page": {"url": f"https://shop.example{path}"}, "ip": IP, "userAgent": UA}
    if advertising is not None:
        context["consent"] = {"canonical": {"advertising": advertising}}
    context.update(more)
    return context


def order(order_id: str, visitor: str, **properties: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Order Completed", "anonymousId": visitor, "timestamp": recent(),
            "properties": {"order_id": order_id, "revenue": 10, "currency": "EUR", **properties},
            "context": ctx("/thanks")}


def with_click(visitor: str, rclid: str = "click-0001") -> dict[str, Any]:
    """The landing page a visitor reaches from a Rokt placement."""
    return {"type": "page", "anonymousId": visitor, "context": ctx(f"/landing?utm_source=rokt&rclid={rclid}")}


def events_sent(stand_in: RoktStandIn) -> list[dict[str, Any]]:
    return [e for r in stand_in.requests if r.status is not None for e in r.json()["events"]]


def dead_letters(server: Any) -> list[tuple[Any, ...]]:
    return db(server.home, "SELECT message_id, attempts, outcome, reason FROM dead_letters ORDER BY id")


@pytest.fixture
def rokt() -> Iterator[RoktStandIn]:
    with RoktStandIn(API_KEY, API_SECRET, account_id=ACCOUNT).running_in_thread() as stand_in:
        yield stand_in


# the documented purchase -------------------------------------------------------------------------


def test_a_purchase_after_identify_and_a_rokt_landing_page(serve: Any, rokt: RoktStandIn) -> None:
    server = serve(make_config(rokt_integration("rokt-main", rokt.url)))
    visitor = "visitor-rk-1"
    when = recent(90)
    send(
        server,
        with_click(visitor, "550e8400e29b41d4a716446655440001"),
        {"type": "identify", "userId": "user-123", "anonymousId": visitor,
         "traits": {"email": EMAIL, "phone": PHONE}, "context": ctx("/account")},
        {"type": "track", "event": "Product Viewed", "anonymousId": visitor, "context": ctx("/p/1")},
        {"type": "track", "event": "Order Completed", "anonymousId": visitor, "timestamp": when,
         "properties": {"order_id": "ORD-789012", "revenue": 99.99, "currency": "USD"},
         "context": ctx("/checkout/done")},
    )
    wait_until(lambda: rokt.accepted_events, what="the conversion")
    settle()
    (request,) = rokt.requests  # the page, the identify and Product Viewed are not conversions
    expected_auth = "Basic " + base64.b64encode(f"{API_KEY}:{API_SECRET}".encode()).decode()
    assert request.method == "POST" and request.status == 200
    assert request.header("Authorization") == expected_auth
    assert (request.header("Content-Type") or "").startswith("application/json")
    body = request.json()
    assert body == {
        "accountId": ACCOUNT,
        "events": [{
            "conversionType": "purchase",
            "conversionId": "ORD-789012",
            "eventTime": when,
            "confirmationRef": "ORD-789012",
            "value": 99.99,
            "currency": "USD",
            "rclid": "550e8400e29b41d4a716446655440001",
            "emailsha256": EMAIL_SHA,
            "mobilesha256": PHONE_SHA,
            "ipAddress": IP,
            "userAgent": UA,
        }],
    }
    assert rokt.count_by_confirmation_ref() == {"ORD-789012": 1}
    rows = db(server.home, "SELECT outcome, status FROM delivery_log WHERE integration_id='rokt-main'")
    assert rows == [("done", 200)]


def test_each_identifier_alone_is_enough(serve: Any, rokt: RoktStandIn) -> None:
    server = serve(make_config(rokt_integration("rokt-main", rokt.url)))
    send(
        server,
        with_click("v-click", "click-only"),
        order("ORD-CLICK", "v-click"),
        {"type": "identify", "anonymousId": "v-mail", "traits": {"email": "Only.Mail@Example.org"}},
        order("ORD-MAIL", "v-mail"),
        {"type": "identify", "anonymousId": "v-phone", "traits": {"phone": "+1 (415) 555-0132"}},
        order("ORD-PHONE", "v-phone"),
    )
    wait_until(lambda: len(rokt.accepted_events) >= 3, what="3 conversions")
    sent = {e["confirmationRef"]: e for e in rokt.accepted_events}
    ids = {"rclid", "emailsha256", "mobilesha256"}
    assert {k: v for k, v in sent["ORD-CLICK"].items() if k in ids} == {"rclid": "click-only"}
    assert {k: v for k, v in sent["ORD-MAIL"].items() if k in ids} == {
        "emailsha256": hashlib.sha256(b"only.mail@example.org").hexdigest()}
    assert {k: v for k, v in sent["ORD-PHONE"].items() if k in ids} == {
        "mobilesha256": hashlib.sha256(b"+14155550132").hexdigest()}


# presets and mapping -------------------------------------------------------------------------------


def test_the_default_preset_maps_signups_and_leads_and_drops_the_rest(serve: Any, rokt: RoktStandIn) -> None:
    server = serve(make_config(rokt_integration("rokt-main", rokt.url)))
    v = "visitor-rk-2"
    send(
        server,
        with_click(v),
        {"type": "track", "event": "Signed Up", "anonymousId": v, "timestamp": recent(), "context": ctx()},
        {"type": "track", "event": "Lead Generated", "anonymousId": v, "timestamp": recent(), "context": ctx()},
        {"type": "track", "event": "Order Refunded", "anonymousId": v, "timestamp": recent(),
         "properties": {"order_id": "ORD-R"}, "context": ctx()},
        {"type": "track", "event": "Cart Viewed", "anonymousId": v, "context": ctx()},
        order("ORD-D1", v),
    )
    wait_until(lambda: len(rokt.accepted_events) >= 3, what="3 conversions")
    settle()
    types = sorted(e["conversionType"] for e in events_sent(rokt))
    assert types == ["lead", "purchase", "signup"]  # Order Refunded and Cart Viewed are not in the preset
    signup = next(e for e in rokt.accepted_events if e["conversionType"] == "signup")
    assert "confirmationRef" not in signup and signup["conversionId"]  # no order id: the messageId
    assert rokt.duplicates() == {}


def test_the_retail_preset_sends_refunds_margin_and_quantity(serve: Any, rokt: RoktStandIn) -> None:
    server = serve(make_config(rokt_integration("rokt-retail", rokt.url, preset="retail")))
    v = "visitor-rk-3"
    send(
        server,
        with_click(v),
        order("ORD-RT1", v, revenue=120.0, margin=35.5, products=[{"sku": "a", "quantity": 2},
                                                                   {"sku": "b", "quantity": 3}]),
        {"type": "track", "event": "Order Refunded", "anonymousId": v, "timestamp": recent(),
         "properties": {"order_id": "ORD-RT0", "revenue": 40, "currency": "EUR", "margin": 12, "quantity": 1},
         "context": ctx()},
        {"type": "track", "event": "Signed Up", "anonymousId": v, "timestamp": recent(), "context": ctx()},
        {"type": "track", "event": "Lead Generated", "anonymousId": v, "timestamp": recent(), "context": ctx()},
    )
    wait_until(lambda: len(rokt.accepted_events) >= 3, what="3 conversions")
    settle()
    sent = {e["conversionType"]: e for e in events_sent(rokt)}
    assert set(sent) == {"purchase", "refund", "signup"}  # Lead Generated is not in the retail preset
    assert (sent["purchase"]["margin"], sent["purchase"]["quantity"], sent["purchase"]["value"]) == (35.5, 5, 120.0)
    refund = sent["refund"]
    assert (refund["confirmationRef"], refund["margin"], refund["quantity"], refund["value"]) == ("ORD-RT0", 12, 1, 40)


def test_the_default_preset_sends_no_retail_fields(serve: Any, rokt: RoktStandIn) -> None:
    server = serve(make_config(rokt_integration("rokt-main", rokt.url)))
    send(server, with_click("v-nr"), order("ORD-NR", "v-nr", margin=3, quantity=2))
    wait_until(lambda: rokt.accepted_events, what="the conversion")
    assert "margin" not in rokt.accepted_events[0] and "quantity" not in rokt.accepted_events[0]


# events that are not sent ----------------------------------------------------------------------------


def test_an_event_without_identifier_and_one_too_old_are_not_sent_with_their_reason(
    serve: Any, rokt: RoktStandIn
) -> None:
    server = serve(make_config(rokt_integration("rokt-main", rokt.url)))
    old = iso(datetime.now(UTC) - timedelta(days=400))
    ids = send(
        server,
        order("ORD-ANON", "visitor-without-ids"),  # ip and user agent, but no rclid/email/phone
        with_click("visitor-rk-4"),
        {**order("ORD-OLD", "visitor-rk-4"), "timestamp": old},
        order("ORD-OK", "visitor-rk-4"),
    )
    wait_until(lambda: rokt.accepted_events, what="the good conversion")
    settle()
    assert [e["confirmationRef"] for e in events_sent(rokt)] == ["ORD-OK"]
    dead = {row[0]: row for row in dead_letters(server)}
    assert set(dead) == {ids[0], ids[2]}
    assert dead[ids[0]][2] == "skipped" and BAD_REQUEST_HINT in dead[ids[0]][3]
    assert "rclid" in dead[ids[0]][3] and "emailsha256" in dead[ids[0]][3]
    assert dead[ids[2]][2] == "skipped" and "older than 12 months" in dead[ids[2]][3]
    assert old[:10] in dead[ids[2]][3]
    rows = db(server.home, "SELECT message_ids, reason FROM delivery_log WHERE outcome='skipped'")
    logged = {row[0]: row[1] for row in rows}
    assert logged == {f'["{ids[0]}"]': dead[ids[0]][3], f'["{ids[2]}"]': dead[ids[2]][3]}


def test_consent_granted_denied_and_absent(serve: Any, rokt: RoktStandIn) -> None:
    server = serve(make_config(rokt_integration("rokt-gated", rokt.url, consent=["advertising"])))
    v = "visitor-rk-5"
    granted = {**order("ORD-YES", v), "context": ctx("/t", advertising=True)}
    denied = {**order("ORD-NO", v), "context": ctx("/t", advertising=False)}
    absent = order("ORD-NONE", v)
    ids = send(server, with_click(v), granted, denied, absent)
    wait_until(lambda: rokt.accepted_events, what="the consented conversion")
    wait_until(lambda: len(db(server.home, "SELECT 1 FROM delivery_log WHERE outcome='filtered'")) >= 2)
    settle()
    assert [e["confirmationRef"] for e in events_sent(rokt)] == ["ORD-YES"]
    rows = db(server.home, "SELECT message_ids, reason FROM delivery_log WHERE outcome='filtered'")
    assert {row[0] for row in rows} == {f'["{ids[2]}"]', f'["{ids[3]}"]'}
    assert all("advertising" in row[1] for row in rows)
    assert dead_letters(server) == []


# vendor answers -------------------------------------------------------------------------------------


def test_a_wrong_secret_is_not_retried_and_carries_the_doc_s_hint(serve: Any, rokt: RoktStandIn) -> None:
    wrong = "rsec-ffffffffffffffffffffffffffffffff"
    server = serve(make_config(rokt_integration("rokt-main", rokt.url, secret=wrong)))
    ids = send(server, with_click("v-401"), order("ORD-401", "v-401"))
    rows = wait_until(lambda: dead_letters(server), what="a dead letter")
    settle()
    assert [r.status for r in rokt.requests] == [401]
    assert rows == [(ids[1], 1, "auth_failed", f"401: {AUTH_HINT}")]
    log_rows = db(server.home, "SELECT outcome, status, reason, request FROM delivery_log")
    assert [(r[0], r[1], r[2]) for r in log_rows] == [("auth_failed", 401, f"401: {AUTH_HINT}")]
    assert json.loads(log_rows[0][3])["headers"]["Authorization"] == "Basic ****"
    for secret in (wrong, API_KEY, base64.b64encode(f"{API_KEY}:{wrong}".encode()).decode()):
        assert secret not in server.log()
        for path in Path(server.home).rglob("*"):
            assert not path.is_file() or secret.encode() not in path.read_bytes(), path.name


def test_a_400_is_rejected_with_its_reason(serve: Any, rokt: RoktStandIn) -> None:
    server = serve(make_config(rokt_integration("rokt-main", rokt.url)))
    rokt.fail_next(1, 400, {"Content-Type": "application/json"},
                   '{"error": {"code": "MISSING_IDENTIFIER", "message": "at least one identifier"}}')
    ids = send(server, with_click("v-400"), order("ORD-400", "v-400"))
    rows = wait_until(lambda: dead_letters(server), what="a dead letter")
    settle()
    assert len(rokt.requests) == 1
    ((message_id, attempts, outcome, reason),) = rows
    assert (message_id, attempts, outcome) == (ids[1], 1, "rejected")
    assert reason.startswith("400") and BAD_REQUEST_HINT in reason and "MISSING_IDENTIFIER" in reason
    assert db(server.home, "SELECT outcome, status FROM delivery_log") == [("rejected", 400)]


@pytest.mark.parametrize(
    ("status", "times", "headers", "min_gap"),
    [(429, 1, {"Retry-After": "1"}, 0.95), (500, 1, {}, 0.0), (503, 2, {}, 0.0), (502, 1, {}, 0.0)],
)
def test_passing_failures_are_retried_then_delivered_once(
    serve: Any, rokt: RoktStandIn, status: int, times: int, headers: dict[str, str], min_gap: float
) -> None:
    server = serve(make_config(rokt_integration("rokt-main", rokt.url)))
    rokt.fail_next(times, status, headers)
    send(server, with_click("v-retry"), order("ORD-RETRY", "v-retry"))
    wait_until(lambda: rokt.accepted_events, what="the conversion")
    settle()
    assert [r.status for r in rokt.requests] == [status] * times + [200]
    assert rokt.requests[1].time - rokt.requests[0].time >= min_gap
    assert len({r.body for r in rokt.requests}) == 1  # the same conversion each time
    assert rokt.count_by_confirmation_ref() == {"ORD-RETRY": 1}
    rows = db(server.home, "SELECT outcome, status FROM delivery_log ORDER BY id")
    assert rows == [("retry", status)] * times + [("done", 200)]
    assert dead_letters(server) == []


def test_unprocessed_records_of_a_200_are_the_only_ones_dead_lettered(serve: Any, rokt: RoktStandIn) -> None:
    server = serve(make_config(rokt_integration("rokt-main", rokt.url)))
    rokt.reject_conversion_ids = {"ORD-P2"}
    v = "visitor-rk-6"
    ids = send(server, with_click(v), order("ORD-P1", v), order("ORD-P2", v), order("ORD-P3", v))
    wait_until(lambda: dead_letters(server), what="a dead letter")
    settle()
    (request,) = rokt.requests  # one batch of three
    assert [e["conversionId"] for e in request.json()["events"]] == ["ORD-P1", "ORD-P2", "ORD-P3"]
    assert rokt.count_by_confirmation_ref() == {"ORD-P1": 1, "ORD-P3": 1}
    assert dead_letters(server) == [(ids[2], 1, "rejected", "REJECTED: rejected by the test's plan")]
    rows = db(server.home, "SELECT outcome, status, reason FROM delivery_log")
    assert rows == [("partial", 200, "REJECTED: rejected by the test's plan")]
    assert db(server.home, "SELECT count(*) FROM queue") == [(0,)]


# batching, dedup, the test flag -----------------------------------------------------------------------


def test_250_conversions_go_in_requests_of_at_most_100_each_exactly_once(serve: Any, rokt: RoktStandIn) -> None:
    server = serve(make_config(rokt_integration("rokt-main", rokt.url)))
    send(server, *(with_click(f"v-b{i}", f"click-{i}") for i in range(5)))
    orders = [order(f"ORD-B{i:03d}", f"v-b{i % 5}") for i in range(250)]
    ids = send(server, *orders[:120])
    ids += send(server, *orders[120:])
    send(server, *({**o, "messageId": m} for o, m in zip(orders[:50], ids[:50], strict=True)))  # replayed
    wait_until(lambda: len(rokt.accepted_events) >= 250, what="250 conversions")
    settle()
    sizes = [len(r.json()["events"]) for r in rokt.requests]
    assert max(sizes) <= 100 and sum(sizes) == 250
    assert len(sizes) <= 8  # batched, not one request per conversion
    counts = rokt.count_by_confirmation_ref()
    assert len(counts) == 250 and set(counts.values()) == {1}
    assert rokt.duplicates() == {}


def test_the_test_setting_sends_the_test_flag(serve: Any, rokt: RoktStandIn) -> None:
    server = serve(make_config(rokt_integration("rokt-try", rokt.url, settings={"test": True})))
    send(server, with_click("v-test"), order("ORD-TEST", "v-test"))
    wait_until(lambda: rokt.test_events, what="a validated conversion")
    (request,) = rokt.requests
    assert request.json()["test"] is True
    assert rokt.accepted_events == []  # validated, not ingested
    # the vendor's answer is stored after the stand-in has seen the request: wait for the log row
    rows = wait_until(lambda: db(server.home, "SELECT outcome FROM delivery_log"), what="the log row")
    assert rows == [("done",)]


def test_without_the_test_setting_no_test_flag_is_sent(serve: Any, rokt: RoktStandIn) -> None:
    server = serve(make_config(rokt_integration("rokt-live", rokt.url, settings={"test": False})))
    send(server, with_click("v-live"), order("ORD-LIVE", "v-live"))
    wait_until(lambda: rokt.accepted_events, what="the conversion")
    assert "test" not in rokt.requests[0].json()
