"""Raw email and phone never leave the gateway: not to a vendor, not to disk, not to the log.

A real server delivers identify traits and conversions to Exactag, Rokt and a webhook (with a
retry, a rejection and a skip on the way, so the delivery log and the dead letters hold
something); then every byte the stand-ins received, every file under the server's home (the
SQLite database and its WAL, raw) and the server log are searched for the email and the phone in
every common spelling.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
import urllib.parse
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from e2e_support import wait_until
from http_client import post
from standins import ExactagStandIn, RoktStandIn, StandIn, WebhookStandIn

KEY = "dk_pii"
CODE = "PiiTestCampaignCode0123456789abc"
EMAIL = "Jane.Doe+News@Example.com"
PHONE = "+44 7700 900123"
OTHER_EMAIL = "  BUYER.Two@Example.org "
OTHER_PHONE = "+1 (415) 555-0132"


def spellings_of_email(email: str) -> set[str]:
    """The address as given, trimmed, its local part, and URL-encoded (compared case-insensitively)."""
    text = email.strip()
    local = text.split("@")[0]
    forms = {email, text, local}
    for form in (text, local):
        forms |= {urllib.parse.quote(form, safe=""), urllib.parse.quote_plus(form), urllib.parse.quote(form)}
    return {f.lower() for f in forms}


def spellings_of_phone(national_digits: str, grouped: str) -> set[str]:
    """``national_digits`` (7700900123) is inside the E.164 form, the all-digits form and the
    national form with its leading 0; ``grouped`` is the spaced spelling as typed."""
    return {national_digits, grouped, urllib.parse.quote_plus(grouped), urllib.parse.quote(grouped, safe="")}


NEEDLES = sorted(
    spellings_of_email(EMAIL)
    | spellings_of_email(OTHER_EMAIL)
    | spellings_of_phone("7700900123", "7700 900123")
    | spellings_of_phone("4155550132", "(415) 555-0132")
    | {"415555", "555-0132"}
)


def leaks_in(data: bytes) -> list[str]:
    haystack = data.lower()
    return [n for n in NEEDLES if n.encode() in haystack]


def recent() -> str:
    return (datetime.now(UTC) - timedelta(seconds=20)).strftime("%Y-%m-%dT%H:%M:%SZ")




def db_count(home: Path, sql: str) -> int:
    conn = sqlite3.connect(home / "datafly.db", timeout=10)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


def wire_bytes(stand_ins: Iterable[StandIn]) -> Iterator[tuple[str, bytes]]:
    for stand_in in stand_ins:
        for n, r in enumerate(stand_in.requests):
            name = f"{type(stand_in).__name__} request {n}"
            yield f"{name} target", f"{r.method} {r.path}?{r.query_string}".encode()
            yield f"{name} decoded query", repr(r.query).encode()
            yield f"{name} headers", repr(r.headers).encode()
            yield f"{name} body", r.body


def home_files(home: Path) -> Iterator[tuple[str, bytes]]:
    for path in sorted(home.rglob("*")):
        if path.is_file():
            yield str(path.relative_to(home)), path.read_bytes()


def assert_no_leaks(where: Iterable[tuple[str, bytes]]) -> int:
    found = {name: leaks_in(data) for name, data in where}
    leaks = {name: hits for name, hits in found.items() if hits}
    assert not leaks, f"raw PII found: {leaks}"
    return len(found)


@pytest.fixture
def stand_ins() -> Iterator[tuple[ExactagStandIn, RoktStandIn, WebhookStandIn, WebhookStandIn]]:
    exactag = ExactagStandIn(valid_codes=[CODE])
    rokt = RoktStandIn("rpub-pii", "rsec-pii", account_id="777")
    hook = WebhookStandIn(secret="hook-secret")
    single = WebhookStandIn()
    with (
        exactag.running_in_thread(),
        rokt.running_in_thread(),
        hook.running_in_thread(),
        single.running_in_thread(),
    ):
        yield exactag, rokt, hook, single


def test_no_raw_email_or_phone_anywhere(
    serve: Any, stand_ins: tuple[ExactagStandIn, RoktStandIn, WebhookStandIn, WebhookStandIn]
) -> None:
    exactag, rokt, hook, single = stand_ins
    config = {
        "sources": [{"id": "web", "key": KEY}],
        "integrations": [
            {"id": "exactag", "vendor": "exactag", "settings": {"campaign_code": CODE},
             "endpoint": exactag.url, "consent": ["marketing"]},
            {"id": "rokt", "vendor": "rokt", "preset": "retail", "endpoint": rokt.url,
             "settings": {"account_id": "777", "api_key": "rpub-pii", "api_secret": "rsec-pii"}},
            {"id": "hook", "vendor": "webhook", "preset": "all",
             "settings": {"url": hook.url, "secret": "hook-secret", "batch_size": 5}},
            {"id": "hook-single", "vendor": "webhook", "preset": "all", "settings": {"url": single.url}},
        ],
        "delivery": {"initial_backoff": "100ms", "max_backoff": "1s", "timeout": "2s", "max_attempts": 3},
    }
    server = serve(config, env={"DATAFLY_LOG_LEVEL": "DEBUG"})
    consent = {"canonical": {"marketing": True, "advertising": True}}
    page = {"url": "https://shop.example/landing?rclid=pii-click-1", "path": "/landing"}

    def ctx(**more: Any) -> dict[str, Any]:
        return {"consent": consent, "page": page, "ip": "198.51.100.7", "userAgent": "Mozilla/5.0 PII", **more}

    rokt.fail_next(1, 503)  # a retry: the request is logged twice
    single.fail_next(1, 400, body="no thanks")  # a rejection: a dead letter with its last request
    ids: list[str] = []
    for visitor, email, phone, order in (("v-pii-1", EMAIL, PHONE, "ORD-PII-1"),
                                         ("v-pii-2", OTHER_EMAIL, OTHER_PHONE, "ORD-PII-2")):
        batch = [
            {"type": "page", "anonymousId": visitor, "context": ctx()},
            {"type": "identify", "anonymousId": visitor, "userId": f"user-{visitor}",
             "traits": {"email": email, "phone": phone, "name": "Jane"}, "context": ctx()},
            {"type": "track", "event": "Signed Up", "anonymousId": visitor, "timestamp": recent(),
             "context": ctx(traits={"email": email, "phone": phone})},
            {"type": "track", "event": "Order Completed", "anonymousId": visitor, "timestamp": recent(),
             "properties": {"order_id": order, "revenue": 42.5, "currency": "GBP", "email": email,
                            "phone": phone, "affiliation": "web"},
             "context": ctx()},
            # an identify without a usable phone (no country code): dropped, never kept raw
            {"type": "identify", "anonymousId": visitor, "traits": {"phone": "7700 900123"}, "context": ctx()},
        ]
        batch = [{"messageId": uuid.uuid4().hex, **e} for e in batch]
        ids += [e["messageId"] for e in batch]
        answer = post(f"{server.url}/v1/batch?key={KEY}", {"batch": batch},
                      {"User-Agent": "Mozilla/5.0 PII"})
        assert answer.status == 200, answer.body
    # an event Rokt cannot take (no identifier): skipped with its reason
    post(f"{server.url}/v1/t?key={KEY}", {"event": "Order Completed", "anonymousId": "v-pii-none",
                                          "properties": {"order_id": "ORD-PII-X"}, "timestamp": recent()})

    wait_until(lambda: len(rokt.accepted_events) >= 4, what="4 Rokt conversions")
    wait_until(lambda: len(exactag.hits()) >= 4, what="4 Exactag hits")
    wait_until(lambda: len(hook.events()) >= len(ids) + 1, what="webhook events (batched)")
    wait_until(lambda: len(single.events()) >= len(ids), what="webhook events (one by one)")
    wait_until(lambda: db_count(server.home, "SELECT count(*) FROM dead_letters") >= 2, what="dead letters")
    wait_until(lambda: db_count(server.home, "SELECT count(*) FROM queue") == 0, what="an empty queue")
    time.sleep(0.3)

    # the deliveries did happen, hashed
    email_hash = hashlib.sha256(EMAIL.strip().lower().encode()).hexdigest()
    phone_hash = hashlib.sha256(b"+447700900123").hexdigest()
    first = next(e for e in rokt.accepted_events if e.get("confirmationRef") == "ORD-PII-1")
    assert (first["emailsha256"], first["mobilesha256"]) == (email_hash, phone_hash)
    assert any(e.get("context", {}).get("traits", {}).get("email_sha256") == email_hash for e in hook.events())

    assert {r.status for r in single.requests} == {400, 200}
    assert {r.status for r in hook.requests} == {200}
    checked = assert_no_leaks(wire_bytes((exactag, rokt, hook, single)))
    checked += assert_no_leaks(home_files(server.home))  # while running: the WAL holds the recent writes
    checked += assert_no_leaks([("server log (running)", server.log().encode())])
    assert server.stop() == 0
    checked += assert_no_leaks(home_files(server.home))  # after the checkpoint on shutdown
    checked += assert_no_leaks([("server log", server.log().encode())])
    assert checked > 20
    assert any(p.name == "datafly.db" for p in server.home.iterdir())
