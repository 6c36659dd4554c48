"""The delivery worker's pipeline on the embedded store: stopping mid-stream or a destination's bug
loses nothing."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from datafly.config import DeliveryConfig, Integration
from datafly.delivery.http import VendorClient
from datafly.delivery.worker import IntegrationWorker
from datafly.destinations.base import (
    Formatted,
    Item,
    ItemOutcome,
    OutboundRequest,
    Outcome,
    Settings,
    Skip,
    VendorResponse,
)
from datafly.destinations.registry import get_destination
from datafly.destinations.webhook.destination import WebhookDestination
from datafly.observe import DebugBus, Metrics
from datafly.store.embedded.backend import EmbeddedBackend
from datafly.store.records import InboundEvent, NewDelivery
from standins import RecordedRequest, WebhookStandIn


async def queue(backend: EmbeddedBackend, integration: str, count: int, names: list[str] | None = None) -> list[str]:
    ids = [uuid.uuid4().hex for _ in range(count)]
    deliveries = [
        NewDelivery(
            integration, mid, "track", False, orjson.dumps({"type": "track", "event": name, "messageId": mid})
        )
        for mid, name in zip(ids, names or ["E"] * count, strict=True)
    ]
    await backend.commit_processed([InboundEvent(0, b"")], [], [], deliveries, [])
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
        await asyncio.wait_for(worker.run(asyncio.Event(), burst=True), 10)  # what is due now, then return
        await client.close()
        dead = await backend.dead_letters("hook")
        retried = await backend.db.read(lambda c: c.execute("SELECT message_id, attempts, last_error FROM queue WHERE attempts > 0").fetchall())

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
        log = {row["message_ids"][0]: row for row in await backend.delivery_log("hook")}
        assert {m: log[m]["outcome"] for m in ids} == {  # every attempt and skip has its row
            ids[0]: "done", ids[1]: "skipped", ids[2]: "done", ids[3]: "retry", ids[4]: "done"
        }
        assert log[ids[1]]["reason"] == letter["reason"]
        assert (log[ids[3]]["reason"], log[ids[3]]["status"]) == ("delivery failed: RuntimeError: classifier bug", 200)
    finally:
        await backend.close()
        await hook.stop()


class CarelessWebhook(WebhookDestination):
    """A destination that copies an event value into a header unchecked (the client must refuse what
    cannot be sent) and cannot build the request of one event."""

    def build_requests(
        self, formatted: Sequence[Formatted], settings: Settings, endpoint: str
    ) -> list[OutboundRequest]:
        if any(f.payload.get("event") == "BadBuild" for f in formatted):
            raise RuntimeError(f"builder bug, quoting {settings['secret']}")
        requests = super().build_requests(formatted, settings, endpoint)
        return [
            replace(r, headers={**r.headers, "X-Visitor-UA": str(f.payload.get("ua", "-"))})
            for r, f in zip(requests, formatted, strict=True)
        ]


class BuggyClient(VendorClient):
    """Raises (a bug, not an answer) for the requests whose body names ``ClientBug``."""

    async def send(self, request: OutboundRequest, timeout: float) -> VendorResponse:
        if request.body and b"ClientBug" in request.body:
            raise RuntimeError("client bug")
        return await super().send(request, timeout)


async def queue_events(backend: EmbeddedBackend, integration: str, events: list[dict[str, Any]]) -> list[str]:
    ids = [uuid.uuid4().hex for _ in events]
    deliveries = [
        NewDelivery(integration, mid, "track", False, orjson.dumps({"type": "track", "messageId": mid, **event}))
        for mid, event in zip(ids, events, strict=True)
    ]
    await backend.commit_processed([InboundEvent(0, b"")], [], [], deliveries, [])
    return ids


async def run_until(worker: IntegrationWorker, done: Callable[[], Awaitable[bool]]) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not await done():
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, 10)


async def test_every_attempt_has_a_log_row_and_every_item_a_typed_outcome(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A request the client refuses is rejected at once; one that cannot be built is skipped alone
    (its batch goes on without it); a client that raises is retried up to max_attempts; each of
    those attempts has a delivery-log row with the error, like the vendor's answers."""
    hook = await WebhookStandIn().start()
    backend = EmbeddedBackend(str(tmp_path / "home"))
    await backend.start()
    try:
        integration = Integration("hook", "webhook", "all", {"url": hook.url, "secret": SECRET})
        events: list[dict[str, Any]] = [
            {"event": "Good", "ua": "Mozilla/5.0"},
            {"event": "Inject", "ua": "Mozilla/5.0\r\nX-Injected: 1"},
            {"event": "BadBuild"},
            {"event": "ClientBug"},
            {"event": "Good", "ua": "Mozilla/5.0 (2)"},
        ]
        ids = await queue_events(backend, "hook", events)
        good, inject, bad_build, client_bug, good2 = ids
        client = BuggyClient(4)
        config = DeliveryConfig(concurrency=4, max_attempts=2, initial_backoff=0.05, max_backoff=0.1)
        worker = IntegrationWorker(integration, CarelessWebhook(), backend, config, client, Metrics(), DebugBus())

        async def decided() -> bool:
            return len(await backend.dead_letters("hook")) == 3

        await run_until(worker, decided)
        await client.close()

        assert sorted(e["messageId"] for e in hook.events()) == sorted([good, good2])
        assert [r.header("X-Injected") for r in hook.requests] == [None, None]
        letters = {d["message_id"]: d for d in await backend.dead_letters("hook")}
        assert {m: (d["outcome"], d["attempts"]) for m, d in letters.items()} == {
            inject: ("rejected", 1),
            bad_build: ("skipped", 0),
            client_bug: ("retry", 2),
        }
        assert letters[inject]["reason"] == (
            "not sent: the request cannot be encoded: header 'X-Visitor-UA' holds a line break, NUL or "
            "another control character"
        )
        assert letters[inject]["last_request"]  # the request, masked, for the user to see
        assert letters[bad_build]["reason"].startswith("could not build the request: RuntimeError: builder bug")
        assert SECRET not in letters[bad_build]["reason"]
        assert "builder bug, quoting hmac****" in caplog.text and SECRET not in caplog.text  # the server log too
        assert letters[client_bug]["reason"] == "gave up after 2 attempts: delivery failed: RuntimeError: client bug"

        log = await backend.delivery_log("hook", limit=100)
        rows: dict[str, list[tuple[str, int | None, int]]] = {}
        for row in sorted(log, key=lambda r: r["id"]):
            assert len(row["message_ids"]) == 1  # (batch_size 1: a request per event)
            rows.setdefault(row["message_ids"][0], []).append((row["outcome"], row["status"], row["attempt"]))
        assert rows == {
            good: [("done", 200, 1)],
            good2: [("done", 200, 1)],
            inject: [("rejected", None, 1)],
            bad_build: [("skipped", None, 0)],
            client_bug: [("retry", None, 1), ("retry", None, 2)],
        }
        by_message = {row["message_ids"][0]: row for row in log}
        assert "line break" in by_message[inject]["reason"]
        assert by_message[inject]["response"].startswith("not sent: UnsendableRequest: header 'X-Visitor-UA'")
        assert by_message[inject]["request"]["headers"]["X-Visitor-UA"] == "Mozilla/5.0\r\nX-Injected: 1"
        assert by_message[client_bug]["reason"] == "delivery failed: RuntimeError: client bug"
        assert await backend.db.read(lambda c: c.execute("SELECT count(*) FROM queue").fetchall()) == [(0,)]
    finally:
        await backend.close()
        await hook.stop()


