"""The management app served by ``datafly serve`` at ``/``: the REST API under ``/api/`` and the UI.

``create_management_app(runtime)`` registers a startup hook on the runtime (first admin,
UI-managed sources and integrations) and returns the ASGI app behind the :class:`Guard`.
"""

from __future__ import annotations

import logging
import os

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from datafly.gateway.asgi import ASGIApp
from datafly.management.auth import Authenticator
from datafly.management.context import Context
from datafly.management.guard import Guard
from datafly.management.integration_store import IntegrationStore
from datafly.management.routes import accounts, dead_letters, integrations, openapi, pages, sources, status
from datafly.management.secrets import SecretBox
from datafly.management.source_store import SourceStore
from datafly.management.web import ApiError, json_response
from datafly.runtime.roles import Runtime

__all__ = ["api_routes", "create_management_app"]

log = logging.getLogger("datafly.management")


def api_routes() -> list[BaseRoute]:
    return [
        *accounts.routes,
        *integrations.routes,
        *sources.routes,
        *dead_letters.routes,
        *status.routes,
        *openapi.routes,
    ]


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith("/api/"):
        return json_response({"error": str(exc.detail)}, exc.status_code)
    if exc.status_code == 404:
        return pages.render(request, "not_found.html", 404, title="Not found", what="There is no such page.")
    return Response(str(exc.detail), exc.status_code)


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("management request failed: %s %s", request.method, request.url.path, exc_info=exc)
    return json_response({"error": "internal error: see the server log"}, 500)


def create_management_app(runtime: Runtime) -> ASGIApp:
    box = SecretBox.open(runtime.home)
    auth = Authenticator(runtime.backend)
    ctx = Context(runtime, box, auth, IntegrationStore(runtime, box), SourceStore(runtime))
    runtime.startup_hooks.append(ctx.start)
    app = Starlette(
        routes=[
            *api_routes(),
            *pages.routes,
            Mount("/static", StaticFiles(directory=os.path.join(pages.UI_DIR, "static")), name="static"),
        ],
        exception_handlers={ApiError: _api_error, HTTPException: _http_error, Exception: _server_error},
    )
    app.state.ctx = ctx
    return Guard(app, auth)
