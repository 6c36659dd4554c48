"""The web UI's pages: server-rendered from the same services as the API, a little JS on top."""

from __future__ import annotations

import os
import re
import time
from typing import Any
from urllib.parse import urlsplit

import orjson
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from datafly.destinations.registry import get_destination
from datafly.management.catalog import CONSENT_CATEGORIES, sample_event, vendor_view, vendors
from datafly.management.context import context_of, principal_of
from datafly.management.debugger import all_secrets
from datafly.management.health import health_report
from datafly.management.redact import redact
from datafly.management.routes.sources import base_url
from datafly.outcomes import VIEW

__all__ = ["UI_DIR", "routes", "safe_next"]

UI_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "ui")
_env = Environment(
    loader=FileSystemLoader(os.path.join(UI_DIR, "templates")),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _ago(at: float | None) -> str:
    if not at:
        return "—"
    seconds = max(0, int(time.time() - float(at)))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def _until(at: float | None) -> str:
    if not at:
        return "never"
    seconds = max(0, int(float(at) - time.time()))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"in {seconds // size} {unit}"
    return f"in {seconds} s"


def _ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


def _json_data(value: Any) -> Markup:
    """JSON for a ``<script type="application/json">`` block (safe against ``</script>``)."""
    text = orjson.dumps(value).decode().replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)  # escaped above


_env.globals["outcome_view"] = {str(k): v for k, v in VIEW.items()}
_env.filters["ago"] = _ago
_env.filters["ms"] = _ms
_env.filters["until"] = _until
_env.filters["json_data"] = _json_data
_env.filters["pretty"] = lambda v: orjson.dumps(v, option=orjson.OPT_INDENT_2).decode()


def render(request: Request, template: str, status: int = 200, **values: Any) -> Response:
    principal = request.state.principal if hasattr(request.state, "principal") else None
    html = _env.get_template(template).render(
        request=request,
        user=principal.user if principal else None,
        csrf_token=principal.csrf if principal else "",
        path=request.url.path,
        **values,
    )
    return HTMLResponse(html, status, headers={"cache-control": "no-store"})


def _not_found(request: Request, what: str) -> Response:
    return render(request, "not_found.html", 404, title="Not found", what=what)


_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f-\x9f]")


