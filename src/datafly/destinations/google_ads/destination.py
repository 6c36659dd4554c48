"""Google Ads click conversions: ``uploadClickConversions`` of the Google Ads API (REST), with OAuth2.

``POST {origin}/{api_version}/customers/{customer_id}:uploadClickConversions`` with the headers
``Authorization: Bearer <access token>``, ``developer-token`` and, when set, ``login-customer-id``;
the body is ``{"conversions": [...], "partialFailure": true}`` (Google requires partial failure
for this method), at most 2,000 conversions (Google's bound per request). The access token comes
from ``token_url`` with the refresh token (``grant_type=refresh_token``); the delivery worker
keeps it (datafly.delivery.tokens) and gives it to :meth:`build_requests` as
``settings[ACCESS_TOKEN_KEY]``. The conversion itself: ``conversion.py``; the answers:
``responses.py``.

``endpoint`` is an origin (CONTRACT.md): its scheme, host and port replace Google's, the path
stays Google's, so a stand-in sees the real path.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from datafly.destinations.base import (
    ACCESS_TOKEN_KEY,
    AccessToken,
    Destination,
    Formatted,
    Item,
    ItemOutcome,
    OutboundRequest,
    SettingField,
    Settings,
    Skip,
    VendorResponse,
    chunks,
    load_presets,
)
from datafly.destinations.google_ads.conversion import CLICK_ID_NAMES, NO_IDENTIFIER, build_conversion
from datafly.destinations.google_ads.responses import classify_upload, read_token

__all__ = ["API_VERSION", "TOKEN_URL", "GoogleAdsDestination", "customer_digits"]

API_VERSION = "v26"  # the latest Google Ads API version in December 2026 (Google's reference)
TOKEN_URL = "https://oauth2.googleapis.com/token"
_CUSTOMER = r"[0-9]{3}-?[0-9]{3}-?[0-9]{4}"


def customer_digits(value: Any) -> str:
    """A customer id as Google's URLs and headers take it: digits only (``123-456-7890`` -> ``1234567890``)."""
    return str(value or "").replace("-", "").strip()


class GoogleAdsDestination(Destination):
    vendor = "google_ads"
    title = "Google Ads"
    settings_schema = (
        SettingField(
            "customer_id",
            description="The Google Ads account the conversions belong to (123-456-7890; dashes are removed).",
            pattern=_CUSTOMER,
            format_hint="the 10-digit customer id, with or without dashes",
        ),
        SettingField(
            "conversion_action_id",
            description="The id of the conversion action the conversions count for (Goals > Conversions).",
            pattern=r"[0-9]{1,19}",
            format_hint="digits",
        ),
        SettingField(
            "developer_token",
            secret=True,
            description="Your Google Ads API developer token (API Center of a manager account).",
            pattern=r"[A-Za-z0-9_\-]+",
            format_hint="the token shown in the API Center: letters, digits, - and _",
        ),
        SettingField("client_id", description="The OAuth 2.0 client id (….apps.googleusercontent.com)."),
        SettingField("client_secret", secret=True, description="The OAuth 2.0 client secret."),
        SettingField(
            "refresh_token",
            secret=True,
            description="A refresh token of a user with access to the account, for the scope https://www.googleapis.com/auth/adwords.",
        ),
        SettingField(
            "login_customer_id",
            required=False,
            description="The manager account's customer id, when the access comes through a manager account.",
            pattern=_CUSTOMER,
            format_hint="the 10-digit customer id, with or without dashes",
        ),
        SettingField(
            "api_version",
            required=False,
            default=API_VERSION,
            description=f"The Google Ads API version (default {API_VERSION}).",
            pattern=r"v[0-9]{1,3}",
            format_hint="v and a number, such as v26",
        ),
        SettingField(
            "token_url",
            required=False,
            default=TOKEN_URL,
            format="url",
            description=f"Google's OAuth 2.0 token endpoint (default {TOKEN_URL}).",
        ),
    )
    presets = load_presets(os.path.dirname(__file__))
    default_endpoint = "https://googleads.googleapis.com"
    max_batch = 2000  # Google's bound per uploadClickConversions request
    max_wait = 0.5
    reserved_fields = {
        "conversionAction": "comes from settings.customer_id and the conversion action id",
        "consent": "comes from the visitor's consent (Consent Mode)",
    }
    known_fields = (
        *CLICK_ID_NAMES, "conversionAction", "conversionDateTime", "conversionValue", "currencyCode",
        "orderId", "userIdentifiers", "consent",
    )  # fmt: skip

    def endpoint(self, settings: Settings, override: str | None) -> str:
        """The origin requests go to: the override's scheme, host and port, else Google's."""
        if not override:
            return self.default_endpoint
        parts = urllib.parse.urlsplit(override)
        return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else override.rstrip("/")

    def check_fields(self, fields: Mapping[str, Any]) -> Skip | None:
        if not (any(fields.get(name) for name in CLICK_ID_NAMES) or fields.get("userIdentifiers")):
            return Skip(NO_IDENTIFIER)
        return None

    def format_item(self, item: Item, settings: Settings, *, now: float | None = None) -> Formatted | Skip:
        """The conversion of one event; ``now`` (epoch seconds) defaults to the clock."""
        conversion = build_conversion(
            item.event,
            customer_digits(settings.get("customer_id")),
            item.mapping,
            str(settings.get("conversion_action_id") or "").strip(),
            now,
        )
        return conversion if isinstance(conversion, Skip) else Formatted(item.id, conversion)

    def build_requests(
        self, formatted: Sequence[Formatted], settings: Settings, endpoint: str
    ) -> list[OutboundRequest]:
        customer = customer_digits(settings.get("customer_id"))
        version = str(settings.get("api_version") or API_VERSION).strip()
        url = f"{endpoint.rstrip('/')}/{version}/customers/{customer}:uploadClickConversions"
        headers = {"Content-Type": "application/json"}
        token = settings.get(ACCESS_TOKEN_KEY)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        headers["developer-token"] = str(settings.get("developer_token") or "")
        login = customer_digits(settings.get("login_customer_id"))
        if login:
            headers["login-customer-id"] = login
        return [
            OutboundRequest(
                "POST",
                url,
                dict(headers),
                orjson.dumps({"conversions": [f.payload for f in group], "partialFailure": True}),
                tuple(f.item_id for f in group),
            )
            for group in chunks(formatted, self.max_batch)
        ]

    def classify(self, request: OutboundRequest, response: VendorResponse) -> dict[str, ItemOutcome]:
        customer = request.url.rsplit("/customers/", 1)[-1].split(":", 1)[0]
        return classify_upload(request, response, customer)

    def token_request(self, settings: Settings, endpoint: str) -> OutboundRequest | None:
        """``POST token_url`` with the refresh token grant (RFC 6749 section 6), form-encoded."""
        form = {
            "grant_type": "refresh_token",
            "client_id": str(settings.get("client_id") or ""),
            "client_secret": str(settings.get("client_secret") or ""),
            "refresh_token": str(settings.get("refresh_token") or ""),
        }
        return OutboundRequest(
            "POST",
            str(settings.get("token_url") or TOKEN_URL),
            {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
            urllib.parse.urlencode(form).encode(),
            (),
        )

    def read_token(self, response: VendorResponse) -> AccessToken | ItemOutcome:
        return read_token(response)
