"""Rokt: identity hashing, batching invariants, and round trips against the loopback stand-in."""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any

import orjson
import pytest

from datafly.destinations.base import (
    Formatted,
    Item,
    OutboundRequest,
    Outcome,
    Skip,
    VendorResponse,
    basic_auth,
)
from datafly.destinations.registry import all_destinations
from datafly.destinations.rokt.destination import RoktDestination
from datafly.destinations.rokt.identity import hash_email, hash_phone, is_sha256_hex
from standins import RoktStandIn, send

KEY, SECRET = "rpub-unit-key", "rsec-unit-secret"
NOW = 1780740005.0  # 2026-06-06T10:00:05Z
ROKT = RoktDestination()


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def settings(**extra: Any) -> dict[str, Any]:
    return {"account_id": "12345", "api_key": KEY, "api_secret": SECRET, **extra}


def event(order: str | None = "ORD-1", **context: Any) -> dict[str, Any]:
    properties: dict[str, Any] = {"revenue": 10, "currency": "USD"}
    if order:
        properties["order_id"] = order
    return {
        "type": "track",
        "event": "Order Completed",
        "properties": properties,
        "anonymousId": "anon-1",
        "messageId": f"msg-{order}",
        "timestamp": "2026-06-06T10:00:00.000Z",
        "context": {"ip": "203.0.113.50", "userAgent": "UA/1", "clickIds": {"rclid": "rc-1"}, **context},
    }


def formatted(items: list[Item], cfg: dict[str, Any] | None = None, now: float = NOW) -> list[Formatted]:
    out = [ROKT.format_item(item, cfg or settings(), now=now) for item in items]
    assert all(isinstance(f, Formatted) for f in out), out
    return [f for f in out if isinstance(f, Formatted)]


def build(items: list[Item], endpoint: str, cfg: dict[str, Any] | None = None) -> list[OutboundRequest]:
    now = time.time()
    return ROKT.build_requests(formatted(items, cfg, now=now), cfg or settings(), endpoint)


