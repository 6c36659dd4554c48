"""The processor in a process of its own, beside the gateway (``DATAFLY_PROCESSOR=process``,
embedded storage, role ``all``; by default every role runs in one process, as the contract says).

Why: in one process the gateway and the processor share one GIL, so every event processed is
time the gateway cannot spend accepting, and the processor pauses itself while the gateway is
busy (a flood is processed after it ends). In a child process of its own, at a lower scheduling
priority, the processor keeps pace on another core (docs/architecture.md has the figures).

What crosses the pipe between the two (pickled tuples, all small):

- parent -> child: ``("routes", [Route, ...])`` at start and on every change of the integrations
  (what routing and consent need: no settings, no secrets); ``("inbound",)`` when the gateway
  stored something while the child was idle; ``("bus", active)`` when the Event Debugger gets its first subscriber or loses its last;
  ``("stop",)`` to drain what was accepted and exit.
- child -> parent: ``("idle",)`` before it waits for new events; ``("notify", channel)`` after
  it queued deliveries (wakes the integration's worker); ``("processed", seq)`` so the parent,
  which owns the inbox file's writer, deletes what is processed; ``("metrics", counts)``;
  ``("bus", entry)`` debugger entries while someone watches.

Both processes use the same SQLite files (WAL; each has its own writer thread, SQLite's locks
order them). The parent keeps the home's lock; the child holds ``processor.lock``, so a child left
over from a killed parent is gone (it dies with its parent) before a new one processes. Killed
at any moment, nothing is lost: the inbox is processed from the stored cursor, and a group's
queue rows, dedup entries and cursor are committed together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

from datafly.config import ProcessingConfig
from datafly.integrations import IntegrationSet
from datafly.observe import DebugBus, Metrics
from datafly.processing.profile import Profile
from datafly.processing.routing import Route
from datafly.runtime import memory
from datafly.runtime.children import die_with_parent
from datafly.store.embedded.backend import EmbeddedBackend
from datafly.store.records import InboundEvent, LogRow, NewDelivery, Unprocessable
from datafly.tunables import tunables

log = logging.getLogger("datafly.processor")
_NICE = 10  # the child's scheduling priority below the gateway's (measured: 5 took CPU from it)
_METRICS_EVERY = 0.2  # seconds between metric updates from the child
_COUNTERS = ("processed", "duplicates", "routed", "filtered", "unprocessable", "traits_trimmed")


# the parent's side -----------------------------------------------------------------------------
class ProcessorProcess:
    """Starts, feeds, supervises and stops the processor's child process."""

    def __init__(
        self,
        processing: ProcessingConfig,
        backend: EmbeddedBackend,
        integrations: IntegrationSet,
        metrics: Metrics,
        bus: DebugBus,
    ) -> None:
        self.processing = processing
        self.backend = backend
        self.integrations = integrations
        self.metrics = metrics
        self.bus = bus
        self._process: Any = None  # multiprocessing.Process of the spawn context
        self._conn: Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle = False  # the child waits for new events
        self._pending = False  # something was stored since the child last read
        self._counts: dict[tuple[str, str], float] = {}  # what the child reported so far
        self._stopping = False
        self._exited: asyncio.Future[None] | None = None
        self._restart: asyncio.TimerHandle | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.backend.inbound_listener = self._stored
        self.integrations.on_change(self._integrations_changed)
        self.bus.on_activity = self._bus_changed
        self._spawn()

    def _spawn(self) -> None:
        assert self._loop is not None
        ctx = multiprocessing.get_context("spawn")
        parent_end, child_end = ctx.Pipe(duplex=True)
        synchronous = self.backend.db.synchronous
        process = ctx.Process(
            target=child_main,
            args=(self.processing, self.backend.home, synchronous, child_end, os.getpid()),
            name="datafly-processor",
            daemon=True,
        )
        process.start()
        child_end.close()
        self._process, self._conn = process, parent_end
        self._idle, self._pending, self._counts = False, True, {}
        self._exited = self._loop.create_future()
        self._loop.add_reader(parent_end.fileno(), self._receive)
        self._send(("routes", self.integrations.routes()))
        self._send(("bus", self.bus.active))
        log.info("processor running in process %s", process.pid)

    async def stop(self, timeout: float) -> None:
        """Let the child process what was accepted (for at most ``timeout`` seconds), then end it."""
        self._stopping = True
        if self._restart is not None:
            self._restart.cancel()
        self.backend.inbound_listener = None
        if self._conn is None or self._exited is None:
            return
        self._send(("stop",))
        try:
            await asyncio.wait_for(asyncio.shield(self._exited), timeout)
        except TimeoutError:
            log.warning("stopping with accepted events not processed yet; the next start continues")
            self._process.kill()  # (it ignores SIGTERM, see children.die_with_parent; its work is committed)
        await asyncio.to_thread(self._process.join, 5)
        if self._process.is_alive():
            self._process.kill()
        self._close_pipe()

    # what the parent learns and tells ---------------------------------------------------------------
    def _send(self, message: tuple[Any, ...]) -> None:
        if self._conn is None:
            return
        with contextlib.suppress(OSError):  # the child is gone: _receive sees the pipe's end, restarts it
            self._conn.send(message)

    def _stored(self) -> None:
        """The gateway stored requests: wake the child if it waits, else note it for its next wait."""
        if self._idle:
            self._idle = False
            self._send(("inbound",))
        else:
            self._pending = True

    def _integrations_changed(self) -> None:
        self._send(("routes", self.integrations.routes()))

    def _bus_changed(self, active: bool) -> None:
        self._send(("bus", active))

    def _receive(self) -> None:
        conn = self._conn
        assert conn is not None
        try:
            while conn.poll():
                self._handle(conn.recv())
        except (EOFError, OSError):
            self._child_gone()

    def _handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "notify":
            self.backend.notify(message[1])
        elif kind == "processed":
            self.backend.forget_inbound(message[1])
        elif kind == "idle":
            if self._pending:  # stored while the child was reading: it must read again
                self._pending = False
                self._send(("inbound",))
            else:
                self._idle = True
        elif kind == "metrics":
            self._count(message[1])
        elif kind == "bus" and self.bus.active:
            self.bus.publish(message[1])

    def _count(self, counts: dict[tuple[str, str], float]) -> None:
        for key, total in counts.items():
            delta = total - self._counts.get(key, 0.0)
            if delta <= 0:
                continue
            self._counts[key] = total
            name, label = key
            counter = getattr(self.metrics, name)
            (counter.labels(label) if label else counter).inc(delta)

    def _child_gone(self) -> None:
        self._close_pipe()
        if self._exited is not None and not self._exited.done():
            self._exited.set_result(None)
        if self._stopping or self._loop is None:
            return
        code = self._process.exitcode if self._process is not None else None
        log.error("the processor process ended (exit code %s); starting it again in 1s", code)
        self._restart = self._loop.call_later(1.0, self._spawn)

    def _close_pipe(self) -> None:
        if self._conn is not None:
            if self._loop is not None:
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(self._conn.fileno())
            self._conn.close()
            self._conn = None


