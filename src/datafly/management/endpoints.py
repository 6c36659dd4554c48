"""Where an integration entered in the management UI or API may send events: public addresses only.

An endpoint (any vendor's ``endpoint`` override, or a URL setting such as the webhook's ``url``)
is refused when its host is, or resolves to, a private, loopback, link-local, multicast,
reserved or otherwise non-global address (``ipaddress``: ``not is_global``), such as
``127.0.0.1``, ``10.0.0.5``, ``169.254.169.254`` (cloud metadata) or ``localhost``. Otherwise a
management login would be a way to make the server send requests into its own network.

``management.allow_private_endpoints: true`` in the config file turns the check off (a vendor
stand-in on loopback, an internal webhook receiver). Integrations defined in the config file are
trusted and never checked. The check runs when the integration is saved; a host name that later
resolves elsewhere (DNS rebinding) is not caught here.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import urllib.parse
from collections.abc import Iterable

__all__ = ["endpoint_problem", "is_internal"]

_RESOLVE_TIMEOUT = 5.0


def is_internal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for any address that is not a global unicast one."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            return is_internal(mapped)
        if address.teredo is not None:
            return True
    return address.is_multicast or not address.is_global


async def _addresses(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    found = await asyncio.wait_for(
        loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP), _RESOLVE_TIMEOUT
    )
    return [str(info[4][0]) for info in found]


async def endpoint_problem(url: str) -> str | None:
    """Why ``url`` may not be used as an endpoint entered in the UI or API, or None.

    ``url`` already passed :func:`datafly.destinations.rules.url_problem` (http(s) with a host).
    """
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").rstrip(".")
    if not host:
        return "the URL names no host"
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError:
        return "the URL's port is not valid"
    try:
        literal = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        literal = None
    if literal is not None:
        addresses: Iterable[str] = [str(literal)]
    else:
        try:
            addresses = await _addresses(host, port)
        except (OSError, UnicodeError, TimeoutError, ValueError):
            return f"the host {host!r} cannot be resolved"
        if not addresses:
            return f"the host {host!r} cannot be resolved"
    for text in addresses:
        try:
            address = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            return f"the host {host!r} resolves to an address that is not an IP address ({text!r})"
        if is_internal(address):
            shown = host if host == text else f"{host} ({text})"
            return (
                f"{shown} is a private, loopback, link-local or otherwise internal address: "
                "endpoints entered here must be public (set management.allow_private_endpoints: true "
                "in the config file to allow internal ones)"
            )
    return None
