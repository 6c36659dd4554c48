"""Every registered vendor can be created through the API and previewed (issue 17: the mapping
preview works for every destination as it does for Rokt): the exact request, secrets masked, no
raw email, and the vendor's guide in the library."""

from __future__ import annotations

import json
from typing import Any

import pytest
from management_client import Client

from datafly.destinations.registry import all_destinations

SETTINGS: dict[str, dict[str, Any]] = {
    "exactag": {"campaign_code": "CAMPAIGN-CODE-0123456789-abcdefgh"},
    "rokt": {"account_id": "4242", "api_key": "rpub-preview-0123", "api_secret": "rsec-preview-0123"},
    "webhook": {"url": "https://hooks.example.com/datafly", "secret": "whsec-preview-0123"},
    "meta": {"pixel_id": "123456789012345", "access_token": "EAAB-preview-token-0123456789"},
    "ga4": {"measurement_id": "G-ABC123DEF4", "api_secret": "preview-api-secret-0123"},
    "tiktok": {"pixel_code": "CB6RBI3C77U5UN6BNA8G", "access_token": "preview-tiktok-token-0123456789"},
    "google_ads": {
        "customer_id": "1234567890", "conversion_action_id": "987654321", "developer_token": "preview-dev-token-0123",
        "client_id": "preview.apps.googleusercontent.com", "client_secret": "preview-client-secret",
        "refresh_token": "preview-refresh-token-0123",
    },
}  # fmt: skip
ORDER = {
    "type": "track", "event": "Order Completed", "userId": "user-123",
    "properties": {"order_id": "ORD-1", "revenue": 99.99, "currency": "EUR",
                   "products": [{"product_id": "P-1", "name": "Mug", "price": 99.99, "quantity": 1}]},
    "context": {
        "consent": {"canonical": {"marketing": True, "advertising": True, "analytics": True}},
        "traits": {"email": "jane.doe@example.com"},
        "page": {"url": "https://shop.example/checkout?gclid=G-1&fbclid=F-1&ttclid=T-1&rclid=R-1"},
        "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Preview/1.0",
    },
}  # fmt: skip


def test_every_vendor_has_preview_settings_here() -> None:
    assert set(all_destinations()) <= set(SETTINGS), "a new vendor gets its preview settings here"


@pytest.mark.parametrize("vendor", sorted(all_destinations()))
def test_a_vendor_is_created_and_previewed_with_its_request(api: Client, vendor: str) -> None:
    library = {v["vendor"]: v for v in api.get("/api/vendors").json()["vendors"]}
    assert library[vendor]["summary"] and library[vendor]["setup"], library[vendor]
    created = api.post("/api/integrations", {"id": f"p-{vendor}", "vendor": vendor, "settings": SETTINGS[vendor]})
    assert created.status == 201, created.text
    answer = api.post(f"/api/integrations/p-{vendor}/preview", {"event": ORDER})
    assert answer.status == 200, answer.text
    result = answer.json()
    assert result["outcome"] == "request", result
    shown = json.dumps(result)
    assert "jane.doe@example.com" not in shown
    for name, value in SETTINGS[vendor].items():
        secret = any(f["name"] == name and f["secret"] for f in library[vendor]["settings"])
        if secret:
            assert value not in shown, f"{vendor}: secret {name} shown"