# the child's side ---------------------------------------------------------------------------------
class _ChildStore:
    """What the processor in the child process stores through: the embedded backend opened for a
    processor (:meth:`EmbeddedBackend.open_for_processor`), with what the parent must know relayed
    to it: the inbox position processed (the parent owns the inbox's writer and deletes those
    rows), the queues that got work (their workers run in the parent), and that the child waits."""

    def __init__(self, home: str, synchronous: str, relay: Callable[[tuple[Any, ...]], None]) -> None:
        self.store = EmbeddedBackend(home, synchronous)
        self._relay = relay

    async def start(self) -> None:
        await self.store.open_for_processor()

    async def close(self) -> None:
        await self.store.close()

    async def read_inbound(self, limit: int, max_bytes: int | None = None) -> list[InboundEvent]:
        return await self.store.read_inbound(limit, max_bytes)

    async def load_profiles(self, anonymous_ids: Sequence[str]) -> dict[str, Profile]:
        return await self.store.load_profiles(anonymous_ids)

    async def seen_message_ids(self, message_ids: Sequence[str], since: float) -> set[str]:
        return await self.store.seen_message_ids(message_ids, since)

    async def commit_processed(
        self,
        upto: Sequence[InboundEvent],
        profiles: Sequence[Profile],
        message_ids: Sequence[tuple[str, float]],
        deliveries: Sequence[NewDelivery],
        log: Sequence[LogRow],
        unprocessable: Sequence[Unprocessable] = (),
    ) -> None:
        await self.store.commit_processed(upto, profiles, message_ids, deliveries, log, unprocessable)
        if upto:
            self._relay(("processed", max(e.token for e in upto)))
        for integration_id in {d.integration_id for d in deliveries}:
            self._relay(("notify", f"queue:{integration_id}"))

    def wake(self) -> None:
        """The parent stored something (or asks for a drain): end the processor's wait."""
        self.store.notify("inbound")

    async def wait(self, channel: str, timeout: float) -> None:
        if channel == "inbound":
            self._relay(("idle",))
        await self.store.wait(channel, timeout)


