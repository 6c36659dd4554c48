"""Rokt Conversions API destination (vendor-docs/rokt.txt)."""

from datafly.destinations.rokt.destination import RoktDestination as DESTINATION

__all__ = ["DESTINATION"]