class AllOrNothingHook(WebhookStandIn):
    """Refuses a whole batch (400, naming the first bad event) when one of its events is ``Bad``,
    as Meta does."""

    async def answer(self, request: web.Request, record: RecordedRequest) -> web.Response:
        bad = [e["messageId"] for e in record.json()["batch"] if e.get("event") == "Bad"]
        if bad:
            return web.Response(status=400, text=f"invalid event {bad[0]}")
        return await super().answer(request, record)


class AllOrNothingWebhook(WebhookDestination):
    """A webhook whose 400 means that some event of the batch is invalid: ``Outcome.SPLIT``."""

    def classify(self, request: OutboundRequest, response: VendorResponse) -> dict[str, ItemOutcome]:
        if response.status == 400:
            return {i: ItemOutcome(Outcome.SPLIT, response.body.decode()) for i in request.item_ids}
        return super().classify(request, response)


async def test_a_batch_refused_for_some_of_its_events_is_halved_until_they_are_alone(tmp_path: Path) -> None:
    """SPLIT: the batch is sent again in halves (ceil, floor), and so on; a bad event alone is
    rejected with the vendor's reason, every other one is delivered once, and a split is no attempt."""
    hook = await AllOrNothingHook().start()
    backend = EmbeddedBackend(str(tmp_path / "home"))
    await backend.start()
    try:
        integration = Integration("hook", "webhook", "all", {"url": hook.url, "batch_size": 10})
        names = ["Good"] * 10
        names[3] = names[7] = "Bad"
        ids = await queue(backend, "hook", len(names), names)
        bad, good = {ids[3], ids[7]}, set(ids) - {ids[3], ids[7]}
        client = VendorClient(4)
        config = DeliveryConfig(concurrency=4)
        worker = IntegrationWorker(integration, AllOrNothingWebhook(), backend, config, client, Metrics(), DebugBus())

        async def decided() -> bool:
            return len(await backend.dead_letters("hook")) == 2 and len(hook.events()) == 8

        await run_until(worker, decided)
        await client.close()

        # 10 -> 5 + 5 -> (3 + 2) + (3 + 2) -> the 2 holding item 3 and the 3 holding item 7 again
        sent = sorted(tuple(e["messageId"] for e in r.json()["batch"]) for r in hook.requests)
        halves = [ids, ids[:5], ids[5:], ids[:3], ids[3:5], ids[5:8], ids[8:], ids[3:4], ids[4:5], ids[5:7], ids[7:8]]
        assert sent == sorted(tuple(h) for h in halves)
        assert hook.count_by_message_id() == dict.fromkeys(good, 1)
        letters = {d["message_id"]: d for d in await backend.dead_letters("hook")}
        assert {m: (d["outcome"], d["attempts"], d["reason"]) for m, d in letters.items()} == {
            m: ("rejected", 1, f"invalid event {m}") for m in bad
        }
        assert await backend.db.read(lambda c: c.execute("SELECT count(*) FROM queue").fetchall()) == [(0,)]
        log = await backend.delivery_log("hook", limit=100)
        assert len(log) == len(hook.requests)  # a row for every request, split ones included
        rows = sorted((len(row["message_ids"]), row["outcome"], row["status"], row["attempt"]) for row in log)
        assert rows == sorted(
            [(10, "split", 400, 1), (5, "split", 400, 1), (5, "split", 400, 1), (2, "split", 400, 1),
             (3, "split", 400, 1), (3, "done", 200, 1), (2, "done", 200, 1), (1, "done", 200, 1),
             (2, "done", 200, 1), (1, "rejected", 400, 1), (1, "rejected", 400, 1)]
        )  # fmt: skip
    finally:
        await backend.close()
        await hook.stop()
