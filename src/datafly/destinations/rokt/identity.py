"""Hashed identifiers for vendors that match on email or phone (sans-IO, no globals).

The gateway already replaces raw ``email``/``phone`` with ``email_sha256``/``phone_sha256``;
these functions are the defensive second line: whatever is found is normalised and hashed
(with :mod:`datafly.processing.pii`), so a raw value can never leave the system.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from datafly.processing import pii

__all__ = ["email_sha256", "hash_email", "hash_phone", "is_sha256_hex", "phone_sha256"]


def is_sha256_hex(value: str) -> bool:
    return pii.is_sha256(value.strip())


def hash_email(email: str) -> str | None:
    """SHA-256 hex of the trimmed, lower-cased email; a value that already is a hash is kept."""
    return pii.hash_email(email)


def hash_phone(phone: str) -> str | None:
    """SHA-256 hex of the phone in E.164; a value that already is a hash is kept; None if unusable.

    Only numbers written with their country code (``+44…`` or ``0044…``) can be put in E.164:
    without one, no region is guessed and nothing is sent.
    """
    value = phone.strip()
    if value.startswith("00"):
        value = "+" + value[2:]
    if not (value.startswith("+") or is_sha256_hex(value)):
        return None
    return pii.hash_phone(value)


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
