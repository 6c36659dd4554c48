"""The OpenAPI 3.1 document of the management API (``GET /api/openapi.json``, no login needed).

Every status an operation can answer is described, with its body: the success answer, and the
``Error`` body of 400 (invalid input), 401 (no login), 403 (CSRF, or a wrong current password),
404 (no such id), 405 (a path parameter holding ``/`` names another route), 409 (the id exists,
or a config-file object is read-only here), 413 and 415 (a JSON body over 1 MiB, or not JSON),
422 (a preview a formatter could not build) and 429 (failed logins, with ``Retry-After``).
``tests/management/test_openapi_fuzz.py`` checks it against the live server with Schemathesis.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from datafly import __version__
from datafly.destinations.base import Destination
from datafly.destinations.registry import all_destinations
from datafly.management.catalog import vendors
from datafly.management.web import json_response

__all__ = ["OPERATIONS", "openapi_document", "routes"]

_OBJ: dict[str, Any] = {"type": "object", "additionalProperties": True}
_ID_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_JSON_TYPES = {"string": "string", "integer": "integer", "boolean": "boolean", "mapping": "object"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _list_of(key: str, item: str) -> dict[str, Any]:
    return {"type": "object", "properties": {key: {"type": "array", "items": _ref(item)}}, "required": [key]}


# (method, path, tag, summary, request body schema, success status, response schema)
OPERATIONS: list[tuple[str, str, str, str, dict[str, Any] | None, int, dict[str, Any]]] = [
    ("post", "/api/login", "auth", "Log in: a token for scripts and a session cookie for the UI",
     _ref("Login"), 200, _ref("LoginAnswer")),
    ("post", "/api/logout", "auth", "End this session; called with an API token, revoke that token",
     None, 200, _ref("LogoutAnswer")),
    ("get", "/api/me", "auth", "Who is calling", None, 200, _OBJ),
    ("post", "/api/password", "auth", "Change the caller's password: every other session of the user ends and "
     "every API token of the user is revoked (the credential making the change is kept)",
     _ref("PasswordChange"), 200, _ref("PasswordChanged")),
    ("get", "/api/tokens", "auth", "API tokens (without their values)", None, 200, _list_of("tokens", "Token")),
    ("post", "/api/tokens", "auth", "Create an API token; its value is shown once. Optional expiry: "
     "expires_in_days (1 to 3650) or expires_at (Unix seconds); an expired token answers 401",
     _ref("TokenInput"), 201, _ref("Token")),
    ("delete", "/api/tokens/{token_id}", "auth", "Revoke an API token", None, 200, _OBJ),
    ("get", "/api/vendors", "integrations", "The integration library: vendors, settings schemas, presets",
     None, 200, _list_of("vendors", "Vendor")),
    ("get", "/api/vendors/{vendor}", "integrations", "One vendor of the library", None, 200, _ref("Vendor")),
    ("get", "/api/integrations", "integrations", "Every integration, config-file ones included",
     None, 200, _list_of("integrations", "Integration")),
    ("post", "/api/integrations", "integrations", "Add an integration (secrets are stored encrypted)",
     _ref("IntegrationInput"), 201, _ref("Integration")),
    ("get", "/api/integrations/{integration_id}", "integrations", "One integration (secrets masked)",
     None, 200, _ref("Integration")),
    ("patch", "/api/integrations/{integration_id}", "integrations",
     "Change an integration: preset, settings (a masked or empty secret keeps the stored one), consent, "
     "sources, endpoint, mapping, fields (replaced as a whole), enabled", _ref("IntegrationChange"), 200, _ref("Integration")),
    ("delete", "/api/integrations/{integration_id}", "integrations", "Delete an integration", None, 200, _OBJ),
    ("post", "/api/integrations/{integration_id}/preview", "integrations",
     "The exact request a sample event would produce, with unsaved mapping and field-source changes",
     _ref("PreviewInput"), 200, _ref("Preview")),
    ("get", "/api/integrations/{integration_id}/deliveries", "integrations", "Latest delivery attempts",
     None, 200, {"type": "object", "properties": {"deliveries": {"type": "array", "items": _OBJ}}}),
    ("get", "/api/sources", "sources", "Sources and their pipeline keys", None, 200, _list_of("sources", "Source")),
    ("post", "/api/sources", "sources", "Create a source with a new pipeline key", _ref("SourceInput"),
     201, _ref("Source")),
    ("get", "/api/sources/{source_id}", "sources", "One source with its page snippet", None, 200, _ref("Source")),
    ("patch", "/api/sources/{source_id}", "sources", "Change a source's origins or rate limit",
     _ref("SourceChange"), 200, _ref("Source")),
    ("delete", "/api/sources/{source_id}", "sources", "Revoke a source: its key stops working", None, 200, _OBJ),
    ("post", "/api/sources/{source_id}/rotate", "sources", "A new pipeline key; the old one stops working",
     None, 200, _ref("Source")),
    ("get", "/api/dead-letters", "dead letters", "Dead letters with their reasons", None, 200,
     _list_of("dead_letters", "DeadLetter")),
    ("post", "/api/dead-letters/replay", "dead letters", "Replay dead letters (by ids, integration or all)",
     _ref("Selection"), 200, _OBJ),
    ("post", "/api/dead-letters/discard", "dead letters", "Discard dead letters (by ids, integration or all)",
     _ref("Selection"), 200, _OBJ),
    ("post", "/api/dead-letters/{dead_letter_id}/replay", "dead letters", "Replay one dead letter",
     None, 200, _OBJ),
    ("delete", "/api/dead-letters/{dead_letter_id}", "dead letters", "Discard one dead letter", None, 200, _OBJ),
    ("get", "/api/health", "health", "Per integration over the last hour: sent, failed, retrying, filtered, "
     "dead-lettered, p50 and p99 latency", None, 200, _ref("Health")),
    ("get", "/api/debugger/stream", "debugger", "Live Event Debugger stream (text/event-stream)", None, 200,
     {"type": "string"}),
    ("get", "/api/events/{message_id}", "debugger", "One event's journey: delivery attempts and dead letters",
     None, 200, _OBJ),
    ("get", "/api/openapi.json", "meta", "This document", None, 200, _OBJ),
]
_PUBLIC = {("post", "/api/login"), ("get", "/api/openapi.json")}
_ERRORS = {
    "400": "Invalid input: error says what, problems lists each field's problem",
    "401": "Not logged in (no valid session or token); for POST /api/login a wrong user name or password",
    "403": "Refused: a cookie session without its CSRF token, or from another origin; "
    "for POST /api/password also a wrong current password",
    "404": "Not found: no such id (or a path parameter that names no route)",
    "405": "Method not allowed: a path parameter holding '/' named another route",
    "409": "Conflict: the id exists already, or the object is defined in the config file and read-only here",
    "413": "The body is larger than 1 MiB",
    "415": "The body is not JSON: send Content-Type: application/json",
    "422": "The sample event cannot be previewed: the error of the step that failed (secrets masked)",
    "429": "Too many failed attempts from this client: wait Retry-After seconds",
}
# statuses beyond the ones every operation of its kind has (see _operation)
_EXTRA: dict[tuple[str, str], tuple[str, ...]] = {
    ("post", "/api/login"): ("429",),
    ("post", "/api/password"): ("429",),
    ("post", "/api/integrations"): ("409",),
    ("patch", "/api/integrations/{integration_id}"): ("409",),
    ("delete", "/api/integrations/{integration_id}"): ("409",),
    ("post", "/api/integrations/{integration_id}/preview"): ("422",),
    ("post", "/api/sources"): ("409",),
    ("patch", "/api/sources/{source_id}"): ("409",),
    ("delete", "/api/sources/{source_id}"): ("409",),
    ("post", "/api/sources/{source_id}/rotate"): ("409",),
}
_QUERY: dict[str, list[tuple[str, str]]] = {
    "/api/debugger/stream": [
        ("source", "only events of this source id"),
        ("integration", "only stages of this integration id"),
        ("event", "only this event name (or page, identify, group)"),
        ("outcome", "done, retry, rejected, auth_failed, filtered, skipped or duplicate"),
    ],
    "/api/dead-letters": [("integration", "only this integration's"), ("limit", "at most this many")],
    "/api/integrations/{integration_id}/deliveries": [("limit", "at most this many")],
    "/api/health": [("window", "seconds to look back (default 3600)")],
}


def _settings_schema(destination: Destination) -> dict[str, Any]:
    """A vendor's settings schema as JSON Schema (the rules of datafly.destinations.rules)."""
    properties: dict[str, Any] = {}
    for f in destination.settings_schema:
        spec: dict[str, Any] = {"type": _JSON_TYPES.get(f.kind, "string"), "description": f.description}
        if f.kind == "string" and f.least_length:
            spec["minLength"] = f.least_length
        if f.pattern:
            spec["pattern"] = f"^(?:{f.pattern})$"
        if f.format == "url":
            spec["format"] = "uri"
        if f.format == "headers":
            spec["additionalProperties"] = {"type": "string"}
        properties[f.name] = spec
    return {
        "type": "object",
        "title": destination.vendor,
        "properties": properties,
        "required": [f.name for f in destination.settings_schema if f.required],
    }


