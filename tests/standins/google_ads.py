"""Google Ads stand-in: the OAuth2 token endpoint (``POST /token``) and ``uploadClickConversions``.

One server plays both, as a test points ``token_url`` at ``{base_url}/token`` and ``endpoint`` at
``base_url``. Token requests are recorded apart (:attr:`GoogleAdsStandIn.token_requests`), so
:attr:`requests`, ``fail_next`` and ``wait_for`` concern the API alone.

The token endpoint checks the refresh-token grant (form-encoded ``grant_type``, ``client_id``,
``client_secret``, ``refresh_token``) and answers ``{"access_token", "expires_in", "token_type"}``,
or RFC 6749 errors: ``invalid_client`` (401), ``invalid_grant`` (400, a revoked refresh token).

The API checks what Google checks before looking at rows: a valid, unexpired Bearer token (401
``UNAUTHENTICATED`` otherwise), the developer token (401; 403 ``DEVELOPER_TOKEN_NOT_APPROVED``
when :attr:`approved` is False), ``login-customer-id`` when the account is reached through a
manager (403 ``USER_PERMISSION_DENIED``), ``partialFailure: true`` and at most 2,000 conversions
(400 ``INVALID_ARGUMENT``). Each conversion is then checked alone and a bad one is reported in
``partialFailureError`` with its row index, the good ones are recorded: the conversion action's
resource name, ``conversionDateTime`` in ``yyyy-mm-dd hh:mm:ss+|-hh:mm``, a click id or user
identifiers, at most one click id, 64 lower-case hex hashes, one identifier per entry, consent
values; :attr:`row_errors` makes a given gclid or orderId fail with a code of the test's choice.
"""

from __future__ import annotations

import re
import secrets
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from datafly.destinations.google_ads.destination import API_VERSION

from . import RecordedRequest, StandIn

__all__ = ["CUSTOMER_ID", "GoogleAdsStandIn"]

CUSTOMER_ID = "1234567890"
MAX_CONVERSIONS = 2000
HASH = re.compile(r"^[0-9a-f]{64}$")
DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d+)?[+-]\d{2}:\d{2}$")
CONSENT = {"UNSPECIFIED", "UNKNOWN", "GRANTED", "DENIED"}
FAILURE = "type.googleapis.com/google.ads.googleads.v26.errors.GoogleAdsFailure"


def _rpc(status: int, name: str, message: str, kind: str, code: str, detail: str) -> web.Response:
    body = {
        "error": {
            "code": status,
            "message": message,
            "status": name,
            "details": [{"@type": FAILURE, "errors": [{"errorCode": {kind: code}, "message": detail}],
                         "requestId": secrets.token_hex(8)}],
        }
    }
    return web.json_response(body, status=status)


