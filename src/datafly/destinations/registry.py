"""Finds every destination folder: a subpackage whose ``DESTINATION`` names its class."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from datafly.destinations.base import Destination

__all__ = ["all_destinations", "get_destination"]


@cache
def all_destinations() -> dict[str, Destination]:
    found: dict[str, Destination] = {}
    package = importlib.import_module("datafly.destinations")
    for info in pkgutil.iter_modules(package.__path__):
        if not info.ispkg:
            continue
        module = importlib.import_module(f"datafly.destinations.{info.name}")
        cls = getattr(module, "DESTINATION", None)
        if cls is not None:
            found[cls.vendor] = cls()
    return dict(sorted(found.items()))


def get_destination(vendor: str) -> Destination | None:
    return all_destinations().get(vendor)
