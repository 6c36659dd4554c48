"""Exactag through the real server: ``datafly serve`` delivering to the loopback Exactag stand-in.

Each test starts a server with a config file like the contract's and asserts what went over the
wire (query fields of VENDOR-NOTES' table, forwarded headers) and what was recorded (delivery
log, dead letters), never the formatter's internals.
"""

from __future__ import annotations

import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e_support import db, wait_until
from http_client import post
from standins import ExactagStandIn
from standins import RecordedRequest as Hit

KEY = "dk_exactag_e2e"
# A 32-byte campaign code shaped like base64 (with '+', '/', '='): the masking must also catch
# its URL-encoded form. INACTIVE is a known but inactive code (403), WRONG an unknown one (401).
CODE = "Xq7+Lr2/Ka9mWp4TzE1vBn6hUc3sYd=="
INACTIVE = "In4c+T1v/EcAmPa1gnC0dEXaMpLe00=="
WRONG = "Wr0n+gC0/dEcAmPa1gnXyZ12345678=="
HINT = "The campaign code is wrong or not active. Re-check campaign_code with Exactag."
IP = "203.0.113.50"
UA = "Mozilla/5.0 (X11; Linux x86_64) DataflyE2E/1.0"
TCF = "CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA"
BASE = "https://shop.example"


# helpers ---------------------------------------------------------------------------------------


def exactag_integration(iid: str, url: str, code: str = CODE, **extra: Any) -> dict[str, Any]:
    return {
        "id": iid,
        "vendor": "exactag",
        "preset": "default",
        "settings": {"campaign_code": code},
        "endpoint": url,
        **extra,
    }


def make_config(*integrations: dict[str, Any], **delivery: Any) -> dict[str, Any]:
    return {
        "sources": [{"id": "web", "key": KEY}],
        "integrations": list(integrations),
        "delivery": {"initial_backoff": "100ms", "max_backoff": "1s", "timeout": "2s", **delivery},
    }


def send(server: Any, *events: dict[str, Any], headers: dict[str, str] | None = None) -> list[str]:
    """POST the events as one /v1/batch; returns their messageIds."""
    batch = [{"messageId": uuid.uuid4().hex, **e} for e in events]
    answer = post(f"{server.url}/v1/batch?key={KEY}", {"batch": batch}, headers)
    assert answer.status == 200, answer.body
    return [e["messageId"] for e in batch]






def wait_hits(stand_in: ExactagStandIn, count: int, timeout: float = 10.0) -> list[Hit]:
    wait_until(lambda: len(stand_in.hits()) >= count, timeout, f"{count} accepted Exactag hits")
    return stand_in.hits()


def settle(seconds: float = 0.4) -> None:
    """Give the server a moment to send anything it should not (asserted afterwards)."""
    time.sleep(seconds)


def page_url(path: str) -> str:
    return f"{BASE}{path}"


def context(path: str, marketing: bool | None = True, tcf: str | None = TCF, **more: Any) -> dict[str, Any]:
    ctx: dict[str, Any] = {"page": {"url": page_url(path), "path": path.split("?")[0]}, "ip": IP, "userAgent": UA}
    consent: dict[str, Any] = {}
    if marketing is not None:
        consent["canonical"] = {"marketing": marketing}
    if tcf is not None:
        consent["tcf_string"] = tcf
    if consent:
        ctx["consent"] = consent
    ctx.update(more)
    return ctx


def by_referrer(hits: list[Hit]) -> dict[str, Hit]:
    found: dict[str, Hit] = {}
    for hit in hits:
        assert hit.query["referrer"] not in found, f"two hits for {hit.query['referrer']}"
        found[hit.query["referrer"]] = hit
    return found


def masked_everywhere(server: Any, secret: str) -> None:
    """The secret never appears in full (raw or URL-encoded) in the delivery log, the dead
    letters, the server log, or any file under the server's home."""
    forms = {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}
    tables = db(server.home, "SELECT reason, request, response FROM delivery_log")
    tables += db(server.home, "SELECT reason, last_request, event FROM dead_letters")
    text = "\n".join(str(cell) for row in tables for cell in row)
    log = server.log()
    for form in forms:
        assert form not in text, f"campaign code {form!r} in delivery_log/dead_letters"
        assert form not in log, f"campaign code {form!r} in the server log"
    for path in Path(server.home).rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for form in forms:
                assert form.encode() not in data, f"campaign code {form!r} in {path.name}"


@pytest.fixture
def exactag() -> Iterator[ExactagStandIn]:
    with ExactagStandIn(valid_codes=[CODE], inactive_codes=[INACTIVE]).running_in_thread() as stand_in:
        yield stand_in


