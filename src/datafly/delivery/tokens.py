"""One integration's access token (OAuth2): fetched when needed, kept until shortly before it expires.

A destination that authorises with a short-lived token says how to get one
(:meth:`~datafly.destinations.base.Destination.token_request`, ``read_token``); the delivery
worker asks its :class:`TokenCache` before it builds requests. The cache:

- fetches through the worker's own :class:`~datafly.delivery.http.VendorClient` (the same TLS,
  timeouts and rules as every vendor request);
- keeps the token until :data:`EARLY` seconds before it expires (a tenth of its life for short
  ones), so a request is never built with a token about to run out;
- lets at most one fetch be in flight: every caller that asks meanwhile waits for that one;
- turns a failure into the outcome of the items that waited (:class:`TokenRefused`): the
  destination's reading of the answer (an auth failure with the token endpoint's reason, such as
  a revoked refresh token), or a retry for a timeout, a connection failure, 429 or 5xx. A
  failure is not cached: the next items ask again;
- :meth:`TokenCache.drop` forgets a token the vendor refused (401), unless a newer one replaced it.

The token is a credential: the worker masks it wherever a request is logged or stored.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from datafly.delivery.http import VendorClient
from datafly.destinations.base import (
    AccessToken,
    Destination,
    ItemOutcome,
    OutboundRequest,
    Outcome,
    Settings,
    VendorResponse,
)

__all__ = ["EARLY", "NoAccessToken", "TokenCache", "TokenRefused"]

EARLY = 60.0  # seconds before expiry a token is renewed (Google's tokens live 3,599 s)


@dataclass(frozen=True)
class TokenRefused:
    """No token: the outcome of the items that waited for it, and the exchange that failed."""

    outcome: ItemOutcome
    request: OutboundRequest
    response: VendorResponse


def passing_failure(response: VendorResponse) -> bool:
    """A token endpoint's answer worth trying again later: no answer, 408, 425, 429 or 5xx."""
    return response.status == 0 or response.status in (408, 425, 429) or response.status >= 500


class TokenCache:
    """The access token of one integration (see the module's docstring)."""

    def __init__(
        self,
        destination: Destination,
        settings: Settings,
        endpoint: str,
        client: VendorClient,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.destination = destination
        self.settings = settings
        self.endpoint = endpoint
        self.client = client
        self.timeout = timeout
        self.clock = clock
        self._token: AccessToken | None = None
        self._renew_at = 0.0
        self._fetching: asyncio.Future[AccessToken | TokenRefused] | None = None
        self.fetches = 0  # token requests sent (for tests and metrics)

    @property
    def needed(self) -> bool:
        """Whether the destination authorises with a token at all."""
        return self.destination.token_request(self.settings, self.endpoint) is not None

    def cached(self) -> str | None:
        """The token held now when it is still fresh, without fetching."""
        if self._token is not None and self.clock() < self._renew_at:
            return self._token.value
        return None

    async def get(self) -> AccessToken | TokenRefused:
        """A fresh token: the cached one, or the result of the one fetch in flight."""
        if self._token is not None and self.clock() < self._renew_at:
            return self._token
        if self._fetching is None:
            self._fetching = asyncio.ensure_future(self._fetch())
        fetching = self._fetching
        return await asyncio.shield(fetching)

    def drop(self, value: str) -> None:
        """Forget ``value`` (the vendor refused it); a newer token stays."""
        if self._token is not None and self._token.value == value:
            self._token = None
            self._renew_at = 0.0

    async def _fetch(self) -> AccessToken | TokenRefused:
        try:
            request = self.destination.token_request(self.settings, self.endpoint)
            if request is None:
                raise ValueError(f"{self.destination.vendor} needs no access token")
            self.fetches += 1
            started = self.clock()  # the token's life counts from before it was asked for
            try:
                response = await self.client.send(request, self.timeout)
            except Exception as exc:  # refused by the client (cannot be encoded), or a client bug
                response = VendorResponse(0, error=f"not sent: {type(exc).__name__}: {exc}")
                outcome = ItemOutcome(Outcome.RETRY, f"could not ask for an access token: {exc}")
                return TokenRefused(outcome, request, response)
            try:
                read = self.destination.read_token(response)
            except Exception as exc:  # a destination bug: try again later, never lose the items
                read = ItemOutcome(Outcome.RETRY, f"could not read the access token: {type(exc).__name__}: {exc}")
            if isinstance(read, AccessToken):
                early = min(EARLY, read.expires_in / 10)
                self._token, self._renew_at = read, started + max(0.0, read.expires_in - early)
                return read
            if passing_failure(response) and read.outcome is not Outcome.RETRY:
                read = ItemOutcome(Outcome.RETRY, read.reason, response.retry_after())
            return TokenRefused(read, request, response)
        finally:
            self._fetching = None


class NoAccessToken(Exception):
    """A request was not sent again because no fresh token could be had: its items get the token
    endpoint's outcome (the delivery worker's answer for that request)."""

    def __init__(self, refused: TokenRefused) -> None:
        super().__init__(refused.outcome.reason)
        self.refused = refused
