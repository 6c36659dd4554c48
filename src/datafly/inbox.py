"""The inbox record: what the gateway stores for one accepted request, and the processor reads.

On disk (and in Redis) a record is JSON, ``{"m": meta, "b": body}``: ``meta`` is
:class:`RequestMeta` under short keys, ``body`` the request body as it came (the gateway splices
the bytes in: accepting costs no re-encoding), or its events after hashing email and phone.
Every module that writes or reads a record goes through :func:`encode` and :func:`decode`;
nothing else knows the keys. This module imports nothing of the rest of the package, so the
gateway, the processor and both backends can use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import orjson

__all__ = ["InboxRecord", "InvalidRecord", "RequestMeta", "Shape", "decode", "encode", "encode_events", "events_in"]

Shape = Literal["single", "batch", "list"]
"""How the body holds its events: ``single`` (the body is one event), ``batch``
(``{"batch": [...]}`` with an optional batch-level ``context``) or ``list`` (a list of events)."""
_SHAPES = ("single", "batch", "list")


class InvalidRecord(ValueError):
    """Stored bytes that are not an inbox record (an older version's, or damaged)."""


class RequestMeta(NamedTuple):
    """What the gateway knew of the request besides its body. (A named tuple: made on every
    request, where a frozen dataclass cost a microsecond more.)"""

    source_id: str
    ip: str  # the client's address (through trusted proxies)
    user_agent: str  # the User-Agent header
    visitor_id: str  # the visitor cookie's id (issued by the gateway when the request had none)
    received_at: float  # epoch seconds
    forced_type: str | None  # the event type of a single-event route (/v1/t, /v1/p, ...)
    shape: Shape

    def to_json(self) -> dict[str, Any]:
        return {
            "s": self.source_id,
            "ip": self.ip,
            "ua": self.user_agent,
            "v": self.visitor_id,
            "at": self.received_at,
            "t": self.forced_type,
            "w": self.shape,
        }

    @classmethod
    def from_json(cls, data: Any) -> RequestMeta:
        if not isinstance(data, dict):
            raise InvalidRecord("the record's meta is not an object")
        try:
            shape = data["w"]
            if shape not in _SHAPES:
                raise InvalidRecord(f"unknown request shape {shape!r}")
            forced = data.get("t")
            return cls(
                source_id=str(data["s"]),
                ip=str(data.get("ip", "")),
                user_agent=str(data.get("ua", "")),
                visitor_id=str(data["v"]),
                received_at=float(data["at"]),
                forced_type=str(forced) if forced is not None else None,
                shape=shape,
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, InvalidRecord):
                raise
            raise InvalidRecord(f"the record's meta is incomplete: {exc}") from exc

    def with_shape(self, shape: Shape) -> RequestMeta:
        return self._replace(shape=shape)


@dataclass(frozen=True, slots=True)
class InboxRecord:
    meta: RequestMeta
    body: Any

    def events(self) -> list[Any]:
        return events_in(self.body, self.meta.shape)


def encode(meta: RequestMeta, body: bytes) -> bytes:
    """The stored record of a request whose body (JSON text, as it came) is ``body``."""
    return b'{"m":' + orjson.dumps(meta.to_json()) + b',"b":' + body + b"}"


def encode_events(meta: RequestMeta, events: list[Any]) -> bytes:
    """The stored record of a list of events (hashed, split or set aside: re-encoded)."""
    return encode(meta.with_shape("list"), orjson.dumps(events))


def decode(raw: bytes) -> InboxRecord:
    """A stored record; :class:`InvalidRecord` when the bytes are not one."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRecord(f"the stored request could not be decoded: {exc}") from exc
    if not isinstance(data, dict) or "b" not in data:
        raise InvalidRecord("the stored request is not an inbox record")
    return InboxRecord(RequestMeta.from_json(data.get("m")), data["b"])


def events_in(body: Any, shape: str) -> list[Any]:
    """The events of a request body of ``shape``. A batch-level ``context`` is applied to each
    event (the event's own keys win); an event whose context is not an object is left for
    validation to refuse."""
    if shape == "single":
        return [body]
    if shape == "list":
        return list(body) if isinstance(body, list) else []
    if not isinstance(body, dict):
        return []
    events = body.get("batch")
    context = body.get("context")
    if isinstance(context, dict) and isinstance(events, list):
        events = [
            {**e, "context": {**context, **(e.get("context") or {})}}
            if isinstance(e, dict) and isinstance(e.get("context") or {}, dict)
            else e
            for e in events
        ]
    return list(events) if isinstance(events, list) else []
