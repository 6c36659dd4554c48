"""TikTok through the real server: ``datafly serve`` delivering to the loopback TikTok stand-in.

Hashes are computed here with hashlib from the raw values the test sends (never copied from a
vendor document); what is asserted is what went over the wire and what the user reads in the
delivery log, the dead letters and the management API.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e_support import db, wait_until
from http_client import post, request
from standins.tiktok import TikTokStandIn

KEY = "dk_tiktok_e2e"
TOKEN = "tt-e2e-access-token-5f1e2d3c4b5a6978"
PIXEL = "CE2EPIXEL00000000001"
AUTH_HINT = "TikTok refused the access token."
IP = "203.0.113.50"
UA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) DataflyE2E/1.0"
TTCLID = "E.C.P.CvQBAAAA-landing-click-0001"
TTP = "2ZkQ8xYzTtpE2Ecookie01"
EMAIL_SHA = hashlib.sha256(b"jane.doe@example.com").hexdigest()
PHONE_SHA = hashlib.sha256(b"+447700900123").hexdigest()
USER_SHA = hashlib.sha256(b"user-123").hexdigest()


def integration(url: str, token: str = TOKEN, **extra: Any) -> dict[str, Any]:
    return {"id": "tiktok-main", "vendor": "tiktok", "preset": "default", "consent": ["advertising"],
            "settings": {"pixel_code": PIXEL, "access_token": token}, "endpoint": url, **extra}  # fmt: skip


def make_config(*integrations: dict[str, Any]) -> dict[str, Any]:
    return {
        "sources": [{"id": "web", "key": KEY}],
        "integrations": list(integrations),
        "delivery": {"initial_backoff": "100ms", "max_backoff": "1s", "timeout": "2s"},
        "management": {"allow_private_endpoints": True},
    }


def send(server: Any, *events: dict[str, Any]) -> list[str]:
    batch = [{"messageId": uuid.uuid4().hex, **e} for e in events]
    answer = post(f"{server.url}/v1/batch?key={KEY}", {"batch": batch})
    assert answer.status == 200, answer.body
    return [e["messageId"] for e in batch]


def ctx(path: str = "/", **more: Any) -> dict[str, Any]:
    context: dict[str, Any] = {"page": {"url": f"https://shop.example{path}", "referrer": "https://www.tiktok.com/"},
                               "ip": IP, "userAgent": UA, "consent": {"canonical": {"advertising": True}}}  # fmt: skip
    context.update(more)
    return context


def landing(visitor: str) -> dict[str, Any]:
    """The page a visitor lands on from a TikTok ad, with the TikTok pixel's _ttp cookie."""
    return {"type": "page", "anonymousId": visitor,
            "context": ctx(f"/landing?utm_source=tiktok&ttclid={TTCLID}", cookies={"_ttp": TTP})}  # fmt: skip


def order(order_id: str, visitor: str) -> dict[str, Any]:
    return {"type": "track", "event": "Order Completed", "anonymousId": visitor,
            "properties": {"order_id": order_id, "revenue": 46, "currency": "EUR",
                           "products": [{"product_id": "SKU-1", "name": "Socks", "price": 23, "quantity": 2}]},
            "context": ctx("/checkout/done")}  # fmt: skip


class Api:
    """The management API as a script uses it: ``POST /api/login`` (the admin password the server
    fixture sets), then the token as ``Authorization: Bearer``."""

    def __init__(self, base: str, password: str = "admin-pass-123") -> None:
        self.base = base
        json_body = {"Content-Type": "application/json"}
        answer = request("POST", f"{base}/api/login", {"username": "admin", "password": password}, json_body)
        assert answer.status == 200, answer.body
        self.headers = {**json_body, "Authorization": f"Bearer {answer.json()['token']}"}

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        answer = request(method, self.base + path, body, headers=self.headers)
        assert 200 <= answer.status < 300, (answer.status, answer.body)
        return answer.json()


