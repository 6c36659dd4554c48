"""Routes of the integration library, integrations, field mappings and their preview."""

from __future__ import annotations

import dataclasses

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from datafly.destinations.registry import get_destination
from datafly.management.catalog import sample_event, vendor_view, vendors
from datafly.management.context import context_of
from datafly.management.debugger import all_secrets
from datafly.management.integration_store import overrides_for
from datafly.management.preview import preview_request
from datafly.management.redact import redact
from datafly.management.web import ApiError, json_response, read_json

__all__ = ["routes"]


async def list_vendors(request: Request) -> Response:
    return json_response({"vendors": vendors()})


async def get_vendor(request: Request) -> Response:
    destination = get_destination(request.path_params["vendor"])
    if destination is None:
        raise ApiError(404, f"no vendor {request.path_params['vendor']!r} in the library")
    return json_response(vendor_view(destination))


async def list_integrations(request: Request) -> Response:
    return json_response({"integrations": context_of(request).integrations.all_views()})


async def create_integration(request: Request) -> Response:
    store = context_of(request).integrations
    integration = await store.create(await read_json(request))
    return json_response(store.view(integration), 201)


async def get_integration(request: Request) -> Response:
    store = context_of(request).integrations
    return json_response(store.view(store.get(request.path_params["integration_id"])))


async def update_integration(request: Request) -> Response:
    store = context_of(request).integrations
    integration = await store.update(request.path_params["integration_id"], await read_json(request))
    return json_response(store.view(integration))


async def delete_integration(request: Request) -> Response:
    iid = request.path_params["integration_id"]
    await context_of(request).integrations.delete(iid)
    return json_response({"deleted": iid})


async def preview(request: Request) -> Response:
    """The request a sample event would produce, with unsaved mapping and field-source changes applied."""
    ctx = context_of(request)
    integration = ctx.integrations.get(request.path_params["integration_id"])
    body = await read_json(request)
    destination = get_destination(integration.vendor)
    assert destination is not None
    if "mapping" in body or "events" in body:
        events = body.get("events")
        mapping = body.get("mapping")
        if isinstance(mapping, dict):
            events = overrides_for(destination.presets[integration.preset].events, mapping)
        if not isinstance(events, dict):
            raise ApiError(400, "mapping: expected event: value pairs")
        integration = dataclasses.replace(integration, events=events)
    if "fields" in body:  # unsaved field sources, applied exactly as the delivery worker applies them
        integration = dataclasses.replace(
            integration, fields=ctx.integrations.check_fields(body["fields"], integration.vendor)
        )
    sample = body.get("event") or sample_event(integration.mapping(), list(integration.consent))
    processing = ctx.runtime.config.processing
    result = preview_request(
        integration,
        ctx.runtime.settings_of(integration),
        sample,
        processing.session_timeout,
        processing.phone_region,
    )
    return json_response({**result, "sample": redact(sample, all_secrets(ctx.runtime))})


async def deliveries(request: Request) -> Response:
    """The integration's latest delivery attempts, newest first."""
    ctx = context_of(request)
    integration = ctx.integrations.get(request.path_params["integration_id"])
    try:
        limit = max(1, min(500, int(request.query_params.get("limit", "50"))))
    except ValueError as exc:
        raise ApiError(400, "limit: expected a number") from exc
    rows = await ctx.runtime.backend.delivery_log(integration_id=integration.id, limit=limit)
    return json_response({"deliveries": redact(rows, all_secrets(ctx.runtime))})


routes = [
    Route("/api/vendors", list_vendors, methods=["GET"]),
    Route("/api/vendors/{vendor}", get_vendor, methods=["GET"]),
    Route("/api/integrations", list_integrations, methods=["GET"]),
    Route("/api/integrations", create_integration, methods=["POST"]),
    Route("/api/integrations/{integration_id}", get_integration, methods=["GET"]),
    Route("/api/integrations/{integration_id}", update_integration, methods=["PATCH"]),
    Route("/api/integrations/{integration_id}", delete_integration, methods=["DELETE"]),
    Route("/api/integrations/{integration_id}/preview", preview, methods=["POST"]),
    Route("/api/integrations/{integration_id}/deliveries", deliveries, methods=["GET"]),
]
