"""Exactag S2S stand-in: ``GET /s2s/pi.ashx?campaign=…&sitegroup=…&euk=…``."""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from . import RecordedRequest, StandIn

__all__ = ["ExactagStandIn"]

# the 1x1 transparent GIF a tracking pixel answers with
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


class ExactagStandIn(StandIn):
    """Answers like Exactag's pixel endpoint.

    - 400 when ``campaign``, ``sitegroup`` or a user key (``euk``, else ``uk``) is missing;
    - 401 for a campaign code not in ``valid_codes`` (nor ``inactive_codes``), 403 for an inactive one;
    - 405 for anything but GET; otherwise 200 with a 1x1 GIF.
    """

    path = "/s2s/pi.ashx"

    def __init__(
        self, valid_codes: Iterable[str] = (), inactive_codes: Iterable[str] = (), **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.valid_codes = set(valid_codes)
        self.inactive_codes = set(inactive_codes)

    async def answer(self, request: web.Request, record: RecordedRequest) -> web.Response:
        if request.method != "GET":
            return web.Response(status=405, text="method not allowed")
        query = record.query
        if not query.get("campaign"):
            return web.Response(status=400, text="missing campaign")
        code = query["campaign"]
        if code in self.inactive_codes:
            return web.Response(status=403, text="campaign not active")
        if code not in self.valid_codes:
            return web.Response(status=401, text="unknown campaign")
        missing = [name for name in ("sitegroup",) if not query.get(name)]
        if not (query.get("euk") or query.get("uk")):  # the real API takes a hashed user id (uk) instead
            missing.append("euk")
        if missing:
            return web.Response(status=400, text="missing " + ", ".join(missing))
        return web.Response(status=200, body=PIXEL, content_type="image/gif")

    # views for assertions
    def hits(self) -> list[RecordedRequest]:
        """Accepted tracking requests (2xx), in arrival order."""
        return [r for r in self.requests if r.accepted and r.path == self.path]

    def count_by_orderid(self) -> Counter[str]:
        return Counter(r.query["orderid"] for r in self.hits() if r.query.get("orderid"))

    def count_by_sitegroup(self) -> Counter[str]:
        return Counter(r.query.get("sitegroup", "") for r in self.hits())

    def duplicates(self) -> dict[str, int]:
        """Order ids accepted more than once (Exactag itself does not deduplicate)."""
        return self.duplicates_of(self.count_by_orderid())
