"""One event through the processing stages, in order. Pure: the caller supplies the profile
and whether the messageId was seen, and stores what comes back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from datafly.processing.identity import apply_identity
from datafly.processing.profile import Profile
from datafly.processing.routing import Filtered, Route, Routed, route_event
from datafly.processing.sessions import apply_session
from datafly.processing.timestamps import parse_ts


@dataclass
class Processed:
    event: dict[str, Any]
    routed: list[Routed] = field(default_factory=list)
    filtered: list[Filtered] = field(default_factory=list)


def process_event(
    event: dict[str, Any], profile: Profile, routes: Sequence[Route], session_timeout: float
) -> Processed:
    """Enrich ``event`` (in place) from and into ``profile``, then route it."""
    at = parse_ts(event["timestamp"]) or parse_ts(event["receivedAt"]) or 0.0
    apply_session(event, profile, at, session_timeout)
    apply_identity(event, profile)
    routed, filtered = route_event(event, routes, profile)
    return Processed(event, routed, filtered)
