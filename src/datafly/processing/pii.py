"""Hashing of email and phone: raw values never get past the gateway.

``email`` → ``email_sha256``: SHA-256 hex of the trimmed, lower-cased address.
``phone`` → ``phone_sha256``: SHA-256 hex of the number in E.164 (``+447700900123``), and
``phone_digits_sha256``: SHA-256 hex of the same digits without the ``+`` (``447700900123``), the
form Meta hashes (a hash cannot be turned into the other form later).
A value that already is 64 hex characters is taken as a hash and kept as it is.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import phonenumbers

__all__ = ["PHONE_DIGITS_KEY", "PII_KEYS", "hash_email", "hash_phone", "is_sha256", "scrub_pii"]

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
PII_KEYS = {"email": "email_sha256", "phone": "phone_sha256"}
PHONE_DIGITS_KEY = "phone_digits_sha256"
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
    return _phone_digests(value, default_region)[0]


def _phone_digests(value: str, default_region: str | None) -> tuple[str | None, str | None]:
    """The SHA-256 hex of the number in E.164, and of its digits without the ``+``; a value that
    already is a hash is kept as the first (the second cannot be had from it)."""
    text = str(value).strip()
    if is_sha256(text):
        return text.lower(), None
    formatted = e164(text, default_region)
    if formatted is None:
        return None, None
    digest = hashlib.sha256(formatted.encode("ascii")).hexdigest()
    return digest, hashlib.sha256(formatted[1:].encode("ascii")).hexdigest()


def scrub_pii(fields: dict[str, Any], default_region: str | None) -> int:
    """Replace raw email/phone keys of ``fields`` in place by their hashes; returns how many
    raw values were dropped because they could not be normalised (never kept raw)."""
    dropped = 0
    for key in [k for k in fields if k in _ALIASES]:
        raw = fields.pop(key)
        if raw is None or raw == "":
            continue
        kind = _ALIASES[key]
        if kind == "email":
            digest = hash_email(str(raw))
        else:
            digest, digits = _phone_digests(str(raw), default_region)
            if digits is not None:
                fields[PHONE_DIGITS_KEY] = digits
        if digest is None:
            dropped += 1
        else:
            fields[PII_KEYS[kind]] = digest
    return dropped
