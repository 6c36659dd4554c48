"""The per-integration access-token cache (datafly.delivery.tokens), with Google Ads' token exchange."""

from __future__ import annotations

import asyncio
import urllib.parse
from collections import deque
from typing import Any

import orjson
import pytest

from datafly.delivery.tokens import EARLY, TokenCache, TokenRefused
from datafly.destinations.base import AccessToken, OutboundRequest, Outcome, VendorResponse
from datafly.destinations.google_ads.destination import GoogleAdsDestination

SETTINGS = {
    "customer_id": "1234567890",
    "conversion_action_id": "555",
    "developer_token": "devtoken-0123456789",
    "client_id": "client-1.apps.googleusercontent.com",
    "client_secret": "GOCSPX-secret-0123",
    "refresh_token": "1//refresh-0123456789",
    "token_url": "http://127.0.0.1:1/token",
}


class FakeClient:
    """Answers token requests from a plan; counts them; may wait before answering."""

    def __init__(self, *answers: VendorResponse | Exception, delay: float = 0.0) -> None:
        self.answers: deque[VendorResponse | Exception] = deque(answers)
        self.sent: list[OutboundRequest] = []
        self.delay = delay

    async def send(self, request: OutboundRequest, timeout: float) -> VendorResponse:
        self.sent.append(request)
        if self.delay:
            await asyncio.sleep(self.delay)
        answer = self.answers.popleft()
        if isinstance(answer, Exception):
            raise answer
        return answer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def token(value: str, expires_in: int = 3599) -> VendorResponse:
    body = {"access_token": value, "expires_in": expires_in, "token_type": "Bearer"}
    return VendorResponse(200, {"Content-Type": "application/json"}, orjson.dumps(body))


def oauth_error(status: int, error: str, description: str) -> VendorResponse:
    return VendorResponse(status, {}, orjson.dumps({"error": error, "error_description": description}))


def cache(client: FakeClient, clock: Clock | None = None) -> TokenCache:
    return TokenCache(GoogleAdsDestination(), SETTINGS, "https://googleads.googleapis.com", client, 2.0,  # type: ignore[arg-type]
                      clock=clock or Clock())


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_the_token_request_is_the_refresh_token_grant() -> None:
    client = FakeClient(token("ya29.a"))
    got = run(cache(client).get())
    assert got == AccessToken("ya29.a", 3599.0)
    (request,) = client.sent
    assert (request.method, request.url, request.item_ids) == ("POST", "http://127.0.0.1:1/token", ())
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert dict(urllib.parse.parse_qsl((request.body or b"").decode())) == {
        "grant_type": "refresh_token",
        "client_id": SETTINGS["client_id"],
        "client_secret": SETTINGS["client_secret"],
        "refresh_token": SETTINGS["refresh_token"],
    }


def test_a_token_is_kept_until_shortly_before_it_expires() -> None:
    clock = Clock()
    client = FakeClient(token("ya29.a"), token("ya29.b"))
    tokens = cache(client, clock)

    async def scenario() -> list[str]:
        seen = [(await tokens.get())]
        clock.now += 3599 - EARLY - 1  # still fresh
        seen.append(await tokens.get())
        clock.now += 2  # within the last minute: renewed
        seen.append(await tokens.get())
        return [t.value for t in seen if isinstance(t, AccessToken)]

    assert run(scenario()) == ["ya29.a", "ya29.a", "ya29.b"]
    assert tokens.fetches == 2


def test_a_short_lived_token_is_renewed_after_nine_tenths_of_its_life() -> None:
    clock = Clock()
    tokens = cache(FakeClient(token("short", 100), token("next", 100)), clock)

    async def scenario() -> tuple[Any, Any, Any]:
        first = await tokens.get()
        clock.now += 89
        second = await tokens.get()
        clock.now += 2
        return first, second, await tokens.get()

    first, second, third = run(scenario())
    assert (first.value, second.value, third.value) == ("short", "short", "next")


def test_at_most_one_fetch_is_in_flight() -> None:
    client = FakeClient(token("ya29.once"), delay=0.05)
    tokens = cache(client)

    async def scenario() -> list[Any]:
        return list(await asyncio.gather(*(tokens.get() for _ in range(20))))

    results = run(scenario())
    assert {r.value for r in results} == {"ya29.once"}
    assert len(client.sent) == 1


def test_invalid_grant_is_an_auth_failure_with_the_reconnect_hint_and_is_not_cached() -> None:
    client = FakeClient(oauth_error(400, "invalid_grant", "Token has been expired or revoked."), token("ya29.new"))
    tokens = cache(client)
    refused = run(tokens.get())
    assert isinstance(refused, TokenRefused)
    assert refused.outcome.outcome is Outcome.AUTH_FAILED
    assert refused.outcome.reason == (
        "token endpoint 400: invalid_grant (Token has been expired or revoked.): the refresh token was "
        "revoked or expired: reconnect (create a new refresh token and set refresh_token)"
    )
    assert refused.response.status == 400
    assert run(tokens.get()) == AccessToken("ya29.new", 3599.0)  # the next items ask again


def test_invalid_client_names_the_client_id_and_secret() -> None:
    refused = run(cache(FakeClient(oauth_error(401, "invalid_client", "Unauthorized"))).get())
    assert refused.outcome.outcome is Outcome.AUTH_FAILED
    assert "check client_id and client_secret" in refused.outcome.reason


@pytest.mark.parametrize(
    ("answer", "retry_after"),
    [
        (VendorResponse(503, {"Retry-After": "7"}, b"unavailable"), 7.0),
        (VendorResponse(500, {}, orjson.dumps({"error": "internal_failure"})), None),
        (VendorResponse(429, {}, b""), None),
        (VendorResponse(0, error="timed out"), None),
        (VendorResponse(200, {}, b"<html>not json</html>"), None),
    ],
)
def test_passing_failures_of_the_token_endpoint_are_retried(answer: VendorResponse, retry_after: float | None) -> None:
    refused = run(cache(FakeClient(answer)).get())
    assert isinstance(refused, TokenRefused)
    assert refused.outcome.outcome is Outcome.RETRY
    assert refused.outcome.retry_after == retry_after


def test_a_client_that_raises_is_a_retry_not_an_error() -> None:
    refused = run(cache(FakeClient(RuntimeError("boom"))).get())
    assert isinstance(refused, TokenRefused) and refused.outcome.outcome is Outcome.RETRY
    assert "boom" in refused.outcome.reason


def test_drop_forgets_the_refused_token_but_never_a_newer_one() -> None:
    client = FakeClient(token("ya29.a"), token("ya29.b"))
    tokens = cache(client)

    async def scenario() -> list[str | None]:
        await tokens.get()
        tokens.drop("ya29.old")  # a request built with an older token: the current one stays
        kept = tokens.cached()
        tokens.drop("ya29.a")
        gone = tokens.cached()
        fresh = await tokens.get()
        return [kept, gone, fresh.value if isinstance(fresh, AccessToken) else None]

    assert run(scenario()) == ["ya29.a", None, "ya29.b"]
    assert len(client.sent) == 2


def test_a_vendor_without_tokens_needs_none() -> None:
    from datafly.destinations.rokt.destination import RoktDestination

    tokens = TokenCache(RoktDestination(), {}, "", FakeClient(), 1.0)  # type: ignore[arg-type]
    assert not tokens.needed
    assert GoogleAdsDestination().token_request(SETTINGS, "") is not None
