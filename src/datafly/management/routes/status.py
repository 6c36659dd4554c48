"""Routes of health, the live Event Debugger stream and one event's journey."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from datafly.management.context import context_of
from datafly.management.debugger import StreamFilter, event_stream, journey
from datafly.management.health import WINDOW, health_report
from datafly.management.web import ApiError, json_response

__all__ = ["routes"]


async def health(request: Request) -> Response:
    ctx = context_of(request)
    try:
        window = float(request.query_params.get("window", WINDOW))
    except ValueError as exc:
        raise ApiError(400, "window: expected seconds") from exc
    window = max(60.0, min(7 * 86400.0, window))
    ids = sorted(i.id for i in ctx.runtime.integrations.all())
    report = await health_report(ctx.runtime.backend, ids, window)
    enabled = {i.id: i.enabled for i in ctx.runtime.integrations.all()}
    for entry in report["integrations"]:
        entry["enabled"] = enabled.get(entry["integration_id"], False)
    ready = await ctx.runtime.backend.healthy()
    return json_response({"ready": ready, "role": ctx.runtime.role, **report})


async def stream(request: Request) -> Response:
    wanted = StreamFilter.from_query(request.query_params)
    return StreamingResponse(
        event_stream(context_of(request).runtime, wanted),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


async def event_journey(request: Request) -> Response:
    return json_response(await journey(context_of(request).runtime, request.path_params["message_id"]))


routes = [
    Route("/api/health", health, methods=["GET"]),
    Route("/api/debugger/stream", stream, methods=["GET"]),
    Route("/api/events/{message_id}", event_journey, methods=["GET"]),
]