# the happy path: every query field ------------------------------------------------------------


def test_a_visit_sends_the_fields_of_the_notes_table(serve: Any, exactag: ExactagStandIn) -> None:
    server = serve(make_config(exactag_integration("exactag-main", exactag.url)))
    visitor = {"anonymousId": "visitor-ex-1"}
    send(
        server,
        {"type": "page", "context": context("/"), **visitor},
        {"type": "track", "event": "Products Searched", "properties": {"query": "red shoes & socks"},
         "context": context("/search?q=red+shoes"), **visitor},
        {"type": "track", "event": "Product Viewed", "properties": {"product_id": "P-1"},
         "context": context("/p/P-1"), **visitor},
        {"type": "page", "context": context("/p/P-1/reviews"), **visitor},
        {"type": "identify", "userId": "user-123", "traits": {"plan": "gold"}, "context": context("/login"),
         **visitor},
        {"type": "track", "event": "Cart Viewed", "context": context("/cart"), **visitor},
        {"type": "track", "event": "Order Completed",
         "properties": {"order_id": "ORD-001", "revenue": 129.99, "affiliation": "web", "currency": "EUR"},
         "context": context("/checkout/done"), **visitor},
    )
    hits = wait_hits(exactag, 5)
    settle()
    assert len(exactag.requests) == 5  # identify and Cart Viewed are not mapped: never sent
    hit = by_referrer(exactag.hits())
    first = hit[page_url("/")]
    session_id = first.query["sessionid"]
    assert session_id  # derived by the server: no context.session was sent
    common = {"campaign": CODE, "version": "1.0", "euk": "visitor-ex-1", "sessionid": session_id,
              "sescount": "1", "optout": "0", "consent_string": TCF}
    assert first.query == {**common, "sitegroup": "pageview", "sesevent": "1", "referrer": page_url("/")}
    assert hit[page_url("/search?q=red+shoes")].query == {
        **common, "sitegroup": "pageview", "sesevent": "0", "referrer": page_url("/search?q=red+shoes"),
        "search": "red shoes & socks",
    }
    assert hit[page_url("/p/P-1")].query == {
        **common, "sitegroup": "pageview", "sesevent": "0", "referrer": page_url("/p/P-1"),
    }
    assert hit[page_url("/p/P-1/reviews")].query == {
        **common, "sitegroup": "pageview", "sesevent": "0", "referrer": page_url("/p/P-1/reviews"),
    }
    assert hit[page_url("/checkout/done")].query == {
        **common, "sitegroup": "conversion", "sesevent": "0", "referrer": page_url("/checkout/done"),
        "orderid": "ORD-001", "totalprice": "129.99", "level": "web", "customerid": "user-123",
    }
    for h in hits:
        assert h.method == "GET" and h.path == "/s2s/pi.ashx"
        assert h.header("X-Forwarded-For") == IP
        assert h.header("User-Agent") == UA
        assert "ipaddress" not in h.query and "useragent" not in h.query
    assert exactag.duplicates() == {}
    logged = "SELECT outcome, status FROM delivery_log WHERE integration_id='exactag-main'"
    wait_until(lambda: len(db(server.home, logged)) >= 5, what="5 log rows")  # stored after the answer
    assert sorted(db(server.home, logged)) == [("done", 200)] * 5


def test_a_session_given_by_the_client_and_a_returning_visitor(serve: Any, exactag: ExactagStandIn) -> None:
    server = serve(make_config(exactag_integration("exactag-main", exactag.url)))
    visitor = {"anonymousId": "visitor-ex-2"}
    session = {"id": "sess_789", "number": 2}
    send(
        server,
        {"type": "page", "context": context("/a", session=session), **visitor},
        {"type": "page", "context": context("/b", session=session), **visitor},
        {"type": "page", "context": context("/c", session={"id": "sess_790", "number": 3}), **visitor},
    )
    wait_hits(exactag, 3)
    hit = by_referrer(exactag.hits())
    assert [(hit[page_url(p)].query["sessionid"], hit[page_url(p)].query["sescount"],
             hit[page_url(p)].query["sesevent"]) for p in ("/a", "/b", "/c")] == [
        ("sess_789", "2", "1"), ("sess_789", "2", "0"), ("sess_790", "3", "1")]


