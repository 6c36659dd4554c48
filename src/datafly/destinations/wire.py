"""Event values made safe for the place they go in a vendor request (pure, shared by the formatters).

Every value here comes from an event, so from whoever sent it: a visitor's browser, a server, an
attacker. A vendor request built from it must never fail to encode and never carry a second
header or a broken request line. What each place gets:

- an IP address (:func:`visitor_ip`): only a real one, checked with :mod:`ipaddress` and written
  in its canonical form (IPv6 compressed as RFC 5952 writes it, without a zone; an IPv4-mapped
  IPv6 address as its IPv4 address); anything else gives None and each vendor says what it does
  then (see the vendor's module);
- an HTTP header value (:func:`header_text`): printable ASCII only. Each run of control
  characters (CR, LF, NUL, TAB, DEL, C1) becomes one space; every other non-ASCII character is
  percent-encoded as UTF-8 (``é`` -> ``%C3%A9``), so nothing is lost and the header stays one
  line of ASCII, which every server accepts;
- a URL query value: percent-encoded UTF-8 (the Exactag formatter's ``encode_query``);
- a JSON string: as it is (JSON escapes what needs escaping).

:func:`undo_latin1` reverses a decoding mistake the gateway makes with a raw ``User-Agent``
header: it keeps the header's bytes as latin-1 text, so a browser's UTF-8 ``é`` (bytes C3 A9)
arrives as ``Ã©``; the formatters send the text the browser meant.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from typing import Any

__all__ = ["header_text", "undo_latin1", "visitor_ip"]

_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")


_CANONICAL_IPV4 = re.compile(r"(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)")


def visitor_ip(value: Any) -> str | None:
    """The canonical text of the IP address in ``value``, or None when it holds no IP address."""
    if type(value) is not str:
        return None
    if _CANONICAL_IPV4.fullmatch(value):  # the usual case, 10x cheaper than ipaddress
        return value
    text = value.strip()
    if not text or len(text) > 64:  # the longest IPv6 text with an IPv4 tail is 45 characters
        return None
    text = text.split("%", 1)[0]  # an IPv6 zone (fe80::1%eth0) means nothing outside its host
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def undo_latin1(text: str) -> str:
    """``text`` as UTF-8 when it is UTF-8 bytes that were decoded as latin-1 (``Ã©`` -> ``é``);
    else ``text`` unchanged. Only text whose characters are all below U+0100 and that decodes as
    UTF-8 is changed: text written with real accents (``é``) does not decode and is kept."""
    if text.isascii():
        return text
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def _percent(match: re.Match[str]) -> str:
    return urllib.parse.quote(match.group(), safe="", errors="replace")


def header_text(text: str) -> str | None:
    """``text`` as an HTTP header value: one line of printable ASCII (see the module's docstring),
    ends trimmed; None when nothing is left."""
    if text.isascii() and text.isprintable():  # the common case: nothing to do
        return text.strip() or None
    text = _CONTROLS.sub(" ", undo_latin1(text))
    if not text.isascii():
        text = _NON_ASCII.sub(_percent, text)
    return text.strip() or None
