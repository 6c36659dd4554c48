"""GA4 through the real server: ``datafly serve`` delivering to the loopback GA4 stand-in.

Hashes are computed here with hashlib from the raw values the test sends (never copied from a
document). The stand-in answers 204 to anything, as GA4 does, and records what a real GA4 would
have dropped: every test that sends asserts that list stays empty.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from e2e_support import db, wait_until
from http_client import post
from standins.ga4 import Ga4StandIn

KEY = "dk_ga4_e2e"
MID = "G-E2E1234567"
SECRET = "e2e-Api_Secret-0123456789"
AUTH_HINT = "Google Analytics refused the request."
IP = "203.0.113.50"
UA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) DataflyE2E/1.0"
EMAIL = "  Jane.Doe@Example.com "
PHONE = "+44 7700 900123"
EMAIL_SHA = hashlib.sha256(b"jane.doe@example.com").hexdigest()
PHONE_SHA = hashlib.sha256(b"+447700900123").hexdigest()
GA_COOKIE = "GA1.1.1357924680.1780000000"
SESSION_COOKIE = "GS2.1.s1780700000$o4$g1$t1780700100$j0$l0$h0"


def ga4_integration(iid: str, origin: str, secret: str = SECRET, **extra: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {"measurement_id": MID, "api_secret": secret}
    settings.update(extra.pop("settings", {}))
    return {
        "id": iid,
        "vendor": "ga4",
        "preset": "default",
        "settings": settings,
        "endpoint": origin,
        **extra,
    }


def make_config(*integrations: dict[str, Any]) -> dict[str, Any]:
    return {
        "sources": [{"id": "web", "key": KEY}],
        "integrations": list(integrations),
        "delivery": {"initial_backoff": "100ms", "max_backoff": "1s", "timeout": "2s"},
    }


def send(server: Any, *events: dict[str, Any]) -> list[str]:
    batch = [{"messageId": uuid.uuid4().hex, **e} for e in events]
    answer = post(f"{server.url}/v1/batch?key={KEY}", {"batch": batch})
    assert answer.status == 200, answer.body
    return [e["messageId"] for e in batch]


def settle(seconds: float = 0.8) -> None:
    """Longer than the GA4 batch wait (0.5 s): anything that would be sent has been by then."""
    time.sleep(seconds)


def ctx(
    path: str = "/", cookies: dict[str, str] | None = None, marketing: bool | None = None
) -> dict[str, Any]:
    context: dict[str, Any] = {
        "page": {"url": f"https://shop.example{path}", "title": "Shop"},
        "ip": IP,
        "userAgent": UA,
    }
    if cookies is not None:
        context["cookies"] = cookies
    if marketing is not None:
        context["consent"] = {"canonical": {"analytics": True, "marketing": marketing}}
    return context


def dead_letters(server: Any) -> list[tuple[Any, ...]]:
    return db(server.home, "SELECT message_id, attempts, outcome, reason FROM dead_letters ORDER BY id")


@pytest.fixture
def ga() -> Iterator[Ga4StandIn]:
    with Ga4StandIn(MID, SECRET).running_in_thread() as stand_in:
        yield stand_in


def test_a_visit_with_the_site_s_ga_cookies_identify_and_a_purchase(serve: Any, ga: Ga4StandIn) -> None:
    server = serve(make_config(ga4_integration("ga4-main", ga.origin)))
    visitor = "visitor-ga-1"
    cookies = {"_ga": GA_COOKIE, "_ga_E2E1234567": SESSION_COOKIE, "_fbp": "fb.1.1780000000000.123"}
    shirt = {
        "product_id": "SKU-1",
        "name": "Linen shirt",
        "price": 45.5,
        "quantity": 2,
        "category": "Apparel",
    }
    send(
        server,
        {
            "type": "page",
            "anonymousId": visitor,
            "context": ctx("/landing?gclid=abc", cookies, marketing=True),
        },
        {
            "type": "identify",
            "userId": "user-123",
            "anonymousId": visitor,
            "traits": {"email": EMAIL, "phone": PHONE},
            "context": ctx("/account", marketing=True),
        },
        {
            "type": "track",
            "event": "Product Added",
            "anonymousId": visitor,
            "userId": "user-123",
            "properties": {**shirt, "currency": "EUR"},
            "context": ctx("/p/1", marketing=True),
        },
        {
            "type": "track",
            "event": "Order Completed",
            "anonymousId": visitor,
            "userId": "user-123",
            "properties": {
                "order_id": "ORD-789012",
                "total": 99.0,
                "revenue": 91.0,
                "currency": "EUR",
                "products": [shirt],
            },
            "context": ctx("/checkout/done", marketing=True),
        },
    )
    wait_until(lambda: ga.events_named("purchase"), what="the purchase")
    settle()
    assert ga.dropped == [] and ga.duplicates() == {}
    names = sorted(e["name"] for e in ga.accepted_events)
    assert names == ["add_to_cart", "page_view", "purchase"]  # identify is not an event in GA4
    for request in ga.requests:
        assert request.path == "/mp/collect" and request.status == 204
        assert request.query == {"measurement_id": MID, "api_secret": SECRET}
        body = request.json()
        assert len({body["client_id"]}) == 1 and len(body["events"]) <= 25
    for event in ga.accepted_events:
        assert event["client_id"] == "1357924680.1780000000"  # the site's _ga: one GA4 user
        assert event["params"]["session_id"] == 1780700000  # the site's _ga_<container> session
        assert event["consent"] == {"ad_user_data": "GRANTED", "ad_personalization": "GRANTED"}
        assert event["ip_override"] == IP
    (purchase,) = ga.events_named("purchase")
    assert purchase["user_id"] == "user-123"
    assert purchase["user_data"] == {"sha256_email_address": [EMAIL_SHA], "sha256_phone_number": [PHONE_SHA]}
    params = purchase["params"]
    assert (params["transaction_id"], params["value"], params["currency"]) == ("ORD-789012", 99.0, "EUR")
    assert params["items"] == [
        {
            "item_id": "SKU-1",
            "item_name": "Linen shirt",
            "price": 45.5,
            "quantity": 2,
            "item_category": "Apparel",
        }
    ]
    (page_view,) = ga.events_named("page_view")
    assert page_view["params"]["page_location"] == "https://shop.example/landing?gclid=abc"
    assert ga.count_by_transaction_id() == {"ORD-789012": 1}
    rows = db(
        server.home, "SELECT outcome, status, request FROM delivery_log WHERE integration_id='ga4-main'"
    )
    assert {(r[0], r[1]) for r in rows} == {("done", 204)}
    for row in rows:
        assert SECRET not in row[2] and "api_secret=e2e-****" in json.loads(row[2])["url"]
    assert SECRET not in server.log()


def test_without_ga_cookies_a_visitor_keeps_one_stable_client_id(serve: Any, ga: Ga4StandIn) -> None:
    server = serve(make_config(ga4_integration("ga4-main", ga.origin)))
    send(
        server,
        {"type": "page", "anonymousId": "v-plain-1", "context": ctx("/a")},
        {
            "type": "track",
            "event": "Products Searched",
            "anonymousId": "v-plain-1",
            "properties": {"query": "hat"},
            "context": ctx("/s"),
        },
        {"type": "page", "anonymousId": "v-plain-2", "context": ctx("/b")},
    )
    wait_until(lambda: len(ga.accepted_events) >= 3, what="3 events")
    settle()
    for event in ga.accepted_events:
        assert re.fullmatch(r"\d{1,10}\.\d{10}", event["client_id"])
        assert isinstance(event["params"]["session_id"], int)
        assert event["consent"] == {
            "ad_user_data": "DENIED",
            "ad_personalization": "DENIED",
        }  # no consent given
    first = {
        e["client_id"]
        for e in ga.accepted_events
        if e["params"].get("page_location") != "https://shop.example/b"
    }
    second = {
        e["client_id"]
        for e in ga.accepted_events
        if e["params"].get("page_location") == "https://shop.example/b"
    }
    assert len(first) == 1 and len(second) == 1 and first != second  # stable per visitor, distinct between
    assert ga.dropped == []


def test_events_ga4_would_drop_are_recorded_with_ga_s_reason_not_sent(serve: Any, ga: Ga4StandIn) -> None:
    integration = ga4_integration(
        "ga4-main", ga.origin, events={"Signed Up": "Signed Up", "Lead Generated": "session_start"}
    )
    server = serve(make_config(integration))
    old = (datetime.now(UTC) - timedelta(hours=80)).strftime("%Y-%m-%dT%H:%M:%SZ")
    ids = send(
        server,
        {"type": "track", "event": "Signed Up", "anonymousId": "v-drop", "context": ctx()},
        {"type": "track", "event": "Lead Generated", "anonymousId": "v-drop", "context": ctx()},
        {
            "type": "track",
            "event": "Products Searched",
            "anonymousId": "v-drop",
            "timestamp": old,
            "properties": {"query": "old"},
            "context": ctx(),
        },
        {
            "type": "track",
            "event": "Order Completed",
            "anonymousId": "v-drop",
            "properties": {"total": 5, "currency": "EUR"},
            "context": ctx(),
        },
        {
            "type": "track",
            "event": "Products Searched",
            "anonymousId": "v-drop",
            "properties": {"query": "fine"},
            "context": ctx(),
        },
    )
    wait_until(lambda: ga.accepted_events, what="the valid event")
    wait_until(lambda: len(dead_letters(server)) >= 4, what="4 refusals")
    settle()
    assert [e["params"]["search_term"] for e in ga.accepted_events] == ["fine"]
    assert ga.dropped == []  # nothing GA4 would drop went over the wire
    dead = {row[0]: row for row in dead_letters(server)}
    assert set(dead) == set(ids[:4]) and {row[2] for row in dead.values()} == {"skipped"}
    assert dead[ids[0]][3].startswith("NAME_INVALID: event name [Signed Up]")
    assert dead[ids[1]][3].startswith("NAME_RESERVED: event name [session_start] is reserved")
    assert "more than 72 hours" in dead[ids[2]][3]
    assert dead[ids[3]][3].startswith("VALUE_REQUIRED: transaction_id is required for purchase")


def test_validate_sends_to_the_validation_server_and_shows_its_messages(serve: Any, ga: Ga4StandIn) -> None:
    server = serve(make_config(ga4_integration("ga4-try", ga.origin, settings={"validate": True})))
    ids = send(
        server,
        {
            "type": "track",
            "event": "Products Searched",
            "anonymousId": "v-val",
            "properties": {"query": "ok"},
            "context": ctx(),
        },
    )
    wait_until(lambda: ga.validated, what="a validated request")
    rows = wait_until(lambda: db(server.home, "SELECT outcome, status FROM delivery_log"), what="the log row")
    assert rows == [("done", 200)]
    assert (
        ga.requests[0].path == "/debug/mp/collect" and ga.accepted_events == []
    )  # validated, never recorded
    message = {
        "fieldPath": "events",
        "validationCode": "VALUE_INVALID",
        "description": "Event at index: [0] has a param that GA4 does not accept.",
    }
    ga.fail_next(1, 200, {"Content-Type": "application/json"}, json.dumps({"validationMessages": [message]}))
    ids = send(
        server,
        {
            "type": "track",
            "event": "Products Searched",
            "anonymousId": "v-val",
            "properties": {"query": "refused"},
            "context": ctx(),
        },
    )
    rows = wait_until(lambda: dead_letters(server), what="a dead letter")
    assert rows == [
        (
            ids[0],
            1,
            "rejected",
            "VALUE_INVALID: Event at index: [0] has a param that GA4 does not accept. (events)",
        )
    ]


def test_a_429_is_retried_after_retry_after_then_delivered_once(serve: Any, ga: Ga4StandIn) -> None:
    server = serve(make_config(ga4_integration("ga4-main", ga.origin)))
    ga.fail_next(1, 429, {"Retry-After": "1"})
    send(
        server,
        {
            "type": "track",
            "event": "Order Completed",
            "anonymousId": "v-429",
            "properties": {"order_id": "ORD-R", "total": 10, "currency": "EUR"},
            "context": ctx(),
        },
    )
    wait_until(lambda: ga.accepted_events, what="the purchase", timeout=10)
    settle()
    assert [r.status for r in ga.requests] == [429, 204]
    assert ga.requests[1].time - ga.requests[0].time >= 0.95
    assert ga.count_by_transaction_id() == {"ORD-R": 1} and ga.dropped == []
    assert dead_letters(server) == []


def test_a_401_is_dead_lettered_with_the_hint(serve: Any, ga: Ga4StandIn) -> None:
    server = serve(make_config(ga4_integration("ga4-main", ga.origin)))
    ga.fail_next(1, 401, body="Unauthorized")
    ids = send(
        server,
        {
            "type": "track",
            "event": "Products Searched",
            "anonymousId": "v-401",
            "properties": {"query": "x"},
            "context": ctx(),
        },
    )
    ((message_id, attempts, outcome, reason),) = wait_until(
        lambda: dead_letters(server), what="a dead letter"
    )
    assert (message_id, attempts, outcome) == (ids[0], 1, "auth_failed")
    assert reason.startswith("401: " + AUTH_HINT)


def test_a_missing_measurement_id_is_a_check_error_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "ga4.yaml"
    path.write_text(
        "sources:\n  - id: web\n    key: k\n"
        "integrations:\n  - id: ga\n    vendor: ga4\n    settings:\n      api_secret: abcdefghijkl\n"
        "  - id: gb\n    vendor: ga4\n    settings:\n      measurement_id: UA-1234-1\n      api_secret: abcdefghijkl\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "datafly.cli", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert any("integrations[0].settings.measurement_id" in line and "required" in line for line in lines), (
        lines
    )
    assert any("integrations[1].settings.measurement_id" in line for line in lines), lines
