"""Durations as written in the config file: ``200ms``, ``5s``, ``10m``, ``24h``, ``7d``."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")


def parse_duration(value: object) -> float:
    """Seconds for a duration string; raises ValueError with a readable message."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 5s, got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    match = _PATTERN.match(str(value))
    if not match:
        raise ValueError(f"expected a duration such as 200ms, 5s, 10m or 24h, got {value!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]
