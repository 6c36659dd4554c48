"""The delivery worker's pipeline on the embedded store: stopping mid-stream or a destination's bug
loses nothing."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import orjson

from datafly.config import DeliveryConfig, Integration
from datafly.delivery.http import VendorClient
from datafly.delivery.worker import IntegrationWorker
from datafly.destinations.base import (
    Formatted,
    Item,
    ItemOutcome,
    OutboundRequest,
    Settings,
    Skip,
    VendorResponse,
)
from datafly.destinations.registry import get_destination
from datafly.destinations.webhook.destination import WebhookDestination
from datafly.observe import DebugBus, Metrics
from datafly.store.embedded import EmbeddedBackend
from datafly.store.records import InboundEvent, NewDelivery
from standins import WebhookStandIn


async def queue(backend: EmbeddedBackend, integration: str, count: int, names: list[str] | None = None) -> list[str]:
    ids = [uuid.uuid4().hex for _ in range(count)]
    deliveries = [
        NewDelivery(
            integration, mid, "track", False, orjson.dumps({"type": "track", "event": name, "messageId": mid})
        )
        for mid, name in zip(ids, names or ["E"] * count, strict=True)
    ]
    await backend.commit_processed([InboundEvent(0, {})], [], [], deliveries, [])
    return ids


async def test_stopping_releases_what_was_leased_and_not_sent(tmp_path: Path) -> None:
    hook = await WebhookStandIn(delay=0.2).start()
    backend = EmbeddedBackend(str(tmp_path / "home"))
    await backend.start()
    try:
        integration = Integration("hook", "webhook", "all", {"url": hook.url, "batch_size": 50})
        destination = get_destination("webhook")
        assert destination is not None
        ids = await queue(backend, "hook", 1000)  # more than a lease (400) and a buffer ahead
        client = VendorClient(4)
        worker = IntegrationWorker(
            integration, destination, backend, DeliveryConfig(concurrency=4), client, Metrics(), DebugBus()
        )
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        deadline = time.monotonic() + 10
        while not hook.requests and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(task, 10)
        await client.close()

        delivered = [e["messageId"] for e in hook.events()]
        left = await backend.lease("hook", 1000, time.time(), 30)  # released items are due at once
        assert delivered, "the worker sent nothing before it was stopped"
        assert sorted(delivered + [i.message_id for i in left]) == sorted(ids)  # each exactly once
        assert all(i.attempts == 0 for i in left)  # a release is not an attempt
        # (items leased into the buffer and not sent would stay leased for 30+ s if not released)
        assert len(left) > 400
        log = await backend.delivery_log("hook", limit=1000)
        assert sorted(m for row in log for m in row["message_ids"]) == sorted(delivered)
    finally:
        await backend.close()
        await hook.stop()


SECRET = "hmac-secret-0123456789"


class FaultyWebhook(WebhookDestination):
    """A destination with bugs: formatting fails on one event, classifying on another."""

    def format_item(self, item: Item, settings: Settings) -> Formatted | Skip:
        if item.event.get("event") == "BadFormat":
            raise RuntimeError(f"formatter bug, quoting {settings['secret']}")
        return super().format_item(item, settings)

    def classify(self, request: OutboundRequest, response: VendorResponse) -> dict[str, ItemOutcome]:
        if request.body and b"BadClassify" in request.body:
            raise RuntimeError("classifier bug")
        return super().classify(request, response)


async def test_a_destination_bug_loses_nothing_and_blocks_nothing(tmp_path: Path) -> None:
    hook = await WebhookStandIn().start()
    backend = EmbeddedBackend(str(tmp_path / "home"))
    await backend.start()
    try:
        integration = Integration("hook", "webhook", "all", {"url": hook.url, "secret": SECRET})
        names = ["Good", "BadFormat", "Good", "BadClassify", "Good"]
        ids = await queue(backend, "hook", len(names), names)
        client = VendorClient(8)
        worker = IntegrationWorker(
            integration, FaultyWebhook(), backend, DeliveryConfig(concurrency=8), client, Metrics(), DebugBus()
        )
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the three good ones done, the two others decided
            dead = await backend.dead_letters("hook")
            retried = await backend.db.read(lambda c: c.execute("SELECT message_id, attempts, last_error FROM queue WHERE attempts > 0").fetchall())
            if len(dead) == 1 and len(retried) == 1 and len(hook.events()) >= 4:
                break
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(task, 10)
        await client.close()

        assert sorted(e["messageId"] for e in hook.events()) == sorted([ids[0], ids[2], ids[3], ids[4]])
        (letter,) = dead
        assert letter["message_id"] == ids[1] and letter["outcome"] == "skipped"
        assert letter["reason"].startswith("could not format the event: RuntimeError: formatter bug, quoting ")
        assert SECRET not in letter["reason"]  # masked, like every reason stored
        ((message_id, attempts, error),) = retried  # sent, but its answer could not be read: tried again
        assert (message_id, attempts) == (ids[3], 1)
        assert error == "delivery failed: RuntimeError: classifier bug"
        left = await backend.db.read(lambda c: c.execute("SELECT message_id FROM queue").fetchall())
        assert left == [(ids[3],)]  # the good ones and the skipped one left the queue
    finally:
        await backend.close()
        await hook.stop()
