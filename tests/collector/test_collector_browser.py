"""Datafly.js in Debian's Chromium, against the real gateway (`datafly serve`), with the shop's
pages served from another loopback port (so every call is cross-origin, with credentials), and
webhook stand-ins playing the vendors: one gets everything, one only marketing-consented events.

Each test works under its own path prefix (`/t/<token>/...`), so the shared stand-ins can tell
its events apart by `context.page.url`.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
KEY = "dk_test_browser"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")

TESTS = str(Path(__file__).resolve().parents[1])
if TESTS not in sys.path:  # the vendor stand-ins live in tests/standins
    sys.path.insert(0, TESTS)

playwright_sync = pytest.importorskip("playwright.sync_api")
standins = pytest.importorskip("standins")
from e2e_support import wait_until  # noqa: E402

# the stub documented in collector/README.md
STUB = (
    '!function(w){var d=w.datafly=w._df=w.datafly||[];["page","track","identify","group","consent",'
    '"reset","flush"].forEach(function(m){d[m]=d[m]||function(){d.push([m].concat([].slice.call(arguments)))}})}'
    "(window);"
)


# -- servers ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Site:
    """The shop: HTML pages on their own loopback port; `pages` maps a path (no query) to HTML."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        pages = self.pages

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                html = pages.get(urlsplit(self.path).path)
                body = (html or "not found").encode()
                self.send_response(200 if html is not None else 404)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Site:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Vendors:
    everything: Any  # WebhookStandIn: every event
    marketing: Any  # WebhookStandIn: only events with marketing consent


