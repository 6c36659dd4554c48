"""Helpers of the fault tests: a config for many processes, a client that keeps sending, a vendor
stand-in that only counts what it could answer."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from e2e_support import wait_until
from standins import RecordedRequest, WebhookStandIn

KEY = "dk_test_scaled"


def cluster_config(urls: dict[str, str], hook_url: str, batch_size: int = 10) -> dict[str, Any]:
    return {
        "sources": [{"id": "web", "key": KEY}],
        "integrations": [
            {
                "id": "hook",
                "vendor": "webhook",
                "preset": "all",
                "settings": {"url": hook_url, "batch_size": batch_size},
            }
        ],
        "delivery": {"timeout": "1s", "initial_backoff": "200ms", "max_backoff": "1s"},
        **urls,
    }


class AnsweringWebhook(WebhookStandIn):
    """A webhook that takes ``hold`` seconds to answer and, like a transactional API, keeps a
    request only if its client is still connected to read the answer."""

    def __init__(self, hold: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hold = hold

    async def answer(self, request: web.Request, record: RecordedRequest) -> web.Response:
        if self.hold:
            await asyncio.sleep(self.hold)
        transport = request.transport
        if transport is None or transport.is_closing():
            return web.Response(status=499, text="client went away")
        return await super().answer(request, record)

    def delivered(self) -> list[str]:
        return [str(e["messageId"]) for e in self.events()]


def make_events(count: int, prefix: str = "") -> list[dict[str, Any]]:
    tag = prefix or uuid.uuid4().hex[:8]
    return [
        {
            "type": "track",
            "event": "Order Completed",
            "messageId": f"{tag}-{i}",
            "anonymousId": f"visitor-{i % 97}",
            "properties": {"order_id": f"{tag}-{i}"},
        }
        for i in range(count)
    ]


def post_batch(url: str, events: list[dict[str, Any]], timeout: float = 10) -> int:
    body = orjson.dumps({"batch": events, "writeKey": KEY})
    request = urllib.request.Request(
        url + "/v1/batch", data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


class Sender(threading.Thread):
    """Sends ``events`` in batches to the gateways (round robin), each batch until it is answered 200."""

    def __init__(
        self, urls: list[str], events: list[dict[str, Any]], batch: int = 25, pause: float = 0.0
    ) -> None:
        super().__init__(daemon=True)
        self.urls = urls
        self.events = events
        self.batch = batch
        self.pause = pause
        self.statuses: list[int] = []
        self.accepted: list[str] = []
        self.error: str | None = None

    def run(self) -> None:
        turn = 0
        for start in range(0, len(self.events), self.batch):
            chunk = self.events[start : start + self.batch]
            deadline = time.monotonic() + 60
            while True:
                status = post_batch(self.urls[turn % len(self.urls)], chunk)
                turn += 1
                self.statuses.append(status)
                if status == 200:
                    self.accepted.extend(e["messageId"] for e in chunk)
                    break
                if time.monotonic() > deadline:
                    self.error = f"batch at {start} never accepted (last status {status})"
                    return
                time.sleep(0.2)
            if self.pause:
                time.sleep(self.pause)




def assert_exactly_once(
    hook: AnsweringWebhook, sent: list[str], timeout: float, logs: Callable[[], str]
) -> None:
    expected = set(sent)
    try:
        wait_until(lambda: expected <= set(hook.delivered()), timeout, "every accepted event to be delivered")
    except AssertionError:
        missing = expected - set(hook.delivered())
        raise AssertionError(
            f"{len(missing)} of {len(expected)} events not delivered\n{logs()[-6000:]}"
        ) from None
    time.sleep(1.0)  # anything delivered twice would arrive now
    assert hook.duplicates() == {}, f"delivered twice: {list(hook.duplicates())[:10]}"
    assert set(hook.delivered()) == expected
