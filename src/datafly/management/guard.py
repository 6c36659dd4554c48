"""The gate in front of every management route: authentication, CSRF, security headers.

Every ``/api/`` route answers 401 without a valid session or token, except ``POST /api/login``
and ``GET /api/openapi.json``. Pages redirect to ``/login`` instead. A request authenticated by
the session cookie that changes state must present the session's CSRF token (header
``X-CSRF-Token``, or the ``csrf_token`` field of a URL-encoded form) and, when the browser sends
an ``Origin``, come from this same origin; otherwise it is refused with 403.
"""

from __future__ import annotations

from urllib.parse import parse_qs, quote, urlsplit

import orjson
from starlette.requests import Request

from datafly.gateway.asgi import ASGIApp, Message, Receive, Scope, Send
from datafly.management.auth import CSRF_FIELD, CSRF_HEADER, SESSION_COOKIE, Authenticator, csrf_valid

__all__ = ["Guard"]

_SAFE = {"GET", "HEAD", "OPTIONS"}
_PUBLIC_API = {("POST", "/api/login"), ("GET", "/api/openapi.json"), ("HEAD", "/api/openapi.json")}
_MAX_FORM = 1024 * 1024
_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    ),
]


async def _answer(send: Send, status: int, body: dict[str, str], extra: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"cache-control", b"no-store"), *extra],
        }
    )
    await send({"type": "http.response.body", "body": orjson.dumps(body)})


class Guard:
    def __init__(self, app: ASGIApp, auth: Authenticator) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_HEADERS]
            await send(message)

        path: str = scope["path"]
        method: str = scope["method"]
        is_api = path == "/api" or path.startswith("/api/")
        if (method, path) in _PUBLIC_API or path.startswith("/static/"):
            await self.app(scope, receive, send_with_headers)
            return
        request = Request(scope)
        principal = await self.auth.authenticate(
            request.headers.get("authorization", ""), request.cookies.get(SESSION_COOKIE, "")
        )
        if path == "/login" and method in _SAFE:
            scope.setdefault("state", {})["principal"] = principal
            await self.app(scope, receive, send_with_headers)
            return
        if principal is None:
            if is_api:
                await _answer(
                    send_with_headers,
                    401,
                    {"error": "log in first: POST /api/login, then send Authorization: Bearer TOKEN"},
                    [(b"www-authenticate", b'Bearer realm="datafly"')],
                )
            else:
                target = path + ("?" + scope["query_string"].decode("latin-1") if scope["query_string"] else "")
                location = "/login?next=" + quote(target, safe="/")
                await send_with_headers(
                    {"type": "http.response.start", "status": 303, "headers": [(b"location", location.encode())]}
                )
                await send_with_headers({"type": "http.response.body", "body": b""})
            return
        if principal.needs_csrf and method not in _SAFE:
            origin = request.headers.get("origin")
            if origin and urlsplit(origin).netloc != request.headers.get("host", ""):
                await _answer(send_with_headers, 403, {"error": "cross-origin request refused"}, [])
                return
            presented = request.headers.get(CSRF_HEADER, "")
            content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if not presented and content_type == "application/x-www-form-urlencoded":
                body, receive = await _buffer(receive)
                fields = parse_qs(body.decode("utf-8", "replace")) if len(body) <= _MAX_FORM else {}
                presented = (fields.get(CSRF_FIELD) or [""])[0]
            if not csrf_valid(principal, presented):
                await _answer(
                    send_with_headers,
                    403,
                    {"error": "missing or wrong CSRF token: reload the page and try again"},
                    [],
                )
                return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send_with_headers)


async def _buffer(receive: Receive) -> tuple[bytes, Receive]:
    """Read the whole body, and a ``receive`` that gives it again to the app."""
    chunks: list[bytes] = []
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        more = bool(message.get("more_body"))
    body = b"".join(chunks)
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay
