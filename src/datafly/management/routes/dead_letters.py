"""Routes of dead letters: list them with their reasons, replay after fixing the cause, discard."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from datafly.management.context import context_of
from datafly.management.debugger import all_secrets
from datafly.management.redact import redact
from datafly.management.web import ApiError, json_response, read_json

__all__ = ["routes"]


def _selection(body: dict[str, Any]) -> tuple[list[str] | None, str | None]:
    """``ids`` (a list) or every dead letter, optionally of one ``integration``."""
    ids = body.get("ids")
    integration = body.get("integration") or None
    if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, str | int) for i in ids)):
        raise ApiError(400, "ids: expected a list of dead letter ids")
    if integration is not None and not isinstance(integration, str):
        raise ApiError(400, "integration: expected an integration id")
    if ids is None and not body.get("all") and integration is None:
        raise ApiError(400, "choose what: {\"ids\": [...]}, {\"integration\": id} or {\"all\": true}")
    return ([str(i) for i in ids] if ids is not None else None), integration


async def list_dead_letters(request: Request) -> Response:
    ctx = context_of(request)
    integration = request.query_params.get("integration") or None
    try:
        limit = max(1, min(1000, int(request.query_params.get("limit", "200"))))
    except ValueError as exc:
        raise ApiError(400, "limit: expected a number") from exc
    rows = await ctx.runtime.backend.dead_letters(integration_id=integration, limit=limit)
    return json_response({"dead_letters": redact(rows, all_secrets(ctx.runtime))})


async def replay(request: Request) -> Response:
    ids, integration = _selection(await read_json(request))
    try:
        count = await context_of(request).runtime.backend.replay_dead_letters(ids, integration, time.time())
    except ValueError as exc:
        raise ApiError(400, "ids: not dead letter ids") from exc
    return json_response({"replayed": count})


async def discard(request: Request) -> Response:
    ids, integration = _selection(await read_json(request))
    try:
        count = await context_of(request).runtime.backend.discard_dead_letters(ids, integration)
    except ValueError as exc:
        raise ApiError(400, "ids: not dead letter ids") from exc
    return json_response({"discarded": count})


async def replay_one(request: Request) -> Response:
    dead_id = request.path_params["dead_letter_id"]
    try:
        count = await context_of(request).runtime.backend.replay_dead_letters([dead_id], None, time.time())
    except ValueError:
        count = 0
    if not count:
        raise ApiError(404, f"no dead letter {dead_id!r}")
    return json_response({"replayed": count})


async def discard_one(request: Request) -> Response:
    dead_id = request.path_params["dead_letter_id"]
    try:
        count = await context_of(request).runtime.backend.discard_dead_letters([dead_id], None)
    except ValueError:
        count = 0
    if not count:
        raise ApiError(404, f"no dead letter {dead_id!r}")
    return json_response({"discarded": 1})


routes = [
    Route("/api/dead-letters", list_dead_letters, methods=["GET"]),
    Route("/api/dead-letters/replay", replay, methods=["POST"]),
    Route("/api/dead-letters/discard", discard, methods=["POST"]),
    Route("/api/dead-letters/{dead_letter_id}/replay", replay_one, methods=["POST"]),
    Route("/api/dead-letters/{dead_letter_id}", discard_one, methods=["DELETE"]),
]
