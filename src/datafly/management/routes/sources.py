"""Routes of sources: pipeline keys (create, rotate, revoke) and the page snippet."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from datafly.management.context import context_of
from datafly.management.web import json_response, read_json

__all__ = ["base_url", "routes"]


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


async def list_sources(request: Request) -> Response:
    return json_response({"sources": context_of(request).sources.views(base_url(request))})


async def create_source(request: Request) -> Response:
    store = context_of(request).sources
    doc = await store.create(await read_json(request))
    return json_response(store.view(str(doc["id"]), base_url(request)), 201)


async def get_source(request: Request) -> Response:
    return json_response(context_of(request).sources.view(request.path_params["source_id"], base_url(request)))


async def update_source(request: Request) -> Response:
    store = context_of(request).sources
    doc = await store.update(request.path_params["source_id"], await read_json(request))
    return json_response(store.view(str(doc["id"]), base_url(request)))


async def rotate_source(request: Request) -> Response:
    store = context_of(request).sources
    doc = await store.rotate(request.path_params["source_id"])
    return json_response(store.view(str(doc["id"]), base_url(request)))


async def revoke_source(request: Request) -> Response:
    sid = request.path_params["source_id"]
    await context_of(request).sources.revoke(sid)
    return json_response({"revoked": sid})


routes = [
    Route("/api/sources", list_sources, methods=["GET"]),
    Route("/api/sources", create_source, methods=["POST"]),
    Route("/api/sources/{source_id}", get_source, methods=["GET"]),
    Route("/api/sources/{source_id}", update_source, methods=["PATCH"]),
    Route("/api/sources/{source_id}", revoke_source, methods=["DELETE"]),
    Route("/api/sources/{source_id}/rotate", rotate_source, methods=["POST"]),
]
