"""Google Ads click conversions with enhanced-conversion identifiers (Google Ads API, OAuth2)."""

from datafly.destinations.google_ads.destination import GoogleAdsDestination as DESTINATION

__all__ = ["DESTINATION"]
