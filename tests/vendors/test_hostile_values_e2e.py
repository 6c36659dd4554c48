"""Hostile user agents and IPs through the real server: ``datafly serve`` delivering to the loopback
Exactag and Rokt stand-ins.

Events carry a user agent with CR/LF, NUL and non-ASCII characters, a raw ``User-Agent`` request
header with non-ASCII bytes (valid UTF-8, and not), and IPs that are not IPs. Asserted: exactly
what each stand-in received (Exactag: one header line of printable ASCII, X-Forwarded-For only for
a real IP; Rokt: JSON strings as received, ipAddress only for a real IP), nothing dead-lettered,
and a delivery-log row for every attempt, the failed ones included.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from e2e_support import db, wait_until
from http_client import post
from standins import ExactagStandIn, RoktStandIn

KEY = "dk_hostile_e2e"
CODE = "Hz7+Lr2/Ka9mWp4TzE1vBn6hUc3sYd=="
API_KEY = "rpub-hostile-0123456789"
API_SECRET = "rsec-hostile-9876543210"
ACCOUNT = "12345"

HOSTILE_UA = "Mozilla/5.0 (X11)\r\nX-Injected: 1\u0000 é 中 😀"
RAW_UTF8 = b"Mozilla/5.0 (Linux; caf\xc3\xa9 \xe4\xb8\xad)"  # a browser's UTF-8, sent as raw header bytes
RAW_NOT_UTF8 = b"Mozilla/5.0 (\xff\xfe)"  # bytes that are no UTF-8 at all


@pytest.fixture
def exactag() -> Iterator[ExactagStandIn]:
    with ExactagStandIn(valid_codes=[CODE]).running_in_thread() as stand_in:
        yield stand_in


@pytest.fixture
def rokt() -> Iterator[RoktStandIn]:
    with RoktStandIn(api_key=API_KEY, api_secret=API_SECRET, account_id=ACCOUNT).running_in_thread() as stand_in:
        yield stand_in


def make_config(exactag_url: str, rokt_url: str) -> dict[str, Any]:
    return {
        "sources": [{"id": "web", "key": KEY}],
        "integrations": [
            {"id": "exactag-main", "vendor": "exactag", "preset": "default",
             "settings": {"campaign_code": CODE}, "endpoint": exactag_url},
            {"id": "rokt-main", "vendor": "rokt", "preset": "default",
             "settings": {"account_id": ACCOUNT, "api_key": API_KEY, "api_secret": API_SECRET},
             "endpoint": rokt_url},
        ],
        "delivery": {"initial_backoff": "100ms", "max_backoff": "1s", "timeout": "2s"},
    }


def order(order_id: str, **context: Any) -> dict[str, Any]:
    moment = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    return {
        "messageId": uuid.uuid4().hex,
        "type": "track",
        "event": "Order Completed",
        "anonymousId": f"visitor-{order_id}",
        "timestamp": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "properties": {"order_id": order_id, "revenue": 10, "rclid": f"rclid-{order_id}"},
        "context": {"page": {"url": f"https://shop.example/{order_id}"}, **context},
    }


def send(server: Any, *events: dict[str, Any], raw_user_agent: bytes | None = None) -> None:
    # http.client writes a str header value as latin-1: each character below U+0100 is one byte
    headers = {"User-Agent": raw_user_agent.decode("latin-1")} if raw_user_agent is not None else None
    answer = post(f"{server.url}/v1/batch?key={KEY}", {"batch": list(events)}, headers)
    assert answer.status == 200, answer.body


def log_rows(server: Any, integration: str) -> list[tuple[str, str, int | None]]:
    return db(server.home, "SELECT message_ids, outcome, status FROM delivery_log WHERE integration_id=? "
              "ORDER BY id", integration)


def test_hostile_user_agents_and_ips_reach_the_vendors_encoded_and_every_attempt_is_logged(
    serve: Any, exactag: ExactagStandIn, rokt: RoktStandIn
) -> None:
    server = serve(make_config(exactag.url, rokt.url))
    exactag.fail_next(1, 503)  # a failed attempt has its row too
    rokt.fail_next(1, 500)
    events = [
        order("H1", ip="203.0.113.500", userAgent=HOSTILE_UA),
        order("H2", ip="2001:DB8::0001", userAgent="Mozilla/5.0 (Ã©tÃ©)"),
        order("H3", ip="127.0.0.1\r\nX-Injected: 1", userAgent="\r\n\t"),
    ]
    send(server, *events)
    raw_utf8 = order("H4")  # no context.ip nor userAgent: the request's own are used
    send(server, raw_utf8, raw_user_agent=RAW_UTF8)
    raw_not_utf8 = order("H5")
    send(server, raw_not_utf8, raw_user_agent=RAW_NOT_UTF8)
    message_ids = {e["properties"]["order_id"]: e["messageId"] for e in [*events, raw_utf8, raw_not_utf8]}

    wait_until(lambda: len(exactag.hits()) >= 5, 15, "5 Exactag hits")
    wait_until(lambda: len(rokt.ingested()) >= 5, 15, "5 Rokt conversions")
    time.sleep(0.8)  # (longer than Rokt's batch wait: anything else would have been sent by now)

    # Exactag: the visitor's IP only when it is one, the user agent as one line of printable ASCII
    hits = {hit.query["orderid"]: hit for hit in exactag.hits()}
    assert sorted(hits) == ["H1", "H2", "H3", "H4", "H5"] and exactag.duplicates() == {}
    forwarded = {
        order_id: (hit.header("X-Forwarded-For"), hit.header("User-Agent")) for order_id, hit in hits.items()
    }
    assert forwarded == {
        # CR LF -> one space, NUL -> one space (before the space that follows it)
        "H1": (None, "Mozilla/5.0 (X11) X-Injected: 1  %C3%A9 %E4%B8%AD %F0%9F%98%80"),
        "H2": ("2001:db8::1", "Mozilla/5.0 (%C3%A9t%C3%A9)"),
        "H3": (None, None),
        "H4": ("127.0.0.1", "Mozilla/5.0 (Linux; caf%C3%A9 %E4%B8%AD)"),
        "H5": ("127.0.0.1", "Mozilla/5.0 (%C3%BF%C3%BE)"),
    }
    for hit in exactag.requests:
        assert hit.header("X-Injected") is None
        assert "ipaddress" not in hit.query and "useragent" not in hit.query

    # Rokt: JSON strings as received (a raw header's bytes read as the UTF-8 they were), a real IP only
    records = {record["conversionId"]: record for record in rokt.ingested()}
    assert sorted(records) == ["H1", "H2", "H3", "H4", "H5"] and rokt.duplicates() == {}
    assert {k: (r.get("ipAddress"), r.get("userAgent")) for k, r in records.items()} == {
        "H1": (None, HOSTILE_UA),
        "H2": ("2001:db8::1", "Mozilla/5.0 (été)"),
        "H3": (None, None),
        "H4": ("127.0.0.1", "Mozilla/5.0 (Linux; café 中)"),
        "H5": ("127.0.0.1", "Mozilla/5.0 (ÿþ)"),
    }

    # every attempt has its row: one per request each stand-in received, with that request's status
    exactag_rows = wait_until(lambda: (r := log_rows(server, "exactag-main")) and len(r) >= 6 and r, 10,
                              "6 Exactag log rows")
    assert len(exactag.requests) == len(exactag_rows) == 6
    assert Counter(status for _, _, status in exactag_rows) == Counter(r.status for r in exactag.requests)
    assert Counter(outcome for _, outcome, _ in exactag_rows) == Counter({"done": 5, "retry": 1})
    logged = Counter(mid for ids, outcome, _ in exactag_rows if outcome == "done" for mid in _ids(ids))
    assert logged == Counter(message_ids.values())

    rokt_rows = wait_until(lambda: (r := log_rows(server, "rokt-main")) and len(r) >= len(rokt.requests) and r,
                           10, "a Rokt log row per request")
    assert len(rokt_rows) == len(rokt.requests)
    assert Counter(status for _, _, status in rokt_rows) == Counter(r.status for r in rokt.requests)
    assert Counter(status for _, _, status in rokt_rows)[500] == 1
    delivered = Counter(mid for ids, outcome, _ in rokt_rows if outcome == "done" for mid in _ids(ids))
    assert delivered == Counter(message_ids.values())

    assert db(server.home, "SELECT count(*) FROM dead_letters") == [(0,)]
    assert db(server.home, "SELECT count(*) FROM queue") == [(0,)]
    assert "UnicodeEncodeError" not in server.log()


def _ids(message_ids: str) -> list[str]:
    return list(json.loads(message_ids))
