"""The pure core: normalisation, hashing, sessions, identity, consent and routing."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from datafly.errors import InvalidEvent
from datafly.processing.normalise import RequestInfo, may_hold_pii, normalise_event
from datafly.processing.pii import hash_email, hash_phone
from datafly.processing.pipeline import process_event
from datafly.processing.profile import Profile
from datafly.processing.routing import Route
from datafly.processing.timestamps import parse_ts

INFO = RequestInfo("web", "203.0.113.5", "UA/1", "cookie-id", received_at=1_780_000_000.0, phone_region="GB")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def normal(raw: dict[str, Any], forced: str | None = None) -> dict[str, Any]:
    return normalise_event(raw, INFO, forced)


def test_defaults_come_from_the_request() -> None:
    event = normal({"type": "track", "event": "A"})
    assert event["anonymousId"] == "cookie-id" and event["sourceId"] == "web"
    assert event["context"]["ip"] == "203.0.113.5" and event["context"]["userAgent"] == "UA/1"
    assert len(event["messageId"]) == 32
    assert parse_ts(event["timestamp"]) == pytest.approx(INFO.received_at, abs=0.001)


def test_the_event_wins_over_the_request() -> None:
    event = normal(
        {"type": "track", "event": "A", "anonymous_id": "a1", "context": {"ip": "1.2.3.4", "user_agent": "X"}}
    )
    assert (
        event["anonymousId"] == "a1"
        and event["context"]["ip"] == "1.2.3.4"
        and event["context"]["userAgent"] == "X"
    )


def test_email_and_phone_are_hashed_everywhere_they_are_read() -> None:
    event = normal(
        {
            "type": "identify",
            "traits": {"email": " Jane@Example.COM ", "phone": "+44 7700 900123"},
            "properties": {"email": "a@b.c"},
            "context": {"traits": {"phone": "07700 900123"}},
        }
    )
    phone = {"phone_sha256": sha("+447700900123"), "phone_digits_sha256": sha("447700900123")}  # (Meta's form)
    assert event["traits"] == {"email_sha256": sha("jane@example.com"), **phone}
    assert event["properties"] == {"email_sha256": sha("a@b.c")}
    assert event["context"]["traits"] == phone


def test_a_hash_is_not_hashed_again_and_an_unreadable_phone_is_dropped() -> None:
    digest = sha("x@y.z")
    assert hash_email(digest.upper()) == digest
    assert hash_phone("not a phone") is None
    event = normal({"type": "identify", "traits": {"phone": "12"}})
    assert "traits" not in event or "phone" not in event.get("traits", {})


def test_page_properties_become_the_page_context() -> None:
    event = normal({"type": "page", "properties": {"url": "https://s.example/?rclid=1", "title": "T"}})
    assert event["context"]["page"] == {"url": "https://s.example/?rclid=1", "title": "T"}


@pytest.mark.parametrize(
    "raw",
    [
        [],
        {"type": "screen"},
        {"type": "track"},
        {"type": "track", "event": "A", "userId": {"x": 1}},
        {"type": "track", "event": "A", "context": {"session": {"number": 1}}},
        {"type": "track", "event": "A", "context": {"consent": {"canonical": True}}},
    ],
)
def test_bad_events_are_refused(raw: Any) -> None:
    with pytest.raises(InvalidEvent) as info:
        normal(raw)
    assert info.value.message


def processed(event: dict[str, Any], profile: Profile, routes: list[Route] | None = None) -> Any:
    return process_event(normal(event), profile, routes or [], 1800)


def test_sessions_restart_after_thirty_minutes() -> None:
    profile = Profile("v")
    numbers = [
        processed({"type": "track", "event": "A", "timestamp": ts}, profile).event["context"]["session"][
            "number"
        ]
        for ts in (
            "2026-01-01T10:00:00Z",
            "2026-01-01T10:29:00Z",
            "2026-01-01T11:00:00Z",
            "2026-01-01T11:10:00Z",
        )
    ]
    assert numbers == [1, 1, 2, 2]


def test_identity_and_click_ids_are_remembered() -> None:
    profile = Profile("v")
    processed({"type": "page", "context": {"page": {"url": "https://s.example/?utm=x&rtid=R1"}}}, profile)
    processed({"type": "identify", "userId": "u1", "traits": {"email": "a@b.c"}}, profile)
    event = processed({"type": "track", "event": "Order Completed"}, profile).event
    assert event["userId"] == "u1"
    assert event["context"]["clickIds"] == {"rclid": "R1"}
    assert event["context"]["traits"]["email_sha256"] == sha("a@b.c")


def test_consent_routing_and_first_page_of_session() -> None:
    routes = [
        Route("gated", {"page": "pageview", "Order Completed": "conversion"}, consent=("marketing",)),
        Route("open", {"*": "event"}),
        Route("other-source", {"*": "event"}, sources=frozenset({"app"})),
    ]
    profile = Profile("v")
    granted = {"context": {"consent": {"canonical": {"marketing": True}}}}
    first = processed({"type": "page", **granted}, profile, routes)
    assert [(r.integration_id, r.mapping, r.first_in_session) for r in first.routed] == [
        ("gated", "pageview", True),
        ("open", "event", True),
    ]
    second = processed({"type": "page", **granted}, profile, routes)
    assert [r.first_in_session for r in second.routed] == [False, False]
    denied = processed({"type": "track", "event": "Order Completed"}, profile, routes)
    assert [r.integration_id for r in denied.routed] == ["open"]
    assert [(f.integration_id, f.reason) for f in denied.filtered] == [
        ("gated", "consent not granted: marketing")
    ]
    unmapped = processed({"type": "track", "event": "Cart Viewed", **granted}, profile, routes)
    assert [r.integration_id for r in unmapped.routed] == ["open"] and not unmapped.filtered


@pytest.mark.parametrize(
    "body",
    [
        b'{"traits": {"email": "a@b.example"}}',
        b'{"traits": {"Email": "a@b.example"}}',
        b'{"properties": {"phone": "+44 20 7946 0000"}}',
        b'{"traits": {"mobile": "07700 900000"}}',
        b'{"traits": {"mobilePhoneNumber": "07700 900000"}}',
        b'{"traits": {"phone_number": "07700 900000"}}',
        b'{"traits": {"\\u0065mail": "a@b.example"}}',  # a key spelled with an escape
    ],
)
def test_a_body_that_may_hold_an_email_or_phone_is_scrubbed(body: bytes) -> None:
    assert may_hold_pii(body)


def test_a_body_without_email_or_phone_keys_is_stored_as_it_came() -> None:
    assert not may_hold_pii(b'{"event": "Product Viewed", "properties": {"product_id": "p-1", "price": 12.5}}')
