"""Routes of logging in and out, the current user, password changes and API tokens."""

from __future__ import annotations

import ipaddress
import math

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from datafly.management.auth import SESSION_COOKIE
from datafly.management.context import Context, context_of, principal_of
from datafly.management.web import ApiError, json_response, read_json

__all__ = ["client_key", "routes"]

_MIN_PASSWORD = 10
_MAX_PASSWORD = 1024
_MAX_USERNAME = 200
_MAX_TOKEN_DAYS = 3650


def client_key(request: Request, ctx: Context) -> str:
    """Who is knocking, for login throttling: the client's address (taken from X-Forwarded-For
    only when the peer is one of ``gateway.trusted_proxies``, as the gateway does); an IPv6
    client by its /64, which one machine usually holds whole."""
    gateway = ctx.runtime.config.gateway
    address = request.client.host if request.client else ""
    forwarded = request.headers.get("x-forwarded-for")
    if forwarded and gateway.is_trusted_proxy(address):
        for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
            address = hop
            if not gateway.is_trusted_proxy(hop):
                break
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:100] or "?"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip.ipv4_mapped or ip) if isinstance(ip, ipaddress.IPv6Address) else str(ip)


def _too_many(wait: float) -> Response:
    seconds = str(int(wait) + 1)
    return json_response(
        {"error": f"too many failed attempts: try again in {seconds} seconds"}, 429, {"retry-after": seconds}
    )


async def login(request: Request) -> Response:
    ctx = context_of(request)
    body = await read_json(request)
    username = body.get("username")
    password = body.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise ApiError(400, "send {\"username\": ..., \"password\": ...}")
    if len(username) > _MAX_USERNAME or len(password) > _MAX_PASSWORD:
        raise ApiError(400, f"a user name has at most {_MAX_USERNAME} characters, a password {_MAX_PASSWORD}")
    # failures count per (client, user name): a stranger failing for admin locks out only himself
    client = client_key(request, ctx)
    pair = f"{client} {username}"
    wait = max(ctx.auth.throttle.retry_after(pair), ctx.auth.client_throttle.retry_after(client))
    if wait > 0:
        return _too_many(wait)
    result = await ctx.auth.login(username, password)
    if result is None:
        ctx.auth.throttle.failed(pair)
        ctx.auth.client_throttle.failed(client)
        raise ApiError(401, "wrong user name or password")
    ctx.auth.throttle.succeeded(pair)
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
    """End this session; called with an API token, revoke that token."""
    principal = principal_of(request)
    await context_of(request).auth.logout(principal)
    answer: dict[str, object] = {"logged_out": True}
    if principal.via == "token":
        answer["revoked_token"] = principal.credential_id
    response = json_response(answer)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")
    return response


async def me(request: Request) -> Response:
    principal = principal_of(request)
    return json_response({"user": principal.user, "via": principal.via, "csrf_token": principal.csrf or None})


async def change_password(request: Request) -> Response:
    """Change the caller's password. Every other session of the user ends and every API token of
    the user is revoked (the credential making the change is kept)."""
    ctx = context_of(request)
    principal = principal_of(request)
    body = await read_json(request)
    current, new = body.get("current_password"), body.get("new_password")
    if not isinstance(current, str) or not isinstance(new, str):
        raise ApiError(400, "send current_password and new_password")
    if len(new) < _MIN_PASSWORD:
        raise ApiError(400, "the new password is too short", [f"new_password: at least {_MIN_PASSWORD} characters"])
    if len(new) > _MAX_PASSWORD or len(current) > _MAX_PASSWORD:
        raise ApiError(400, "the password is too long", [f"new_password: at most {_MAX_PASSWORD} characters"])
    pair = f"{client_key(request, ctx)} {principal.user}"  # wrong current passwords count as failed logins
    wait = ctx.auth.throttle.retry_after(pair)
    if wait > 0:
        return _too_many(wait)
    revoked = await ctx.auth.change_password(principal, current, new)
    if revoked is None:
        ctx.auth.throttle.failed(pair)
        raise ApiError(403, "the current password is wrong")
    return json_response({"changed": True, "revoked": revoked})


async def list_tokens(request: Request) -> Response:
    return json_response({"tokens": await context_of(request).auth.list_tokens()})


async def create_token(request: Request) -> Response:
    body = await read_json(request)
    name = body.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise ApiError(400, "name the token (what script uses it)", ["name: required, at most 100 characters"])
    ctx = context_of(request)
    expires_at = _expiry(body, ctx.auth.clock())
    token, view = await ctx.auth.create_token(principal_of(request).user, name.strip(), expires_at)
    return json_response({**view, "token": token, "note": "Copy the token now: it is not shown again."}, 201)


def _expiry(body: dict[str, object], now: float) -> float | None:
    """``expires_in_days`` (a whole number of days) or ``expires_at`` (epoch seconds), or None."""
    days, at = body.get("expires_in_days"), body.get("expires_at")
    if days is not None and at is not None:
        raise ApiError(400, "send expires_in_days or expires_at, not both")
    if days is not None:
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= _MAX_TOKEN_DAYS:
            raise ApiError(400, "the expiry is not valid", [f"expires_in_days: a whole number from 1 to {_MAX_TOKEN_DAYS}"])
        return now + days * 86400.0
    if at is not None:
        latest = now + _MAX_TOKEN_DAYS * 86400.0
        if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at) or not now < at <= latest:
            raise ApiError(
                400,
                "the expiry is not valid",
                [f"expires_at: a time in the future (Unix seconds), at most {_MAX_TOKEN_DAYS} days ahead"],
            )
        return float(at)
    return None


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