def _schemas() -> dict[str, Any]:
    vendor_names = [v["vendor"] for v in vendors()]
    preset_names = sorted({p["name"] for v in vendors() for p in v["presets"]})
    string_list = {"type": "array", "items": {"type": "string"}}
    change: dict[str, Any] = {
        "preset": {"type": "string", "enum": preset_names, "description": "one of the vendor's presets"},
        "settings": {
            "description": "the vendor's settings (GET /api/vendors/{vendor}); one of these shapes. "
            "When changing, a masked or empty secret keeps the stored one",
            "anyOf": [_settings_schema(d) for d in all_destinations().values()],
        },
        "consent": {"type": "array", "items": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"}},
        "sources": {"type": ["array", "null"], "items": {"type": "string"}, "description": "source ids"},
        "endpoint": {
            "type": ["string", "null"],
            "format": "uri",
            "description": "an http(s) URL replacing the vendor's; from the API it must not be on a "
            "private or internal address unless management.allow_private_endpoints",
        },
        "mapping": {"type": "object", "additionalProperties": {"type": ["string", "null"]}},
        "events": {"type": "object", "additionalProperties": {"type": ["string", "null"]}},
        "fields": {
            "type": "object",
            "additionalProperties": {"type": ["string", "null"]},
            "description": "field-source overrides: vendor field -> dotted event path "
            "(properties.total), constant (=web), or null to remove the field",
        },
        "enabled": {"type": "boolean"},
    }
    source_change: dict[str, Any] = {
        "origins": {
            "type": "array",
            "items": {"type": "string", "pattern": "^(https?://[^/\\s]+|\\*)$"},
            "description": "origins allowed to send from a browser, such as https://shop.example.com",
        },
        "rate_limit": {"type": ["number", "null"], "minimum": 0, "description": "events per second"},
    }
    return {
        "Error": {
            "type": "object",
            "properties": {"error": {"type": "string"}, "problems": string_list},
            "required": ["error"],
        },
        "Login": {
            "type": "object",
            "properties": {"username": {"type": "string"}, "password": {"type": "string", "format": "password"}},
            "required": ["username", "password"],
        },
        "LoginAnswer": {
            "type": "object",
            "properties": {
                "token": {"type": "string"},
                "csrf_token": {"type": "string"},
                "user": {"type": "string"},
                "idle_timeout": {"type": "number"},
            },
            "required": ["token"],
        },
        "LogoutAnswer": {
            "type": "object",
            "properties": {
                "logged_out": {"type": "boolean"},
                "revoked_token": {"type": "string", "description": "the API token's id, when one logged out"},
            },
            "required": ["logged_out"],
        },
        "PasswordChanged": {
            "type": "object",
            "properties": {
                "changed": {"type": "boolean"},
                "revoked": {
                    "type": "object",
                    "properties": {"sessions": {"type": "integer"}, "tokens": {"type": "integer"}},
                    "description": "the other sessions ended and the API tokens revoked",
                },
            },
            "required": ["changed"],
        },
        "TokenInput": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 100},
                "expires_in_days": {"type": "integer", "minimum": 1, "maximum": 3650},
                "expires_at": {"type": "number", "description": "Unix seconds, in the future"},
            },
            "required": ["name"],
        },
        "PasswordChange": {
            "type": "object",
            "properties": {"current_password": {"type": "string"}, "new_password": {"type": "string", "minLength": 10}},
            "required": ["current_password", "new_password"],
        },
        "Token": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "name": {"type": "string"},
                "hint": {"type": "string"},
                "token": {"type": "string", "description": "only in the answer that creates it"},
                "created_at": {"type": "number"},
                "last_used": {"type": ["number", "null"]},
                "expires_at": {"type": ["number", "null"], "description": "Unix seconds; null: never"},
            },
        },
        "Vendor": {
            "type": "object",
            "properties": {
                "vendor": {"type": "string", "enum": vendor_names},
                "title": {"type": "string"},
                "settings": {"type": "array", "items": _OBJ},
                "presets": {"type": "array", "items": _OBJ},
                "fields": {"type": "array", "items": {"type": "string"}},
            },
        },
        "IntegrationInput": {
            "type": "object",
            "description": "a new integration: vendor and settings, the rest optional",
            "properties": {
                "id": {"type": "string", "pattern": _ID_PATTERN},
                "vendor": {"type": "string", "enum": vendor_names},
                **change,
            },
            "required": ["vendor", "settings"],
            "additionalProperties": False,
        },
        "IntegrationChange": {
            "type": "object",
            "description": "what changes; the rest stays (id and vendor cannot change)",
            "properties": change,
            "additionalProperties": False,
        },
        "Integration": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "vendor": {"type": "string"},
                "preset": {"type": "string"},
                "settings": {"type": "object", "description": "secret values masked (abcd****)"},
                "secrets_set": string_list,
                "consent": string_list,
                "sources": {"type": ["array", "null"], "items": {"type": "string"}},
                "mapping": {"type": "object", "additionalProperties": {"type": "string"}},
                "fields": {"type": "object", "additionalProperties": {"type": ["string", "null"]}},
                "enabled": {"type": "boolean"},
                "managed_by": {"type": "string", "enum": ["config", "ui"]},
                "read_only": {"type": "boolean"},
                "read_only_reason": {"type": ["string", "null"]},
            },
            "required": ["id", "vendor", "preset", "managed_by"],
        },
        "PreviewInput": {
            "type": "object",
            "properties": {
                "event": {
                    "type": "object",
                    "description": "a sample event as the gateway takes it (default: a realistic one); "
                    "an event the gateway would refuse answers 400",
                    "properties": {
                        "type": {"type": "string", "enum": ["track", "page", "identify", "group"]},
                        "event": {"type": "string"},
                        "userId": {"type": "string"},
                        "properties": {"type": "object"},
                        "traits": {"type": "object"},
                        "context": {
                            "type": "object",
                            "properties": {
                                "page": {"type": "object", "properties": {"url": {"type": "string"}}},
                                "consent": {
                                    "type": "object",
                                    "properties": {
                                        "canonical": {"type": "object", "additionalProperties": {"type": "boolean"}}
                                    },
                                },
                                "traits": {"type": "object"},
                            },
                        },
                    },
                },
                "mapping": {"type": "object", "additionalProperties": {"type": ["string", "null"]}},
                "fields": {
                    "type": ["object", "null"],
                    "additionalProperties": {"type": ["string", "null"]},
                    "description": "unsaved field-source overrides (replace the saved ones)",
                },
            },
        },
        "Preview": {
            "type": "object",
            "properties": {
                "outcome": {"type": "string", "enum": ["request", "filtered", "not_mapped", "skipped", "invalid"]},
                "reason": {"type": "string"},
                "mapping": {"type": "string"},
                "request": {"type": ["object", "null"], "additionalProperties": True},
                "event": _OBJ,
                "sample": {"description": "the sample event that was previewed (raw email and phone redacted)"},
            },
            "required": ["outcome"],
        },
        "SourceInput": {
            "type": "object",
            "properties": {"id": {"type": "string", "pattern": _ID_PATTERN}, **source_change},
            "required": ["id"],
            "additionalProperties": False,
        },
        "SourceChange": {"type": "object", "properties": source_change, "additionalProperties": False},
        "Source": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "key": {"type": "string"},
                "origins": string_list,
                "snippet": {"type": "string"},
                "managed_by": {"type": "string", "enum": ["config", "ui"]},
            },
            "required": ["id", "key"],
        },
        "Selection": {
            "type": "object",
            "properties": {
                "ids": string_list,
                "integration": {"type": "string"},
                "all": {"type": "boolean"},
            },
        },
        "DeadLetter": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "integration_id": {"type": "string"},
                "message_id": {"type": "string"},
                "outcome": {"type": "string"},
                "reason": {"type": "string"},
                "attempts": {"type": "integer"},
                "last_request": {"type": ["object", "null"]},
            },
        },
        "Health": {
            "type": "object",
            "properties": {
                "ready": {"type": "boolean"},
                "window_seconds": {"type": "number"},
                "integrations": {"type": "array", "items": _OBJ},
            },
        },
    }


