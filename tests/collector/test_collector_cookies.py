"""Datafly.js reads the site's own vendor cookies (an allow-list, never other cookies) into
`context.cookies`, and `track()` / `page()` return the event's messageId, in Debian's Chromium
against the real gateway (the servers and browser of test_collector_browser.py). Also: the
collector's allow-list is the server's."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from test_collector_browser import (  # noqa: F401  (fixtures)
    CHROMIUM,
    Visit,
    browser,
    gateway,
    is_page,
    named,
    site,
    vendors,
    visit,
)

from datafly.processing.identity import COOKIE_NAMES, COOKIE_PREFIXES

COOKIES_JS = Path(__file__).resolve().parents[2] / "collector" / "src" / "cookies.js"

SITE_COOKIES = {
    "_fbp": "fb.1.1700000000000.1234567890",
    "_ga": "GA1.1.1234567890.1700000000",
    "_ga_ABC123": "GS1.1.1700000000.1.1.1700000100.0.0.0",
    "_ttp": "2aBcDeFgHiJkLmNoPqRsTuVwXyZ",
}


def js_list(name: str) -> list[str]:
    found = re.search(rf"export const {name} = \[(.*?)\];", COOKIES_JS.read_text(), re.DOTALL)
    assert found, f"{name} not found in {COOKIES_JS}"
    return re.findall(r'"([^"]+)"', found.group(1))


def test_the_collector_reads_the_cookies_the_server_keeps() -> None:
    assert sorted(js_list("COOKIE_NAMES")) == sorted(COOKIE_NAMES)
    assert tuple(js_list("COOKIE_PREFIXES")) == COOKIE_PREFIXES


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
def test_allow_listed_cookies_reach_the_gateway_and_track_returns_the_message_id(
    visit: Visit,  # noqa: F811  (the imported fixture)
) -> None:
    setting = "".join(f'document.cookie="{name}={value}; path=/";' for name, value in SITE_COOKIES.items())
    setting += 'document.cookie="session_secret=do-not-send-me; path=/";'
    visit.add_page("landing", before=setting)
    visit.page.goto(visit.url("landing", "?fbclid=IwAR-browser-1"))
    [view] = visit.wait_for(is_page)
    visit.page.wait_for_function("window.datafly && window.datafly.loaded")
    message_id = visit.page.evaluate("datafly.track('Order Completed', {order_id: 'o-cookie', revenue: 5})")
    page_id = visit.page.evaluate("datafly.page('Thanks')")
    [order] = visit.wait_for(named("Order Completed"))
    [thanks] = visit.wait_for(lambda e: is_page(e) and e.get("name") == "Thanks")

    assert isinstance(message_id, str) and re.fullmatch(r"[0-9a-f-]{36}", message_id)
    assert order["messageId"] == message_id
    assert thanks["messageId"] == page_id != message_id
    # the site's own _fbc is absent: the server built it from the landing's fbclid
    fbc = view["context"]["cookies"]["_fbc"]
    assert re.fullmatch(r"fb\.1\.\d{13}\.IwAR-browser-1", fbc)
    for event in (view, order, thanks):
        assert event["context"]["cookies"] == {**SITE_COOKIES, "_fbc": fbc}
        assert event["context"]["clickIds"]["fbclid"] == "IwAR-browser-1"
    # what the browser sent: exactly the allow-listed cookies, never another one
    sent: list[dict[str, Any]] = []
    for request in visit.requests:
        if "/v1/" in request.url and request.post_data:
            body = orjson.loads(request.post_data)
            sent += body.get("batch", [body])
    assert sent and all(e["context"]["cookies"] == SITE_COOKIES for e in sent)
    assert all("do-not-send-me" not in str(e) for e in (view, order, thanks, *sent))
