"""The ingestion routes: ``POST /v1/batch`` and ``/v1/t|p|i|g``.

A request is answered 200 only after every event of it is durably stored; a request with one
bad event is refused whole, so nothing is half-accepted.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import orjson

from datafly.config import GatewayConfig, ProcessingConfig, Source
from datafly.errors import BadRequest, InvalidEvent, StorageUnavailable
from datafly.gateway.asgi import Headers, Receive, Scope, Send, header_map, respond_error
from datafly.gateway.body import decode_body, read_body
from datafly.gateway.ratelimit import TokenBucket
from datafly.gateway.sources import SourceIndex, cors_headers
from datafly.inbox import RequestMeta, encode, encode_events, events_in
from datafly.observe import Metrics
from datafly.processing.normalise import check_nesting, may_hold_pii, scrub_event, validate_event
from datafly.store.base import Backend

ROUTES: dict[str, str | None] = {
    "/v1/batch": None,
    "/v1/import": None,
    "/v1/t": "track",
    "/v1/p": "page",
    "/v1/i": "identify",
    "/v1/g": "group",
    "/v1/track": "track",
    "/v1/page": "page",
    "/v1/identify": "identify",
    "/v1/group": "group",
}
_OK = orjson.dumps({"success": True})


def header_text(value: bytes) -> str:
    """A header value as text: UTF-8 when it is (browsers send a non-ASCII User-Agent so), else
    latin-1, which reads any bytes; at most 1,024 characters."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        text = value.decode("latin-1")
    return text[:1024]


def _cookie_pattern(name: str) -> re.Pattern[bytes]:
    """The visitor cookie in a Cookie header: its first valid value (letters, digits, ``_.-``, at
    most 128, quotes around it allowed), as splitting the header on ``;`` would find it."""
    return re.compile(
        rb'(?:^|;)[ \t\n\r\f\v]*' + re.escape(name.encode()) + rb'="*([A-Za-z0-9_.-]{1,128})"*[ \t\n\r\f\v]*(?=;|$)'
    )


