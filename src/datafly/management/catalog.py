"""The integration library: every vendor with its settings schema and presets, as JSON.

One schema per thing: the forms of the UI, the API's validation and the OpenAPI document
all read the destination's own ``settings_schema`` and ``presets``.
"""

from __future__ import annotations

from typing import Any

from datafly.destinations.base import Destination
from datafly.destinations.registry import all_destinations

__all__ = ["CONSENT_CATEGORIES", "sample_event", "vendor_view", "vendors"]

CONSENT_CATEGORIES = ("marketing", "advertising", "analytics", "functional", "personalisation")

def vendor_view(destination: Destination) -> dict[str, Any]:
    guide = destination.guide()
    return {
        "vendor": destination.vendor,
        "title": destination.title,
        "summary": guide.summary,
        "consent_hint": guide.consent_hint,
        "suggested_consent": list(guide.suggested_consent),
        "mapping_label": guide.mapping_label,
        "setup": list(guide.setup),
        "troubleshooting": dict(guide.troubleshooting),
        "default_endpoint": destination.default_endpoint or None,
        "batch_size": destination.max_batch,
        "fields": list(destination.known_fields),  # suggestions for the field-source overrides
        "settings": [
            {
                "name": f.name,
                "required": f.required,
                "secret": f.secret,
                "kind": f.kind,
                "default": f.default,
                "description": f.description,
                "format": f.format or None,
                "min_length": f.least_length or None,
                "pattern": f.pattern or None,
                "format_hint": f.format_hint or None,
            }
            for f in destination.settings_schema
        ],
        "presets": [
            {"name": p.name, "description": p.description, "events": dict(p.events)}
            for p in destination.presets.values()
        ],
    }


def vendors() -> list[dict[str, Any]]:
    return [vendor_view(d) for d in all_destinations().values()]


def sample_event(mapping: dict[str, str], consent: list[str]) -> dict[str, Any]:
    """A realistic event to preview an integration with: its first mapped track event."""
    names = [name for name in mapping if name not in ("page", "identify", "group", "*")]
    name = "Order Completed" if "Order Completed" in mapping else (names[0] if names else "")
    context: dict[str, Any] = {
        "ip": "203.0.113.50",
        "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15",
        "page": {
            "url": "https://shop.example.com/checkout?rclid=550e8400e29b41d4a716446655440001",
            "path": "/checkout",
            "referrer": "https://shop.example.com/cart",
            "title": "Checkout",
        },
        "session": {"id": "sess_789", "number": 2},
        "consent": {"canonical": dict.fromkeys(consent or ["marketing"], True)},
    }
    if name:
        return {
            "type": "track",
            "event": name,
            "userId": "user-123",
            "properties": {
                "order_id": "ORD-789012",
                "revenue": 99.99,
                "currency": "USD",
                "affiliation": "web",
                "quantity": 2,
                "margin": 30.5,
            },
            "context": context,
        }
    return {"type": "page", "name": "Checkout", "properties": {}, "context": context}