def test_without_context_ip_and_user_agent_the_request_s_own_are_forwarded(
    serve: Any, exactag: ExactagStandIn
) -> None:
    server = serve(make_config(exactag_integration("exactag-main", exactag.url)))
    ctx = context("/no-ip")
    del ctx["ip"], ctx["userAgent"]
    send(server, {"type": "page", "anonymousId": "visitor-ex-3", "context": ctx},
         headers={"User-Agent": "Mozilla/5.0 (Browser of the request)"})
    (hit,) = wait_hits(exactag, 1)
    assert hit.header("X-Forwarded-For") == "127.0.0.1"  # the client address the gateway saw
    assert hit.header("User-Agent") == "Mozilla/5.0 (Browser of the request)"
    assert hit.query["referrer"] == page_url("/no-ip")


# consent ----------------------------------------------------------------------------------------


def test_consent_granted_denied_and_absent(serve: Any, exactag: ExactagStandIn) -> None:
    with ExactagStandIn(valid_codes=[CODE]).running_in_thread() as ungated:
        server = serve(make_config(
            exactag_integration("exactag-gated", exactag.url, consent=["marketing"]),
            exactag_integration("exactag-open", ungated.url),
        ))
        visitor = {"anonymousId": "visitor-ex-4"}
        ids = send(
            server,
            {"type": "page", "context": context("/granted", marketing=True), **visitor},
            {"type": "page", "context": context("/denied", marketing=False, tcf=None), **visitor},
            {"type": "page", "context": context("/absent", marketing=None, tcf=None), **visitor},
        )
        (gated,) = wait_hits(exactag, 1)
        wait_hits(ungated, 3)
        wait_until(lambda: len(db(server.home, "SELECT 1 FROM delivery_log WHERE outcome='filtered'")) >= 2)
        settle()
        assert len(exactag.requests) == 1
        assert gated.query["referrer"] == page_url("/granted") and gated.query["optout"] == "0"
        open_hits = by_referrer(ungated.hits())
        assert open_hits[page_url("/granted")].query["optout"] == "0"
        assert open_hits[page_url("/denied")].query["optout"] == "1"
        assert open_hits[page_url("/absent")].query["optout"] == "1"
        assert "consent_string" not in open_hits[page_url("/denied")].query
        rows = db(server.home, "SELECT message_ids, outcome, reason FROM delivery_log "
                  "WHERE integration_id='exactag-gated' AND outcome='filtered'")
        filtered = {row[0]: row[2] for row in rows}
        assert set(filtered) == {f'["{ids[1]}"]', f'["{ids[2]}"]'}
        assert all("marketing" in reason for reason in filtered.values())
        assert db(server.home, "SELECT count(*) FROM dead_letters") == [(0,)]  # filtered is not an error


# mapping ----------------------------------------------------------------------------------------


def test_an_events_override_changes_the_sitegroup(serve: Any, exactag: ExactagStandIn) -> None:
    integration = exactag_integration(
        "exactag-brand", exactag.url,
        events={"Order Completed": "purchase_sg", "page": "pi_sg", "Product Viewed": None},
    )
    server = serve(make_config(integration))
    visitor = {"anonymousId": "visitor-ex-5", "userId": "user-5"}
    send(
        server,
        {"type": "page", "context": context("/home"), **visitor},
        {"type": "track", "event": "Product Viewed", "context": context("/p/2"), **visitor},
        {"type": "track", "event": "Order Completed", "properties": {"order_id": "ORD-5", "revenue": "10.50"},
         "context": context("/thanks"), **visitor},
    )
    wait_hits(exactag, 2)
    settle()
    assert len(exactag.requests) == 2  # Product Viewed was removed by the override (null)
    hit = by_referrer(exactag.hits())
    assert hit[page_url("/home")].query["sitegroup"] == "pi_sg"
    order = hit[page_url("/thanks")].query
    assert order["sitegroup"] == "purchase_sg"
    assert (order["orderid"], order["totalprice"], order["customerid"]) == ("ORD-5", "10.50", "user-5")


# failures ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "status"), [(WRONG, 401), (INACTIVE, 403)])
def test_a_wrong_or_inactive_campaign_code_is_dead_lettered_with_the_hint(
    serve: Any, exactag: ExactagStandIn, code: str, status: int
) -> None:
    server = serve(make_config(exactag_integration("exactag-bad", exactag.url, code=code)))
    ids = send(server, {"type": "track", "event": "Order Completed", "anonymousId": "visitor-ex-6",
                        "properties": {"order_id": "ORD-6", "revenue": 5}, "context": context("/t")})
    rows = wait_until(lambda: db(server.home, "SELECT message_id, attempts, outcome, reason, last_request "
                                              "FROM dead_letters"), what="a dead letter")
    settle(0.5)
    assert [r.status for r in exactag.requests] == [status]  # not retried
    ((message_id, attempts, outcome, reason, last_request),) = rows
    assert (message_id, attempts, outcome) == (ids[0], 1, "auth_failed")
    assert str(status) in reason and HINT in reason
    assert exactag.url in last_request and code[:4] + "****" in last_request
    log_rows = db(server.home, "SELECT outcome, status, reason FROM delivery_log WHERE integration_id='exactag-bad'")
    assert log_rows == [("auth_failed", status, reason)]
    assert db(server.home, "SELECT count(*) FROM queue") == [(0,)]
    masked_everywhere(server, code)


