"""The small HTTP vocabulary of the management API: JSON answers, JSON bodies, API errors.

Exception tree::

    ApiError            answered as {"error": message, "problems": [...]} with its status
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

__all__ = ["ApiError", "json_response", "read_json"]

_MAX_BODY = 1024 * 1024


class ApiError(Exception):
    def __init__(self, status: int, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = problems or []

    def response(self) -> Response:
        body: dict[str, Any] = {"error": self.message}
        if self.problems:
            body["problems"] = self.problems
        return json_response(body, self.status)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS),
        status_code=status,
        media_type="application/json",
        headers={"cache-control": "no-store", **(headers or {})},
    )


async def read_json(request: Request) -> dict[str, Any]:
    """The request's JSON object body; 415 for another content type, 400 when malformed."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise ApiError(415, "send the body as JSON (Content-Type: application/json)")
    body = await request.body()
    if len(body) > _MAX_BODY:
        raise ApiError(413, "body too large")
    if not body.strip():
        return {}
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"malformed JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ApiError(400, "expected a JSON object")
    return data
