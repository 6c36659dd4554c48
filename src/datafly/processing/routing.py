"""Consent and routing: which integrations receive an event, and which were filtered out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from datafly.events import event_key
from datafly.processing.profile import Profile


@dataclass(frozen=True)
class Route:
    """An integration as routing sees it."""

    integration_id: str
    mapping: Mapping[str, str]  # event key -> mapping value ("*" matches every event)
    sources: frozenset[str] | None = None
    consent: tuple[str, ...] = ()


@dataclass(frozen=True)
class Routed:
    integration_id: str
    mapping: str
    first_in_session: bool


@dataclass(frozen=True)
class Filtered:
    integration_id: str
    reason: str


def consent_missing(event: dict[str, Any], required: Sequence[str]) -> list[str]:
    """The required categories not granted; an event without consent grants none."""
    consent = event["context"].get("consent") or {}
    canonical = consent.get("canonical") or {}
    return [c for c in required if canonical.get(c) is not True]


def route_event(
    event: dict[str, Any], routes: Sequence[Route], profile: Profile
) -> tuple[list[Routed], list[Filtered]]:
    key = event_key(event)
    routed: list[Routed] = []
    filtered: list[Filtered] = []
    for route in routes:
        if route.sources is not None and event["sourceId"] not in route.sources:
            continue
        value = route.mapping.get(key, route.mapping.get("*"))
        if value is None:
            continue
        missing = consent_missing(event, route.consent)
        if missing:
            filtered.append(Filtered(route.integration_id, f"consent not granted: {', '.join(missing)}"))
            continue
        first = False
        if event["type"] == "page":
            session = str(event["context"]["session"]["id"])
            first = profile.page_sessions.get(route.integration_id) != session
            profile.page_sessions[route.integration_id] = session
        routed.append(Routed(route.integration_id, value, first))
    return routed, filtered