def settle(seconds: float = 0.8) -> None:
    """Longer than the TikTok batch wait (0.5 s): anything that would be sent has been by then."""
    time.sleep(seconds)


def dead_letters(server: Any) -> list[tuple[Any, ...]]:
    return db(server.home, "SELECT message_id, attempts, outcome, reason FROM dead_letters ORDER BY id")


@pytest.fixture
def tiktok() -> Iterator[TikTokStandIn]:
    with TikTokStandIn(TOKEN, PIXEL).running_in_thread() as stand_in:
        yield stand_in


def test_a_purchase_carries_ttclid_ttp_hashes_and_event_id_exactly_once(
    serve: Any, tiktok: TikTokStandIn
) -> None:
    server = serve(make_config(integration(tiktok.base_url)))
    visitor = "visitor-tt-1"
    ids = send(
        server,
        landing(visitor),
        {"type": "identify", "userId": "User-123", "anonymousId": visitor,
         "traits": {"email": "  Jane.Doe@Example.com ", "phone": "+44 7700 900123"}, "context": ctx("/account")},
        {"type": "track", "event": "Product Added", "anonymousId": visitor, "userId": "User-123",
         "properties": {"product_id": "SKU-1", "name": "Socks", "price": 23, "quantity": 2, "currency": "EUR"},
         "context": ctx("/p/socks")},
        {**order("ORD-TT-1", visitor), "userId": "User-123"},
    )  # fmt: skip
    wait_until(lambda: tiktok.ingested("CompletePayment"), what="the purchase")
    settle()
    assert all(r.status == 200 and r.path == "/open_api/v1.3/event/track/" for r in tiktok.requests)
    assert all(r.header("Access-Token") == TOKEN for r in tiktok.requests)
    assert {r.json()["event_source_id"] for r in tiktok.requests} == {PIXEL}
    assert {r.json()["event_source"] for r in tiktok.requests} == {"web"}
    events = {e["event"]: e for e in tiktok.accepted_events}
    assert sorted(events) == ["AddToCart", "CompletePayment", "Pageview"]  # identify is not sent
    assert tiktok.count_by_event_id() == {ids[0]: 1, ids[2]: 1, ids[3]: 1}
    assert tiktok.duplicates() == {}

    purchase = events["CompletePayment"]
    assert purchase["event_id"] == ids[3]
    assert purchase["user"] == {
        "email": EMAIL_SHA, "phone": PHONE_SHA, "external_id": USER_SHA, "ttclid": TTCLID, "ttp": TTP,
        "ip": IP, "user_agent": UA,
    }  # fmt: skip
    assert purchase["page"] == {
        "url": "https://shop.example/checkout/done",
        "referrer": "https://www.tiktok.com/",
    }
    assert purchase["properties"] == {
        "currency": "EUR", "value": 46, "content_type": "product", "order_id": "ORD-TT-1",
        "contents": [{"content_id": "SKU-1", "content_name": "Socks", "quantity": 2, "price": 23}],
    }  # fmt: skip
    assert isinstance(purchase["event_time"], int) and abs(purchase["event_time"] - time.time()) < 120
    cart = events["AddToCart"]
    assert (
        cart["user"]["ttclid"] == TTCLID and cart["user"]["ttp"] == TTP and cart["properties"]["value"] == 46
    )
    page = events["Pageview"]
    assert (
        page["user"]["ttclid"] == TTCLID
        and page["user"]["external_id"] == hashlib.sha256(visitor.encode()).hexdigest()
    )  # before identify: the anonymous id
    body = b" ".join(r.body for r in tiktok.requests)
    assert b"jane.doe" not in body.lower() and b"7700" not in body
    rows = db(server.home, "SELECT outcome, status FROM delivery_log WHERE integration_id='tiktok-main'")
    assert rows and {row for row in rows} == {("done", 200)}
    assert dead_letters(server) == []


