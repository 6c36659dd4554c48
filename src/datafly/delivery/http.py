"""The one place that talks HTTP to vendors."""

from __future__ import annotations

import asyncio
import functools
import time

import aiohttp
from yarl import URL

from datafly.destinations.base import OutboundRequest, VendorResponse

_MAX_BODY = 64 * 1024


def client_session(concurrency: int) -> aiohttp.ClientSession:
    """One session for every vendor. It keeps no cookies: a vendor's cookie answers one visitor's
    event and must never ride along with the next visitor's (it would also cost each request a
    cookie-jar pass)."""
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=max(1, concurrency), ttl_dns_cache=300)
    return aiohttp.ClientSession(
        connector=connector, skip_auto_headers=("User-Agent",), cookie_jar=aiohttp.DummyCookieJar()
    )


@functools.lru_cache(maxsize=16)
def _timeout(seconds: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=seconds)


async def send(session: aiohttp.ClientSession, request: OutboundRequest, timeout: float) -> VendorResponse:
    started = time.perf_counter()
    try:
        async with session.request(
            request.method,
            URL(request.url, encoded=True),
            headers=request.headers,
            data=request.body,
            timeout=_timeout(timeout),
            allow_redirects=False,
        ) as response:
            body = await response.content.read(_MAX_BODY)
            return VendorResponse(
                status=response.status,
                headers=response.headers,  # case-insensitive, read-only, valid after release
                body=body,
                latency_ms=(time.perf_counter() - started) * 1000,
            )
    except TimeoutError:
        return VendorResponse(
            0, error=f"timed out after {timeout:g}s", latency_ms=(time.perf_counter() - started) * 1000
        )
    except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError) as exc:
        return VendorResponse(
            0, error=f"{type(exc).__name__}: {exc}", latency_ms=(time.perf_counter() - started) * 1000
        )
