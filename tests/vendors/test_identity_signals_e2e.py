"""The ids the ad platforms match on, through a real ``datafly serve`` to the webhook stand-in: a
landing page's click ids and the site's vendor cookies reach a later order that carries none of
them, with the same generated _fbp and the _fbc built from the fbclid; the gateway refuses
cookies and click ids that are not objects, naming the key."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from http_client import post
from standins import WebhookStandIn

KEY = "dk_identity_signals"


@pytest.fixture
def hook() -> Iterator[WebhookStandIn]:
    with WebhookStandIn().running_in_thread() as stand_in:
        yield stand_in


@pytest.fixture
def server(serve: Any, hook: WebhookStandIn) -> Any:
    return serve(
        {
            "sources": [{"id": "web", "key": KEY}],
            "integrations": [
                {"id": "hook", "vendor": "webhook", "preset": "all", "settings": {"url": hook.url}}
            ],
            "delivery": {"initial_backoff": "100ms", "timeout": "2s"},
        }
    )


def send(server: Any, event: dict[str, Any]) -> str:
    message_id = uuid.uuid4().hex
    answer = post(f"{server.url}/v1/batch?key={KEY}", {"batch": [{"messageId": message_id, **event}]})
    assert answer.status == 200, answer.body
    return message_id


def delivered(hook: WebhookStandIn, message_id: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        for event in hook.events():
            if event.get("messageId") == message_id:
                return dict(event)
        assert time.monotonic() < deadline, f"event {message_id} not delivered"
        time.sleep(0.05)


def test_a_later_order_carries_the_landings_click_ids_and_cookies(server: Any, hook: WebhookStandIn) -> None:
    landed = int(time.time() - 120)  # two minutes ago, in whole seconds
    landing_url = (
        "https://shop.example/landing?utm_source=ads&fbclid=IwAR-e2e-1&gclid=Cj0-e2e-2"
        "&ttclid=E.C.P.e2e-3&msclkid=ms-e2e-4"
    )
    visitor = {"anonymousId": "visitor-signals-1"}
    landing_id = send(
        server,
        {
            "type": "page",
            "timestamp": datetime.fromtimestamp(landed, UTC).isoformat(),
            "context": {
                "page": {"url": landing_url, "search": landing_url.split("landing", 1)[1]},
                "cookies": {
                    "_ga": "GA1.1.1234567890.1700000000",
                    "_ttp": "ttp-e2e",
                    "session_secret": "nope",
                },
            },
            **visitor,
        },
    )
    landing = delivered(hook, landing_id)
    order_id = send(
        server,
        {
            "type": "track",
            "event": "Order Completed",
            "properties": {"order_id": "o-signals-1", "revenue": 42.0, "currency": "EUR"},
            "context": {"page": {"url": "https://shop.example/checkout/done"}},
            **visitor,
        },
    )
    order = delivered(hook, order_id)

    click_ids = {"fbclid": "IwAR-e2e-1", "gclid": "Cj0-e2e-2", "ttclid": "E.C.P.e2e-3", "msclkid": "ms-e2e-4"}
    at = {name: landed * 1000 for name in click_ids}
    for event in (landing, order):
        context = event["context"]
        assert context["clickIds"] == click_ids
        assert context["clickIdsAt"] == at
        fbp = context["cookies"]["_fbp"]
        assert re.fullmatch(rf"fb\.1\.{landed * 1000}\.\d{{10}}", fbp), fbp
        assert context["cookies"] == {
            "_ga": "GA1.1.1234567890.1700000000",
            "_ttp": "ttp-e2e",
            "_fbp": fbp,
            "_fbc": f"fb.1.{landed * 1000}.IwAR-e2e-1",
        }
    assert order["context"]["cookies"]["_fbp"] == landing["context"]["cookies"]["_fbp"]
    assert "nope" not in str(landing) + str(order)

    # another visitor gets its own _fbp, and no _fbc without an fbclid
    other = delivered(hook, send(server, {"type": "track", "event": "A", "anonymousId": "visitor-signals-2"}))
    assert other["context"]["cookies"]["_fbp"] != landing["context"]["cookies"]["_fbp"]
    assert set(other["context"]["cookies"]) == {"_fbp"} and "clickIds" not in other["context"]


def test_the_gateway_refuses_cookies_or_click_ids_that_are_not_objects(server: Any) -> None:
    for key in ("cookies", "clickIds", "click_ids"):
        answer = post(
            f"{server.url}/v1/t?key={KEY}", {"type": "track", "event": "A", "context": {key: "_fbp=1"}}
        )
        assert answer.status == 400, key
        assert f"context.{key} must be an object" in answer.json()["error"]