def test_a_valid_campaign_code_is_masked_everywhere_too(serve: Any, exactag: ExactagStandIn) -> None:
    server = serve(make_config(exactag_integration("exactag-main", exactag.url)))
    exactag.fail_next(1, 400, body="missing something")
    send(server, {"type": "page", "anonymousId": "visitor-ex-7", "context": context("/x")},
         {"type": "page", "anonymousId": "visitor-ex-8", "context": context("/y")})
    wait_until(lambda: len(exactag.requests) >= 2 and db(server.home, "SELECT 1 FROM dead_letters"))
    wait_until(lambda: len(db(server.home, "SELECT 1 FROM delivery_log")) >= 2)
    assert exactag.requests[0].query["campaign"] == CODE  # the vendor does get it
    rows = db(server.home, "SELECT outcome, reason FROM dead_letters")
    assert rows == [("rejected", "400 missing something")]
    masked_everywhere(server, CODE)


@pytest.mark.parametrize(
    ("status", "headers", "min_gap"),
    [(500, {}, 0.0), (503, {}, 0.0), (429, {"Retry-After": "1"}, 0.95)],
)
def test_passing_failures_are_retried_then_delivered_once(
    serve: Any, exactag: ExactagStandIn, status: int, headers: dict[str, str], min_gap: float
) -> None:
    server = serve(make_config(exactag_integration("exactag-main", exactag.url)))
    exactag.fail_next(1, status, headers)
    send(server, {"type": "track", "event": "Order Completed", "anonymousId": "visitor-ex-9",
                  "properties": {"order_id": "ORD-9", "revenue": 1}, "context": context("/t9")})
    wait_hits(exactag, 1)
    settle()
    first, second = exactag.requests
    assert (first.status, second.status) == (status, 200)
    assert first.query == second.query and first.header("X-Forwarded-For") == second.header("X-Forwarded-For")
    assert second.time - first.time >= min_gap
    assert exactag.count_by_orderid() == {"ORD-9": 1}
    rows = db(server.home, "SELECT outcome, status FROM delivery_log WHERE integration_id='exactag-main' ORDER BY id")
    assert rows == [("retry", status), ("done", 200)]
    assert db(server.home, "SELECT count(*) FROM dead_letters") == [(0,)]


def test_many_orders_reach_exactag_exactly_once(serve: Any, exactag: ExactagStandIn) -> None:
    server = serve(make_config(exactag_integration("exactag-main", exactag.url)))
    exactag.fail_next(5, 503)
    orders = [
        {"type": "track", "event": "Order Completed", "anonymousId": f"visitor-m-{i % 7}",
         "properties": {"order_id": f"ORD-M-{i}", "revenue": i}, "context": context(f"/o/{i}")}
        for i in range(60)
    ]
    ids = send(server, *orders)
    send(server, *({**o, "messageId": mid} for o, mid in zip(orders[:10], ids[:10], strict=True)))  # replays
    wait_hits(exactag, 60)
    settle()
    counts = exactag.count_by_orderid()
    assert len(counts) == 60 and set(counts.values()) == {1}
    assert exactag.duplicates() == {}


def test_a_campaign_code_echoed_by_the_vendor_is_masked_too(serve: Any, exactag: ExactagStandIn) -> None:
    server = serve(make_config(exactag_integration("exactag-main", exactag.url)))
    # ASP.NET-style error pages repeat the request URL, campaign code included
    exactag.fail_next(1, 400, body=f"Bad Request: /s2s/pi.ashx?campaign={urllib.parse.quote(CODE, safe='')}")
    exactag.fail_next(1, 500, body=f"campaign {CODE} could not be processed")
    send(server, {"type": "page", "anonymousId": "visitor-ex-10", "context": context("/echo-1")},
         {"type": "page", "anonymousId": "visitor-ex-11", "context": context("/echo-2")})
    wait_hits(exactag, 1)
    wait_until(lambda: db(server.home, "SELECT 1 FROM dead_letters"))
    settle()
    masked_everywhere(server, CODE)
