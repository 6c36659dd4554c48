"""The one runner for every destination's golden cases (``destinations/<vendor>/cases/*.json``).

A case file is plain data::

    {"kind": "format" | "batch" | "response",
     "description": "...",
     "defaults": {...},            # keys every case of the file starts from
     "cases": [{"name": "...", ...}, ...]}

Case keys:

- ``settings``, ``endpoint`` (override, optional), ``fields`` (the integration's field-source
  overrides, optional), ``now`` (ISO 8601 or epoch seconds: passed to ``format_item(...,
  now=...)`` when the destination accepts it). Items go through ``format_for``, the path the
  delivery worker and the mapping preview take.
- ``items``: ``[{"id", "event", "mapping", "first_in_session"?}]``.
- format/batch: ``expect: {"requests": [request...], "skips": {item_id: reason}}`` where a request
  is checked on the keys it names: ``method``, ``url``, ``headers`` (exact), ``json`` (body parsed),
  ``body`` (text or null), ``item_ids``, ``masked`` (``OutboundRequest.masked`` with the secrets).
- response: ``items`` (built into exactly one request) or a literal ``request`` (null: use ``items``)
  (``method``, ``url``, ``headers``, ``json`` | ``body``, ``item_ids``); ``response``:
  ``{status, headers?, json? | body?, error?}``; ``expect: {item_id: {outcome, reason? |
  reason_contains?, retry_after?}}``.

Two placeholders keep files honest and short:

- ``{"$sha256": "text"}`` is replaced by the SHA-256 hex of the text (hashes are computed,
  never copied from a document);
- ``{"$repeat": N, "start": S?, "template": X}`` inside a list is replaced by N copies of X where
  ``{n}`` in strings becomes S, S+1, ... (for batch cases of hundreds of events).
"""

from __future__ import annotations

import hashlib
import inspect
import os
import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from datafly.destinations.base import (
    Destination,
    Formatted,
    Item,
    OutboundRequest,
    Skip,
    VendorResponse,
)
from datafly.destinations.registry import all_destinations

KINDS = ("format", "batch", "response")
RAW_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
RAW_PHONE = re.compile(r"\+\d[\d \-]{7,}\d")


@dataclass(frozen=True)
class Case:
    vendor: str
    kind: str
    file: str
    spec: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.vendor}/{self.file}/{self.spec['name']}"


def cases_folder(destination: Destination) -> Path:
    return Path(os.path.dirname(inspect.getfile(type(destination)))) / "cases"


def resolve(value: Any, n: int | None = None) -> Any:
    """Expand the placeholders described in the module docstring."""
    if isinstance(value, str):
        return value.replace("{n}", str(n)) if n is not None else value
    if isinstance(value, list):
        out: list[Any] = []
        for element in value:
            if isinstance(element, dict) and "$repeat" in element:
                start = int(element.get("start", 0))
                out.extend(
                    resolve(element["template"], i) for i in range(start, start + int(element["$repeat"]))
                )
            else:
                out.append(resolve(element, n))
        return out
    if isinstance(value, dict):
        if set(value) == {"$sha256"}:
            return hashlib.sha256(str(resolve(value["$sha256"], n)).encode()).hexdigest()
        return {k: resolve(v, n) for k, v in value.items()}
    return value


def discover() -> Iterator[Case]:
    for vendor, destination in all_destinations().items():
        for path in sorted(cases_folder(destination).glob("*.json")):
            data = orjson.loads(path.read_bytes())
            assert data["kind"] in KINDS, f"{path}: unknown kind {data['kind']!r}"
            for spec in data["cases"]:
                merged = resolve({**data.get("defaults", {}), **spec})
                yield Case(vendor, data["kind"], path.stem, merged)


ALL_CASES = list(discover())


def epoch(value: Any) -> float | None:
    if value is None or isinstance(value, int | float):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def format_items(destination: Destination, spec: dict[str, Any]) -> tuple[list[Formatted], dict[str, str]]:
    settings = spec.get("settings", {})
    accepts_now = "now" in inspect.signature(destination.format_item).parameters
    now = epoch(spec.get("now")) if accepts_now else None
    fields = spec.get("fields")  # the integration's field-source overrides, as in production
    formatted: list[Formatted] = []
    skips: dict[str, str] = {}
    for raw in spec["items"]:
        item = Item(
            id=raw["id"],
            event=raw["event"],
            mapping=raw.get("mapping", ""),
            first_in_session=raw.get("first_in_session", False),
        )
        result = destination.format_for(item, settings, fields, now=now)
        if isinstance(result, Skip):
            skips[item.id] = result.reason
        else:
            assert result.item_id == item.id
            formatted.append(result)
    return formatted, skips


