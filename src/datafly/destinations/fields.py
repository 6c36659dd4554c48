"""Field-source overrides: where a vendor field's value comes from (``integrations[].fields``).

An override maps a vendor field name to its source:

- a dotted path into the processed event, e.g. ``properties.total`` or
  ``context.traits.email_sha256`` (a numeric segment indexes a list: ``properties.products.0.sku``);
- a constant written ``=value``, e.g. ``=web`` (the text after ``=``, always a string);
- ``None`` (YAML ``null``): the field is removed from what the formatter would send.

A path whose value is absent (or empty) in the event removes the field: empty values are never
sent. A dotted *field name* (``params.currency``) sets a key inside a JSON object field.

Raw ``email``/``phone`` never reach a processed event (the gateway hashes them into
``email_sha256``/``phone_sha256``); paths that name them are refused anyway.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FieldSource",
    "check_field_name",
    "check_source",
    "is_empty",
    "parse_source",
    "resolve_path",
]

_SEGMENT = r"[A-Za-z_$][A-Za-z0-9_$-]*"
_PATH = re.compile(rf"^{_SEGMENT}(\.({_SEGMENT}|\d+))*$")
_NAME = re.compile(rf"^{_SEGMENT}(\.{_SEGMENT})*$")
# the spellings the gateway hashes (datafly.processing.pii): a path ending in one names raw PII
RAW_PII = frozenset({"email", "phone", "mobile", "phone_number", "phonenumber"})


@dataclass(frozen=True)
class FieldSource:
    """One parsed override: ``kind`` is ``path``, ``constant`` or ``remove``."""

    kind: str
    value: str = ""


def check_field_name(name: str) -> str | None:
    """Why ``name`` cannot be a vendor field name, or None."""
    if not _NAME.match(name):
        return "expected a field name of letters, digits, '_' or '-' (dots set keys inside a JSON field)"
    return None


def check_source(source: Any) -> str | None:
    """Why ``source`` is not a valid field source, or None."""
    if source is None:
        return None
    hint = "expected a dotted path such as properties.total, a constant written =value, or null to remove it"
    if not isinstance(source, str):
        return f"{hint}; got {source!r}"
    if source.startswith("="):
        if not source[1:].strip():
            return "an empty constant is never sent: write =value, or null to remove the field"
        return None
    if not _PATH.match(source):
        return f"{hint}; got {source!r}"
    last = source.rsplit(".", 1)[-1]
    if last.lower() in RAW_PII:
        return (
            f"{source!r} names a raw {last}: raw email and phone never leave the gateway; "
            f"use the hashed field instead (e.g. context.traits.{'email' if 'mail' in last.lower() else 'phone'}_sha256)"
        )
    return None


def parse_source(source: str | None) -> FieldSource:
    """The override as data; call :func:`check_source` first (invalid paths resolve to nothing)."""
    if source is None:
        return FieldSource("remove")
    if source.startswith("="):
        return FieldSource("constant", source[1:])
    if check_source(source) is not None:
        return FieldSource("remove")  # defence in depth: an unchecked bad path never sends anything
    return FieldSource("path", source)


def resolve_path(event: Mapping[str, Any], path: str) -> Any:
    """The value at ``path`` in ``event``, or None when any step is missing."""
    current: Any = event
    for segment in path.split("."):
        if isinstance(current, Mapping):
            current = current.get(segment)
        elif isinstance(current, list) and segment.isdigit() and int(segment) < len(current):
            current = current[int(segment)]
        else:
            return None
        if current is None:
            return None
    return current


def is_empty(value: Any) -> bool:
    """A value that is never sent: absent, blank text, an empty object or list."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, Mapping | list):
        return not value
    return False
