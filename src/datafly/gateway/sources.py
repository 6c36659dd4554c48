"""Which source a request belongs to (its pipeline key), and whether its origin may call."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from urllib.parse import unquote_plus

from datafly.config import Source


class SourceIndex:
    def __init__(self, sources: Iterable[Source]) -> None:
        self.replace(sources)

    def replace(self, sources: Iterable[Source]) -> None:
        self.by_key = {s.key: s for s in sources}
        self._origins = {o for s in self.by_key.values() for o in s.origins}
        self._open = any(not s.origins for s in self.by_key.values())
        self._query_keys: dict[bytes, str | None] = {}  # query string -> its key (a site sends the same few)

    def key_from_headers(self, authorization: bytes | None, query: bytes) -> str | None:
        if authorization:
            scheme, _, value = authorization.decode("latin-1").partition(" ")
            scheme = scheme.lower()
            if scheme == "bearer":
                return value.strip()
            if scheme == "basic":
                try:
                    decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
                except (binascii.Error, UnicodeDecodeError):
                    return ""
                return decoded.split(":", 1)[0]
        if query and b"ey=" in query:
            if query in self._query_keys:
                return self._query_keys[query]
            key = _key_in_query(query)
            if len(self._query_keys) >= _QUERY_KEYS:
                self._query_keys.clear()
            self._query_keys[query] = key
            return key
        return None

    def origin_allowed(self, source: Source | None, origin: str) -> bool:
        """A source without an allowlist takes any origin; otherwise the origin must be listed."""
        if source is not None:
            return not source.origins or origin in source.origins or "*" in source.origins
        return self._open or origin in self._origins or "*" in self._origins


_QUERY_KEYS = 1024  # query strings remembered (then forgotten all at once)


def _key_in_query(query: bytes) -> str | None:
    for pair in query.split(b"&"):
        name, _, raw = pair.partition(b"=")
        if name in (b"key", b"writeKey"):
            return unquote_plus(raw.decode("latin-1"))
    return None


def cors_headers(origin: str) -> list[tuple[bytes, bytes]]:
    return [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-allow-credentials", b"true"),
        (b"vary", b"Origin"),
    ]
