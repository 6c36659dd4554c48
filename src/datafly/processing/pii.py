"""Hashing of email and phone: raw values never get past the gateway.

``email`` → ``email_sha256``: SHA-256 hex of the trimmed, lower-cased address.
``phone`` → ``phone_sha256``: SHA-256 hex of the number in E.164 (``+447700900123``).
A value that already is 64 hex characters is taken as a hash and kept as it is.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import phonenumbers

__all__ = ["PII_KEYS", "hash_email", "hash_phone", "is_sha256", "scrub_pii"]

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
PII_KEYS = {"email": "email_sha256", "phone": "phone_sha256"}
_ALIASES = {
    "email": "email",
    "Email": "email",
    "phone": "phone",
    "Phone": "phone",
    "mobile": "phone",
    "phone_number": "phone",
    "phoneNumber": "phone",
}


def is_sha256(value: str) -> bool:
    return bool(_HEX64.match(value))


def hash_email(value: str) -> str | None:
    text = str(value).strip()
    if is_sha256(text):
        return text.lower()
    text = text.lower()
    if not text:
        return None
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def e164(value: str, default_region: str | None) -> str | None:
    try:
        number = phonenumbers.parse(str(value), default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def hash_phone(value: str, default_region: str | None = None) -> str | None:
    text = str(value).strip()
    if is_sha256(text):
        return text.lower()
    formatted = e164(text, default_region)
    if formatted is None:
        return None
    return hashlib.sha256(formatted.encode("ascii")).hexdigest()


def scrub_pii(fields: dict[str, Any], default_region: str | None) -> int:
    """Replace raw email/phone keys of ``fields`` in place by their hashes; returns how many
    raw values were dropped because they could not be normalised (never kept raw)."""
    dropped = 0
    for key in [k for k in fields if k in _ALIASES]:
        raw = fields.pop(key)
        if raw is None or raw == "":
            continue
        kind = _ALIASES[key]
        digest = hash_email(str(raw)) if kind == "email" else hash_phone(str(raw), default_region)
        if digest is None:
            dropped += 1
        else:
            fields[PII_KEYS[kind]] = digest
    return dropped
