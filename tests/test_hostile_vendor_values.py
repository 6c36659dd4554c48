"""Any user agent and any IP in an event: every destination's request is built and encoded without
raising, and what goes on the wire is safe (pure code, no network).

For each destination of the registry: ``format_item`` -> ``build_requests`` -> the HTTP client's
encoding (``request_url``, ``header_lines``). The properties: nothing raises; the URL is ASCII;
no header line holds CR, LF or NUL; a header built from the event is printable ASCII; an IP that
is forwarded is an IP address in canonical form.
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datafly.delivery.http import UnsendableRequest, header_lines, request_url
from datafly.destinations.base import Destination, Item, OutboundRequest, Skip
from datafly.destinations.registry import all_destinations
from datafly.destinations.wire import header_text, undo_latin1, visitor_ip
from datafly.processing.timestamps import format_ts

SETTINGS: dict[str, dict[str, Any]] = {
    "exactag": {"campaign_code": "FAKE0000111122223333444455556666"},
    "rokt": {"account_id": "12345", "api_key": "rpub-fake-0123456789", "api_secret": "rsec-fake-9876543210"},
    "webhook": {"url": "https://hooks.example.com/datafly", "secret": "whsec-fake-0123456789"},
    "meta": {"pixel_id": "123456789012345", "access_token": "EAAB-fake-token-0123456789"},
    "ga4": {"measurement_id": "G-ABC123DEF4", "api_secret": "fake-api-secret-0123"},
    "tiktok": {"pixel_code": "CB6RBI3C77U5UN6BNA8G", "access_token": "fake-tiktok-token-0123456789"},
    "google_ads": {
        "customer_id": "1234567890", "conversion_action_id": "987654321", "developer_token": "fake-dev-token-0123",
        "client_id": "fake.apps.googleusercontent.com", "client_secret": "fake-client-secret",
        "refresh_token": "fake-refresh-token-0123", "_access_token": "ya29.fake-access-token",
    },
}  # fmt: skip
MAPPING = {
    "exactag": "pageview", "rokt": "purchase", "webhook": "event", "meta": "Purchase", "ga4": "purchase",
    "tiktok": "CompletePayment", "google_ads": "conversion",
}  # fmt: skip

# text of every kind (controls, latin-1, astral), real addresses in several spellings, and header-ish tricks
ANY_TEXT = st.text(max_size=80)
LATIN1 = st.text(st.characters(max_codepoint=0xFF), max_size=40)
IPS = st.ip_addresses().flatmap(
    lambda ip: st.sampled_from(
        [str(ip), f" {ip} ", ip.exploded, str(ip).upper(), f"{ip}%eth0", f"{ip}\r\nX-Injected: 1", f"{ip}, 10.0.0.1"]
    )
)
UAS = st.one_of(
    ANY_TEXT,
    LATIN1,
    LATIN1.map(lambda t: t.encode("utf-8").decode("latin-1")),  # a raw header's UTF-8 kept as latin-1
    st.builds(lambda a, b: f"Mozilla/5.0 {a}\r\nX-Injected: {b}", ANY_TEXT, ANY_TEXT),
)
# other JSON values (events are decoded by orjson: integers fit in 64 bits, larger ones become floats)
VALUES = st.one_of(
    st.none(), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=False, allow_infinity=False), st.booleans(),
    st.just({"nested": "object"}), st.just(["a", 1]),
)


def event(ua: Any, ip: Any, page_url: str) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Order Completed",
        "properties": {"order_id": "ORD-1", "revenue": 10, "query": page_url},
        "anonymousId": "anon-1",
        "messageId": "msg-1",
        "timestamp": format_ts(time.time() - 60),  # recent: vendors refuse old events
        "context": {
            "ip": ip,
            "userAgent": ua,
            "page": {"url": page_url},
            "clickIds": {"rclid": "rclid-1", "gclid": "gclid-1", "fbclid": "fbclid-1", "ttclid": "ttclid-1"},
            "traits": {"email_sha256": "a" * 64},
            "consent": {"tcf_string": page_url},
        },
    }


def build(vendor: str, destination: Destination, item_event: dict[str, Any]) -> list[OutboundRequest]:
    item = Item("i1", item_event, MAPPING[vendor])
    formatted = destination.format_for(item, SETTINGS[vendor])
    if isinstance(formatted, Skip):  # a vendor may refuse a hostile value: a typed outcome, not an error
        assert formatted.reason
        return []
    settings_ = SETTINGS[vendor]
    return destination.build_requests([formatted], settings_, destination.endpoint(settings_, None))


def check_on_the_wire(request: OutboundRequest) -> None:
    url = request_url(request.url)
    assert url.isascii() and not any(c <= 0x20 or c == 0x7F for c in url)
    for line in header_lines(request.headers, request.body is not None):
        assert b"\r" not in line and b"\n" not in line and b"\0" not in line, line


def is_canonical_ip(text: str) -> bool:
    return str(ipaddress.ip_address(text)) == text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ua=st.one_of(UAS, VALUES), ip=st.one_of(IPS, ANY_TEXT, VALUES), page_url=ANY_TEXT)
def test_any_user_agent_and_ip_build_safe_requests_for_every_destination(ua: Any, ip: Any, page_url: str) -> None:
    destinations = all_destinations()
    assert {"exactag", "rokt", "webhook"} <= set(destinations)
    assert set(destinations) <= set(SETTINGS), "a new destination gets its settings here"
    for vendor, destination in destinations.items():
        requests = build(vendor, destination, event(ua, ip, page_url))
        assert requests or vendor not in ("exactag", "rokt", "webhook")
        for request in requests:
            check_on_the_wire(request)
            if vendor == "exactag":
                forwarded = request.headers.get("X-Forwarded-For")
                assert forwarded is None or is_canonical_ip(forwarded)
                assert (forwarded is not None) == (visitor_ip(ip) is not None)
                agent = request.headers.get("User-Agent")
                assert agent is None or (agent.isascii() and agent.isprintable() and agent == agent.strip())
            elif vendor == "rokt":
                assert request.body is not None
                (record,) = orjson.loads(request.body)["events"]
                assert "ipAddress" not in record or is_canonical_ip(record["ipAddress"])
            elif vendor == "webhook":  # the webhook forwards the event as it is, in the body only
                assert request.body is not None
                assert orjson.loads(request.body)["context"]["userAgent"] == ua
                assert set(request.headers) == {"Content-Type", "X-Signature"}


@given(text=st.text())
def test_header_text_is_printable_ascii_and_keeps_printable_ascii(text: str) -> None:
    cleaned = header_text(text)
    assert cleaned is None or (cleaned.isascii() and cleaned.isprintable() and cleaned == cleaned.strip())
    if text.isascii() and text.isprintable():
        assert cleaned == (text.strip() or None)


@given(text=st.text(st.characters(codec="utf-8")))
def test_undo_latin1_restores_utf8_read_as_latin1(text: str) -> None:
    assert undo_latin1(text.encode("utf-8").decode("latin-1")) == text


@given(ip=st.ip_addresses())
def test_every_real_ip_is_forwarded_in_canonical_form(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    mapped = getattr(ip, "ipv4_mapped", None)
    assert visitor_ip(ip.exploded) == str(mapped or ip)
    assert visitor_ip(f" {ip}\t") == str(mapped or ip)


@given(text=st.text(max_size=200))
def test_any_url_and_header_value_is_encoded_or_refused_never_broken(text: str) -> None:
    url = request_url(f"https://vendor.example/p?q={text}")
    assert url.isascii() and b" " not in url and b"\r" not in url and b"\n" not in url
    try:
        lines = header_lines({"X-Value": text}, False)
    except UnsendableRequest:  # a control character: refused before anything is sent
        assert any((ord(c) < 0x20 and c != "\t") or c == "\x7f" for c in text)
    else:
        assert all(b"\r" not in line and b"\n" not in line and b"\0" not in line for line in lines)
