"""Google Ads through the real server: ``datafly serve`` delivering to the loopback Google Ads stand-in.

The stand-in plays the OAuth2 token endpoint too (the integration's ``token_url``), so the access
token is fetched, cached, refreshed and refused over real HTTP. Hashes are computed here from the
raw values the test sends.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e_support import db, wait_until
from http_client import post
from standins.google_ads import GoogleAdsStandIn

sys.path.insert(0, str(Path(__file__).parent.parent / "management"))
from management_client import login

KEY = "dk_gads_e2e"
IID = "gads-main"
REFRESH = "1//e2e-refresh-token-0123456789"
NEW_REFRESH = "1//e2e-refresh-token-renewed-9876"
CLIENT_SECRET = "GOCSPX-e2e-client-secret-0123"
DEV_TOKEN = "e2eDevToken0123456789"
EMAIL_SHA = hashlib.sha256(b"jane.doe@example.com").hexdigest()
PHONE_SHA = hashlib.sha256(b"+447700900123").hexdigest()
REVOKED = "the refresh token was revoked or expired: reconnect"


def integration(google: GoogleAdsStandIn, **settings: Any) -> dict[str, Any]:
    return {
        "id": IID,
        "vendor": "google_ads",
        "preset": "default",
        "endpoint": google.base_url,
        "settings": {
            "customer_id": "123-456-7890",
            "conversion_action_id": "555000111",
            "developer_token": DEV_TOKEN,
            "client_id": google.client_id,
            "client_secret": CLIENT_SECRET,
            "refresh_token": REFRESH,
            "token_url": google.token_url,
            **settings,
        },
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


def recent(seconds_ago: int = 30) -> str:
    moment = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=seconds_ago)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def google_time(iso: str) -> str:
    return iso.replace("T", " ").replace("Z", "+00:00")


def ctx(path: str = "/", advertising: bool = True) -> dict[str, Any]:
    return {"page": {"url": f"https://shop.example{path}"}, "ip": "203.0.113.50", "userAgent": "Mozilla/5.0 E2E",
            "consent": {"canonical": {"advertising": advertising}}}


def landing(visitor: str, gclid: str) -> dict[str, Any]:
    return {"type": "page", "anonymousId": visitor, "context": ctx(f"/landing?gclid={gclid}")}


def order(order_id: str, visitor: str, when: str | None = None) -> dict[str, Any]:
    return {"type": "track", "event": "Order Completed", "anonymousId": visitor, "timestamp": when or recent(),
            "properties": {"order_id": order_id, "revenue": 49.9, "currency": "EUR"}, "context": ctx("/thanks")}


def dead_letters(server: Any) -> list[tuple[Any, ...]]:
    return db(server.home, "SELECT message_id, attempts, outcome, reason FROM dead_letters ORDER BY id")


@pytest.fixture
def google() -> Iterator[GoogleAdsStandIn]:
    with GoogleAdsStandIn(client_secret=CLIENT_SECRET, refresh_token=REFRESH, developer_token=DEV_TOKEN,
                          login_customer_id="1112223333").running_in_thread() as stand_in:
        yield stand_in


def test_a_conversion_with_gclid_and_hashed_identifiers_is_delivered_once(serve: Any, google: GoogleAdsStandIn) -> None:
    server = serve(make_config(integration(google, login_customer_id="111-222-3333")))
    visitor = "visitor-gads-1"
    when = recent(60)
    send(
        server,
        landing(visitor, "Cj0KCQjw-e2e-gclid"),
        {"type": "identify", "userId": "user-1", "anonymousId": visitor,
         "traits": {"email": "  Jane.Doe@Example.com ", "phone": "+44 7700 900123"}, "context": ctx("/account")},
        {"type": "track", "event": "Product Viewed", "anonymousId": visitor, "context": ctx("/p/1")},
        order("ORD-G1", visitor, when),
    )
    wait_until(lambda: google.accepted, what="the conversion")
    time.sleep(0.8)
    (request,) = google.requests
    (token_request,) = google.token_requests
    assert token_request.status == 200
    assert request.status == 200 and request.path == "/v26/customers/1234567890:uploadClickConversions"
    assert (request.header("Authorization") or "").startswith("Bearer ya29.standin-")
    assert request.header("developer-token") == DEV_TOKEN
    assert request.header("login-customer-id") == "1112223333"
    assert request.json() == {
        "conversions": [{
            "gclid": "Cj0KCQjw-e2e-gclid",
            "conversionAction": "customers/1234567890/conversionActions/555000111",
            "conversionDateTime": google_time(when),
            "conversionValue": 49.9,
            "currencyCode": "EUR",
            "orderId": "ORD-G1",
            "userIdentifiers": [{"hashedEmail": EMAIL_SHA}, {"hashedPhoneNumber": PHONE_SHA}],
            "consent": {"adUserData": "GRANTED", "adPersonalization": "GRANTED"},
        }],
        "partialFailure": True,
    }
    assert google.count_by_order_id() == {"ORD-G1": 1}
    rows = db(server.home, f"SELECT outcome, status, request FROM delivery_log WHERE integration_id='{IID}'")
    assert [(r[0], r[1]) for r in rows] == [("done", 200)]
    logged = json.loads(rows[0][2])
    assert logged["headers"]["Authorization"] == "Bearer ****"
    access_token = (request.header("Authorization") or "")[7:]
    for secret in (access_token, REFRESH, CLIENT_SECRET, DEV_TOKEN):
        assert secret not in server.log()
        for path in Path(server.home).rglob("*"):
            assert not path.is_file() or secret.encode() not in path.read_bytes(), path.name


def test_two_failed_rows_get_their_own_outcomes_and_the_rest_is_delivered(
    serve: Any, google: GoogleAdsStandIn
) -> None:
    google.login_customer_id = None
    google.row_errors = {
        "gclid-b": ("conversionUploadError", "UNPARSEABLE_GCLID", "The imported gclid could not be decoded."),
        "ORD-D": ("conversionUploadError", "CLICK_CONVERSION_ALREADY_EXISTS",
                  "The imported event has the same click and conversion_date_time as an existing conversion."),
    }
    server = serve(make_config(integration(google)))
    visitors = {name: f"visitor-{name}" for name in "abcde"}
    send(server, *(landing(v, f"gclid-{name}") for name, v in visitors.items()))
    ids = send(server, *(order(f"ORD-{name.upper()}", v) for name, v in visitors.items()))
    wait_until(lambda: len(dead_letters(server)) >= 2, what="two dead letters")
    time.sleep(0.8)
    assert len(google.requests) == 1 and len(google.requests[0].json()["conversions"]) == 5
    assert sorted(google.count_by_order_id()) == ["ORD-A", "ORD-C", "ORD-E"]
    dead = {row[0]: row for row in dead_letters(server)}
    assert dead == {
        ids[1]: (ids[1], 1, "rejected", "UNPARSEABLE_GCLID: The imported gclid could not be decoded."),
        ids[3]: (ids[3], 1, "rejected", "CLICK_CONVERSION_ALREADY_EXISTS: The imported event has the same click "
                                        "and conversion_date_time as an existing conversion."),
    }
    rows = db(server.home, "SELECT outcome, status FROM delivery_log WHERE outcome != 'filtered'")
    assert rows == [("partial", 200)]
    assert db(server.home, "SELECT count(*) FROM queue") == [(0,)]


def test_an_expired_access_token_is_refreshed_once_and_delivery_goes_on(serve: Any, google: GoogleAdsStandIn) -> None:
    google.login_customer_id = None
    server = serve(make_config(integration(google)))
    send(server, landing("v-exp", "gclid-exp"), order("ORD-E1", "v-exp"))
    wait_until(lambda: google.accepted, what="the first conversion")
    google.expire_tokens()
    send(server, order("ORD-E2", "v-exp"))
    wait_until(lambda: len(google.accepted) >= 2, what="the second conversion")
    time.sleep(0.5)
    assert [r.status for r in google.requests] == [200, 401, 200]
    assert [r.status for r in google.token_requests] == [200, 200]
    assert google.requests[1].header("Authorization") != google.requests[2].header("Authorization")
    assert google.count_by_order_id() == {"ORD-E1": 1, "ORD-E2": 1}
    assert dead_letters(server) == []
    rows = db(server.home, "SELECT outcome, status FROM delivery_log ORDER BY id")
    assert rows == [("done", 200), ("done", 200)]


def test_a_revoked_refresh_token_dead_letters_with_the_hint_and_a_replay_after_fixing_it_delivers(
    serve: Any, google: GoogleAdsStandIn
) -> None:
    google.login_customer_id = None
    google.revoke(REFRESH)
    server = serve({**make_config(), "management": {"allow_private_endpoints": True}})
    api = login(server.url)
    created = api.post("/api/integrations", integration(google))  # managed in the UI: its settings can change
    assert created.status == 201, created.text
    ids = send(server, landing("v-rev", "gclid-rev"), order("ORD-R1", "v-rev"))
    rows = wait_until(lambda: dead_letters(server), what="a dead letter")
    time.sleep(0.5)
    assert google.requests == []  # nothing reached the API without a token
    ((message_id, attempts, outcome, reason),) = rows
    assert (message_id, attempts, outcome) == (ids[1], 1, "auth_failed")
    assert "invalid_grant" in reason and REVOKED in reason
    (logged,) = db(server.home, "SELECT outcome, status, reason, request FROM delivery_log")
    assert logged[:2] == ("auth_failed", 400) and REVOKED in logged[2]
    assert REFRESH not in logged[3] and CLIENT_SECRET not in logged[3]

    google.allow(NEW_REFRESH)
    fixed = api.patch(f"/api/integrations/{IID}", {"settings": {"refresh_token": NEW_REFRESH}})
    assert fixed.status == 200, fixed.text
    time.sleep(0.5)  # the changed integration gets a new worker
    assert api.post("/api/dead-letters/replay", {"integration": IID}).json() == {"replayed": 1}
    wait_until(lambda: google.accepted, what="the replayed conversion")
    assert google.count_by_order_id() == {"ORD-R1": 1}
    assert wait_until(lambda: dead_letters(server) == [] or None, what="no dead letters") is True


def test_a_missing_customer_id_is_a_check_error_naming_the_key(tmp_path: Path) -> None:
    settings = {"conversion_action_id": "555", "developer_token": DEV_TOKEN, "client_id": "c.apps.googleusercontent.com",
                "client_secret": CLIENT_SECRET, "refresh_token": REFRESH}
    config = {"sources": [{"id": "web", "key": KEY}],
              "integrations": [{"id": IID, "vendor": "google_ads", "settings": settings}]}
    path = tmp_path / "gads.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run([sys.executable, "-m", "datafly.cli", "check", "--config", str(path)],
                            capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 1
    assert "integrations[0].settings.customer_id: required" in result.stderr
    for secret in (CLIENT_SECRET, REFRESH, DEV_TOKEN):
        assert secret not in result.stderr
