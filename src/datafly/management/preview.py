"""Field-mapping preview: the exact request a sample event would produce, before saving.

Runs the same pure steps as the pipeline (normalise, session and identity, consent routing,
the destination's ``format_item`` with the integration's field-source overrides, and
``build_requests``) and returns the request masked.

It never answers 500: an event the gateway would refuse (``validate_event``) is a 400 with the
gateway's message; any exception of the steps after it (a formatter's bug, a value it cannot
encode) is a 422 with the error's text, secrets masked.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from datafly.config import Integration
from datafly.destinations.base import Destination, Item, Skip, event_key, mask_text
from datafly.destinations.registry import get_destination
from datafly.errors import InvalidEvent
from datafly.management.redact import redact
from datafly.management.web import ApiError
from datafly.processing.normalise import RequestInfo, normalise_event, validate_event
from datafly.processing.pipeline import process_event
from datafly.processing.profile import Profile
from datafly.processing.routing import Route

__all__ = ["preview_request"]


def preview_request(
    integration: Integration,
    settings: Mapping[str, Any],
    sample: Any,
    session_timeout: float = 1800.0,
    phone_region: str | None = None,
) -> dict[str, Any]:
    """``{"outcome": request|filtered|not_mapped|skipped|invalid, ...}`` for one sample event.

    Raises :class:`ApiError` 400 for an event the gateway would refuse, 422 when a step fails."""
    destination = get_destination(integration.vendor)
    if destination is None:
        return {"outcome": "invalid", "reason": f"unknown vendor {integration.vendor}"}
    secrets = destination.secrets_of(settings)
    now = time.time()
    info = RequestInfo(
        source_id=(integration.sources or ("preview",))[0],
        ip="203.0.113.50",
        user_agent="Mozilla/5.0 (preview)",
        anonymous_id="a1b2c3d4e5f6-preview",
        received_at=now,
        phone_region=phone_region,
    )
    try:
        validate_event(sample)
        event = normalise_event(sample, info)
    except InvalidEvent as exc:
        raise ApiError(400, f"the gateway would refuse this event: {exc.message}") from exc
    try:
        return _preview(destination, integration, settings, event, session_timeout)
    except Exception as exc:  # a destination's bug must not become a 500
        raise ApiError(422, mask_text(f"the event cannot be previewed: {type(exc).__name__}: {exc}", secrets)) from exc


def _preview(
    destination: Destination,
    integration: Integration,
    settings: Mapping[str, Any],
    event: dict[str, Any],
    session_timeout: float,
) -> dict[str, Any]:
    secrets = destination.secrets_of(settings)
    route = Route(integration.id, integration.mapping(), None, tuple(integration.consent))
    processed = process_event(event, Profile(anonymous_id=event["anonymousId"]), [route], session_timeout)
    shown = redact(processed.event, secrets)
    key = event_key(processed.event)
    if processed.filtered:
        return {"outcome": "filtered", "reason": processed.filtered[0].reason, "event": shown}
    if not processed.routed:
        return {
            "outcome": "not_mapped",
            "reason": f"{key!r} is not mapped: add it to the field mappings to send it",
            "event": shown,
        }
    routed = processed.routed[0]
    item = Item("preview", processed.event, routed.mapping, routed.first_in_session)
    formatted = destination.format_for(item, settings, integration.fields)  # as the delivery worker does
    if isinstance(formatted, Skip):
        return {"outcome": "skipped", "reason": formatted.reason, "mapping": routed.mapping, "event": shown}
    endpoint = destination.endpoint(settings, integration.endpoint)
    requests = destination.build_requests([formatted], settings, endpoint)
    return {
        "outcome": "request",
        "event_key": key,
        "mapping": routed.mapping,
        "request": requests[0].masked(secrets) if requests else None,
        "event": shown,
    }
