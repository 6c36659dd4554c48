"""The storage and queue interface every backend implements.

The code above it (gateway, processor, delivery, management) does not know which backend
runs. Methods that the gateway calls raise :class:`datafly.errors.StorageUnavailable` when the
storage cannot be reached, so the gateway can answer 503 without losing anything.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any, ClassVar

from datafly.store.records import (
    DeadLetter,
    InboundEvent,
    LogRow,
    NewDelivery,
    QueuedItem,
    Retry,
    Unprocessable,
)
from datafly.visitor import Profile


class Backend(abc.ABC):
    """Capabilities that differ between backends are declared here with their defaults (the
    embedded backend's), never discovered with ``getattr``."""

    single_process: ClassVar[bool] = True
    """Whether one processor owns the profiles (it may cache them). False on scale-out."""

    # lifecycle -------------------------------------------------------------------------
    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    async def healthy(self) -> bool:
        return True

    async def migrate(self) -> int | None:
        """Apply schema migrations and return the schema version; None when the backend
        migrates by itself when it starts (embedded)."""
        return None

    async def prune(self, seen_before: float, log_before: float) -> None:  # noqa: B027 - optional
        """Forget dedup ids and log rows older than these times (where they do not expire alone)."""

    async def take_tokens(self, bucket: str, rate: float, capacity: float, count: int) -> float | None:
        """A rate-limit bucket shared by every gateway: 0 when ``count`` tokens were taken, else
        the seconds to wait; None when the backend has none (each gateway keeps its own)."""
        return None

    # gateway -----------------------------------------------------------------------------
    @abc.abstractmethod
    async def append_inbound(self, events: Sequence[bytes]) -> None:
        """Store accepted requests (inbox records: validated, email and phone hashed; the processor
        normalises them); durable when it returns."""

    # processor ---------------------------------------------------------------------------
    @abc.abstractmethod
    async def read_inbound(self, limit: int, max_bytes: int | None = None) -> list[InboundEvent]:
        """The next accepted requests not yet processed, oldest first: at most ``limit``, and
        (where the backend can tell) no more than ``max_bytes`` of them beyond the first."""

    @abc.abstractmethod
    async def load_profiles(self, anonymous_ids: Sequence[str]) -> dict[str, Profile]: ...

    @abc.abstractmethod
    async def seen_message_ids(self, message_ids: Sequence[str], since: float) -> set[str]: ...

    @abc.abstractmethod
    async def commit_processed(
        self,
        upto: Sequence[InboundEvent],
        profiles: Sequence[Profile],
        message_ids: Sequence[tuple[str, float]],
        deliveries: Sequence[NewDelivery],
        log: Sequence[LogRow],
        unprocessable: Sequence[Unprocessable] = (),
    ) -> None:
        """Atomically: save profiles and seen ids (:func:`~datafly.store.records.dedup_key`),
        enqueue deliveries, log, keep the unprocessable events as dead letters, acknowledge ``upto``."""

    # delivery ----------------------------------------------------------------------------
    @abc.abstractmethod
    async def next_due(self, integration_id: str) -> float | None:
        """When the earliest waiting item of an integration is due (None: nothing waits)."""

    @abc.abstractmethod
    async def ready_count(self, integration_id: str, now: float, cap: int) -> int:
        """How many items are due now, counting at most ``cap``."""

    @abc.abstractmethod
    async def lease(
        self, integration_id: str, limit: int, now: float, lease_for: float
    ) -> list[QueuedItem]: ...

    @abc.abstractmethod
    async def settle(
        self,
        integration_id: str,
        done: Sequence[str],
        retries: Sequence[Retry],
        dead: Sequence[DeadLetter],
        log: Sequence[LogRow],
    ) -> None: ...

    @abc.abstractmethod
    async def queue_depths(self) -> dict[str, int]: ...

    # dead letters and the delivery log ---------------------------------------------------
    @abc.abstractmethod
    async def dead_letters(
        self, integration_id: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    async def replay_dead_letters(
        self, ids: Sequence[str] | None, integration_id: str | None, now: float
    ) -> int:
        """Put dead letters back on their queues (all of them when ``ids`` is None); unprocessable
        ones (``integration_id`` empty) go back to the inbox, to be processed again."""

    @abc.abstractmethod
    async def discard_dead_letters(self, ids: Sequence[str] | None, integration_id: str | None) -> int: ...

    @abc.abstractmethod
    async def delivery_log(
        self, integration_id: str | None = None, message_id: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    async def append_log(self, rows: Sequence[LogRow]) -> None:
        """Write log rows outside a settle (for example filtered events)."""

    # management documents (UI-managed integrations, sources, users, tokens, sessions) ----------
    @abc.abstractmethod
    async def list_documents(self, kind: str) -> list[dict[str, Any]]:
        """Every document of ``kind``, each a JSON object with an ``id``."""

    @abc.abstractmethod
    async def get_document(self, kind: str, doc_id: str) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    async def put_document(self, kind: str, doc_id: str, document: dict[str, Any]) -> None: ...

    @abc.abstractmethod
    async def delete_document(self, kind: str, doc_id: str) -> bool: ...

    # signals between roles ----------------------------------------------------------------
    def notify(self, channel: str) -> None:  # noqa: B027 - optional hook; backends that poll need none
        """Wake whoever waits on ``channel`` (``inbound`` or ``queue:<integration id>``)."""

    @abc.abstractmethod
    async def wait(self, channel: str, timeout: float) -> None:
        """Return when ``channel`` is notified or after ``timeout`` seconds."""