class Ingest:
    def __init__(
        self,
        backend: Backend,
        sources: SourceIndex,
        gateway: GatewayConfig,
        processing: ProcessingConfig,
        metrics: Metrics,
    ) -> None:
        self.backend = backend
        self.sources = sources
        self.config = gateway
        self.phone_region = processing.phone_region
        self.metrics = metrics
        self._buckets: dict[str, TokenBucket] = {}
        self._cookie = _cookie_pattern(gateway.cookie_name)

    # helpers -----------------------------------------------------------------------------
    def client_address(self, scope: Scope, headers: dict[bytes, bytes]) -> str:
        peer = scope.get("client")
        address = str(peer[0]) if peer else ""
        forwarded = headers.get(b"x-forwarded-for")
        if forwarded and self.config.is_trusted_proxy(address):
            for hop in reversed([h.strip() for h in forwarded.decode("latin-1").split(",") if h.strip()]):
                address = hop
                if not self.config.is_trusted_proxy(hop):
                    break
        return address

    def is_https(self, scope: Scope, headers: dict[bytes, bytes]) -> bool:
        if scope.get("scheme") == "https":
            return True
        peer = scope.get("client")
        proto = headers.get(b"x-forwarded-proto")
        return bool(proto == b"https" and peer and self.config.is_trusted_proxy(str(peer[0])))

    def visitor_id(self, headers: dict[bytes, bytes]) -> str | None:
        raw = headers.get(b"cookie")
        if not raw:
            return None
        found = self._cookie.search(raw)
        return found.group(1).decode("ascii") if found else None

    def set_cookie(self, visitor: str, secure: bool) -> tuple[bytes, bytes]:
        parts = [
            f"{self.config.cookie_name}={visitor}",
            "Path=/",
            f"Max-Age={self.config.cookie_max_age}",
            "HttpOnly",
        ]
        parts.append("SameSite=Lax")  # the gateway is first-party: a subdomain of the shop's site
        if secure:
            parts.append("Secure")
        return b"set-cookie", "; ".join(parts).encode("latin-1")

    async def rate_limited(self, source: Source, count: int) -> float:
        """Seconds to wait when ``source`` is over its events-per-second budget, else 0. The
        bucket is shared by every gateway when the backend offers one (scale-out)."""
        if not source.rate_limit:
            return 0.0
        capacity = max(source.rate_limit, 100.0)
        shared = await self.backend.take_tokens(f"source:{source.id}", source.rate_limit, capacity, count)
        if shared is not None:
            return shared
        bucket = self._buckets.get(source.id)
        if bucket is None or bucket.rate != source.rate_limit:
            bucket = self._buckets[source.id] = TokenBucket(source.rate_limit, capacity)
        return bucket.take(count)

    # the route ---------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send, forced_type: str | None) -> None:
        headers = header_map(scope)
        origin = headers.get(b"origin")
        extra: Headers = []
        if origin is not None and self.sources.origin_allowed(None, origin.decode("latin-1")):
            extra = cors_headers(origin.decode("latin-1"))  # so a browser can read an early error
        try:
            if scope["method"] == "OPTIONS":
                await self.preflight(scope, headers, send)
                return
            if scope["method"] != "POST":
                raise BadRequest(405, "use POST")
            key = self.sources.key_from_headers(headers.get(b"authorization"), scope.get("query_string", b""))
            source = self.sources.by_key.get(key) if key else None
            if key is not None and source is None:
                raise BadRequest(401, "unknown pipeline key")
            if origin is not None:
                origin_text = origin.decode("latin-1")
                if not self.sources.origin_allowed(source, origin_text):
                    extra = []
                    raise BadRequest(403, f"origin {origin_text} is not allowed for this source")
                extra = cors_headers(origin_text)
            limit = self.config.max_body_bytes
            body = await read_body(receive, limit, headers.get(b"content-length"))
            encoding = headers.get(b"content-encoding")
            if encoding is not None:
                body = decode_body(body, encoding, limit)
            try:
                payload = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise BadRequest(400, f"malformed JSON: {exc}") from exc
            if not isinstance(payload, dict):
                raise BadRequest(400, "the body must be a JSON object")
            check_nesting(body, payload)
            if source is None:
                write_key = payload.get("writeKey") or payload.get("write_key")
                source = self.sources.by_key.get(write_key) if isinstance(write_key, str) else None
                if source is None:
                    raise BadRequest(401, "unknown pipeline key" if write_key else "missing pipeline key")
                if origin is not None:
                    if not self.sources.origin_allowed(source, origin.decode("latin-1")):
                        extra = []
                        raise BadRequest(403, "origin is not allowed for this source")
                    extra = cors_headers(origin.decode("latin-1"))
            raw_events = [payload] if forced_type is not None else self.batch_events(payload)
            if source.rate_limit:
                wait = await self.rate_limited(source, len(raw_events))
                if wait:
                    extra.append((b"retry-after", str(max(1, round(wait))).encode()))
                    raise BadRequest(429, f"source {source.id} is over its rate limit")
            visitor = self.visitor_id(headers)
            new_visitor = visitor is None
            if visitor is None:
                visitor = uuid.uuid4().hex
            for index, raw in enumerate(raw_events):
                validate_event(raw, forced_type, f"batch[{index}]" if forced_type is None else "")
            used_id = str(raw_events[-1].get("anonymousId") or raw_events[-1].get("anonymous_id") or visitor)
            meta = RequestMeta(
                source_id=source.id,
                ip=self.client_address(scope, headers),
                user_agent=header_text(headers.get(b"user-agent", b"")),
                visitor_id=visitor,
                received_at=time.time(),
                forced_type=forced_type,
                shape="batch" if forced_type is None and "batch" in payload else "single",
            )
            if may_hold_pii(body):  # hash before anything is stored
                for raw in raw_events:
                    scrub_event(raw, self.phone_region)
                stored = [encode_events(meta, raw_events)]
            else:  # the body as it came, with what the processor needs to normalise it
                stored = [encode(meta, body)]
            try:
                await self.backend.append_inbound(stored)
            except StorageUnavailable as exc:
                extra.append((b"retry-after", b"5"))
                raise BadRequest(503, f"storage unavailable, retry later: {exc}") from exc
        except InvalidEvent as exc:
            self.metrics.refused.labels("400").inc()
            await respond_error(send, 400, exc.message, extra)
            return
        except BadRequest as exc:
            self.metrics.refused.labels(str(exc.status)).inc()
            await respond_error(send, exc.status, exc.message, extra)
            return
        self.metrics.accepted.add(source.id, len(raw_events))
        if new_visitor:
            extra.append(self.set_cookie(visitor, self.is_https(scope, headers)))
            body_out = orjson.dumps({"success": True, "anonymousId": used_id})
        elif used_id != visitor:
            body_out = orjson.dumps({"success": True, "anonymousId": used_id})
        else:
            body_out = _OK
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), *extra],
            }
        )
        await send({"type": "http.response.body", "body": body_out})

    def batch_events(self, payload: dict[str, Any]) -> list[Any]:
        """The events of a ``/v1/batch`` body (a single event with a ``type`` is taken too)."""
        if not isinstance(payload.get("batch"), list) and "type" not in payload:
            raise BadRequest(400, 'expected {"batch": [event, ...]}')
        if "batch" in payload and payload.get("context") is not None and not isinstance(payload["context"], dict):
            raise BadRequest(400, "the batch's context must be an object")
        events = events_in(payload, "single" if "batch" not in payload else "batch")
        if not events:
            raise BadRequest(400, "the batch is empty")
        if len(events) > self.config.max_batch_events:
            raise BadRequest(413, f"too many events: {len(events)} (at most {self.config.max_batch_events} per request)")
        return events

    async def preflight(self, scope: Scope, headers: dict[bytes, bytes], send: Send) -> None:
        origin = headers.get(b"origin")
        key = self.sources.key_from_headers(None, scope.get("query_string", b""))
        source = self.sources.by_key.get(key) if key else None
        if origin is None or not self.sources.origin_allowed(source, origin.decode("latin-1")):
            await respond_error(send, 403, "origin not allowed")
            return
        allow = [
            *cors_headers(origin.decode("latin-1")),
            (b"access-control-allow-methods", b"POST, OPTIONS"),
            (b"access-control-allow-headers", b"Authorization, Content-Type, Content-Encoding"),
            (b"access-control-max-age", b"600"),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": allow})
        await send({"type": "http.response.body", "body": b""})
