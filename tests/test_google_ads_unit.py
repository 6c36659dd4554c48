"""Google Ads destination against its loopback stand-in: requests built, sent, answered, classified."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import orjson

from datafly.destinations.base import (
    ACCESS_TOKEN_KEY,
    AccessToken,
    Formatted,
    Item,
    Outcome,
    Skip,
    VendorResponse,
)
from datafly.destinations.google_ads.conversion import click_id, conversion_action
from datafly.destinations.google_ads.destination import GoogleAdsDestination, customer_digits
from standins import send
from standins.google_ads import CUSTOMER_ID, GoogleAdsStandIn

DEST = GoogleAdsDestination()
NOW = 1_780_740_005.0  # 2026-06-06T10:00:05Z
EMAIL_SHA = hashlib.sha256(b"jane.doe@example.com").hexdigest()
PHONE_SHA = hashlib.sha256(b"+447700900123").hexdigest()


def settings(stand_in: GoogleAdsStandIn, **extra: Any) -> dict[str, Any]:
    return {
        "customer_id": "123-456-7890",
        "conversion_action_id": "555000111",
        "developer_token": stand_in.developer_token,
        "client_id": stand_in.client_id,
        "client_secret": stand_in.client_secret,
        "refresh_token": next(iter(stand_in.refresh_tokens)),
        "token_url": stand_in.token_url,
        **extra,
    }


def order(n: int, **context: Any) -> Item:
    event = {
        "type": "track", "event": "Order Completed", "messageId": f"m-{n}", "anonymousId": "v1",
        "timestamp": "2026-06-06T10:00:00.000Z", "receivedAt": "2026-06-06T10:00:00.100Z",
        "properties": {"order_id": f"ORD-{n}", "revenue": 10.5, "currency": "EUR"},
        "context": {"clickIds": {"gclid": f"gclid-{n}"}, **context},
    }
    return Item(f"i{n}", event, "conversion")


async def token_for(stand_in: GoogleAdsStandIn, config: dict[str, Any]) -> AccessToken:
    request = DEST.token_request(config, "")
    assert request is not None
    read = DEST.read_token(await send(request))
    assert isinstance(read, AccessToken), read
    return read


def formatted(items: list[Item], config: dict[str, Any]) -> list[Formatted]:
    shaped = [DEST.format_for(item, config, None, now=NOW) for item in items]
    assert all(isinstance(s, Formatted) for s in shaped), shaped
    return [s for s in shaped if isinstance(s, Formatted)]


def test_a_conversion_with_gclid_and_hashed_identifiers_is_recorded() -> None:
    async def scenario() -> None:
        async with GoogleAdsStandIn(clock=lambda: NOW) as google:
            config = settings(google)
            config[ACCESS_TOKEN_KEY] = (await token_for(google, config)).value
            item = order(1, traits={"email_sha256": EMAIL_SHA, "phone_sha256": PHONE_SHA},
                         consent={"canonical": {"advertising": True}})
            (request,) = DEST.build_requests(formatted([item], config), config, DEST.endpoint(config, google.base_url))
            assert request.url == google.url
            outcomes = DEST.classify(request, await send(request))
            assert outcomes == {"i1": outcomes["i1"]} and outcomes["i1"].outcome is Outcome.DONE
            (recorded,) = google.accepted
            assert recorded["userIdentifiers"] == [{"hashedEmail": EMAIL_SHA}, {"hashedPhoneNumber": PHONE_SHA}]
            assert recorded["conversionDateTime"] == "2026-06-06 10:00:00+00:00"
            assert recorded["consent"] == {"adUserData": "GRANTED", "adPersonalization": "GRANTED"}
            masked = request.masked(DEST.secrets_of(config))
            assert masked["headers"]["Authorization"] == "Bearer ****"
            assert config[ACCESS_TOKEN_KEY] not in orjson.dumps(masked).decode()
            assert config["developer_token"] not in orjson.dumps(masked).decode()

    asyncio.run(scenario())


def test_each_failed_row_gets_its_own_code_and_message_and_the_rest_are_done() -> None:
    async def scenario() -> None:
        async with GoogleAdsStandIn(clock=lambda: NOW) as google:
            google.row_errors = {
                "gclid-2": ("conversionUploadError", "UNPARSEABLE_GCLID", "The imported gclid could not be decoded."),
                "ORD-4": ("conversionUploadError", "EXPIRED_EVENT", "The click is outside the click-through window."),
            }
            config = settings(google)
            config[ACCESS_TOKEN_KEY] = (await token_for(google, config)).value
            items = [order(n) for n in range(1, 6)]
            (request,) = DEST.build_requests(formatted(items, config), config, google.base_url)
            outcomes = DEST.classify(request, await send(request))
            assert {k: v.outcome for k, v in outcomes.items()} == {
                "i1": Outcome.DONE, "i2": Outcome.REJECTED, "i3": Outcome.DONE, "i4": Outcome.REJECTED, "i5": Outcome.DONE}
            assert outcomes["i2"].reason == "UNPARSEABLE_GCLID: The imported gclid could not be decoded."
            assert outcomes["i4"].reason == "EXPIRED_EVENT: The click is outside the click-through window."
            assert sorted(google.count_by_order_id()) == ["ORD-1", "ORD-3", "ORD-5"]

    asyncio.run(scenario())


def test_the_stand_in_refuses_what_google_refuses() -> None:
    async def scenario() -> None:
        async with GoogleAdsStandIn(clock=lambda: NOW, login_customer_id="1112223333") as google:
            config = settings(google)
            config[ACCESS_TOKEN_KEY] = (await token_for(google, config)).value
            (request,) = DEST.build_requests(formatted([order(1)], config), config, google.base_url)
            answer = await send(request)  # no login-customer-id
            assert answer.status == 403
            assert DEST.classify(request, answer)["i1"].outcome is Outcome.AUTH_FAILED
            assert "USER_PERMISSION_DENIED" in DEST.classify(request, answer)["i1"].reason
            config["login_customer_id"] = "111-222-3333"
            (request,) = DEST.build_requests(formatted([order(1)], config), config, google.base_url)
            assert (await send(request)).status == 200
            google.expire_tokens()
            answer = await send(request)
            assert answer.status == 401 and b"OAUTH_TOKEN_EXPIRED" in answer.body
            assert DEST.classify(request, answer)["i1"].outcome is Outcome.AUTH_FAILED
            # a conversion without partialFailure, a bad hash, a bad time: as Google answers them
            config[ACCESS_TOKEN_KEY] = (await token_for(google, config)).value
            (request,) = DEST.build_requests(formatted([order(1)], config), config, google.base_url)
            body = orjson.loads(request.body or b"")
            body["conversions"][0]["conversionDateTime"] = "2026-06-06T10:00:00Z"
            body["conversions"][0]["userIdentifiers"] = [{"hashedEmail": EMAIL_SHA.upper()}]
            bad = await send(type(request)(request.method, request.url, request.headers, orjson.dumps(body), ("i1",)))
            reasons = DEST.classify(request, bad)["i1"].reason
            assert "INVALID_FIELD_VALUES_IN_DATE_TIME" in reasons and "64 lower-case hex" in reasons
            body["partialFailure"] = False
            whole = await send(type(request)(request.method, request.url, request.headers, orjson.dumps(body), ("i1",)))
            assert whole.status == 400 and DEST.classify(request, whole)["i1"].outcome is Outcome.REJECTED

    asyncio.run(scenario())


def test_token_endpoint_errors_become_outcomes_with_hints() -> None:
    async def scenario() -> None:
        async with GoogleAdsStandIn() as google:
            config = settings(google)
            google.revoke(config["refresh_token"])
            request = DEST.token_request(config, "")
            assert request is not None
            refused = DEST.read_token(await send(request))
            assert not isinstance(refused, AccessToken)
            assert refused.outcome is Outcome.AUTH_FAILED
            assert "invalid_grant" in refused.reason
            assert "the refresh token was revoked or expired: reconnect" in refused.reason
            wrong = DEST.token_request({**config, "client_secret": "GOCSPX-wrong"}, "")
            assert wrong is not None
            refused = DEST.read_token(await send(wrong))
            assert not isinstance(refused, AccessToken) and "invalid_client" in refused.reason

    asyncio.run(scenario())


def test_ids_mapping_and_cookie() -> None:
    assert customer_digits("123-456-7890") == CUSTOMER_ID
    assert conversion_action("1", " 42 ", "7") == "customers/1/conversionActions/42"
    assert conversion_action("1", "conversion", "7") == "customers/1/conversionActions/7"
    assert click_id({"context": {"cookies": {"_gcl_aw": "GCL.1700000000.Cj0-abc"}}}) == ("gclid", "Cj0-abc")
    assert click_id({"context": {"cookies": {"_gcl_aw": "not-a-gcl-cookie"}}}) is None
    assert click_id({"context": {"clickIds": {"gbraid": "g"}, "cookies": {"_gcl_aw": "GCL.1.x"}}}) == ("gbraid", "g")


def test_a_raw_email_or_phone_is_hashed_never_sent() -> None:
    item = Item("i1", {"type": "track", "event": "Order Completed", "timestamp": "2026-06-06T10:00:00Z",
                       "properties": {}, "context": {"traits": {"email": " Jane.Doe@Example.com ",
                                                                "phone": "+44 7700 900123"}}}, "conversion")
    shaped = DEST.format_for(item, {"customer_id": "1", "conversion_action_id": "2"}, None, now=NOW)
    assert isinstance(shaped, Formatted)
    assert shaped.payload["userIdentifiers"] == [{"hashedEmail": EMAIL_SHA}, {"hashedPhoneNumber": PHONE_SHA}]
    national = Item("i2", {**item.event, "context": {"traits": {"phone": "07700 900123"}}}, "conversion")
    assert isinstance(DEST.format_for(national, {"customer_id": "1"}, None, now=NOW), Skip)


def test_the_access_token_is_a_secret_of_the_settings() -> None:
    config = {"developer_token": "dev-0123456789", ACCESS_TOKEN_KEY: "ya29.zzz"}
    assert DEST.secrets_of(config) == ["dev-0123456789", "ya29.zzz"]
    answer = VendorResponse(200, {}, orjson.dumps({"access_token": "ya29.x", "expires_in": 3599}))
    assert DEST.read_token(answer) == AccessToken("ya29.x", 3599.0)
