"""What the Event Debugger and the API may show of an event: no secrets, no raw email or phone.

The gateway already replaces email and phone by their SHA-256 before anything is stored; this
is the second line, applied to everything the management API returns about events.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from datafly.destinations.base import mask_text

__all__ = ["redact"]

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_PII_KEYS = {"email", "phone", "mobile", "phone_number", "phonenumber", "telephone"}
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


def redact(value: Any, secrets: Sequence[str] = ()) -> Any:
    """A copy of ``value`` with secrets masked and raw email or phone values removed."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if str(key).lower() in _PII_KEYS and not (isinstance(item, str) and _HEX64.match(item)):
                out[key] = "[redacted]" if item not in (None, "") else item
            else:
                out[key] = redact(item, secrets)
        return out
    if isinstance(value, list | tuple):
        return [redact(v, secrets) for v in value]
    if isinstance(value, str):
        text = mask_text(value, secrets) if secrets else value
        return _EMAIL.sub("[redacted email]", text) if "@" in text else text
    return value