def build(destination: Destination, spec: dict[str, Any]) -> tuple[list[OutboundRequest], dict[str, str]]:
    formatted, skips = format_items(destination, spec)
    settings = spec.get("settings", {})
    endpoint = destination.endpoint(settings, spec.get("endpoint"))
    requests = destination.build_requests(formatted, settings, endpoint) if formatted else []
    carried = [item_id for request in requests for item_id in request.item_ids]
    order = [f.item_id for f in formatted]
    assert sorted(carried) == sorted(order), "every formatted item travels exactly once"
    for request in requests:  # (a vendor may group items, GA4 by visitor: in order within a request)
        positions = [order.index(item_id) for item_id in request.item_ids]
        assert positions == sorted(positions), "items keep their order within a request"
    for request in requests:
        assert len(request.item_ids) <= destination.max_batch
    return requests, skips


def check_request(actual: OutboundRequest, expected: dict[str, Any], secrets: list[str]) -> None:
    view = {
        "method": actual.method,
        "url": actual.url,
        "headers": dict(actual.headers),
        "item_ids": list(actual.item_ids),
        "body": actual.body.decode() if actual.body is not None else None,
    }
    for key in ("method", "url", "headers", "item_ids", "body"):
        if key in expected:
            assert view[key] == expected[key], key
    if "json" in expected:
        assert actual.body is not None
        assert orjson.loads(actual.body) == expected["json"]
    if "masked" in expected:
        assert actual.masked(secrets) == expected["masked"]


def check_no_raw_pii(request: OutboundRequest) -> None:
    text = " ".join(
        [
            urllib.parse.unquote(request.url),
            *request.headers.values(),
            (request.body or b"").decode("utf-8", "replace"),
        ]
    )
    assert not RAW_EMAIL.search(text), f"raw email in request: {text[:200]}"
    assert not RAW_PHONE.search(text), f"raw phone in request: {text[:200]}"


def literal_request(spec: dict[str, Any]) -> OutboundRequest:
    body = orjson.dumps(spec["json"]) if "json" in spec else (spec.get("body") or "").encode() or None
    return OutboundRequest(
        spec.get("method", "POST"),
        spec.get("url", ""),
        spec.get("headers", {}),
        body,
        tuple(spec["item_ids"]),
    )


def vendor_response(spec: dict[str, Any]) -> VendorResponse:
    body = orjson.dumps(spec["json"]) if "json" in spec else str(spec.get("body", "")).encode()
    return VendorResponse(spec["status"], spec.get("headers", {}), body, spec.get("error", ""))


def run_format(destination: Destination, spec: dict[str, Any]) -> None:
    requests, skips = build(destination, spec)
    expect = spec["expect"]
    assert skips == expect.get("skips", {})
    assert len(requests) == len(expect.get("requests", [])), f"{len(requests)} requests built"
    secrets = destination.secrets_of(spec.get("settings", {}))
    for actual, expected in zip(requests, expect.get("requests", []), strict=True):
        check_request(actual, expected, secrets)
        check_no_raw_pii(actual)


def run_response(destination: Destination, spec: dict[str, Any]) -> None:
    if spec.get("request"):
        request = literal_request(spec["request"])
    else:
        requests, skips = build(destination, spec)
        assert not skips and len(requests) == 1, "a response case needs exactly one request"
        request = requests[0]
    outcomes = destination.classify(request, vendor_response(spec["response"]))
    assert set(outcomes) == set(request.item_ids), "one outcome for every item of the request"
    assert set(spec["expect"]) == set(request.item_ids)
    for item_id, expected in spec["expect"].items():
        actual = outcomes[item_id]
        assert actual.outcome.value == expected["outcome"], item_id
        if "reason" in expected:
            assert actual.reason == expected["reason"], item_id
        if "reason_contains" in expected:
            assert expected["reason_contains"] in actual.reason, item_id
        if "retry_after" in expected:
            assert actual.retry_after == expected["retry_after"], item_id


@pytest.mark.parametrize("case", ALL_CASES, ids=[case.id for case in ALL_CASES])
def test_case(case: Case) -> None:
    destination = all_destinations()[case.vendor]
    if case.kind == "response":
        run_response(destination, case.spec)
    else:
        run_format(destination, case.spec)


@pytest.mark.parametrize("vendor", sorted(all_destinations()))
def test_every_destination_has_every_kind_of_case(vendor: str) -> None:
    kinds = {case.kind for case in ALL_CASES if case.vendor == vendor}
    assert kinds == set(KINDS), f"{vendor} has golden cases of kinds {sorted(kinds)}, needs {KINDS}"


def test_case_names_are_unique() -> None:
    ids = [case.id for case in ALL_CASES]
    assert len(ids) == len(set(ids))
