"""The generic webhook: POSTs each event's canonical JSON, or batches of them, to a URL."""

from datafly.destinations.webhook.destination import WebhookDestination as DESTINATION

__all__ = ["DESTINATION"]
