"""What the pipeline does to a visitor profile beyond the stages (the profile itself is
:class:`datafly.visitor.Profile`)."""

from __future__ import annotations

import orjson

from datafly.visitor import Profile

__all__ = ["Profile", "trim_traits"]


def trim_traits(profile: Profile, max_bytes: int) -> list[str]:
    """Keep the profile's traits within ``max_bytes`` of JSON: drop the largest values first.
    Returns what was dropped (``key (N bytes)``), for the record. The processor calls it only
    for events that bring traits."""
    traits = profile.traits
    if not traits:
        return []
    sizes = {key: len(orjson.dumps(value)) + len(key) + 4 for key, value in traits.items()}
    total = sum(sizes.values()) + 2
    if total <= max_bytes:
        return []
    dropped: list[str] = []
    for key in sorted(sizes, key=sizes.__getitem__, reverse=True):
        if total <= max_bytes:
            break
        del traits[key]
        total -= sizes[key]
        dropped.append(f"{key} ({sizes[key]:,} bytes)")
    return dropped
