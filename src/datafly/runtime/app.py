"""The ASGI app of ``datafly serve``: the gateway's fast routes first, then management."""

from __future__ import annotations

import logging

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from datafly.gateway.asgi import (
    ASGIApp,
    Receive,
    Scope,
    Send,
    header_map,
    respond,
    respond_error,
    respond_json,
)
from datafly.gateway.collector_asset import CollectorAsset
from datafly.gateway.ingest import ROUTES, Ingest
from datafly.runtime.roles import Runtime

log = logging.getLogger("datafly")


def _management_app(runtime: Runtime) -> ASGIApp | None:
    import importlib

    try:
        module = importlib.import_module("datafly.management.app")
    except ModuleNotFoundError as exc:
        if exc.name != "datafly.management.app":
            raise
        return None
    app: ASGIApp = module.create_management_app(runtime)
    return app


class DataflyApp:
    def __init__(self, runtime: Runtime, with_management: bool = True) -> None:
        self.runtime = runtime
        config = runtime.config
        self.ingest = Ingest(
            runtime.backend, runtime.sources, config.gateway, config.processing, runtime.metrics
        )
        self.collector = CollectorAsset()
        self.serves_gateway = runtime.role in ("all", "gateway")
        self.management = _management_app(runtime) if with_management and runtime.role == "all" else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.lifespan(receive, send)
            return
        if kind != "http" and self.management is None:
            return
        path = scope["path"] if kind == "http" else ""
        if self.serves_gateway and path in ROUTES:
            activity = self.runtime.gateway_activity
            activity.enter()
            try:
                await self.ingest(scope, receive, send, ROUTES[path])
            finally:
                activity.leave()
        elif path == "/d.js" and self.serves_gateway and scope["method"] in ("GET", "HEAD"):
            headers = header_map(scope)
            status, out_headers, body = self.collector.respond(
                headers.get(b"if-none-match", b"").decode("latin-1") or None,
                headers.get(b"accept-encoding", b"").decode("latin-1"),
            )
            await respond(send, status, body, out_headers)
        elif path == "/healthz":
            await respond_json(send, 200, {"status": "ok", "role": self.runtime.role})
        elif path == "/readyz":
            healthy = await self.runtime.backend.healthy()
            await respond_json(send, 200 if healthy else 503, {"ready": healthy, "role": self.runtime.role})
        elif path == "/metrics":
            await respond(
                send,
                200,
                generate_latest(self.runtime.metrics.registry),
                [(b"content-type", CONTENT_TYPE_LATEST.encode())],
            )
        elif self.management is not None:
            await self.management(scope, receive, send)
        else:
            await respond_error(send, 404, "not found")

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.runtime.start()
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.runtime.stop()
                except Exception:
                    log.exception("shutdown failed")
                await send({"type": "lifespan.shutdown.complete"})
                return
