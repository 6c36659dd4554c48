"""The Datafly.js collector file, served by the gateway at ``GET /d.js``.

The file is built from ``collector/src`` by ``npm run build`` (in ``collector/``) and committed as
``static/d.js``, so an installed package serves it without node. It is read and gzipped once, at
start; each request then only compares an ETag and picks a body.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

__all__ = ["DEFAULT_PATH", "CollectorAsset"]

DEFAULT_PATH = Path(__file__).parent / "static" / "d.js"

_CONTENT_TYPE = b"application/javascript; charset=utf-8"
# Short, so a new collector reaches every page within minutes; the ETag makes revalidation cheap.
_CACHE_CONTROL = b"public, max-age=300"

Header = tuple[bytes, bytes]


def _accepts_gzip(accept_encoding: str) -> bool:
    """Whether an ``Accept-Encoding`` value admits gzip (``q=0`` refuses it)."""
    for part in accept_encoding.lower().split(","):
        coding, _, params = part.partition(";")
        if coding.strip() not in ("gzip", "x-gzip", "*"):
            continue
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value.strip())
                except ValueError:
                    quality = 0.0
        if quality > 0:
            return True
    return False


def _etags(if_none_match: str) -> list[str]:
    """The entity tags of an ``If-None-Match`` value, weak prefixes dropped (weak comparison)."""
    tags = []
    for raw in if_none_match.split(","):
        tag = raw.strip()
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag:
            tags.append(tag)
    return tags


class CollectorAsset:
    """The built collector, ready to answer ``GET /d.js``.

    ``respond`` returns ``(status, headers, body)`` with raw ASGI header pairs: 200 with the
    file (gzipped when the client accepts gzip), or 304 when ``If-None-Match`` names the current
    ETag. Each representation has its own strong ETag, derived from the file's SHA-256; either
    one revalidates, since both stand for the same file.
    """

    def __init__(self, path: str | None = None) -> None:
        self.path = Path(path) if path is not None else DEFAULT_PATH
        self.body = self.path.read_bytes()
        self.gzip_body = gzip.compress(self.body, compresslevel=9, mtime=0)
        digest = hashlib.sha256(self.body).hexdigest()[:32]
        self.etag = f'"{digest}"'
        self.gzip_etag = f'"{digest}-gzip"'

    def respond(self, if_none_match: str | None, accept_encoding: str) -> tuple[int, list[Header], bytes]:
        """Answer a request given its ``If-None-Match`` (or None) and ``Accept-Encoding`` values."""
        compressed = _accepts_gzip(accept_encoding or "")
        etag = self.gzip_etag if compressed else self.etag
        headers: list[Header] = [
            (b"cache-control", _CACHE_CONTROL),
            (b"etag", etag.encode()),
            (b"vary", b"accept-encoding"),
        ]
        if if_none_match is not None:
            tags = _etags(if_none_match)
            if "*" in tags or self.etag in tags or self.gzip_etag in tags:
                return 304, headers, b""
        body = self.gzip_body if compressed else self.body
        headers.append((b"content-type", _CONTENT_TYPE))
        if compressed:
            headers.append((b"content-encoding", b"gzip"))
        headers.append((b"content-length", str(len(body)).encode()))
        return 200, headers, body
