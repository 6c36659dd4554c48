"""TikTok Events API 2.0 destination (web events to a TikTok pixel); see destination.py."""

from datafly.destinations.tiktok.destination import TikTokDestination as DESTINATION

__all__ = ["DESTINATION"]