class GoogleAdsStandIn(StandIn):
    """Answers like Google's token endpoint and ``ConversionUploadService.UploadClickConversions``.

    Constructor: the OAuth client (``client_id``, ``client_secret``), the valid ``refresh_token``,
    ``developer_token``, ``conversion_action_ids`` that exist, ``login_customer_id`` (the manager
    through which the account is reached, or None), ``token_lifetime`` (seconds), ``clock``.
    """

    path = f"/{API_VERSION}/customers/{CUSTOMER_ID}:uploadClickConversions"
    token_path = "/token"

    def __init__(
        self,
        *,
        client_id: str = "client-1.apps.googleusercontent.com",
        client_secret: str = "GOCSPX-standin-secret",
        refresh_token: str = "1//standin-refresh-token",
        developer_token: str = "standinDevToken0123",
        conversion_action_ids: tuple[str, ...] = ("555000111",),
        login_customer_id: str | None = None,
        token_lifetime: int = 3599,
        clock: Callable[[], float] = time.time,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.client_id = client_id
        self.client_secret = client_secret
        self.refresh_tokens = {refresh_token}  # valid ones; revoke() removes
        self.developer_token = developer_token
        self.conversion_action_ids = set(conversion_action_ids)
        self.login_customer_id = login_customer_id
        self.token_lifetime = token_lifetime
        self.clock = clock
        self.approved = True  # False: the developer token is for test accounts only
        self.tokens: dict[str, float] = {}  # access token -> expiry (epoch seconds)
        self.token_requests: list[RecordedRequest] = []
        self.row_errors: dict[str, tuple[str, str, str]] = {}  # gclid or orderId -> (kind, CODE, message)
        self.accepted: list[dict[str, Any]] = []  # recorded conversions, in order

    def clear(self) -> None:
        super().clear()
        self.token_requests.clear()
        self.accepted.clear()

    # test controls
    def expire_tokens(self) -> None:
        """Every access token issued so far has expired (the next API call answers 401)."""
        for value in self.tokens:
            self.tokens[value] = 0.0

    def revoke(self, refresh_token: str) -> None:
        self.refresh_tokens.discard(refresh_token)

    def allow(self, refresh_token: str) -> None:
        self.refresh_tokens.add(refresh_token)

    @property
    def token_url(self) -> str:
        return self.base_url + self.token_path

    # serving
    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if request.path != self.token_path:
            return await super()._dispatch(request)
        body = await request.read()
        record = RecordedRequest(request.method, request.path, {}, request.query_string, dict(request.headers),
                                 body, time.time())
        self.token_requests.append(record)
        response = self._token(request, record)
        record.status = response.status
        return response

    def _token(self, request: web.Request, record: RecordedRequest) -> web.Response:
        def error(status: int, code: str, description: str) -> web.Response:
            return web.json_response({"error": code, "error_description": description}, status=status)

        if request.method != "POST":
            return error(405, "invalid_request", "use POST")
        if not (record.header("Content-Type") or "").startswith("application/x-www-form-urlencoded"):
            return error(400, "invalid_request", "the body must be form-encoded")
        form = dict(urllib.parse.parse_qsl(record.body.decode("utf-8", "replace")))
        if form.get("grant_type") != "refresh_token":
            return error(400, "unsupported_grant_type", "Invalid grant_type: " + form.get("grant_type", ""))
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return error(401, "invalid_client", "The OAuth client was not found.")
        if form.get("refresh_token") not in self.refresh_tokens:
            return error(400, "invalid_grant", "Token has been expired or revoked.")
        value = "ya29.standin-" + secrets.token_urlsafe(24)
        self.tokens[value] = self.clock() + self.token_lifetime
        return web.json_response(
            {"access_token": value, "expires_in": self.token_lifetime, "token_type": "Bearer",
             "scope": "https://www.googleapis.com/auth/adwords"}
        )

    async def answer(self, request: web.Request, record: RecordedRequest) -> web.Response:
        if request.method != "POST":
            return _rpc(405, "UNIMPLEMENTED", "use POST", "requestError", "UNKNOWN", "use POST")
        authorization = record.header("Authorization") or ""
        token = authorization[7:] if authorization.startswith("Bearer ") else ""
        expiry = self.tokens.get(token)
        if expiry is None:
            return _rpc(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.",
                        "authenticationError", "OAUTH_TOKEN_INVALID", "Oauth token in the header is not valid.")
        if expiry <= self.clock():
            return _rpc(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.",
                        "authenticationError", "OAUTH_TOKEN_EXPIRED", "Oauth token in the header has expired.")
        if record.header("developer-token") != self.developer_token:
            return _rpc(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.",
                        "authenticationError", "DEVELOPER_TOKEN_INVALID", "The developer token is not valid.")
        if not self.approved:
            return _rpc(403, "PERMISSION_DENIED", "The caller does not have permission",
                        "authorizationError", "DEVELOPER_TOKEN_NOT_APPROVED",
                        "The developer token is only approved for use with test accounts. To access non-test "
                        "accounts, apply for Basic or Standard access.")
        if self.login_customer_id is not None and record.header("login-customer-id") != self.login_customer_id:
            return _rpc(403, "PERMISSION_DENIED", "The caller does not have permission",
                        "authorizationError", "USER_PERMISSION_DENIED",
                        "User doesn't have permission to access customer. Note: If you're accessing a client "
                        "customer, the manager's customer ID must be set in the 'login-customer-id' header.")
        if b"@" in record.body:
            return _rpc(400, "INVALID_ARGUMENT", "Request contains an invalid argument.", "fieldError",
                        "INVALID_VALUE", "raw email addresses are not accepted: send hashedEmail")
        try:
            body = orjson.loads(record.body)
        except orjson.JSONDecodeError:
            return _rpc(400, "INVALID_ARGUMENT", "Invalid JSON payload received.", "requestError",
                        "INVALID_INPUT", "Invalid JSON payload received.")
        if not isinstance(body, dict) or body.get("partialFailure") is not True:
            return _rpc(400, "INVALID_ARGUMENT", "Request contains an invalid argument.", "requestError",
                        "INVALID_INPUT", "partial_failure must be true for uploadClickConversions.")
        conversions = body.get("conversions")
        if not isinstance(conversions, list) or not conversions:
            return _rpc(400, "INVALID_ARGUMENT", "Request contains an invalid argument.", "fieldError",
                        "REQUIRED_NONEMPTY_LIST", "conversions must not be empty.")
        if len(conversions) > MAX_CONVERSIONS:
            return _rpc(400, "INVALID_ARGUMENT", "Request contains an invalid argument.", "conversionUploadError",
                        "TOO_MANY_CONVERSIONS_IN_REQUEST", "Upload fewer than 2001 events in a single request.")
        errors: list[dict[str, Any]] = []
        results: list[dict[str, Any]] = []
        for index, conversion in enumerate(conversions):
            found = self.row_problems(conversion)
            for kind, code, message, field in found:
                path = [{"fieldName": "conversions", "index": index}]
                if field:
                    path.append({"fieldName": field})
                errors.append({"errorCode": {kind: code}, "message": message,
                               "location": {"fieldPathElements": path}})
            if found:
                results.append({})
            else:
                self.accepted.append(conversion)
                results.append({key: conversion[key] for key in ("gclid", "gbraid", "wbraid", "conversionAction",
                                                                  "conversionDateTime") if key in conversion})
        answer: dict[str, Any] = {"results": results, "jobId": str(len(self.requests))}
        if errors:
            first = errors[0]
            answer["partialFailureError"] = {
                "code": 3,
                "message": f"{first['message']}, at conversions[{first['location']['fieldPathElements'][0]['index']}]",
                "details": [{"@type": FAILURE, "errors": errors}],
            }
        return web.json_response(answer)

    def row_problems(self, conversion: Any) -> list[tuple[str, str, str, str]]:
        """``(kind, CODE, message, field)`` for each reason Google would refuse this conversion."""
        if not isinstance(conversion, dict):
            return [("requestError", "INVALID_INPUT", "a conversion must be an object", "")]
        found: list[tuple[str, str, str, str]] = []
        action = str(conversion.get("conversionAction") or "")
        match = re.fullmatch(rf"customers/{CUSTOMER_ID}/conversionActions/(\d+)", action)
        if match is None:
            found.append(("requestError", "RESOURCE_NAME_MALFORMED", "Resource name is malformed.", "conversion_action"))
        elif match.group(1) not in self.conversion_action_ids:
            found.append(("conversionUploadError", "NO_CONVERSION_ACTION_FOUND",
                          "The conversion action specified in the upload request cannot be found.", "conversion_action"))
        if not DATE_TIME.match(str(conversion.get("conversionDateTime") or "")):
            found.append(("dateError", "INVALID_FIELD_VALUES_IN_DATE_TIME",
                          "The field values in the date time are invalid.", "conversion_date_time"))
        clicks = [name for name in ("gclid", "gbraid", "wbraid") if conversion.get(name)]
        identifiers = conversion.get("userIdentifiers") or []
        if len(clicks) > 1:
            found.append(("conversionUploadError", "GBRAID_WBRAID_BOTH_SET" if "gclid" not in clicks else "INVALID_INPUT",
                          "Only one of gclid, gbraid or wbraid may be set.", clicks[1]))
        if not clicks and not identifiers:
            found.append(("requestError", "REQUIRED_FIELD_MISSING",
                          "A gclid, gbraid, wbraid or user identifier is required.", ""))
        if not isinstance(identifiers, list) or len(identifiers) > 5:
            found.append(("collectionSizeError", "TOO_MANY", "At most 5 user identifiers.", "user_identifiers"))
        else:
            for entry in identifiers:
                keys = set(entry) if isinstance(entry, dict) else set()
                known = keys & {"hashedEmail", "hashedPhoneNumber"}
                if len(known) != 1 or keys - {"hashedEmail", "hashedPhoneNumber", "userIdentifierSource"}:
                    found.append(("fieldError", "INVALID_VALUE", "One identifier per UserIdentifier.", "user_identifiers"))
                elif not HASH.match(str(entry[known.pop()])):
                    found.append(("fieldError", "INVALID_VALUE", "Hashes must be 64 lower-case hex characters.",
                                  "user_identifiers"))
        consent = conversion.get("consent")
        if consent is not None and (
            not isinstance(consent, dict) or any(v not in CONSENT for v in consent.values())
        ):
            found.append(("fieldError", "INVALID_VALUE", "Consent values are GRANTED or DENIED.", "consent"))
        for key in (conversion.get("gclid"), conversion.get("orderId")):
            if isinstance(key, str) and key in self.row_errors:
                kind, code, message = self.row_errors[key]
                found.append((kind, code, message, ""))
        return found

    # views for assertions
    def count_by_order_id(self) -> Counter[str]:
        return Counter(str(c.get("orderId")) for c in self.accepted)

    def duplicates(self) -> dict[str, int]:
        return self.duplicates_of(self.count_by_order_id())
