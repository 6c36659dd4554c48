"""Hashed identifiers for vendors that match on email or phone (sans-IO, no globals).

The gateway already replaces raw ``email``/``phone`` with ``email_sha256``/``phone_sha256``;
these functions are the defensive second line: whatever is found is normalised and hashed here,
so a raw value can never leave the system.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

import phonenumbers

__all__ = ["email_sha256", "hash_email", "hash_phone", "is_sha256_hex", "phone_sha256"]

_SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")


def is_sha256_hex(value: str) -> bool:
    return bool(_SHA256_HEX.match(value.strip()))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def hash_email(email: str) -> str:
    """SHA-256 hex of the trimmed, lower-cased email; a value that already is a hash is kept."""
    value = email.strip()
    if is_sha256_hex(value):
        return value.lower()
    return _sha256(value.lower())


def normalise_phone(phone: str) -> str | None:
    """E.164 (``+447700900123``) of a phone written with its country code, else None."""
    value = phone.strip()
    if value.startswith("00"):
        value = "+" + value[2:]
    if not value.startswith("+"):
        return None  # no country code: no E.164 form can be derived without guessing
    try:
        parsed = phonenumbers.parse(value, None)
        formatted = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
        return str(formatted)
    except phonenumbers.NumberParseException:
        digits = re.sub(r"\D", "", value)
        return "+" + digits if digits else None


def hash_phone(phone: str) -> str | None:
    """SHA-256 hex of the phone in E.164; a value that already is a hash is kept; None if unusable."""
    value = phone.strip()
    if is_sha256_hex(value):
        return value.lower()
    e164 = normalise_phone(value)
    return _sha256(e164) if e164 else None


def _first(sources: Iterable[Mapping[str, Any]], keys: tuple[str, ...]) -> str:
    for source in sources:
        for key in keys:
            value = source.get(key)
            if isinstance(value, str) and value.strip():
                return value
    return ""


def email_sha256(sources: Iterable[Mapping[str, Any]]) -> str | None:
    """The hashed email from the first source that has one (``email_sha256``, else raw ``email``)."""
    value = _first(sources, ("email_sha256", "emailsha256", "email"))
    return hash_email(value) if value else None


def phone_sha256(sources: Iterable[Mapping[str, Any]]) -> str | None:
    """The hashed phone from the first source that has one (``phone_sha256``, else raw ``phone``)."""
    value = _first(sources, ("phone_sha256", "mobilesha256", "mobile_sha256", "phone"))
    return hash_phone(value) if value else None
