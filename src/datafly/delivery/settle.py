"""The settle step, pure: a unit's answers in, the decisions to store out.

The worker's settler hands each unit (its leased items and the requests that carried them) and
what came back for each request (the vendor's answer, or the exception that kept it from being
sent) to :func:`conclude`. It classifies with the destination, decides done, retry or dead for
every item (:func:`decide`), writes one delivery-log row per request, and says which items are
to be sent again in halves (:attr:`Outcome.SPLIT`). It returns a new :class:`Settlement` for the
unit; nothing is changed in place, so a bug half-way loses nothing: the caller drops the result
and records the unit as failed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import orjson

from datafly.config import DeliveryConfig
from datafly.delivery.backoff import retry_delay
from datafly.delivery.http import UnsendableRequest
from datafly.delivery.tokens import NoAccessToken
from datafly.destinations.base import (
    Destination,
    ItemOutcome,
    OutboundRequest,
    Outcome,
    VendorResponse,
    mask_text,
)
from datafly.outcomes import LogOutcome
from datafly.store.records import DeadLetter, LogRow, QueuedItem, Retry

__all__ = [
    "Answer",
    "Concluded",
    "Settlement",
    "Verdict",
    "conclude",
    "decide",
    "excerpt",
    "masked_json",
    "split_off",
    "unsent_outcome",
]

_EXCERPT = 2000

Answer = VendorResponse | Exception  # what came back for one request: an answer, or why it was not sent


@dataclass
class Settlement:
    """Decisions to store in one ``settle``."""

    done: list[str] = field(default_factory=list)
    retries: list[Retry] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    log: list[LogRow] = field(default_factory=list)

    def extend(self, other: Settlement) -> None:
        self.done.extend(other.done)
        self.retries.extend(other.retries)
        self.dead.extend(other.dead)
        self.log.extend(other.log)

    def __len__(self) -> int:
        """How many items it settles (log rows aside)."""
        return len(self.done) + len(self.retries) + len(self.dead)


@dataclass(frozen=True)
class Verdict:
    """One request's answer as classified: for the metrics and the debugger."""

    items: list[QueuedItem]
    outcomes: dict[str, ItemOutcome]
    response: VendorResponse
    masked: str


@dataclass
class Concluded:
    settlement: Settlement
    halving: list[list[QueuedItem]]  # the items of each request answered SPLIT
    verdicts: list[Verdict]
    bugs: list[tuple[str, BaseException]]  # a classifier that raised: logged by the caller


def excerpt(body: bytes, limit: int = _EXCERPT) -> str:
    return body[:limit].decode("utf-8", "replace")


def unsent_outcome(exc: Exception) -> ItemOutcome:
    """The outcome of a request that raised instead of being sent: one the HTTP client refused
    (it cannot be encoded) is rejected for good, anything else (a bug) is tried again, at most
    ``delivery.max_attempts`` times."""
    if isinstance(exc, NoAccessToken):  # not sent again: no fresh access token (the token endpoint's outcome)
        return exc.refused.outcome
    if isinstance(exc, UnsendableRequest):
        return ItemOutcome(Outcome.REJECTED, f"not sent: the request cannot be encoded: {exc}")
    return ItemOutcome(Outcome.RETRY, f"delivery failed: {type(exc).__name__}: {exc}")


def masked_json(request: OutboundRequest, secrets: Sequence[str]) -> str:
    """The masked request as JSON text for the log (text orjson refuses, such as a lone surrogate,
    is escaped by the standard library instead)."""
    view = request.masked(secrets)
    try:
        return orjson.dumps(view).decode()
    except TypeError:
        return json.dumps(view)


