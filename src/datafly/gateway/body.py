"""Reading a request body within the size limit, gzip included."""

from __future__ import annotations

import zlib

from datafly.errors import BadRequest
from datafly.gateway.asgi import Receive


async def read_body(receive: Receive, limit: int, declared: bytes | None) -> bytes:
    if declared is not None:
        try:
            if int(declared) > limit:
                raise BadRequest(413, f"body is larger than {limit} bytes")
        except ValueError as exc:
            raise BadRequest(400, "invalid Content-Length") from exc
    message = await receive()
    if not message.get("more_body", False) and message["type"] == "http.request":  # the usual: one piece
        body: bytes = message.get("body", b"")
        if len(body) > limit:
            raise BadRequest(413, f"body is larger than {limit} bytes")
        return body
    chunks: list[bytes] = []
    size = 0
    while True:
        if message["type"] == "http.disconnect":
            raise BadRequest(400, "client disconnected")
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise BadRequest(413, f"body is larger than {limit} bytes")
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
        message = await receive()
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def decode_body(body: bytes, encoding: bytes | None, limit: int) -> bytes:
    if not encoding or encoding in (b"identity",):
        return body
    if encoding.strip().lower() not in (b"gzip", b"x-gzip", b"deflate"):
        raise BadRequest(415, f"unsupported Content-Encoding {encoding.decode('latin-1')!r} (use gzip)")
    wbits = 16 + zlib.MAX_WBITS if b"gzip" in encoding.lower() else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BadRequest(400, f"body is not valid {encoding.decode('latin-1')}: {exc}") from exc
    if len(data) > limit or inflater.unconsumed_tail:
        raise BadRequest(413, f"decompressed body is larger than {limit} bytes")
    return data