class _RelayBus(DebugBus):
    """The child's debug bus: active while the parent's has subscribers; entries go to the parent."""

    def __init__(self, relay: Callable[[tuple[Any, ...]], None]) -> None:
        super().__init__()
        self._relay = relay
        self.watched = False

    @property
    def active(self) -> bool:
        return self.watched

    def publish(self, entry: dict[str, Any]) -> None:
        self._relay(("bus", entry))


class _Routes:
    """The integrations as routing sees them, as the parent last sent them."""

    def __init__(self) -> None:
        self.current: list[Route] = []

    def routes(self) -> list[Route]:
        return self.current


def _counter_values(metrics: Metrics) -> dict[tuple[str, str], float]:
    counts: dict[tuple[str, str], float] = {}
    for name in _COUNTERS:
        for family in getattr(metrics, name).collect():
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    counts[(name, next(iter(sample.labels.values()), ""))] = sample.value
    return counts


def child_main(processing: ProcessingConfig, home: str, synchronous: str, conn: Connection, parent: int) -> None:
    """The child process: run the processor until told to stop or the parent is gone."""
    if not die_with_parent(parent):
        return
    memory.limit_arenas()
    with contextlib.suppress(OSError):
        os.nice(_NICE)
    logging.basicConfig(
        level=tunables().log_level,
        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s",
    )
    try:
        import uvloop

        uvloop.run(_child(processing, home, synchronous, conn))
    except ImportError:
        asyncio.run(_child(processing, home, synchronous, conn))


async def _child(processing: ProcessingConfig, home: str, synchronous: str, conn: Connection) -> None:
    from datafly.processor.loop import Processor

    loop = asyncio.get_running_loop()
    gone = asyncio.Event()  # the parent closed the pipe (it died): stop at once
    stop = asyncio.Event()  # the parent asked for a drain

    def relay(message: tuple[Any, ...]) -> None:
        if gone.is_set():
            return
        try:
            conn.send(message)
        except OSError:
            gone.set()

    backend = _ChildStore(home, synchronous, relay)
    routes = _Routes()
    bus = _RelayBus(relay)
    metrics = Metrics()

    def receive() -> None:
        try:
            while conn.poll():
                message = conn.recv()
                kind = message[0]
                if kind == "inbound":
                    backend.wake()
                elif kind == "routes":
                    routes.current = list(message[1])
                elif kind == "bus":
                    bus.watched = bool(message[1])
                elif kind == "stop":
                    stop.set()
                    backend.wake()
        except (EOFError, OSError):
            loop.remove_reader(conn.fileno())
            gone.set()

    loop.add_reader(conn.fileno(), receive)
    await backend.start()
    processor = Processor(backend, routes, processing, metrics, bus, cache_profiles=True)
    task = asyncio.create_task(processor.run(stop))
    reported: dict[tuple[str, str], float] = {}
    ticks = 0
    try:
        while not task.done() and not gone.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), _METRICS_EVERY)
            ticks += 1
            if ticks % 25 == 0:  # every 5 s: free memory back to the system (datafly.memory)
                memory.trim()
            counts = _counter_values(metrics)
            if counts != reported:
                relay(("metrics", counts))
                reported = counts
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(BaseException):
            await task
        await backend.close()
        with contextlib.suppress(Exception):
            loop.remove_reader(conn.fileno())
        conn.close()
    if gone.is_set():
        log.warning("the gateway process is gone: the processor stops")