def test_an_auth_failure_is_dead_lettered_with_the_hint_then_replayed_after_fixing(
    serve: Any, tiktok: TikTokStandIn
) -> None:
    server = serve(make_config())
    api = Api(server.url)
    wrong = "tt-wrong-access-token-ffffffffffffffff"
    api.call("POST", "/api/integrations", integration(tiktok.base_url, token=wrong))
    ids = send(server, landing("visitor-tt-2"), order("ORD-TT-401", "visitor-tt-2"))
    rows = wait_until(
        lambda: len(dead_letters(server)) == 2 and dead_letters(server), what="two dead letters"
    )
    settle()
    assert {r.status for r in tiktok.requests} == {200}  # TikTok answers 200 with code 40105
    assert tiktok.accepted_events == []
    assert {row[0] for row in rows} == set(ids)
    for _, attempts, outcome, reason in rows:
        assert (attempts, outcome) == (1, "auth_failed")
        assert reason.startswith("40105: ") and AUTH_HINT in reason and "revoked" in reason
    listed = api.call("GET", "/api/dead-letters?integration=tiktok-main")["dead_letters"]
    assert len(listed) == 2 and wrong not in str(listed)
    assert all(AUTH_HINT in entry["reason"] for entry in listed)

    api.call("PATCH", "/api/integrations/tiktok-main", {"settings": {"access_token": TOKEN}})
    time.sleep(1.0)  # the changed integration gets a new worker
    assert api.call("POST", "/api/dead-letters/replay", {"integration": "tiktok-main"}) == {"replayed": 2}
    wait_until(lambda: len(tiktok.accepted_events) == 2, what="the replayed events")
    settle()
    assert tiktok.count_by_event_id() == {ids[0]: 1, ids[1]: 1}
    purchase = tiktok.ingested("CompletePayment")[0]
    assert purchase["user"]["ttclid"] == TTCLID and purchase["user"]["ttp"] == TTP
    assert api.call("GET", "/api/dead-letters")["dead_letters"] == []
    for secret in (wrong, TOKEN):
        assert secret not in server.log()


def test_a_throttled_answer_is_retried_then_delivered_once(serve: Any, tiktok: TikTokStandIn) -> None:
    server = serve(make_config(integration(tiktok.base_url)))
    tiktok.fail_next_code(1, 40100, "Too many requests. Please retry in some time.")
    ids = send(server, landing("visitor-tt-3"))
    wait_until(lambda: tiktok.accepted_events, what="the page view")
    settle()
    assert [r.status for r in tiktok.requests] == [200, 200]  # both HTTP 200: the code says throttled
    assert tiktok.requests[0].body == tiktok.requests[1].body
    assert tiktok.count_by_event_id() == {ids[0]: 1}
    rows = db(server.home, "SELECT outcome, status, reason FROM delivery_log ORDER BY id")
    assert [(r[0], r[1]) for r in rows] == [("retry", 200), ("done", 200)]
    assert rows[0][2].startswith("40100 throttled")
    assert dead_letters(server) == []


def test_a_missing_pixel_code_is_a_check_error_naming_the_key(tmp_path: Path) -> None:
    config = make_config({"id": "tiktok-main", "vendor": "tiktok", "settings": {"access_token": TOKEN}})
    path = tmp_path / "tiktok.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = subprocess.run(
        [sys.executable, "-m", "datafly.cli", "check", "--config", str(path)],
        capture_output=True, text=True, env={**os.environ}, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert [line.split(": ", 1)[1] for line in result.stderr.splitlines()] == [
        "integrations[0].settings.pixel_code: required"
    ]
    assert TOKEN not in result.stderr + result.stdout
    good = tmp_path / "good.yaml"
    config["integrations"][0]["settings"]["pixel_code"] = PIXEL
    good.write_text(yaml.safe_dump(config, sort_keys=False))
    ok = subprocess.run([sys.executable, "-m", "datafly.cli", "check", "--config", str(good)],
                        capture_output=True, text=True, env={**os.environ}, timeout=60)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
