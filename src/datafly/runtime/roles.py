"""The running system in one process: storage, the processor, one worker per integration.

``datafly serve`` builds one :class:`Runtime` and hands it to the ASGI app; its lifespan
starts and stops it. Stopping drains: the processor finishes every accepted event, and the
workers get a short grace period to deliver what is due, the rest stays queued on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from datafly.config import Config, Integration
from datafly.delivery.http import VendorClient
from datafly.delivery.worker import IntegrationWorker
from datafly.destinations.registry import get_destination
from datafly.gateway.sources import SourceIndex
from datafly.integrations import IntegrationSet
from datafly.observe import Activity, DebugBus, Metrics
from datafly.processor.child import ProcessorProcess
from datafly.processor.loop import Processor
from datafly.runtime import memory
from datafly.store.base import Backend
from datafly.tunables import tunables

if TYPE_CHECKING:
    from datafly.store.embedded.backend import EmbeddedBackend

log = logging.getLogger("datafly")
ROLES = ("all", "gateway", "processor", "delivery")


def open_backend(config: Config, home: str, requests_in_flight: Callable[[], int] | None = None) -> Backend:
    """The configured backend. ``requests_in_flight`` counts the gateway's requests in flight
    (when every one of them waits for the embedded inbox's fsync, the loop waits for it on purpose:
    see ``TickCommitter``)."""
    if config.storage or config.queue:
        import importlib

        scaled = importlib.import_module("datafly.store.scaled.backend")
        backend: Backend = scaled.open_scaled_backend(config, home)
        return backend
    from datafly.store.embedded.backend import EmbeddedBackend

    return EmbeddedBackend(home, tunables().sqlite_synchronous, requests_in_flight)


@dataclass
class _RunningWorker:
    integration: Integration
    worker: IntegrationWorker
    stop: asyncio.Event
    task: asyncio.Task[None]


@dataclass
class Runtime:
    config: Config
    home: str
    role: str = "all"
    shutdown_grace: float = 5.0
    metrics: Metrics = field(default_factory=Metrics)
    bus: DebugBus = field(default_factory=DebugBus)
    gateway_activity: Activity = field(default_factory=Activity)

    def __post_init__(self) -> None:
        memory.limit_arenas()  # before the store's threads start (see datafly.memory)
        self.backend = open_backend(self.config, self.home, self.gateway_activity.in_flight)
        self.integrations = IntegrationSet(self.config.integrations)
        self.sources = SourceIndex(self.config.sources)
        self.started_at = time.time()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._workers: dict[str, _RunningWorker] = {}
        self._client: VendorClient | None = None
        self.processor: Processor | None = None
        self.processor_process: ProcessorProcess | None = None
        # Run after storage is up and before workers start (management loads its integrations here).
        self.startup_hooks: list[Callable[[], Awaitable[None]]] = []

    @property
    def runs_processor(self) -> bool:
        return self.role in ("all", "processor")

    @property
    def runs_delivery(self) -> bool:
        return self.role in ("all", "delivery")

    async def start(self) -> None:
        await self.backend.start()
        self._stop = asyncio.Event()
        for hook in self.startup_hooks:
            await hook()
        child_backend = self._processor_child_backend() if self.runs_processor else None
        if child_backend is not None:
            self.processor_process = ProcessorProcess(
                self.config.processing, child_backend, self.integrations, self.metrics, self.bus
            )
            await self.processor_process.start()
        elif self.runs_processor:
            self.processor = Processor(
                self.backend,
                self.integrations,
                self.config.processing,
                self.metrics,
                self.bus,
                cache_profiles=self.backend.single_process,
                gateway_busy=self.gateway_activity.saturated,
            )
            self._tasks.append(asyncio.create_task(self.processor.run(self._stop), name="processor"))
        if self.runs_delivery:
            self._client = VendorClient(self.config.delivery.concurrency)
            self.integrations.on_change(self.sync_workers)
            self.sync_workers()
        self._tasks.append(asyncio.create_task(self._housekeeping(), name="housekeeping"))
        gc.freeze()  # what start-up created lives for good: keep it out of every full collection

    def _processor_child_backend(self) -> EmbeddedBackend | None:
        """The embedded backend when the processor is to run in a child process of its own
        (``DATAFLY_PROCESSOR=process``, embedded storage, role ``all``: processor/child.py);
        None by default, where every role runs in this process, as the contract says."""
        from datafly.store.embedded.backend import EmbeddedBackend

        if tunables().processor_process and self.role == "all" and isinstance(self.backend, EmbeddedBackend):
            return self.backend
        return None

    def sync_workers(self) -> None:
        """Start a worker for each enabled integration, stop those gone or changed."""
        if self._client is None:
            return
        wanted = {i.id: i for i in self.integrations.all() if i.enabled}
        for iid, running in list(self._workers.items()):
            if wanted.get(iid) != running.integration:
                running.stop.set()
                self.backend.notify(running.worker.channel)
                del self._workers[iid]
        for iid, integration in wanted.items():
            if iid in self._workers:
                continue
            destination = get_destination(integration.vendor)
            if destination is None:
                log.error("integration %s: unknown vendor %s", iid, integration.vendor)
                continue
            worker = IntegrationWorker(
                integration,
                destination,
                self.backend,
                self.config.delivery,
                self._client,
                self.metrics,
                self.bus,
                settings=self.settings_of,
            )
            stop = asyncio.Event()
            task = asyncio.create_task(worker.run(stop), name=f"worker:{iid}")
            self._workers[iid] = _RunningWorker(integration, worker, stop, task)

    def settings_of(self, integration: Integration) -> dict[str, object]:
        """The integration's settings with secrets in clear (for the formatter only), and its preset."""
        return {**integration.settings, "preset": integration.preset}

    async def _housekeeping(self) -> None:
        while not self._stop.is_set():
            try:
                depths = await self.backend.queue_depths()
                for integration in self.integrations.all():
                    self.metrics.queue_depth.labels(integration.id).set(depths.get(integration.id, 0))
                if self.runs_processor:
                    now = time.time()
                    await self.backend.prune(now - self.config.processing.dedup_window, now - 7 * 86400)
            except Exception:
                log.exception("housekeeping failed")
            for _ in range(6):  # free memory back to the system every 5 s (bench/soak.py)
                memory.trim()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 5)
                if self._stop.is_set():
                    return

    async def stop(self) -> None:
        self._stop.set()
        self.backend.notify("inbound")
        if self.processor_process is not None:
            await self.processor_process.stop(self.shutdown_grace * 2)
        processing = [t for t in self._tasks if t.get_name() == "processor"]
        if processing:
            # Drain what was accepted, for a while: what is left stays in the durable inbox and is
            # processed by the next start, so a large backlog never holds a shutdown for minutes.
            _, pending = await asyncio.wait(processing, timeout=self.shutdown_grace * 2)
            for task in pending:
                log.warning("stopping with accepted events not processed yet; the next start continues")
                task.cancel()
            await asyncio.gather(*processing, return_exceptions=True)
        deadline = time.monotonic() + self.shutdown_grace
        while self._workers and time.monotonic() < deadline:
            depths = await self.backend.queue_depths()
            if not any(depths.get(iid) for iid in self._workers):
                break
            await asyncio.sleep(0.05)
        for running in self._workers.values():
            running.stop.set()
            self.backend.notify(running.worker.channel)
        worker_tasks = [r.task for r in self._workers.values()]
        self._workers.clear()
        if worker_tasks:
            _, pending = await asyncio.wait(worker_tasks, timeout=self.config.delivery.timeout + 1)
            for task in pending:
                task.cancel()
        for task in self._tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._client is not None:
            await self._client.close()
            self._client = None
        await self.backend.close()
