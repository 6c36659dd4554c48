"""Meta Conversions API destination (server events for a pixel / dataset)."""

from datafly.destinations.meta.destination import MetaDestination as DESTINATION

__all__ = ["DESTINATION"]
