"""The few ASGI shapes the gateway uses, typed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

JSON = (b"content-type", b"application/json")


def header_map(scope: Scope) -> dict[bytes, bytes]:
    """Request headers by lower-case name (repeated headers: the last one, cookies joined)."""
    found: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        if name == b"cookie" and name in found:
            found[name] += b"; " + value
        else:
            found[name] = value
    return found


async def respond(send: Send, status: int, body: bytes, headers: Headers) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def respond_json(send: Send, status: int, data: Any, headers: Headers | None = None) -> None:
    await respond(send, status, orjson.dumps(data), [JSON, *(headers or [])])


async def respond_error(send: Send, status: int, message: str, headers: Headers | None = None) -> None:
    await respond_json(send, status, {"error": message}, headers)
