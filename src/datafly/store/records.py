"""The rows that move between the pipeline and storage, shared by every backend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class InboundEvent:
    """An accepted event waiting for the processor; ``token`` orders and acknowledges it."""

    token: int
    event: dict[str, Any]


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
    outcome: str  # done | retry | rejected | auth_failed | dead | skipped | filtered
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
