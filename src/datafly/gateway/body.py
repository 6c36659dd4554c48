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


_GZIP_WBITS = 16 + zlib.MAX_WBITS
_GZIP_MAGIC = b"\x1f\x8b"
_MAX_GZIP_MEMBERS = 64  # bgzip writes one per 64 KiB of input; an empty one is 20 bytes


def decode_body(body: bytes, encoding: bytes | None, limit: int) -> bytes:
    """The body without its Content-Encoding, at most ``limit`` bytes once decoded.

    gzip (``x-gzip``) and deflate (the zlib format, RFC 9110) are accepted. The compressed stream
    must be complete and nothing may follow it, except further whole gzip members (a gzip file may
    hold several, RFC 1952; up to 64 are joined). Anything else is refused: ``415`` for another
    coding, ``413`` when the decoded body is over ``limit`` (found without decoding more than
    ``limit + 1`` bytes), ``400`` for a stream that is corrupt, cut short or followed by other
    bytes."""
    if not encoding:
        return body
    coding = encoding.strip().lower()
    if coding in (b"identity", b""):
        return body
    if coding in (b"gzip", b"x-gzip"):
        wbits, name = _GZIP_WBITS, "gzip"
    elif coding == b"deflate":
        wbits, name = zlib.MAX_WBITS, "deflate"
    else:
        raise BadRequest(415, f"unsupported Content-Encoding {encoding.decode('latin-1')!r} (use gzip)")
    parts: list[bytes] = []
    room = limit
    rest = body
    while True:
        inflater = zlib.decompressobj(wbits)
        try:
            data = inflater.decompress(rest, room + 1)  # max_length: never more than one byte too many
        except zlib.error as exc:
            raise BadRequest(400, f"the body is not valid {name}: {exc}") from exc
        if len(data) > room:
            raise BadRequest(413, f"decompressed body is larger than {limit} bytes")
        if not inflater.eof:
            raise BadRequest(
                400, f"the {name} body is truncated: the compressed stream does not reach its end"
            )
        parts.append(data)
        room -= len(data)
        rest = inflater.unused_data
        if not rest:
            break
        if wbits != _GZIP_WBITS or rest[:2] != _GZIP_MAGIC:
            raise BadRequest(
                400, f"the {name} body has {len(rest)} bytes of trailing data after the compressed stream"
            )
        if len(parts) == _MAX_GZIP_MEMBERS:  # each costs a decompressor: bound the work per body
            raise BadRequest(400, f"the gzip body has more than {_MAX_GZIP_MEMBERS} members")
    return parts[0] if len(parts) == 1 else b"".join(parts)
