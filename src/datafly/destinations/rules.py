"""What a setting's value must look like: text, secrets, URLs and header maps (pure).

The rules are attached to each vendor's settings schema (:class:`~datafly.destinations.base.SettingField`),
so the config checker (``datafly check``), the management API and the UI forms apply the same ones:

- every text setting is one line of at most :data:`TEXT_MAX_LENGTH` characters, without control
  characters (CR, LF, NUL, tab...);
- a secret has at least :data:`SECRET_MIN_LENGTH` characters, or the format its vendor documents
  (a field's own ``min_length`` and ``pattern``);
- a URL setting is ``http://`` or ``https://`` with a host, in ASCII, without spaces, control
  characters or backslashes (:func:`url_problem`);
- a header map has RFC 7230 token names, values without CR, LF or NUL, and none of the headers
  that frame the request or belong to one connection (:func:`header_problems`).

Whether a URL points at a private or internal address is not decided here: the config file is
trusted, endpoints entered in the management UI or API are checked there
(``datafly.management.endpoints``).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

__all__ = [
    "FRAMING_HEADERS",
    "SECRET_MIN_LENGTH",
    "TEXT_MAX_LENGTH",
    "URL_MAX_LENGTH",
    "header_problems",
    "text_problem",
    "url_problem",
]

SECRET_MIN_LENGTH = 8  # where the vendor documents no format of its own
TEXT_MAX_LENGTH = 4096
URL_MAX_LENGTH = 2048
HEADERS_MAX = 50
HEADER_VALUE_MAX = 8192
# headers that frame the request, name its target or belong to one connection (RFC 7230 6.1):
# the HTTP client sets them; an override would send a malformed or smuggled request
FRAMING_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "expect",
        "proxy-authorization",
        "proxy-authenticate",
    }
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HEADER_VALUE_BAD = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # HTAB is allowed inside a value
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 7230 tchar
_URL_BAD = re.compile(r"[\x00-\x20\x7f\\]")


def text_problem(value: str, max_length: int = TEXT_MAX_LENGTH) -> str | None:
    """Why ``value`` cannot be a one-line text setting, or None."""
    if _CONTROL.search(value):
        return "must not contain control characters (line breaks, tabs, NUL)"
    if len(value) > max_length:
        return f"at most {max_length} characters"
    return None


def url_problem(value: Any) -> str | None:
    """Why ``value`` is not an ``http(s)://`` URL with a host, or None."""
    if not isinstance(value, str):
        return f"expected an http:// or https:// URL, got {value!r}"
    if len(value) > URL_MAX_LENGTH:
        return f"at most {URL_MAX_LENGTH} characters"
    if _URL_BAD.search(value):
        return "must not contain spaces, control characters (CR, LF, tab, NUL) or backslashes"
    if not value.isascii():
        return "write non-ASCII characters percent-encoded (and a host name in its xn-- form)"
    try:
        parts = urllib.parse.urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as exc:
        return f"not a valid URL: {exc}"
    if parts.scheme.lower() not in ("http", "https") or not value.lower().startswith(("http://", "https://")):
        return f"expected an http:// or https:// URL, got {value!r}"
    if not parts.hostname:
        return f"the URL names no host: {value!r}"
    return None


def header_problems(value: Any) -> list[str]:
    """Why ``value`` is not a map of extra request headers (one line each), or []."""
    if not isinstance(value, Mapping):
        return [f"expected a mapping of header names to values, got {value!r}"]
    if len(value) > HEADERS_MAX:
        return [f"at most {HEADERS_MAX} headers"]
    problems: list[str] = []
    for name, text in value.items():
        if not isinstance(name, str) or not _TOKEN.match(name):
            problems.append(f"{name!r}: a header name is letters, digits and !#$%&'*+-.^_`|~ only")
            continue
        if name.lower() in FRAMING_HEADERS:
            problems.append(f"{name}: cannot be set here: the HTTP client sets it (it frames the request)")
            continue
        if isinstance(text, bool) or not isinstance(text, str | int | float):
            problems.append(f"{name}: expected a text value, got {text!r}")
            continue
        shown = str(text)
        if _HEADER_VALUE_BAD.search(shown):
            problems.append(f"{name}: a header value must not contain line breaks, NUL or control characters")
        elif len(shown) > HEADER_VALUE_MAX:
            problems.append(f"{name}: at most {HEADER_VALUE_MAX} characters")
    return problems