@pytest.fixture(scope="module")
def vendors() -> Iterator[Vendors]:
    with (
        standins.WebhookStandIn().running_in_thread() as everything,
        standins.WebhookStandIn().running_in_thread() as marketing,
    ):
        yield Vendors(everything, marketing)


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    with Site() as running:
        yield running


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, vendors: Vendors, site: Site) -> Iterator[str]:
    """`datafly serve` on a free loopback port; yields its base URL."""
    home = tmp_path_factory.mktemp("datafly-home")
    config = home / "datafly.yaml"
    config.write_text(
        f"""
sources:
  - id: web
    key: {KEY}
    origins: [{site.origin}, {site.origin.replace("127.0.0.1", "localhost")}]
integrations:
  - id: hook-everything
    vendor: webhook
    preset: all
    settings: {{url: "{vendors.everything.url}"}}
  - id: hook-marketing
    vendor: webhook
    preset: all
    consent: [marketing]
    settings: {{url: "{vendors.marketing.url}"}}
"""
    )
    port = free_port()
    env = dict(os.environ, DATAFLY_HOME=str(home), DATAFLY_ADMIN_PASSWORD="browser-test-password")
    command = [sys.executable, "-c", "from datafly.cli import main; raise SystemExit(main())"]
    log = (home / "serve.log").open("wb")
    process = subprocess.Popen(
        [*command, "serve", "--config", str(config), "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"datafly serve exited: {(home / 'serve.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("datafly serve did not come up within 30 s")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


# -- browser ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_sync.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        yield launched
        launched.close()


@dataclass
class Visit:
    """One visitor (a fresh browser context) on the shop, under its own path prefix."""

    page: Any
    context: Any
    site: Site
    gateway: str
    vendors: Vendors
    prefix: str
    requests: list[Any]

    def url(self, name: str, query: str = "", host: str = "127.0.0.1") -> str:
        return f"{self.site.origin.replace('127.0.0.1', host)}{self.prefix}/{name}{query}"

    def add_page(self, name: str, *, before: str = "", attrs: str = "", with_collector: bool = True) -> None:
        """A shop page; `before` runs (through the stub) before d.js loads."""
        tag = (
            f'<script async src="{self.gateway}/d.js" data-pipeline-key="{KEY}" {attrs}></script>'
            if with_collector
            else ""
        )
        self.site.pages[f"{self.prefix}/{name}"] = (
            f"<!doctype html><html><head><meta charset=utf-8><title>Shop {name}</title>"
            f"<script>{STUB}{before}</script>{tag}</head>"
            f'<body><h1>{name}</h1><a id="checkout" href="{self.prefix}/checkout">checkout</a></body></html>'
        )

    def events(self, vendor: Any, predicate: Callable[[dict[str, Any]], bool] = lambda e: True) -> list[Any]:
        return [
            e
            for e in vendor.events()
            if self.prefix + "/" in str(((e.get("context") or {}).get("page") or {}).get("url", ""))
            and predicate(e)
        ]

    def wait_for(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        vendor: Any = None,
        count: int = 1,
        timeout: float = 20.0,
    ) -> list[dict[str, Any]]:
        vendor = vendor or self.vendors.everything
        deadline = time.monotonic() + timeout
        while True:
            found = self.events(vendor, predicate)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                seen = [(e.get("type"), e.get("event")) for e in self.events(vendor)]
                raise AssertionError(f"waited {timeout} s for {count} matching event(s); vendor got {seen}")
            time.sleep(0.05)


@pytest.fixture
def visit(browser: Any, site: Site, gateway: str, vendors: Vendors) -> Iterator[Visit]:
    context = browser.new_context()
    requests: list[Any] = []
    context.on("request", lambda request: requests.append(request))
    page = context.new_page()
    yield Visit(page, context, site, gateway, vendors, f"/t/{uuid.uuid4().hex[:12]}", requests)
    context.close()


def is_page(e: dict[str, Any]) -> bool:
    return e.get("type") == "page"


def named(event: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e.get("type") == "track" and e.get("event") == event


# -- tests -----------------------------------------------------------------------------------


def test_page_view_on_load(visit: Visit) -> None:
    visit.add_page("landing")
    visit.page.goto(visit.url("landing", "?utm_source=news&utm_medium=email&q=shoes"))
    [view] = visit.wait_for(is_page)
    context = view["context"]
    assert context["page"]["url"] == visit.url("landing", "?utm_source=news&utm_medium=email&q=shoes")
    assert context["page"]["path"] == f"{visit.prefix}/landing"
    assert context["page"]["search"] == "?utm_source=news&utm_medium=email&q=shoes"
    assert context["page"]["title"] == "Shop landing"
    assert "HeadlessChrome" in context["userAgent"]
    assert context["campaign"]["source"] == "news" and context["campaign"]["medium"] == "email"
    assert context["session"]["number"] == 1
    assert context["library"]["name"] == "datafly.js"
    assert context["screen"]["width"] > 0 and context["locale"] and context["timezone"]
    # the anonymous id is the gateway's first-party cookie, also kept in storage. (The browser
    # stores both after the answer arrives; the vendor can have the event before that.)
    cookie = wait_until(
        lambda: next((c for c in visit.context.cookies(visit.gateway) if c["name"] == "_dfid"), None),
        what="the _dfid cookie",
    )
    assert cookie["httpOnly"]
    assert view["anonymousId"] == cookie["value"]
    stored = wait_until(
        lambda: visit.page.evaluate("JSON.parse(localStorage.getItem('_df_aid'))"), what="the stored id"
    )
    assert stored == cookie["value"]


def test_anonymous_id_sticks_where_cookies_are_blocked(visit: Visit) -> None:
    # Served from "localhost", the shop is another site than the gateway on 127.0.0.1: the
    # browser neither stores nor sends the gateway's SameSite=Lax cookie, as with blocked cookies.
    visit.add_page("landing")
    visit.add_page("checkout")
    visit.page.goto(visit.url("landing", host="localhost"))
    [first] = visit.wait_for(is_page)
    visit.page.click("#checkout")
    visit.page.wait_for_url("**/checkout")
    visit.page.wait_for_function("window.datafly && window.datafly.loaded")
    visit.page.evaluate("datafly.track('Order Completed')")
    [order] = visit.wait_for(named("Order Completed"))
    assert not [c for c in visit.context.cookies() if c["name"] == "_dfid"]
    assert first["anonymousId"]
    assert order["anonymousId"] == first["anonymousId"]


def test_no_page_view_when_switched_off(visit: Visit) -> None:
    visit.add_page("quiet", attrs='data-auto-page="false"')
    visit.page.goto(visit.url("quiet"))
    visit.page.wait_for_function("window.datafly && window.datafly.loaded")
    visit.page.evaluate("datafly.track('Only This')")
    visit.wait_for(named("Only This"))
    time.sleep(0.5)
    assert [e["type"] for e in visit.events(visit.vendors.everything)] == ["track"]


def test_identify_then_order_reaches_vendor_with_hashed_email(visit: Visit) -> None:
    email = "  Jane.Doe@Example.COM "
    visit.add_page("account")
    visit.page.goto(visit.url("account"))
    visit.page.wait_for_function("window.datafly && window.datafly.loaded")
    visit.page.evaluate(
        """email => {
            datafly.identify("user-42", {email});
            datafly.track("Order Completed", {order_id: "o-1", revenue: 42.5, currency: "EUR"});
        }""",
        email,
    )
    [order] = visit.wait_for(named("Order Completed"))
    expected = hashlib.sha256(email.strip().lower().encode()).hexdigest()
    assert order["context"]["traits"]["email_sha256"] == expected
    assert order["userId"] == "user-42"
    assert order["properties"]["order_id"] == "o-1"
    assert email.strip() not in str(order)


def test_click_id_from_landing_url_reaches_a_later_conversion(visit: Visit) -> None:
    visit.add_page("landing")
    visit.add_page("checkout")
    visit.page.goto(visit.url("landing", "?rclid=RC-123-abc&utm_source=rokt"))
    visit.wait_for(is_page)
    visit.page.click("#checkout")
    visit.page.wait_for_url("**/checkout")
    visit.page.wait_for_function("window.datafly && window.datafly.loaded")
    visit.page.evaluate("datafly.track('Order Completed', {order_id: 'o-2', revenue: 10})")
    [order] = visit.wait_for(named("Order Completed"))
    assert order["context"]["page"]["url"] == visit.url("checkout")
    assert order["context"]["page"]["referrer"] == visit.url("landing", "?rclid=RC-123-abc&utm_source=rokt")
    assert order["context"]["clickIds"]["rclid"] == "RC-123-abc"


def test_new_session_after_30_minutes_of_inactivity(visit: Visit) -> None:
    visit.add_page("first")
    visit.add_page("second")
    visit.page.clock.install(time=datetime(2026, 11, 20, 10, 0, tzinfo=UTC))
    visit.page.goto(visit.url("first"))
    [first] = visit.wait_for(is_page)
    visit.page.clock.fast_forward("20:00")  # 20 minutes: same session
    visit.page.evaluate("datafly.track('Still Here')")
    [still] = visit.wait_for(named("Still Here"))
    visit.page.clock.fast_forward("31:00")  # 31 minutes without activity
    visit.page.goto(visit.url("second"))
    views = visit.wait_for(is_page, count=2)
    second = next(v for v in views if v["context"]["page"]["url"] == visit.url("second"))
    assert first["context"]["session"]["number"] == 1
    assert still["context"]["session"] == first["context"]["session"]
    assert second["context"]["session"]["number"] == 2
    assert second["context"]["session"]["id"] != first["context"]["session"]["id"]


def test_events_fired_right_before_leaving_still_arrive(visit: Visit) -> None:
    visit.add_page("product")
    visit.add_page("elsewhere", with_collector=False)  # no d.js there to pick up leftovers
    visit.page.goto(visit.url("product"))
    visit.page.wait_for_function("window.datafly && window.datafly.loaded")
    visit.page.evaluate(
        """href => {
            datafly.track("Outbound Click", {n: 1});
            datafly.track("Outbound Click", {n: 2});
            location.href = href;
        }""",
        visit.url("elsewhere"),
    )
    visit.page.wait_for_url("**/elsewhere")
    clicks = visit.wait_for(named("Outbound Click"), count=2)
    assert sorted(e["properties"]["n"] for e in clicks) == [1, 2]


def test_consent_given_later_applies_to_later_events(visit: Visit) -> None:
    visit.add_page("home")
    visit.add_page("checkout")
    visit.page.goto(visit.url("home"))
    visit.wait_for(is_page)
    visit.page.evaluate("datafly.track('Before Consent')")
    visit.wait_for(named("Before Consent"))
    visit.page.evaluate(
        "datafly.consent({marketing: true, advertising: false}); datafly.track('After Consent')"
    )
    visit.page.click("#checkout")  # consent is remembered across pages
    marketing = visit.vendors.marketing
    visit.wait_for(named("After Consent"), vendor=marketing)
    checkout = visit.url("checkout")
    visit.wait_for(lambda e: is_page(e) and e["context"]["page"]["url"] == checkout, vendor=marketing)
    [after] = visit.wait_for(named("After Consent"))
    assert after["context"]["consent"]["canonical"] == {"marketing": True, "advertising": False}
    gated = [(e["type"], e.get("event"), e["context"]["page"]["url"]) for e in visit.events(marketing)]
    assert ("track", "Before Consent", visit.url("home")) not in gated
    assert ("page", None, visit.url("home")) not in gated


def test_calls_queued_before_load_are_sent(visit: Visit) -> None:
    visit.add_page(
        "early",
        before='datafly.identify("early-user", {plan: "gold"}); datafly.track("Early Event", {n: 7});',
    )
    visit.page.goto(visit.url("early"))
    [early] = visit.wait_for(named("Early Event"))
    assert early["properties"]["n"] == 7
    assert early["userId"] == "early-user"
    visit.wait_for(lambda e: e.get("type") == "identify" and e.get("userId") == "early-user")
    visit.wait_for(is_page)
    assert visit.page.evaluate("window._df === window.datafly && typeof datafly.track") == "function"


def test_single_page_app_navigation_sends_page_views(visit: Visit) -> None:
    visit.add_page("app", attrs='data-spa="true"')
    visit.page.goto(visit.url("app"))
    visit.wait_for(is_page)
    visit.page.evaluate(
        """prefix => {
            history.pushState({}, "", prefix + "/app/cart?rclid=SPA-1");
            history.replaceState({step: 2}, "", location.href);  // same URL: no page view
        }""",
        visit.prefix,
    )
    views = visit.wait_for(is_page, count=2)
    cart = next(v for v in views if "/app/cart" in v["context"]["page"]["url"])
    assert cart["context"]["page"]["url"] == visit.url("app/cart", "?rclid=SPA-1")
    assert cart["context"]["page"]["referrer"] == visit.url("app")
    visit.page.go_back()
    visit.wait_for(is_page, count=3)
    time.sleep(0.5)
    assert len(visit.events(visit.vendors.everything, is_page)) == 3


def test_tcf_string_from_the_pages_cmp(visit: Visit) -> None:
    cmp = (
        "window.__tcfapi=function(c,v,cb){if(c==='addEventListener')"
        "cb({tcString:'CPtcfTESTSTRING',eventStatus:'tcloaded',gdprApplies:true},true)};"
    )
    visit.add_page("cmp", before=cmp)
    visit.page.goto(visit.url("cmp"))
    visit.page.wait_for_function("window.datafly && window.datafly.loaded")
    visit.page.evaluate("datafly.track('With TCF')")
    [event] = visit.wait_for(named("With TCF"))
    assert event["context"]["consent"]["tcf_string"] == "CPtcfTESTSTRING"


def test_nothing_is_sent_to_any_other_origin(visit: Visit) -> None:
    visit.add_page("landing")
    visit.add_page("checkout")
    visit.page.goto(visit.url("landing", "?rclid=X1"))
    visit.wait_for(is_page)
    visit.page.evaluate("datafly.identify('u-9', {email: 'a@b.example'}); datafly.track('Add To Cart')")
    visit.page.click("#checkout")
    visit.wait_for(is_page, count=2)
    origins = {f"{urlsplit(r.url).scheme}://{urlsplit(r.url).netloc}" for r in visit.requests}
    assert origins <= {visit.site.origin, visit.gateway}, origins
    collector_calls = [r for r in visit.requests if urlsplit(r.url).path.startswith("/v1/")]
    assert collector_calls
    for request in collector_calls:
        assert request.method == "POST"
        assert f"key={KEY}" in request.url
        assert request.headers.get("content-type", "").startswith("text/plain")


def test_gateway_serves_the_built_file_with_caching(gateway: str) -> None:
    built = (Path(__file__).resolve().parents[2] / "src/datafly/gateway/static/d.js").read_bytes()
    request = urllib.request.Request(gateway + "/d.js", headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"] == "application/javascript; charset=utf-8"
        assert answer.headers["Content-Encoding"] == "gzip"
        assert "max-age=" in answer.headers["Cache-Control"]
        etag = answer.headers["ETag"]
        assert gzip.decompress(answer.read()) == built
    again = urllib.request.Request(
        gateway + "/d.js", headers={"Accept-Encoding": "gzip", "If-None-Match": etag}
    )
    with pytest.raises(urllib.error.HTTPError) as not_modified:
        urllib.request.urlopen(again)
    assert not_modified.value.code == 304
