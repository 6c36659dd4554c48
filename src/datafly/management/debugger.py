"""The live Event Debugger: pipeline stages as server-sent events, and one event's journey.

``GET /api/debugger/stream`` (``text/event-stream``) sends one JSON object per stage an event
passes: ``received``, ``consent`` (granted with the mapping value, or filtered with the reason),
``duplicate``, ``skipped``, ``response`` (the masked request and the vendor's answer).
Query filters: ``source``, ``integration``, ``event`` (the event name or type) and ``outcome``
(done, retry, rejected, auth_failed, filtered, skipped, duplicate). Secrets are masked and raw
email or phone never shown.
"""

from __future__ import annotations

import asyncio
import signal
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from datafly.destinations.registry import get_destination
from datafly.events import event_key
from datafly.management.redact import redact
from datafly.runtime.roles import Runtime

__all__ = ["StreamFilter", "all_secrets", "event_stream", "journey", "shape_entry"]

_KEEPALIVE = 15.0
_REMEMBER = 5000
_stopping: dict[asyncio.AbstractEventLoop, asyncio.Event] = {}


def process_stopping() -> asyncio.Event:
    """Set when the process is told to stop (SIGTERM, SIGINT), so open streams end at once.

    The server waits for open responses before it shuts down; a debugger stream never ends on
    its own. The handler wraps the one in place (the server's) and calls it.
    """
    loop = asyncio.get_running_loop()
    found = _stopping.get(loop)
    if found is not None:
        return found
    event = _stopping[loop] = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)

        def handler(signum: int, frame: object, previous: object = previous) -> None:
            loop.call_soon_threadsafe(event.set)
            if callable(previous):
                previous(signum, frame)
            elif previous == signal.SIG_DFL and signum == signal.SIGINT:
                raise KeyboardInterrupt

        try:
            signal.signal(sig, handler)
        except ValueError:  # not the main thread: no signal handling here
            break
    return event


def all_secrets(runtime: Runtime) -> list[str]:
    found: list[str] = []
    for integration in runtime.integrations.all():
        destination = get_destination(integration.vendor)
        if destination is not None:
            found.extend(destination.secrets_of(integration.settings))
    return found


def outcome_of(entry: Mapping[str, Any]) -> str | None:
    stage = entry.get("stage")
    if stage == "response":
        return str(entry.get("outcome") or "")
    if stage == "consent":
        return "filtered" if entry.get("decision") == "filtered" else None
    if stage in ("skipped", "duplicate"):
        return str(stage)
    return None


def shape_entry(entry: Mapping[str, Any], secrets: list[str]) -> dict[str, Any]:
    """A bus entry as the debugger shows it."""
    shaped = dict(entry)
    event = shaped.pop("event", None)
    if isinstance(event, dict):
        shaped["source_id"] = event.get("sourceId")
        shaped["event_name"] = event_key(event)
        shaped["event_type"] = event.get("type")
        shaped["event"] = event
    outcome = outcome_of(entry)
    if outcome:
        shaped["outcome"] = outcome
    result: dict[str, Any] = redact(shaped, secrets)
    return result


@dataclass(frozen=True)
class StreamFilter:
    source: str = ""
    integration: str = ""
    event: str = ""
    outcome: str = ""

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> StreamFilter:
        return cls(
            query.get("source", ""), query.get("integration", ""), query.get("event", ""), query.get("outcome", "")
        )

    def matches(self, entry: Mapping[str, Any], context: Mapping[str, Any]) -> bool:
        if self.source and context.get("source_id") != self.source:
            return False
        if self.event and context.get("event_name") != self.event:
            return False
        if self.integration and entry.get("stage") != "received" and entry.get("integration_id") != self.integration:
            return False
        return not self.outcome or entry.get("outcome") == self.outcome


async def event_stream(runtime: Runtime, wanted: StreamFilter) -> AsyncIterator[bytes]:
    queue = runtime.bus.subscribe()
    stopping = process_stopping()
    seen: OrderedDict[str, dict[str, Any]] = OrderedDict()  # message id -> source and name
    stop_wait = asyncio.ensure_future(stopping.wait())
    try:
        yield b"retry: 2000\n" + b"event: hello\ndata: " + orjson.dumps({"stage": "hello"}) + b"\n\n"
        while not stopping.is_set():
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({getter, stop_wait}, timeout=_KEEPALIVE, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                if not stopping.is_set():
                    yield b": keep-alive\n\n"
                continue
            entry = getter.result()
            shaped = shape_entry(entry, all_secrets(runtime))
            mid = str(shaped.get("message_id", ""))
            if shaped.get("stage") == "received":
                seen[mid] = {"source_id": shaped.get("source_id"), "event_name": shaped.get("event_name")}
                while len(seen) > _REMEMBER:
                    seen.popitem(last=False)
            context = seen.get(mid, {})
            shaped.setdefault("source_id", context.get("source_id"))
            shaped.setdefault("event_name", context.get("event_name"))
            if wanted.matches(shaped, context or shaped):
                yield b"data: " + orjson.dumps(shaped) + b"\n\n"
    finally:
        stop_wait.cancel()
        runtime.bus.unsubscribe(queue)


async def journey(runtime: Runtime, message_id: str) -> dict[str, Any]:
    """Everything stored about one event: its delivery log rows and dead letters."""
    secrets = all_secrets(runtime)
    rows = await runtime.backend.delivery_log(message_id=message_id, limit=200)
    dead = [d for d in await runtime.backend.dead_letters(limit=5000) if d.get("message_id") == message_id]
    log = sorted(rows, key=lambda r: (float(r["at"]), int(r.get("id") or 0)))
    return {
        "message_id": message_id,
        "log": redact(log, secrets),
        "dead_letters": redact(dead, secrets),
    }