def live_event(order: str, **kw: Any) -> dict[str, Any]:
    e = event(order, **kw)
    e["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - 60))
    return e


# identity -----------------------------------------------------------------------------------------


def test_doc_example_email_hash_is_computed() -> None:
    assert hash_email("jane.doe@example.com") == sha("jane.doe@example.com")
    assert hash_email("  Jane.Doe@Example.COM ") == sha("jane.doe@example.com")


def test_phone_is_hashed_in_e164() -> None:
    assert hash_phone("+44 7700 900123") == sha("+447700900123")
    assert hash_phone("0044 7700 900123") == sha("+447700900123")
    assert hash_phone("+44 (0)7700 900123") == sha("+447700900123")
    assert hash_phone("07700 900123") is None  # no country code: not guessed, not sent


def test_existing_hash_is_not_hashed_again() -> None:
    digest = sha("someone@example.org")
    assert hash_email(digest.upper()) == digest
    assert hash_phone(digest) == digest
    assert is_sha256_hex(digest) and not is_sha256_hex("abc")


RAW_PII = re.compile(r"@|\+?44 ?7700|7700 ?900123|\+447700900123")


@pytest.mark.parametrize(
    "where",
    ["properties", "traits", "context.traits"],
)
def test_no_raw_email_or_phone_in_any_request(where: str) -> None:
    e = event("ORD-PII")
    del e["context"]["clickIds"]
    raw = {"email": " Jane.Doe@Example.com", "phone": "+44 7700 900123", "name": "Jane"}
    if where == "context.traits":
        e["context"]["traits"] = raw
    else:
        e[where] = {**e.get(where, {}), **raw}
    requests = build([Item("i1", e, "purchase")], ROKT.default_endpoint)
    text = requests[0].url + str(dict(requests[0].headers)) + (requests[0].body or b"").decode()
    assert not RAW_PII.search(text), text
    record = orjson.loads(requests[0].body or b"")["events"][0]
    assert record["emailsha256"] == sha("jane.doe@example.com")
    assert record["mobilesha256"] == sha("+447700900123")


# formatting and batching --------------------------------------------------------------------------


def test_registered_with_schema_and_presets() -> None:
    assert isinstance(all_destinations()["rokt"], RoktDestination)
    assert ROKT.secret_fields() == ("api_key", "api_secret")
    test_field = next(f for f in ROKT.settings_schema if f.name == "test")
    assert (test_field.required, test_field.kind, test_field.default) == (False, "boolean", False)
    assert set(ROKT.presets) == {"default", "retail"}
    assert ROKT.presets["retail"].events["Order Refunded"] == "refund"
    assert ROKT.max_batch == 100 and ROKT.max_wait == 0.5
    assert ROKT.endpoint({}, None) == "https://api.rokt.com/v1/conversions"
    assert ROKT.endpoint({}, "http://127.0.0.1:1/v1/conversions") == "http://127.0.0.1:1/v1/conversions"


def test_now_defaults_to_the_clock() -> None:
    e = event("ORD-NOW")
    e["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    assert isinstance(ROKT.format_item(Item("i", e, "purchase"), settings()), Formatted)
    e["timestamp"] = "2020-01-01T00:00:00Z"
    assert isinstance(ROKT.format_item(Item("i", e, "purchase"), settings()), Skip)


def test_same_order_twice_in_one_batch_collides_on_conversion_id() -> None:
    items = [Item("a", event("ORD-SAME"), "purchase"), Item("b", event("ORD-SAME"), "purchase")]
    [request] = ROKT.build_requests(formatted(items), settings(), ROKT.default_endpoint)
    records = orjson.loads(request.body or b"")["events"]
    assert request.item_ids == ("a", "b")
    assert [r["conversionId"] for r in records] == ["ORD-SAME", "ORD-SAME"]  # a collision, both kept
    # an unprocessed entry naming only the conversionId rejects one item, not both
    body = {"data": {"unprocessedRecords": [{"error": {"code": "E", "message": "m"}, "record": records[0]}]}}
    outcomes = ROKT.classify(request, VendorResponse(200, {}, orjson.dumps(body)))
    assert sorted(o.outcome.value for o in outcomes.values()) == ["done", "rejected"]


# round trips against the stand-in -----------------------------------------------------------------


async def test_accepted_batch_is_ingested_once() -> None:
    async with RoktStandIn(KEY, SECRET, account_id="12345") as rokt:
        items = [Item(f"c{n}", live_event(f"ORD-{n}"), "purchase") for n in range(250)]
        requests = build(items, rokt.url)
        assert [len(r.item_ids) for r in requests] == [100, 100, 50]
        for request in requests:
            outcomes = ROKT.classify(request, await send(request))
            assert {o.outcome for o in outcomes.values()} == {Outcome.DONE}
        assert len(rokt.accepted_events) == 250
        assert rokt.duplicates() == {}
        recorded = rokt.requests[0]
        assert recorded.method == "POST" and recorded.path == "/v1/conversions"
        assert recorded.header("Content-Type") == "application/json"


async def test_email_hash_arrives_computed() -> None:
    async with RoktStandIn(KEY, SECRET) as rokt:
        e = live_event("ORD-DOC", traits={"email": "jane.doe@example.com"})
        del e["context"]["clickIds"]
        [request] = build([Item("d", e, "purchase")], rokt.url)
        outcomes = ROKT.classify(request, await send(request))
        assert outcomes["d"].outcome is Outcome.DONE
        assert rokt.accepted_events[0]["emailsha256"] == sha("jane.doe@example.com")


async def test_wrong_secret_is_auth_failed_with_hint() -> None:
    async with RoktStandIn(KEY, "rsec-other") as rokt:
        [request] = build([Item("a", live_event("ORD-1"), "purchase")], rokt.url)
        outcome = ROKT.classify(request, await send(request))["a"]
        assert outcome.outcome is Outcome.AUTH_FAILED
        assert "api_key (rpub-…) and api_secret (rsec-…)" in outcome.reason
        assert rokt.accepted_events == []


async def test_rate_limit_then_success() -> None:
    async with RoktStandIn(KEY, SECRET) as rokt:
        rokt.fail_next(1, 429, {"Retry-After": "2"})
        [request] = build([Item("a", live_event("ORD-1"), "purchase")], rokt.url)
        first = ROKT.classify(request, await send(request))["a"]
        assert (first.outcome, first.retry_after) == (Outcome.RETRY, 2.0)
        second = ROKT.classify(request, await send(request))["a"]
        assert second.outcome is Outcome.DONE
        assert [r.status for r in rokt.requests] == [429, 200]
        assert rokt.count_by_confirmation_ref() == {"ORD-1": 1}


async def test_server_error_and_timeout_are_retried() -> None:
    async with RoktStandIn(KEY, SECRET) as rokt:
        [request] = build([Item("a", live_event("ORD-1"), "purchase")], rokt.url)
        rokt.fail_next(1, 503)
        assert ROKT.classify(request, await send(request))["a"].outcome is Outcome.RETRY
        rokt.delay = 0.5
        response = await send(request, timeout=0.1)
        assert response.status == 0
        assert ROKT.classify(request, response)["a"].outcome is Outcome.RETRY


async def test_partial_failure_rejects_only_the_listed_record() -> None:
    async with RoktStandIn(KEY, SECRET) as rokt:
        rokt.reject_conversion_ids = {"ORD-2"}
        items = [Item(f"i{n}", live_event(f"ORD-{n}"), "purchase") for n in (1, 2, 3)]
        [request] = build(items, rokt.url)
        outcomes = ROKT.classify(request, await send(request))
        assert outcomes["i2"].outcome is Outcome.REJECTED and outcomes["i2"].reason.startswith("REJECTED:")
        assert outcomes["i1"].outcome is outcomes["i3"].outcome is Outcome.DONE
        assert sorted(rokt.count_by_conversion_id()) == ["ORD-1", "ORD-3"]


async def test_missing_identifier_is_a_400_with_the_doc_hint() -> None:
    async with RoktStandIn(KEY, SECRET) as rokt:
        record = {"conversionType": "purchase", "conversionId": "X", "eventTime": "2026-06-06T10:00:00Z"}
        body = orjson.dumps({"accountId": "12345", "events": [record]})
        request = OutboundRequest("POST", rokt.url, {"Authorization": _basic()}, body, ("x",))
        outcome = ROKT.classify(request, await send(request))["x"]
        assert outcome.outcome is Outcome.REJECTED
        assert "Ensure at least one of rclid, emailsha256, or mobilesha256" in outcome.reason
        assert "MISSING_IDENTIFIER" in outcome.reason


async def test_stand_in_refuses_raw_email_and_bad_shapes() -> None:
    async with RoktStandIn(KEY, SECRET) as rokt:
        for payload in (
            {"accountId": "1", "events": [{"conversionType": "p", "eventTime": "x", "email": "a@b.c"}]},
            {"accountId": "1", "events": []},
            {"accountId": "1", "events": [{}] * 101},
            {"events": [{"conversionType": "p"}]},
        ):
            request = OutboundRequest(
                "POST", rokt.url, {"Authorization": _basic()}, orjson.dumps(payload), ("x",)
            )
            assert (await send(request)).status == 400


async def test_test_flag_validates_without_ingesting() -> None:
    async with RoktStandIn(KEY, SECRET) as rokt:
        [request] = build([Item("a", live_event("ORD-T"), "purchase")], rokt.url, settings(test=True))
        assert orjson.loads(request.body or b"")["test"] is True
        assert ROKT.classify(request, await send(request))["a"].outcome is Outcome.DONE
        assert rokt.accepted_events == [] and len(rokt.test_events) == 1


def _basic() -> str:
    return basic_auth(KEY, SECRET)
