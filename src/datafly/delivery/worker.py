"""The delivery worker of one integration: lease, format, send, classify, settle.

Each integration has its own worker and its own queue, so one vendor that is slow or down
never delays another. Delivery is at-least-once: an item leaves the queue only after the
vendor's answer was classified and that decision was stored.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson

from datafly.config import DeliveryConfig, Integration
from datafly.delivery.http import UnsendableRequest, VendorClient
from datafly.delivery.settle import (
    Answer,
    Settlement,
    conclude,
    decide,
    excerpt,
    masked_json,
)
from datafly.delivery.tokens import NoAccessToken, TokenCache, TokenRefused
from datafly.destinations.base import (
    ACCESS_TOKEN_KEY,
    Destination,
    Formatted,
    Item,
    ItemOutcome,
    OutboundRequest,
    Outcome,
    Skip,
    VendorResponse,
    mask_text,
)
from datafly.observe import DebugBus, Metrics
from datafly.outcomes import LogOutcome
from datafly.processing.timestamps import parse_ts
from datafly.store.base import Backend
from datafly.store.records import DeadLetter, LogRow, QueuedItem, Retry

log = logging.getLogger("datafly.delivery")
_PREPARE_PART = 32  # events formatted in one pass before the lanes get a turn


@dataclass(slots=True)
class Unit:
    """Leased items formatted into the request(s) that carry them, waiting for a lane."""

    items: list[QueuedItem]
    requests: list[OutboundRequest]
    received: dict[str, float | None]  # item id -> when the gateway received the event (latency metric)
    # a vendor with an access token: what the requests were built from and with (renewal on a 401)
    formatted: list[Formatted] | None = None
    token: str = ""


class IntegrationWorker:
    """Delivers one integration's queue as a pipeline of three stages that never wait on each other:

    - a *feeder* leases due items, decodes and formats them in passes of 32 (or one batch) into
      units (one request each for a one-event-per-request vendor, batches of up to ``max_batch``), and keeps
      the buffer of units about half a lease ahead of the lanes (never more than two leases
      unsettled);
    - *lanes* only send: each takes the next unit, sends its request(s) and hands the answers over;
    - a *settler* classifies every answer that came in while its previous commit ran, in one pass,
      and stores the decisions in one ``settle`` (group commit: a slow disk makes commits bigger,
      not fewer requests). The items of a request refused for some of them (``Outcome.SPLIT``) are
      not decided: they go back to the front of the buffer in two halves, until the bad ones are alone.

    Formatting and classifying in passes over many items, away from the HTTP client's callbacks, is
    what makes the worker cheap per event (the same Python costs 2-3x more when it runs a piece at
    a time between sends). Requests stay in flight while storage works, as in a plain HTTP client
    loop. An item leaves the queue only once its decision is stored; a process that dies first
    leaves its leases to expire and the items are sent again (at-least-once).
    """

    def __init__(
        self,
        integration: Integration,
        destination: Destination,
        backend: Backend,
        config: DeliveryConfig,
        client: VendorClient,
        metrics: Metrics,
        bus: DebugBus,
        settings: Callable[[Integration], dict[str, Any]] | None = None,
    ) -> None:
        self.integration = integration
        self.destination = destination
        self.backend = backend
        self.config = config
        self.client = client
        self.metrics = metrics
        self.bus = bus
        self._settings = settings or (lambda i: {**i.settings, "preset": i.preset})
        self.channel = f"queue:{integration.id}"
        batch = destination.max_batch
        # A lease is a round trip through the storage writer (it waits behind commits: ~15 ms here),
        # so for one-event-per-request vendors a lease covers 4 requests per lane: with 2 per lane
        # the lanes ran dry while the next lease was on its way (bench/README.md).
        self.lease_size = batch * 4 if batch > 1 else max(16, config.concurrency * 4)
        self.lease_for = config.timeout * 3 + 30
        self._limit = asyncio.Semaphore(config.concurrency)
        self._outcome_counters: dict[str, Any] = {}
        self._latency = metrics.latency.labels(integration.id)
        self._context: tuple[dict[str, Any], list[str], str] | None = None
        # the pipeline's state (see run)
        self._buffer: deque[Unit] = deque()
        self._buffered = 0  # items in the buffer's units
        self._answers: list[tuple[Unit, list[Answer] | Exception]] = []  # lanes -> settler
        self._held = 0  # leased and not settled yet: in the buffer, in flight, or waiting for the settler
        self._pending = Settlement([], [], [], [])
        self._items_ready = asyncio.Event()  # feeder -> lanes
        self._room = asyncio.Event()  # lanes and settler -> feeder
        self._settle_ready = asyncio.Event()  # lanes -> settler
        self._feeding = False
        self._closing = False
        self._tokens: TokenCache | None = None  # a vendor with an access token (see _authorize)
        self._tokens_checked = False
        self._recent_tokens: deque[str] = deque()

    @property
    def lanes(self) -> int:
        """Requests in flight at once: one lane per request for a one-event-per-request vendor, a few
        batches for a batching one (each lane may still send several requests of a batch)."""
        if self.destination.max_batch == 1:
            return max(1, self.config.concurrency)
        return max(1, min(self.config.concurrency, 4))

    async def run(self, stop: asyncio.Event, burst: bool = False) -> None:
        """Deliver until ``stop`` is set; then release what was leased and not sent, and store every
        decision taken. ``burst``: deliver what is due now, then return (tests, a drain: no wall
        clock to poll; retries due later stay queued)."""
        self._feeding, self._closing = True, False
        settler = asyncio.create_task(self._settler())
        lanes = [asyncio.create_task(self._lane(stop)) for _ in range(self.lanes)]
        watcher = asyncio.create_task(self._wake_on(stop))
        try:
            await (self._drain(stop) if burst else self._feed(stop))
        finally:
            watcher.cancel()
            self._feeding = False
            self._items_ready.set()
            await asyncio.gather(*lanes, return_exceptions=True)
            if self._buffer:  # leased, never sent: due again now, attempts unchanged
                now = time.time()
                unsent = [Retry(i.id, now, i.attempts, "") for unit in self._buffer for i in unit.items]
                self._add(Settlement([], unsent, [], []))
                self._buffer.clear()
                self._buffered = 0
            self._closing = True
            self._settle_ready.set()
            await settler

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._room.set()
        self._items_ready.set()
        self.backend.notify(self.channel)

    # the feeder -------------------------------------------------------------------------------------
    async def _feed(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if not self._has_room():
                self._room.clear()
                await self._room.wait()
                continue
            try:
                items = await self._lease_due(stop)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivery worker %s could not lease; retrying in 1s", self.integration.id)
                await asyncio.sleep(1.0)
                continue
            if items:
                self._held += len(items)
                await self._prepare_in_parts(items)
            del items  # not held while the next lease waits

    async def _drain(self, stop: asyncio.Event) -> None:
        """The feeder of a burst: lease what is due now until nothing is, and nothing is in flight."""
        iid = self.integration.id
        while not stop.is_set():
            if self._held or self._buffer:  # in flight: settled (or split into halves) soon
                await asyncio.sleep(0.005)
                continue
            due = await self.backend.next_due(iid)
            if due is None or due > time.time():
                return
            items = await self.backend.lease(iid, self.lease_size, time.time(), self.lease_for)
            if items:
                self._held += len(items)
                await self._prepare_in_parts(items)
            del items

    def _has_room(self) -> bool:
        # Lease again when half a lease is left and at most two are out: enough to keep every lane
        # busy, not so much that one of several delivery processes takes everything (scale-out).
        return self._buffered < max(1, self.lease_size // 2) and self._held < 2 * self.lease_size

    def _wake_feeder(self) -> None:
        if not self._room.is_set() and self._has_room():  # only when it can lease again
            self._room.set()

    async def _lease_due(self, stop: asyncio.Event) -> list[QueuedItem]:
        """The next due items, or nothing after waiting for some (or for a fuller batch)."""
        iid = self.integration.id
        now = time.time()
        due = await self.backend.next_due(iid)
        if due is None or due > now:
            wait = 5.0 if due is None else min(5.0, due - now)
            await self._wait(stop, wait)
            return []
        dest = self.destination
        if dest.max_batch > 1 and dest.max_wait > 0 and due + dest.max_wait > now and not self._buffered:
            ready = await self.backend.ready_count(iid, now, dest.max_batch)
            if ready < dest.max_batch:
                await self._wait(stop, due + dest.max_wait - now)
                if time.time() < due + dest.max_wait:
                    return []
        return await self.backend.lease(iid, self.lease_size, time.time(), self.lease_for)

    async def _wait(self, stop: asyncio.Event, timeout: float) -> None:
        if not stop.is_set():
            await self.backend.wait(self.channel, timeout)

    # the lanes ----------------------------------------------------------------------------------------
    async def _lane(self, stop: asyncio.Event) -> None:
        buffer = self._buffer
        one_per_lane = self.destination.max_batch == 1  # see lanes
        while not stop.is_set():
            if not buffer:
                if not self._feeding:
                    return
                self._items_ready.clear()
                await self._items_ready.wait()
                continue
            unit = buffer.popleft()
            self._buffered -= len(unit.items)
            self._wake_feeder()
            answers: list[Answer] | Exception
            try:
                if one_per_lane:  # a lane per request in flight: the lanes are the concurrency limit
                    answers = [await self._attempt(r) for r in unit.requests]
                elif len(unit.requests) == 1:
                    answers = [await self._send(unit.requests[0])]
                else:
                    answers = list(await asyncio.gather(*(self._send(r) for r in unit.requests)))
                if unit.formatted is not None:
                    answers = await self._renew_on_401(unit, answers, one_per_lane)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug must neither lose the items nor loop on them forever
                self._log_bug("delivery worker failed", exc)
                answers = exc
            self._answers.append((unit, answers))
            self._settle_ready.set()
            del unit, answers  # a lane waiting for work holds no request (a batch body: megabytes)

    async def _attempt(self, request: OutboundRequest) -> Answer:
        """Send one request; what it raises (it could not be encoded, a client bug) is its answer,
        so the other requests of its unit keep theirs and the attempt is logged like any other."""
        try:
            return await self.client.send(request, self.config.timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not isinstance(exc, UnsendableRequest):
                self._log_bug("could not send a request", exc)
            return exc

    def _failed(self, items: Sequence[QueuedItem], exc: Exception, into: Settlement) -> None:
        """A bug took the items' answers away (no answer to classify): they are tried again, and
        the attempt has its log row."""
        _, secrets, _ = self._context or self._resolve_context()  # the text may quote a request
        reason = mask_text(f"delivery failed: {type(exc).__name__}: {exc}", secrets)
        outcome = ItemOutcome(Outcome.RETRY, reason)
        now = time.time()
        summary = decide(items, "", {i.id: outcome for i in items}, self.config, now, into)
        into.log.append(
            LogRow(
                at=now,
                integration_id=self.integration.id,
                message_ids=tuple(i.message_id for i in items),
                outcome=summary,
                reason=reason[:1000],
                attempt=max((i.attempts for i in items), default=0) + 1,
            )
        )

    # the settler ----------------------------------------------------------------------------------------
    def _add(self, settlement: Settlement) -> None:
        pending = self._pending
        pending.done.extend(settlement.done)
        pending.retries.extend(settlement.retries)
        pending.dead.extend(settlement.dead)
        pending.log.extend(settlement.log)
        self._settle_ready.set()

    async def _settler(self) -> None:
        iid = self.integration.id
        while True:
            await self._settle_ready.wait()
            self._settle_ready.clear()
            batch, self._pending = self._pending, Settlement([], [], [], [])
            answers, self._answers = self._answers, []
            self._conclude_all(answers, batch)
            count = len(batch.done) + len(batch.retries) + len(batch.dead)
            while count or batch.log:
                try:
                    await self.backend.settle(iid, batch.done, batch.retries, batch.dead, batch.log)
                    break
                except Exception:  # storage is down: keep the decisions and try again
                    log.exception("delivery worker %s could not store its results; retrying in 1s", iid)
                    await asyncio.sleep(1.0)
            if count:
                self._held -= count
                self._wake_feeder()
            if batch.retries:  # back in the queue, due soon: the feeder may be waiting for a later time
                self.backend.notify(self.channel)
            del batch, answers  # nothing of a settled lease stays in memory while the settler waits
            if self._closing and not self._settle_ready.is_set():
                return

    # formatting and classifying, a pass over many items at a time ----------------------------------------
    async def _prepare_in_parts(self, items: list[QueuedItem]) -> None:
        """Format a lease into the buffer a part at a time, letting the lanes start on the first part
        while the rest is formatted (a lease of Rokt conversions is ~15 ms of formatting)."""
        part = max(self.destination.max_batch, _PREPARE_PART)
        for start in range(0, len(items), part):
            if start:
                await asyncio.sleep(0)
            if not await self._authorize(items[start : start + part]):
                continue
            units = self._prepare(items[start : start + part])
            self._buffer.extend(units)
            self._buffered += sum(len(u.items) for u in units)
            if units:
                self._items_ready.set()

    def _prepare(self, items: Sequence[QueuedItem]) -> list[Unit]:
        """Decode and format leased items into units ready to send. An event the destination cannot
        send (``Skip``, or a formatter bug) is dead-lettered with its reason at once."""
        integration, destination = self.integration, self.destination
        settings, secrets, _ = self._context or self._resolve_context()
        fields = integration.fields
        skipped = Settlement([], [], [], [])
        ready: list[tuple[QueuedItem, Formatted]] = []
        received: dict[str, float | None] = {}
        for item in items:
            try:
                event = orjson.loads(item.event)
                received[item.id] = parse_ts(event.get("receivedAt"))
                # the vendor payload, then the integration's field-source overrides (``fields:``)
                shaped = destination.format_for(Item(item.id, event, item.mapping, item.first_in_session), settings, fields)
            except Exception as exc:  # a formatter bug must not block the queue
                self._log_bug("formatting failed", exc)
                # (the error's text may quote the settings: masked like everything stored)
                shaped = Skip(mask_text(f"could not format the event: {type(exc).__name__}: {exc}", secrets))
            if isinstance(shaped, Skip):
                self._skip(item, shaped.reason, skipped)
            else:
                ready.append((item, shaped))
        if skipped.dead:
            self._add(skipped)
        size = destination.max_batch
        units: list[Unit] = []
        for start in range(0, len(ready), size):
            units.extend(self._build(ready[start : start + size], received))
        if self._tokens is not None:  # kept to build the requests again with a fresh token (a 401)
            shaped_of = {item.id: shaped for item, shaped in ready}
            for unit in units:
                unit.formatted = [shaped_of[i.id] for i in unit.items]
                unit.token = str(settings.get(ACCESS_TOKEN_KEY) or "")
        return units

    # access tokens (a vendor that authorises with one: Destination.token_request) -----------------------
    def _token_cache(self) -> TokenCache | None:
        if not self._tokens_checked:
            settings, _, endpoint = self._context or self._resolve_context()
            if self.destination.token_request(settings, endpoint) is not None:
                self._tokens = TokenCache(self.destination, settings, endpoint, self.client, self.config.timeout)
            self._tokens_checked = True
        return self._tokens

    def _use_token(self, value: str) -> None:
        """Build requests with ``value`` from now on; it is masked like a secret (so are the last few
        before it: a request built with one may still be logged)."""
        settings, secrets, _ = self._context or self._resolve_context()
        if settings.get(ACCESS_TOKEN_KEY) == value:
            return
        settings[ACCESS_TOKEN_KEY] = value
        secrets.append(value)
        self._recent_tokens.append(value)
        while len(self._recent_tokens) > 4:
            old = self._recent_tokens.popleft()
            if old in secrets:
                secrets.remove(old)

    async def _authorize(self, items: Sequence[QueuedItem]) -> bool:
        """Before formatting ``items`` for a vendor that authorises with an access token: a fresh
        token in the settings, or, when none can be had, the token endpoint's outcome for every
        item (nothing is sent to the vendor) and False."""
        tokens = self._token_cache()
        if tokens is None:
            return True
        got = await tokens.get()
        if not isinstance(got, TokenRefused):
            self._use_token(got.value)
            return True
        _, secrets, _ = self._context or self._resolve_context()
        response = got.response
        outcome = replace(got.outcome, reason=mask_text(got.outcome.reason, secrets))
        outcomes = {item.id: outcome for item in items}
        masked = masked_json(got.request, secrets)
        now = time.time()
        into = Settlement([], [], [], [])
        summary = decide(items, masked, outcomes, self.config, now, into)
        into.log.append(
            LogRow(
                at=now,
                integration_id=self.integration.id,
                message_ids=tuple(i.message_id for i in items),
                outcome=summary,
                reason=outcome.reason[:1000],
                request=masked,
                status=response.status or None,
                response=mask_text(excerpt(response.body) if response.status else response.error, secrets),
                latency_ms=round(response.latency_ms, 2),
                attempt=max((i.attempts for i in items), default=0) + 1,
            )
        )
        self._observe(items, {}, outcomes, response, masked, now, secrets)
        self._add(into)
        return False

    async def _renew_on_401(self, unit: Unit, answers: list[Answer], one_per_lane: bool) -> list[Answer]:
        """The requests the vendor answered 401 are sent once more with a fresh access token (the
        cached one was refused: revoked, or expired early); their second answer is the one
        classified. Without a fresh token their answer is :class:`NoAccessToken` (the token
        endpoint's outcome)."""
        tokens = self._tokens
        refused = [n for n, a in enumerate(answers) if isinstance(a, VendorResponse) and a.status == 401]
        if tokens is None or not refused or unit.formatted is None:
            return answers
        tokens.drop(unit.token)
        got = await tokens.get()
        if isinstance(got, TokenRefused):
            for n in refused:
                answers[n] = NoAccessToken(got)
            return answers
        self._use_token(got.value)
        settings, _, endpoint = self._context or self._resolve_context()
        rebuilt = self.destination.build_requests(unit.formatted, settings, endpoint)
        if len(rebuilt) != len(unit.requests):
            return answers
        unit.token = got.value
        for n in refused:
            unit.requests[n] = rebuilt[n]
        send = self._attempt if one_per_lane else self._send
        again = await asyncio.gather(*(send(rebuilt[n]) for n in refused))
        for n, answer in zip(refused, again, strict=True):
            answers[n] = answer
        return answers

    def _build(
        self, chunk: list[tuple[QueuedItem, Formatted]], received: dict[str, float | None]
    ) -> list[Unit]:
        """The unit carrying ``chunk``. Building is pure, so a request that cannot be built now never
        can: when building the chunk raises, the items it fails on alone are dead-lettered as skipped
        with the error, and the others go on without them."""
        destination = self.destination
        settings, secrets, endpoint = self._context or self._resolve_context()
        try:
            requests = destination.build_requests([shaped for _, shaped in chunk], settings, endpoint)
            return [Unit([item for item, _ in chunk], requests, received)]
        except Exception as exc:
            self._log_bug("building requests failed", exc)
        good: list[tuple[QueuedItem, Formatted]] = []
        alone: list[Unit] = []
        skipped = Settlement([], [], [], [])
        for item, shaped in chunk:
            try:
                requests = destination.build_requests([shaped], settings, endpoint)
            except Exception as exc:
                reason = mask_text(f"could not build the request: {type(exc).__name__}: {exc}", secrets)
                self._skip(item, reason, skipped)
                continue
            good.append((item, shaped))
            alone.append(Unit([item], requests, received))
        if skipped.dead:
            self._add(skipped)
        if len(good) > 1:
            try:  # together again, as the vendor prefers them
                requests = destination.build_requests([f for _, f in good], settings, endpoint)
                return [Unit([i for i, _ in good], requests, received)]
            except Exception as exc:
                self._log_bug("building requests failed", exc)
        return alone

    def _skip(self, item: QueuedItem, reason: str, into: Settlement) -> None:
        into.dead.append(DeadLetter(item, item.attempts, LogOutcome.SKIPPED, reason, ""))
        into.log.append(
            LogRow(time.time(), self.integration.id, (item.message_id,), LogOutcome.SKIPPED, reason, attempt=item.attempts)
        )
        self._publish("skipped", item.message_id, reason=reason)

    def _conclude_all(
        self, answers: list[tuple[Unit, list[Answer] | Exception]], into: Settlement
    ) -> None:
        """Classify every answer, in one pass, into the decisions to store (``delivery/settle.py``,
        pure); the metrics, the debugger and the halves to send again follow from its verdicts."""
        now = time.time()
        _, secrets, _ = self._context or self._resolve_context()
        for unit, responses in answers:
            if isinstance(responses, Exception):
                self._failed(unit.items, responses, into)
                continue
            try:
                concluded = conclude(
                    self.destination, self.integration.id, unit.items, unit.requests, responses,
                    secrets, self.config, now,
                )  # fmt: skip
            except Exception as exc:  # a bug here must not stop the settler: the unit is retried
                self._log_bug("delivery worker failed", exc)
                self._failed(unit.items, exc, into)
                continue
            into.extend(concluded.settlement)
            for what, bug in concluded.bugs:
                self._log_bug(what, bug)
            for verdict in concluded.verdicts:
                self._observe(
                    verdict.items, unit.received, verdict.outcomes, verdict.response, verdict.masked, now, secrets
                )
            self._send_again_in_halves(concluded.halving, now, into)

    def _send_again_in_halves(self, halving: list[list[QueuedItem]], now: float, into: Settlement) -> None:
        """Each group of items goes back to the front of the buffer as two halves, formatted afresh,
        attempts unchanged (a split is not an attempt). A half is always smaller than the request
        that failed, so the halving ends with the bad items alone, rejected (:func:`split_off`):
        one bad event in a batch of ``n`` costs about ``2 * log2(n)`` more requests, its items stay
        leased meanwhile. Once the lanes are gone (stopping), the items are released instead."""
        for group in halving:
            if self._closing:
                into.retries.extend(Retry(i.id, now, i.attempts, "") for i in group)
                continue
            middle = (len(group) + 1) // 2
            units = self._prepare(group[:middle]) + self._prepare(group[middle:])
            self._buffer.extendleft(reversed(units))
            self._buffered += sum(len(u.items) for u in units)
            if units:
                self._items_ready.set()

    def _log_bug(self, what: str, exc: BaseException) -> None:
        """``log.exception`` with the settings' secrets masked: an error's text may quote them."""
        _, secrets, _ = self._context or self._resolve_context()
        text = mask_text("".join(traceback.format_exception(exc)), secrets).rstrip()
        log.error("%s for %s\n%s", what, self.integration.id, text)

    def _resolve_context(self) -> tuple[dict[str, Any], list[str], str]:
        """Settings (secrets in clear, for the formatter only), the secrets to mask, the endpoint:
        fixed for the life of this worker (a changed integration gets a new worker)."""
        settings = self._settings(self.integration)
        secrets = self.destination.secrets_of(settings)
        endpoint = self.destination.endpoint(settings, self.integration.endpoint)
        self._context = (settings, secrets, endpoint)
        return self._context

    async def _send(self, request: OutboundRequest) -> Answer:
        async with self._limit:
            return await self._attempt(request)

    def _observe(
        self,
        items: Sequence[QueuedItem],
        received: dict[str, float | None],
        outcomes: dict[str, ItemOutcome],
        response: VendorResponse,
        masked: str,
        now: float,
        secrets: list[str],
    ) -> None:
        iid = self.integration.id
        for item in items:
            outcome = outcomes.get(item.id)
            name = outcome.outcome.value if outcome else "retry"
            counter = self._outcome_counters.get(name)
            if counter is None:
                counter = self._outcome_counters[name] = self.metrics.outcomes.labels(iid, name)
            counter.inc()
            if name == LogOutcome.DONE:
                at = received.get(item.id)
                if at:
                    self._latency.observe(max(0.0, now - at))
        if self.bus.active:
            for item in items:
                outcome = outcomes.get(item.id)
                self._publish(
                    "response",
                    item.message_id,
                    outcome=outcome.outcome.value if outcome else "retry",
                    reason=outcome.reason if outcome else "",
                    status=response.status,
                    request=orjson.loads(masked),
                    response=mask_text(excerpt(response.body, 500) if response.status else response.error, secrets),
                    latency_ms=round(response.latency_ms, 2),
                )

    def _publish(self, stage: str, message_id: str, **data: Any) -> None:
        if self.bus.active:
            self.bus.publish(
                {
                    "stage": stage,
                    "at": time.time(),
                    "integration_id": self.integration.id,
                    "message_id": message_id,
                    **data,
                }
            )
