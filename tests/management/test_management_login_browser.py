"""Logging in through a link with a hostile ``next`` leaves Chromium on this origin (issue 14).

The attacker's links were ``/login?next=/%5C<host>/x`` (a browser reads ``/\\host`` as ``//host``)
and ``/login?next=/%09/<host>`` (a browser drops the tab). Here ``<host>`` is ``localhost`` with
the server's port: another origin than ``127.0.0.1`` that still answers, so a redirect there
would show as a page on the wrong origin rather than a network error.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from management_client import ADMIN_PASSWORD, BASE_CONFIG

CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run"]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        yield launched
        launched.close()


def test_logging_in_through_a_hostile_next_stays_on_this_origin(serve: Any, browser: Any) -> None:
    server = serve(BASE_CONFIG)
    origin = urllib.parse.urlsplit(server.url)
    port = origin.port
    cases = [
        (f"/%5Clocalhost:{port}/x", "/"),
        (f"/%09/localhost:{port}/x", "/"),
        (f"/%5C%5Clocalhost:{port}/x", "/"),
        (f"//localhost:{port}/x", "/"),
        ("/sources%3Ftab%3D1", "/sources?tab=1"),  # a real path is kept
    ]
    for raw, landing in cases:
        context = browser.new_context()
        context.set_default_timeout(15_000)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
        page.goto(f"{server.url}/login?next={raw}")
        page.fill("input[name=password]", ADMIN_PASSWORD)
        with page.expect_navigation():
            page.click("button[type=submit]")
        page.wait_for_load_state("load")
        now = urllib.parse.urlsplit(page.url)
        assert (now.scheme, now.netloc) == (origin.scheme, origin.netloc), (raw, page.url)
        assert now.path + (f"?{now.query}" if now.query else "") == landing, (raw, page.url)
        sync_api.expect(page.locator("h1")).to_be_visible()
        assert errors == [], errors
        context.close()


def test_app_js_refuses_a_next_that_leaves_the_origin_even_if_the_server_rendered_one(
    serve: Any, browser: Any
) -> None:
    """The second line: app.js checks ``data-next`` itself before following it."""
    server = serve(BASE_CONFIG)
    page = browser.new_page()
    page.goto(f"{server.url}/login")
    hostile = ["/\\localhost/x", "/\t/localhost/x", "/\n/localhost", "//localhost/x", "https://localhost/x",
               "javascript:alert(1)", "/\\\\localhost", " /x", "", "x"]
    for value in hostile:
        assert page.evaluate("(t) => sameOriginPath(t)", value) == "/", value
    assert page.evaluate("(t) => sameOriginPath(t)", "/sources?tab=1#x") == "/sources?tab=1#x"
    assert page.evaluate("(t) => sameOriginPath(t)", "/a/../dead-letters") == "/dead-letters"
    page.close()