def decide(
    items: Sequence[QueuedItem],
    masked: str,
    outcomes: dict[str, ItemOutcome],
    config: DeliveryConfig,
    now: float,
    into: Settlement,
) -> str:
    """Turn the outcome of each item of one request into done, retry or dead; returns the
    request's summary outcome for the delivery log."""
    seen: set[str] = set()
    for item in items:
        outcome = outcomes.get(item.id, ItemOutcome(Outcome.RETRY, "no outcome from the classifier"))
        seen.add(outcome.outcome.value)
        if outcome.outcome is Outcome.SPLIT:  # not decided, not an attempt: sent again (see split_off)
            continue
        attempts = item.attempts + 1
        if outcome.outcome is Outcome.DONE:
            into.done.append(item.id)
        elif outcome.outcome is Outcome.RETRY:
            delay = retry_delay(attempts, config, outcome.retry_after)
            too_old = now + delay - item.enqueued_at > config.max_age
            if attempts >= config.max_attempts or too_old:
                why = f"gave up after {attempts} attempts" if not too_old else "older than delivery.max_age"
                into.dead.append(DeadLetter(item, attempts, "retry", f"{why}: {outcome.reason}", masked))
            else:
                into.retries.append(Retry(item.id, now + delay, attempts, outcome.reason))
        else:
            into.dead.append(DeadLetter(item, attempts, outcome.outcome.value, outcome.reason, masked))
    return seen.pop() if len(seen) == 1 else LogOutcome.PARTIAL


def split_off(items: Sequence[QueuedItem], outcomes: dict[str, ItemOutcome]) -> list[QueuedItem]:
    """The items of one request that are to be sent again in halves (:attr:`Outcome.SPLIT`: the
    vendor refused the request for some of them). An item that its request carried alone is the
    bad one: its outcome becomes REJECTED with the vendor's reason (in ``outcomes``), and nothing
    is sent again."""
    split = [i for i in items if (o := outcomes.get(i.id)) is not None and o.outcome is Outcome.SPLIT]
    if split and len(items) == 1:
        outcomes[split[0].id] = replace(outcomes[split[0].id], outcome=Outcome.REJECTED)
        return []
    return split


def conclude(
    destination: Destination,
    integration_id: str,
    items: Sequence[QueuedItem],
    requests: Sequence[OutboundRequest],
    answers: Sequence[Answer],
    secrets: Sequence[str],
    config: DeliveryConfig,
    now: float,
) -> Concluded:
    """The decisions and delivery-log rows for one unit's answers: one row per request, whether
    the vendor answered, the request could not be sent, or its answer could not be read."""
    result = Concluded(Settlement(), [], [], [])
    by_id = {item.id: item for item in items} if len(items) > 1 else None
    for request, answer in zip(requests, answers, strict=True):
        request_items = [by_id[i] for i in request.item_ids] if by_id is not None else list(items)
        if isinstance(answer, Exception):  # not sent: refused by the client, or a client bug
            response = VendorResponse(0, error=f"not sent: {type(answer).__name__}: {answer}")
            classified = {i.id: unsent_outcome(answer) for i in request_items}
        else:
            response = answer
            try:
                classified = destination.classify(request, response)
            except Exception as exc:  # a classifier bug: the items are tried again, not lost
                result.bugs.append(("classifying failed", exc))
                failed = ItemOutcome(Outcome.RETRY, f"delivery failed: {type(exc).__name__}: {exc}")
                classified = {i.id: failed for i in request_items}
        masked = masked_json(request, secrets)
        outcomes = {  # a vendor may echo the request back: its answer is masked like the request
            item_id: replace(o, reason=mask_text(o.reason, secrets)) if secrets and o.reason else o
            for item_id, o in classified.items()
        }
        halve = split_off(request_items, outcomes)
        if halve:
            result.halving.append(halve)
        summary = decide(request_items, masked, outcomes, config, now, result.settlement)
        reasons = sorted({o.reason for o in outcomes.values() if o.reason})
        result.settlement.log.append(
            LogRow(
                at=now,
                integration_id=integration_id,
                message_ids=tuple(i.message_id for i in request_items),
                outcome=summary,
                reason="; ".join(reasons)[:1000],
                request=masked,
                status=response.status or None,
                response=mask_text(excerpt(response.body) if response.status else response.error, secrets),
                latency_ms=round(response.latency_ms, 2),
                attempt=max(i.attempts for i in request_items) + 1,
            )
        )
        result.verdicts.append(Verdict(request_items, outcomes, response, masked))
    return result
