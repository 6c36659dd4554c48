"""Google Analytics 4 Measurement Protocol destination (see destination.py and the modules it names)."""

from datafly.destinations.ga4.destination import Ga4Destination as DESTINATION

__all__ = ["DESTINATION"]
