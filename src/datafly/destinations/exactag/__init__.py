"""Exactag S2S Tracking API destination (vendor-docs/exactag.txt)."""

from datafly.destinations.exactag.destination import ExactagDestination as DESTINATION

__all__ = ["DESTINATION"]
