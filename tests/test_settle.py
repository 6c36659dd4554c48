"""The settle step is pure (delivery/settle.py): a unit's answers in, a new Settlement out."""

from __future__ import annotations

from typing import Any

from datafly.config import DeliveryConfig
from datafly.delivery.http import UnsendableRequest
from datafly.delivery.settle import Settlement, conclude
from datafly.destinations.base import Destination, ItemOutcome, OutboundRequest, Outcome, VendorResponse
from datafly.store.records import QueuedItem

NOW = 1_800_000_000.0
CONFIG = DeliveryConfig()


class Scripted(Destination):
    """Classifies by a script: item id -> outcome; ``boom`` raises."""

    vendor = "scripted"
    title = "Scripted"
    settings_schema = ()
    presets = {}

    def __init__(self, script: dict[str, ItemOutcome] | None = None, boom: bool = False) -> None:
        self.script = script or {}
        self.boom = boom

    def classify(self, request: OutboundRequest, response: VendorResponse) -> dict[str, ItemOutcome]:
        if self.boom:
            raise KeyError("classifier bug")
        return {i: self.script.get(i, ItemOutcome(Outcome.DONE)) for i in request.item_ids}


def items(*ids: str, attempts: int = 0) -> list[QueuedItem]:
    return [QueuedItem(i, "hook", f"m-{i}", "x", False, b"{}", attempts, NOW - 10) for i in ids]


def request(*ids: str, secret: str = "") -> OutboundRequest:
    return OutboundRequest("POST", f"https://vendor.example/x?key={secret}", {}, b"{}", tuple(ids))


def test_outcomes_become_decisions_and_one_log_row_per_request() -> None:
    unit = items("a", "b", "c", attempts=1)
    dest = Scripted({"b": ItemOutcome(Outcome.RETRY, "busy"), "c": ItemOutcome(Outcome.REJECTED, "bad value")})
    result = conclude(dest, "hook", unit, [request("a", "b"), request("c")], [VendorResponse(200), VendorResponse(400)], [], CONFIG, NOW)
    assert result.settlement.done == ["a"]
    assert [(r.id, r.attempts) for r in result.settlement.retries] == [("b", 2)]
    assert [(d.item.id, d.outcome, d.reason) for d in result.settlement.dead] == [("c", "rejected", "bad value")]
    assert [(r.outcome, r.message_ids, r.status) for r in result.settlement.log] == [
        ("partial", ("m-a", "m-b"), 200),
        ("rejected", ("m-c",), 400),
    ]
    assert result.halving == [] and result.bugs == []


def test_a_classifier_bug_retries_its_items_and_is_reported_not_raised() -> None:
    result = conclude(Scripted(boom=True), "hook", items("a"), [request("a")], [VendorResponse(200)], [], CONFIG, NOW)
    assert [r.id for r in result.settlement.retries] == ["a"]
    assert [what for what, _ in result.bugs] == ["classifying failed"]
    assert "KeyError" in result.settlement.log[0].reason


def test_an_unsendable_request_is_rejected_and_logged() -> None:
    answer = UnsendableRequest("header value with a line break")
    result = conclude(Scripted(), "hook", items("a"), [request("a")], [answer], [], CONFIG, NOW)
    assert [(d.item.id, d.outcome) for d in result.settlement.dead] == [("a", "rejected")]
    assert result.settlement.log[0].status is None and "not sent" in result.settlement.log[0].response


def test_split_items_go_to_halving_and_a_lone_one_is_rejected() -> None:
    split = ItemOutcome(Outcome.SPLIT, "one event is invalid")
    dest = Scripted({"a": split, "b": split, "c": split})
    result = conclude(dest, "hook", items("a", "b"), [request("a", "b")], [VendorResponse(400)], [], CONFIG, NOW)
    assert [[i.id for i in group] for group in result.halving] == [["a", "b"]]
    assert len(result.settlement) == 0  # a split is no decision and no attempt
    assert [r.outcome for r in result.settlement.log] == ["split"]
    alone = conclude(dest, "hook", items("c"), [request("c")], [VendorResponse(400)], [], CONFIG, NOW)
    assert alone.halving == [] and [(d.item.id, d.outcome) for d in alone.settlement.dead] == [("c", "rejected")]


def test_secrets_are_masked_in_the_log_and_nothing_is_changed_in_place() -> None:
    unit = items("a")
    before: Any = [(i.id, i.attempts) for i in unit]
    dest = Scripted({"a": ItemOutcome(Outcome.REJECTED, "key s3cr3t-value-xyz refused")})
    result = conclude(dest, "hook", unit, [request("a", secret="s3cr3t-value-xyz")], [VendorResponse(403, body=b"s3cr3t-value-xyz")], ["s3cr3t-value-xyz"], CONFIG, NOW)
    row = result.settlement.log[0]
    assert "s3cr3t-value-xyz" not in row.request + row.reason + row.response
    assert "s3cr3t-value-xyz" not in result.settlement.dead[0].reason
    assert [(i.id, i.attempts) for i in unit] == before


def test_settlements_merge() -> None:
    into = Settlement(["x"])
    into.extend(Settlement(["y"], [], [], []))
    assert into.done == ["x", "y"] and len(into) == 2