def safe_next(target: str | None) -> str:
    """``target`` when it is a path on this origin, else ``/``.

    A path starts with one ``/`` and holds no backslash, control character, tab or space (a
    browser drops tabs and line breaks and reads ``\\`` as ``/``, so ``/\\evil.example`` and
    ``/<tab>/evil.example`` would lead to another origin), no scheme and no host."""
    if not target or len(target) > 2000 or not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target or _CONTROL_OR_SPACE.search(target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


async def login_page(request: Request) -> Response:
    target = safe_next(request.query_params.get("next"))
    if getattr(request.state, "principal", None) is not None:
        return RedirectResponse(target, 303)
    return render(request, "login.html", title="Log in", next=target)


async def overview(request: Request) -> Response:
    ctx = context_of(request)
    integrations = ctx.integrations.all_views()
    report = await health_report(ctx.runtime.backend, [i["id"] for i in integrations])
    by_id = {i["id"]: i for i in integrations}
    rows = [{**entry, "integration": by_id[entry["integration_id"]]} for entry in report["integrations"]]
    totals = {k: sum(r[k] for r in rows) for k in ("sent", "failed", "retrying", "filtered", "dead_lettered")}
    return render(
        request,
        "overview.html",
        title="Overview",
        rows=rows,
        totals=totals,
        ready=await ctx.runtime.backend.healthy(),
        sources=ctx.sources.views(base_url(request)),
    )


async def integrations_page(request: Request) -> Response:
    ctx = context_of(request)
    return render(request, "integrations.html", title="Integrations", integrations=ctx.integrations.all_views())


async def library_page(request: Request) -> Response:
    return render(request, "library.html", title="Add Integration", vendors=vendors())


def _form_values(request: Request) -> dict[str, Any]:
    ctx = context_of(request)
    return {
        "categories": CONSENT_CATEGORIES,
        "sources": ctx.sources.views(base_url(request)),
    }


async def new_integration_page(request: Request) -> Response:
    destination = get_destination(request.path_params["vendor"])
    if destination is None:
        return _not_found(request, f"There is no vendor called {request.path_params['vendor']!r} in the library.")
    vendor = vendor_view(destination)
    return render(
        request,
        "integration_form.html",
        title=f"Add Integration: {vendor['title']}",
        vendor=vendor,
        integration=None,
        suggested_id=context_of(request).integrations.new_id(destination.vendor),
        **_form_values(request),
    )


async def integration_page(request: Request) -> Response:
    ctx = context_of(request)
    found = ctx.runtime.integrations.get(request.path_params["integration_id"])
    if found is None:
        return _not_found(request, f"There is no integration called {request.path_params['integration_id']!r}.")
    destination = get_destination(found.vendor)
    assert destination is not None
    rows = await ctx.runtime.backend.delivery_log(integration_id=found.id, limit=25)
    return render(
        request,
        "integration_form.html",
        title=found.id,
        vendor=vendor_view(destination),
        integration=ctx.integrations.view(found),
        deliveries=redact(rows, all_secrets(ctx.runtime)),
        **_form_values(request),
    )


async def mappings_page(request: Request) -> Response:
    ctx = context_of(request)
    found = ctx.runtime.integrations.get(request.path_params["integration_id"])
    if found is None:
        return _not_found(request, f"There is no integration called {request.path_params['integration_id']!r}.")
    destination = get_destination(found.vendor)
    assert destination is not None
    return render(
        request,
        "mappings.html",
        title=f"{found.id}: Field Mappings",
        vendor=vendor_view(destination),
        integration=ctx.integrations.view(found),
        sample=sample_event(found.mapping(), list(found.consent)),
    )


async def sources_page(request: Request) -> Response:
    ctx = context_of(request)
    return render(request, "sources.html", title="Sources", sources=ctx.sources.views(base_url(request)))


async def debugger_page(request: Request) -> Response:
    ctx = context_of(request)
    return render(
        request,
        "debugger.html",
        title="Event Debugger",
        integrations=ctx.integrations.all_views(),
        sources=ctx.sources.views(base_url(request)),
        base=base_url(request),
    )


async def dead_letters_page(request: Request) -> Response:
    ctx = context_of(request)
    chosen = request.query_params.get("integration") or None
    rows = await ctx.runtime.backend.dead_letters(integration_id=chosen, limit=200)
    return render(
        request,
        "dead_letters.html",
        title="Dead Letters",
        dead_letters=redact(rows, all_secrets(ctx.runtime)),
        integrations=ctx.integrations.all_views(),
        chosen=chosen,
    )


async def settings_page(request: Request) -> Response:
    ctx = context_of(request)
    return render(
        request,
        "settings.html",
        title="Settings",
        tokens=await ctx.auth.list_tokens(),
        principal=principal_of(request),
        idle=ctx.auth.idle,
        max_age=ctx.auth.max_age,
    )


routes = [
    Route("/login", login_page, methods=["GET"]),
    Route("/", overview, methods=["GET"]),
    Route("/integrations", integrations_page, methods=["GET"]),
    Route("/integrations/new", library_page, methods=["GET"]),
    Route("/integrations/new/{vendor}", new_integration_page, methods=["GET"]),
    Route("/integrations/{integration_id}", integration_page, methods=["GET"]),
    Route("/integrations/{integration_id}/mappings", mappings_page, methods=["GET"]),
    Route("/sources", sources_page, methods=["GET"]),
    Route("/debugger", debugger_page, methods=["GET"]),
    Route("/dead-letters", dead_letters_page, methods=["GET"]),
    Route("/settings", settings_page, methods=["GET"]),
]
