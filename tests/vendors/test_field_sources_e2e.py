"""Field-source overrides through the real server: ``datafly serve`` with ``fields:`` in the config
file, delivering to the loopback Exactag stand-in; asserts the query that went over the wire."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from http_client import post
from standins import ExactagStandIn

KEY = "dk_fields_e2e"
CODE = "Fi3ld+S0urc3s/CampaignCode0000=="
EMAIL = "Jane.Doe@Example.com"


@pytest.fixture
def exactag() -> Iterator[ExactagStandIn]:
    with ExactagStandIn(valid_codes=[CODE]).running_in_thread() as stand_in:
        yield stand_in


def test_the_vendor_receives_the_overridden_query(serve: Any, exactag: ExactagStandIn) -> None:
    server = serve({
        "sources": [{"id": "web", "key": KEY}],
        "integrations": [{
            "id": "exactag-fields",
            "vendor": "exactag",
            "settings": {"campaign_code": CODE},
            "endpoint": exactag.url,
            "consent": ["marketing"],
            "fields": {
                "uk": "context.traits.email_sha256",  # a hashed Exactag user id instead of the first-party key
                "euk": None,
                "totalprice": "properties.total",
                "level": "=web",
                "params.currency": "properties.currency",
                "customerid": "properties.no_such_property",  # absent: not sent
            },
        }],
        "delivery": {"initial_backoff": "100ms", "timeout": "2s"},
    })
    context = {"page": {"url": "https://shop.example/checkout/done"}, "ip": "203.0.113.50", "userAgent": "UA/1",
               "consent": {"canonical": {"marketing": True}}}
    batch = [
        {"type": "identify", "userId": "user-123", "traits": {"email": EMAIL}, "anonymousId": "visitor-f1",
         "context": context},
        {"type": "track", "event": "Order Completed", "anonymousId": "visitor-f1", "context": context,
         "properties": {"order_id": "ORD-F1", "revenue": 129.99, "total": 142.5, "currency": "EUR",
                        "affiliation": "app"}},
    ]
    answer = post(f"{server.url}/v1/batch?key={KEY}",
                  {"batch": [{"messageId": uuid.uuid4().hex, **e} for e in batch]})
    assert answer.status == 200, answer.body
    deadline = time.monotonic() + 10
    while not exactag.hits() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    assert [r.status for r in exactag.requests] == [200]
    query = exactag.hits()[0].query
    assert query.pop("sessionid")
    assert query == {
        "campaign": CODE,
        "version": "1.0",
        "sitegroup": "conversion",
        "uk": hashlib.sha256(EMAIL.strip().lower().encode()).hexdigest(),
        "sescount": "1",
        "sesevent": "0",
        "referrer": "https://shop.example/checkout/done",
        "orderid": "ORD-F1",
        "totalprice": "142.5",
        "level": "web",
        "params": orjson.dumps({"currency": "EUR"}).decode(),
        "optout": "0",
    }
    assert EMAIL.lower() not in exactag.requests[0].query_string.lower()
