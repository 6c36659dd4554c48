"""Meta Conversions API through the real server: ``datafly serve`` delivering to the loopback
Meta stand-in, which refuses a whole request for one invalid event as Meta does.

Hashes are computed here with hashlib from the raw values the test sends (never copied from a
vendor document); what is asserted is what went over the wire and what the user reads in the
delivery log and the dead letters.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from e2e_support import db, wait_until
from http_client import post
from standins.meta import MetaStandIn

KEY = "dk_meta_e2e"
PIXEL = "987654321012345"
TOKEN = "EAAe2eTokenForMeta0123456789abcdef"
TOKEN_HINT = "Meta refused the access token (invalid, expired or revoked)"
IP = "203.0.113.50"
UA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) DataflyE2E/1.0"
FBCLID = "IwAR2e2eLandingClick_0001"
EMAIL_SHA = hashlib.sha256(b"jane.doe@example.com").hexdigest()
PHONE_SHA = hashlib.sha256(b"447700900123").hexdigest()  # Meta's form: digits with the country code, no +
USER_SHA = hashlib.sha256(b"user-123").hexdigest()


def integration(url: str, token: str = TOKEN, preset: str = "default", **settings: Any) -> dict[str, Any]:
    return {"id": "meta-main", "vendor": "meta", "preset": preset, "consent": ["advertising"],
            "settings": {"pixel_id": PIXEL, "access_token": token, **settings}, "endpoint": url}  # fmt: skip


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


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ago(**delta: float) -> str:
    return iso(datetime.now(UTC).replace(microsecond=0) - timedelta(**delta))


def ctx(path: str = "/", **more: Any) -> dict[str, Any]:
    context: dict[str, Any] = {"page": {"url": f"https://shop.example{path}"}, "ip": IP, "userAgent": UA,
                               "consent": {"canonical": {"advertising": True}}}  # fmt: skip
    context.update(more)
    return context


def order(order_id: str, visitor: str, **properties: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Order Completed", "anonymousId": visitor, "timestamp": ago(seconds=30),
            "properties": {"order_id": order_id, "revenue": 46, "currency": "EUR", **properties},
            "context": ctx("/checkout/done")}  # fmt: skip


def settle(seconds: float = 0.8) -> None:
    """Longer than the Meta batch wait (0.5 s): anything that would be sent has been by then."""
    time.sleep(seconds)


def dead_letters(server: Any) -> list[tuple[Any, ...]]:
    return db(server.home, "SELECT message_id, attempts, outcome, reason FROM dead_letters ORDER BY id")


@pytest.fixture
def meta() -> Iterator[MetaStandIn]:
    with MetaStandIn(PIXEL, TOKEN).running_in_thread() as stand_in:
        yield stand_in


def test_a_purchase_after_a_meta_landing_and_identify(serve: Any, meta: MetaStandIn) -> None:
    server = serve(make_config(integration(meta.base_url)))
    visitor = "visitor-meta-1"
    before = int(time.time() * 1000)
    ids = send(
        server,
        {"type": "page", "anonymousId": visitor, "context": ctx(f"/landing?utm_source=facebook&fbclid={FBCLID}")},
        {"type": "identify", "userId": "user-123", "anonymousId": visitor,
         "traits": {"email": "  Jane.Doe@Example.com ", "phone": "+44 7700 900123"}, "context": ctx("/account")},
        {"type": "track", "event": "Order Completed", "anonymousId": visitor, "timestamp": ago(seconds=90),
         "properties": {"order_id": "ORD-789012", "revenue": 46, "currency": "eur",
                        "products": [{"product_id": "SKU-1", "price": 23, "quantity": 2}]},
         "context": ctx("/checkout/done", page={"url": "https://shop.example/checkout/done",
                                                "referrer": "https://shop.example/cart"})},
    )  # fmt: skip
    after = int(time.time() * 1000)
    wait_until(lambda: len(meta.accepted_events) >= 2, what="the page view and the purchase")
    settle()
    by_name = {e["event_name"]: e for e in meta.accepted_events}
    assert sorted(by_name) == ["PageView", "Purchase"]  # identify is no Meta event
    request = next(r for r in meta.requests if b'"Purchase"' in r.body)
    assert request.method == "POST" and request.path == f"/v26.0/{PIXEL}/events"
    assert parse_qs(request.query_string) == {"access_token": [TOKEN]}
    assert (request.header("Content-Type") or "").startswith("application/json")
    assert "test_event_code" not in request.json()

    purchase = by_name["Purchase"]
    user, event_time = purchase.pop("user_data"), purchase.pop("event_time")
    assert abs(event_time - (time.time() - 90)) < 30  # the event's timestamp, unix seconds
    assert purchase == {
        "event_name": "Purchase",
        "action_source": "website",
        "event_source_url": "https://shop.example/checkout/done",
        "referrer_url": "https://shop.example/cart",
        "event_id": ids[2],  # the messageId: a browser pixel given it as eventID is deduplicated
        "custom_data": {"value": 46, "currency": "EUR", "order_id": "ORD-789012",
                        "contents": [{"id": "SKU-1", "quantity": 2, "item_price": 23}],
                        "content_ids": ["SKU-1"], "content_type": "product", "num_items": 2},
    }  # fmt: skip
    fbp, fbc = user.pop("fbp"), user.pop("fbc")
    assert user == {"em": [EMAIL_SHA], "ph": [PHONE_SHA], "external_id": [USER_SHA],
                    "client_ip_address": IP, "client_user_agent": UA}  # fmt: skip
    landed = re.fullmatch(rf"fb\.1\.(\d{{13}})\.{FBCLID}", fbc)
    assert landed and before - 1000 <= int(landed.group(1)) <= after  # when the fbclid was first seen
    assert re.fullmatch(r"fb\.1\.\d{13}\.\d{10}", fbp)
    page_user = by_name["PageView"]["user_data"]
    assert (page_user["fbp"], page_user["fbc"]) == (fbp, fbc)  # one browser id for the visitor
    assert by_name["PageView"]["event_id"] == ids[0]
    assert meta.duplicates() == {}

    rows = db(server.home, "SELECT outcome, status, request FROM delivery_log WHERE integration_id='meta-main'")
    assert {(r[0], r[1]) for r in rows} == {("done", 200)}
    logged = urlsplit(json.loads(rows[0][2])["url"])
    assert parse_qs(logged.query) == {"access_token": ["EAAe****"]}  # the token is masked
    assert TOKEN not in server.log()
    for path in Path(server.home).rglob("*"):
        assert not path.is_file() or TOKEN.encode() not in path.read_bytes(), path.name


@pytest.mark.parametrize("bad", ["currency", "too_old_for_meta"])
def test_an_invalid_event_in_a_batch_of_50_costs_only_itself(serve: Any, bad: str) -> None:
    """The stand-in refuses the whole batch for one invalid event, as Meta does: the worker halves
    it until that event is alone, delivers the 49 others once and dead-letters the one with Meta's
    error text; the splits are no attempts of the events."""
    # too_old_for_meta: 6 days old when we send it, 8 days by Meta's clock (it runs 2 days ahead)
    clock = (lambda: time.time() + 2 * 86_400) if bad == "too_old_for_meta" else time.time
    with MetaStandIn(PIXEL, TOKEN, clock=clock).running_in_thread() as meta:
        server = serve(make_config(integration(meta.base_url, preset="conversions")))
        orders = [order(f"ORD-S{i:02d}", f"v-split-{i % 7}") for i in range(50)]
        if bad == "currency":
            orders[17]["properties"]["currency"] = "EURO"
        else:
            orders[17]["timestamp"] = ago(days=6)
        ids = send(server, *orders)
        rows = wait_until(lambda: dead_letters(server), 15, "the dead letter")
        wait_until(lambda: len(meta.accepted_events) >= 49, 15, "the 49 good events")
        settle()

        assert meta.count_by_event_id() == dict.fromkeys(ids[:17] + ids[18:], 1)  # each exactly once
        title, subcode = ("Invalid Currency Code", 2804019) if bad == "currency" else ("Event Timestamp Too Old", 2804003)
        ((message_id, attempts, outcome, reason),) = rows
        assert (message_id, attempts, outcome) == (ids[17], 1, "rejected")  # the splits were no attempts
        assert reason.startswith(f"400 OAuthException code 100/{subcode}: Invalid parameter — {title}")
        assert "(fbtrace_id " in reason

        sizes = [(len(r.json()["data"]), r.status) for r in meta.requests]
        refused = [n for n, status in sizes if status == 400]
        accepted = [n for n, status in sizes if status == 200]
        assert sizes[0] == (50, 400) and refused[-1] == 1
        assert sum(accepted) == 49 and len(refused) == len(accepted) + 1  # one good half per halving
        assert len(sizes) <= 13  # 1 + 2 * ceil(log2(50)): a handful of requests, not 50

        log = db(server.home, "SELECT message_ids, outcome, status, attempt FROM delivery_log ORDER BY id")
        assert len(log) == len(meta.requests)  # every request has its row
        assert sorted(r[1] for r in log) == sorted(["split"] * (len(refused) - 1) + ["rejected"] + ["done"] * len(accepted))
        assert {r[3] for r in log} == {1}
        assert db(server.home, "SELECT count(*) FROM queue") == [(0,)]


def test_events_meta_would_refuse_a_batch_for_are_skipped_with_the_reason(serve: Any, meta: MetaStandIn) -> None:
    server = serve(make_config(integration(meta.base_url, preset="conversions")))
    too_old = {**order("ORD-OLD", "v-skip"), "timestamp": ago(days=8)}
    no_currency = order("ORD-NOCUR", "v-skip")
    del no_currency["properties"]["currency"]
    ids = send(server, too_old, no_currency, order("ORD-OK", "v-skip"))
    wait_until(lambda: meta.accepted_events, what="the good purchase")
    wait_until(lambda: len(dead_letters(server)) >= 2, what="two skips")
    settle()
    assert [e["custom_data"]["order_id"] for e in meta.accepted_events] == ["ORD-OK"]
    assert meta.refused() == []  # nothing Meta would refuse was sent
    dead = {row[0]: row for row in dead_letters(server)}
    assert dead[ids[0]][2] == "skipped" and "is older than 7 days" in dead[ids[0]][3]
    assert dead[ids[1]][2] == "skipped" and "a Purchase needs custom_data.value and currency" in dead[ids[1]][3]


def test_a_wrong_token_is_not_retried_carries_the_hint_and_is_masked(serve: Any, meta: MetaStandIn) -> None:
    wrong = "EAAwrongTokenForMeta9876543210fedcba"
    server = serve(make_config(integration(meta.base_url, token=wrong)))
    ids = send(server, order("ORD-190", "v-190"))
    rows = wait_until(lambda: dead_letters(server), what="a dead letter")
    settle()
    assert [r.status for r in meta.requests] == [400]
    ((message_id, attempts, outcome, reason),) = rows
    assert (message_id, attempts, outcome) == (ids[0], 1, "auth_failed")
    assert reason.startswith(TOKEN_HINT) and "code 190" in reason
    (logged,) = db(server.home, "SELECT request FROM delivery_log")
    assert parse_qs(urlsplit(json.loads(logged[0])["url"]).query) == {"access_token": ["EAAw****"]}
    assert wrong not in server.log()
    for path in Path(server.home).rglob("*"):
        assert not path.is_file() or wrong.encode() not in path.read_bytes(), path.name


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, {"error": {"message": "User request limit reached", "type": "OAuthException", "code": 17}}),
        (400, {"error": {"message": "Please retry", "type": "OAuthException", "code": 2, "is_transient": True}}),
        (500, {"error": {"message": "An unknown error occurred", "type": "OAuthException", "code": 1}}),
    ],
)
def test_rate_limits_and_passing_errors_are_retried_then_delivered_once(
    serve: Any, meta: MetaStandIn, status: int, body: dict[str, Any]
) -> None:
    server = serve(make_config(integration(meta.base_url)))
    meta.fail_next(1, status, {"Content-Type": "application/json"}, json.dumps(body))
    send(server, order("ORD-RETRY", "v-retry"))
    wait_until(lambda: meta.accepted_events, what="the purchase")
    settle()
    assert [r.status for r in meta.requests] == [status, 200]
    assert meta.requests[0].body == meta.requests[1].body  # the same events again
    assert meta.count_by_event_id() and meta.duplicates() == {}
    rows = db(server.home, "SELECT outcome, status FROM delivery_log ORDER BY id")
    assert rows == [("retry", status), ("done", 200)]
    assert dead_letters(server) == []


def test_the_test_event_code_sends_events_to_test_events(serve: Any, meta: MetaStandIn) -> None:
    server = serve(make_config(integration(meta.base_url, test_event_code="TEST4242")))
    send(server, order("ORD-TEST", "v-test"))
    wait_until(lambda: meta.test_events, what="a test event")
    (request,) = meta.requests
    assert request.json()["test_event_code"] == "TEST4242"
    assert meta.accepted_events == []
