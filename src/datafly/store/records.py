"""The rows that move between the pipeline and storage, shared by every backend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from datafly.inbox import InboxRecord, InvalidRecord, decode
from datafly.outcomes import LogOutcome


@dataclass(frozen=True)
class InboundEvent:
    """An accepted request waiting for the processor; ``token`` orders and acknowledges it.

    ``raw`` is the stored record (see :mod:`datafly.inbox`); ``record`` it decoded, or None with
    the ``problem`` when the bytes are not a record (the processor sets such a request aside)."""

    token: int
    raw: bytes
    record: InboxRecord | None = None
    problem: str = ""


def inbound_record(token: int, raw: bytes) -> InboundEvent:
    """Decode a stored inbox record; one that cannot be decoded is returned with ``record=None``
    so that the processor sets it aside instead of stopping on it."""
    try:
        return InboundEvent(token, raw, decode(raw))
    except InvalidRecord as exc:
        return InboundEvent(token, raw, None, str(exc))


UNPROCESSABLE = LogOutcome.UNPROCESSABLE
"""The outcome of a dead letter the processor set aside (its ``integration_id`` is empty)."""


@dataclass(frozen=True)
class Unprocessable:
    """An accepted event the processor could not process: kept as a dead letter with the error.

    ``record`` is an inbox record (``{"m": meta, "b": body}``, JSON) holding that event alone,
    or the whole stored request when it could not be decoded; replay puts it back in the inbox."""

    message_id: str
    source_id: str
    record: bytes
    reason: str
    received_at: float


@dataclass(frozen=True)
class NewDelivery:
    integration_id: str
    message_id: str
    mapping: str
    first_in_session: bool
    event: bytes  # the processed event, JSON


@dataclass(frozen=True)
class QueuedItem:
    id: str
    integration_id: str
    message_id: str
    mapping: str
    first_in_session: bool
    event: bytes
    attempts: int
    enqueued_at: float


@dataclass(frozen=True)
class Retry:
    id: str
    due_at: float
    attempts: int
    error: str


@dataclass(frozen=True)
class DeadLetter:
    item: QueuedItem
    attempts: int
    outcome: str  # rejected | auth_failed | retry (exhausted)
    reason: str
    last_request: str  # JSON of the masked request


@dataclass(frozen=True)
class LogRow:
    """One line of the delivery log: an attempt, a skip or a consent filter."""

    at: float
    integration_id: str
    message_ids: tuple[str, ...]
    outcome: str  # a LogOutcome (datafly.outcomes)
    reason: str = ""
    request: str = ""  # JSON of the masked request
    status: int | None = None
    response: str = ""  # excerpt of the vendor's answer
    latency_ms: float | None = None
    attempt: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "integration_id": self.integration_id,
            "message_ids": list(self.message_ids),
            "outcome": self.outcome,
            "reason": self.reason,
            "request": self.request,
            "status": self.status,
            "response": self.response,
            "latency_ms": self.latency_ms,
            "attempt": self.attempt,
        }


def dedup_key(source_id: str, message_id: str) -> str:
    """What dedup remembers of an event: its messageId within its source, so that one source
    cannot silence another's events by sending their ids first."""
    return f"{len(source_id)}:{source_id}:{message_id}"


def message_id_of(key: str) -> str:
    """The messageId in a :func:`dedup_key`."""
    length, _, rest = key.partition(":")
    return rest[int(length) + 1 :] if length.isdigit() else key

