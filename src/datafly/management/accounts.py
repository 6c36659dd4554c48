"""Routes of logging in and out, the current user, password changes and API tokens."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from datafly.management.auth import SESSION_COOKIE
from datafly.management.context import context_of, principal_of
from datafly.management.web import ApiError, json_response, read_json

__all__ = ["routes"]

_MIN_PASSWORD = 10


async def login(request: Request) -> Response:
    ctx = context_of(request)
    body = await read_json(request)
    username = body.get("username")
    password = body.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise ApiError(400, "send {\"username\": ..., \"password\": ...}")
    client = request.client.host if request.client else "?"
    keys = (f"client:{client}", f"user:{username}")
    wait = ctx.auth.throttle.retry_after(*keys)
    if wait > 0:
        raise_after = str(int(wait) + 1)
        return json_response(
            {"error": f"too many failed logins: try again in {raise_after} seconds"},
            429,
            {"retry-after": raise_after},
        )
    result = await ctx.auth.login(username, password)
    if result is None:
        ctx.auth.throttle.failed(*keys)
        raise ApiError(401, "wrong user name or password")
    ctx.auth.throttle.succeeded(keys[0])
    token, csrf = result
    response = json_response(
        {"token": token, "csrf_token": csrf, "user": username, "idle_timeout": ctx.auth.idle}
    )
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(ctx.auth.max_age),
        path="/",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


async def logout(request: Request) -> Response:
    await context_of(request).auth.logout(principal_of(request))
    response = json_response({"logged_out": True})
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")
    return response


async def me(request: Request) -> Response:
    principal = principal_of(request)
    return json_response({"user": principal.user, "via": principal.via, "csrf_token": principal.csrf or None})


async def change_password(request: Request) -> Response:
    body = await read_json(request)
    current, new = body.get("current_password"), body.get("new_password")
    if not isinstance(current, str) or not isinstance(new, str):
        raise ApiError(400, "send current_password and new_password")
    if len(new) < _MIN_PASSWORD:
        raise ApiError(400, "the new password is too short", [f"new_password: at least {_MIN_PASSWORD} characters"])
    if not await context_of(request).auth.change_password(principal_of(request).user, current, new):
        raise ApiError(403, "the current password is wrong")
    return json_response({"changed": True})


async def list_tokens(request: Request) -> Response:
    return json_response({"tokens": await context_of(request).auth.list_tokens()})


async def create_token(request: Request) -> Response:
    body = await read_json(request)
    name = body.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise ApiError(400, "name the token (what script uses it)", ["name: required, at most 100 characters"])
    token, view = await context_of(request).auth.create_token(principal_of(request).user, name.strip())
    return json_response({**view, "token": token, "note": "Copy the token now: it is not shown again."}, 201)


async def revoke_token(request: Request) -> Response:
    token_id = request.path_params["token_id"]
    if not await context_of(request).auth.revoke_token(token_id):
        raise ApiError(404, f"no token {token_id!r}")
    return json_response({"revoked": token_id})


routes = [
    Route("/api/login", login, methods=["POST"]),
    Route("/api/logout", logout, methods=["POST"]),
    Route("/api/me", me, methods=["GET"]),
    Route("/api/password", change_password, methods=["POST"]),
    Route("/api/tokens", list_tokens, methods=["GET"]),
    Route("/api/tokens", create_token, methods=["POST"]),
    Route("/api/tokens/{token_id}", revoke_token, methods=["DELETE"]),
]