def _operation(
    method: str, path: str, tag: str, summary: str, body: dict[str, Any] | None, status: int, answer: dict[str, Any]
) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", path)
    ]
    params += [
        {"name": name, "in": "query", "required": False, "description": text, "schema": {"type": "string"}}
        for name, text in _QUERY.get(path, []) if method == "get"
    ]
    media = "text/event-stream" if path.endswith("/stream") else "application/json"
    codes = {"400", "401"}
    if body is not None:
        codes |= {"413", "415"}  # the body is read as JSON
    if method != "get" and (method, path) not in _PUBLIC:
        codes.add("403")
    if "{" in path:
        codes |= {"404", "405"}
    codes.update(_EXTRA.get((method, path), ()))
    responses: dict[str, Any] = {str(status): {"description": "OK", "content": {media: {"schema": answer}}}}
    for code in sorted(codes):
        responses[code] = {
            "description": _ERRORS[code],
            "content": {"application/json": {"schema": _ref("Error")}},
        }
    if "429" in responses:
        responses["429"]["headers"] = {
            "Retry-After": {"description": "seconds to wait", "schema": {"type": "string", "pattern": "^[0-9]+$"}}
        }
    operation: dict[str, Any] = {
        "tags": [tag],
        "summary": summary,
        "operationId": method + re.sub(r"[^A-Za-z0-9]+", "_", path.removeprefix("/api")).rstrip("_"),
        "responses": responses,
    }
    if params:
        operation["parameters"] = params
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if (method, path) in _PUBLIC:
        operation["security"] = []
    return operation


def openapi_document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for method, path, tag, summary, body, status, answer in OPERATIONS:
        paths.setdefault(path, {})[method] = _operation(method, path, tag, summary, body, status, answer)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Datafly Signal management API",
            "version": __version__,
            "description": "Integrations, sources, dead letters, health and the live Event Debugger. "
            "Log in with POST /api/login and send the token as Authorization: Bearer TOKEN.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}, {"sessionCookie": []}],
        "tags": [{"name": t} for t in dict.fromkeys(op[2] for op in OPERATIONS)],
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer"},
                "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "datafly_session"},
            },
        },
    }


async def openapi(request: Request) -> Response:
    return json_response(openapi_document())


routes = [Route("/api/openapi.json", openapi, methods=["GET"])]
