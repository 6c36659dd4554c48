"""The ad platforms end to end (issue 17): Datafly.js in Debian's Chromium on a shop page, the real
gateway (`datafly serve`), and the loopback stand-ins of GA4, TikTok, Google Ads (with its OAuth
token endpoint) and Meta, each checking what its vendor checks.

A visitor lands from an ad (`?fbclid=…&gclid=…&ttclid=…`) on a page whose own tags set `_ga`,
`_ga_<container>` and `_ttp`, consents, identifies with an email and a phone, adds a product and
orders. Each vendor gets the right event with the right ids, hashes (computed here from the raw
values, in each vendor's documented normal form) and dedup id, exactly once; no raw email or
phone reaches any of them. A second visitor who refuses advertising reaches none of them (the
integrations are gated on `consent: [advertising]`), while an ungated webhook shows that the
visitor's events did reach the server.

Meta is covered when its destination and stand-in (`tests/standins/meta.py`) are in the checkout
(`META` below); without them the Meta integration and assertions are left out.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_collector_browser import (  # noqa: F401  (fixtures)
    CHROMIUM,
    KEY,
    STUB,
    Site,
    browser,
    free_port,
    site,
)

from datafly.destinations.registry import get_destination
from e2e_support import db
from standins import WebhookStandIn
from standins.ga4 import Ga4StandIn
from standins.google_ads import CUSTOMER_ID, GoogleAdsStandIn
from standins.tiktok import TikTokStandIn

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")

META = get_destination("meta") is not None and importlib.util.find_spec("standins.meta") is not None
"""Meta's destination and stand-in are in the checkout: its integration and assertions are on."""

# -- the vendors' accounts -------------------------------------------------------------------

GA4_MID = "G-ADP1234567"
GA4_SECRET = "adp-Api_Secret-0123456789"
TIKTOK_PIXEL = "CADPPIXEL0000000001"
TIKTOK_TOKEN = "tt-adp-access-token-5f1e2d3c4b5a6978"
GADS_ACTION = "555000111"
GADS_REFRESH = "1//adp-refresh-token-0123456789"
GADS_SECRET = "GOCSPX-adp-client-secret-0123"
GADS_DEV_TOKEN = "adpDevToken0123456789"
META_PIXEL = "987654321012345"
META_TOKEN = "EAAadpTokenForMeta0123456789abcdef"

# -- the visitors ------------------------------------------------------------------------------

EMAIL = "Jane.Doe@Example.com"
PHONE = "+44 7700 900123"
GA_COOKIE = "GA1.1.1357924680.1780000000"  # the site's GA4 tag: client id 1357924680.1780000000
SESSION_COOKIE = "GS2.1.s1780700000$o4$g1$t1780700100$j0$l0$h0"  # session 1780700000
TTP = "2ZkQ8xYzTtpAdpCookie01"
SHIRT = {"product_id": "SKU-1", "name": "Linen shirt", "price": 45.5, "quantity": 2, "category": "Apparel"}

OTHER_EMAIL = "John.Roe@Example.org"
OTHER_PHONE = "+33 6 12 34 56 78"
OTHER_GA_COOKIE = "GA1.1.2468013579.1780000001"
OTHER_TTP = "9YxW7vUtTtpAdpCookie02"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def normal_email(email: str) -> str:
    """Google's, Meta's and TikTok's normal form of an email: trimmed, lower case."""
    return email.strip().lower()


def e164(phone: str) -> str:
    """Google's and TikTok's normal form of a phone number: E.164, `+` and digits only."""
    return "+" + re.sub(r"\D", "", phone)


def meta_phone(phone: str) -> str:
    """Meta's normal form of a phone number: digits only, with the country code, no `+`."""
    return re.sub(r"\D", "", phone)


def ga_client_id(cookie: str) -> str:
    """GA4's client id from a `_ga` cookie: `GA1.1.<a>.<b>` -> `<a>.<b>`."""
    return ".".join(cookie.split(".")[2:4])


def ga_session_id(cookie: str) -> int:
    """GA4's session id from a `_ga_<container>` cookie (GS2 format: `GS2.1.s<session>$...`)."""
    found = re.match(r"GS2\.\d+\.s(\d+)\$", cookie)
    assert found, cookie
    return int(found.group(1))


def pii_forms(email: str, phone: str) -> list[str]:
    """Every raw form of an email and a phone a vendor must never see (lower case; URL-decoded)."""
    digits = re.sub(r"\D", "", phone)
    return [email.lower(), normal_email(email), email.split("@")[0].lower(), phone.lower(), digits,
            digits[2:], " ".join(phone.split()[1:])]  # fmt: skip


# -- servers ---------------------------------------------------------------------------------


@dataclass
class Vendors:
    ga4: Ga4StandIn
    tiktok: TikTokStandIn
    google: GoogleAdsStandIn
    hook: WebhookStandIn  # every event, no consent needed (shows what reached the server)
    meta: Any = None  # MetaStandIn, when META

    def every_request(self) -> list[tuple[str, Any]]:
        """(vendor, RecordedRequest) of every request any ad platform stand-in received."""
        found: list[tuple[str, Any]] = [("ga4", r) for r in self.ga4.requests]
        found += [("tiktok", r) for r in self.tiktok.requests]
        found += [("google_ads", r) for r in self.google.requests]
        found += [("google_ads token", r) for r in self.google.token_requests]
        if self.meta is not None:
            found += [("meta", r) for r in self.meta.requests]
        return found


@pytest.fixture(scope="module")
def vendors() -> Iterator[Vendors]:
    google = GoogleAdsStandIn(client_secret=GADS_SECRET, refresh_token=GADS_REFRESH,
                              developer_token=GADS_DEV_TOKEN, conversion_action_ids=(GADS_ACTION,))  # fmt: skip
    with (
        Ga4StandIn(GA4_MID, GA4_SECRET).running_in_thread() as ga4,
        TikTokStandIn(TIKTOK_TOKEN, TIKTOK_PIXEL).running_in_thread() as tiktok,
        google.running_in_thread(),
        WebhookStandIn().running_in_thread() as hook,
    ):
        if not META:
            yield Vendors(ga4, tiktok, google, hook)
            return
        meta_stand_in = importlib.import_module("standins.meta").MetaStandIn(META_PIXEL, META_TOKEN)
        with meta_stand_in.running_in_thread() as meta:
            yield Vendors(ga4, tiktok, google, hook, meta)


def integrations(vendors: Vendors) -> list[dict[str, Any]]:
    """The four ad platforms, each gated on advertising consent, and an ungated webhook."""
    gated: dict[str, Any] = {"preset": "default", "consent": ["advertising"]}
    found: list[dict[str, Any]] = [
        {"id": "ga4-main", "vendor": "ga4", **gated, "endpoint": vendors.ga4.origin,
         "settings": {"measurement_id": GA4_MID, "api_secret": GA4_SECRET}},
        {"id": "tiktok-main", "vendor": "tiktok", **gated, "endpoint": vendors.tiktok.base_url,
         "settings": {"pixel_code": TIKTOK_PIXEL, "access_token": TIKTOK_TOKEN}},
        {"id": "gads-main", "vendor": "google_ads", **gated, "endpoint": vendors.google.base_url,
         "settings": {"customer_id": f"{CUSTOMER_ID[:3]}-{CUSTOMER_ID[3:6]}-{CUSTOMER_ID[6:]}",
                      "conversion_action_id": GADS_ACTION, "developer_token": GADS_DEV_TOKEN,
                      "client_id": vendors.google.client_id, "client_secret": GADS_SECRET,
                      "refresh_token": GADS_REFRESH, "token_url": vendors.google.token_url}},
        {"id": "hook-everything", "vendor": "webhook", "preset": "all", "settings": {"url": vendors.hook.url}},
    ]  # fmt: skip
    if vendors.meta is not None:
        found.append({"id": "meta-main", "vendor": "meta", **gated, "endpoint": vendors.meta.base_url,
                      "settings": {"pixel_id": META_PIXEL, "access_token": META_TOKEN}})  # fmt: skip
    return found


@dataclass
class Gateway:
    url: str
    home: Path

    def log(self) -> str:
        return (self.home / "serve.log").read_text(errors="replace")[-3000:]

    def dead_letters(self) -> list[tuple[Any, ...]]:
        return db(
            self.home, "SELECT integration_id, message_id, outcome, reason FROM dead_letters ORDER BY id"
        )

    def log_rows(self, message_id: str) -> list[tuple[Any, ...]]:
        """(integration, outcome, reason) of the delivery-log rows naming ``message_id``."""
        return db(self.home, "SELECT integration_id, outcome, reason FROM delivery_log WHERE message_ids LIKE ?",
                  f"%{message_id}%")  # fmt: skip


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, vendors: Vendors, site: Site) -> Iterator[Gateway]:  # noqa: F811
    """`datafly serve` with the four ad platforms (and the control webhook), on a free port."""
    home = tmp_path_factory.mktemp("datafly-home")
    config = home / "datafly.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "sources": [{"id": "web", "key": KEY, "origins": [site.origin]}],
                "integrations": integrations(vendors),
                "delivery": {"initial_backoff": "100ms", "max_backoff": "1s", "timeout": "2s"},
            },
            sort_keys=False,
        )
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
    running = Gateway(f"http://127.0.0.1:{port}", home)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"datafly serve exited: {running.log()}")
            try:
                with urllib.request.urlopen(running.url + "/healthz", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("datafly serve did not come up within 30 s")
            time.sleep(0.1)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


# -- the shop --------------------------------------------------------------------------------


@dataclass
class Shopper:
    """One visitor (a fresh browser context) on the shop, under its own path prefix."""

    page: Any
    site: Site
    gateway: Gateway
    prefix: str

    def url(self, name: str, query: str = "") -> str:
        return f"{self.site.origin}{self.prefix}/{name}{query}"

    def land(self, query: str, cookies: dict[str, str], consent: dict[str, bool]) -> None:
        """A landing page whose own tags set ``cookies`` and whose CMP calls ``datafly.consent``."""
        tags = "".join(f'document.cookie="{name}={value}; path=/";' for name, value in cookies.items())
        cmp = f"datafly.consent({json.dumps(consent)});"
        collector = f'<script async src="{self.gateway.url}/d.js" data-pipeline-key="{KEY}"></script>'
        self.site.pages[f"{self.prefix}/landing"] = (
            "<!doctype html><html><head><meta charset=utf-8><title>Shop landing</title>"
            f"<script>{STUB}{tags}{cmp}</script>{collector}</head><body><h1>landing</h1></body></html>"
        )
        self.page.goto(self.url("landing", query))
        self.page.wait_for_function("window.datafly && window.datafly.loaded")

    def shop(self, user_id: str, email: str, phone: str, order_id: str) -> tuple[str, str]:
        """identify, Product Added, Order Completed; the messageIds `track` returned."""
        added, ordered = self.page.evaluate(
            """([userId, email, phone, shirt, orderId]) => {
                datafly.identify(userId, {email, phone});
                const added = datafly.track("Product Added", {...shirt, currency: "EUR"});
                const ordered = datafly.track("Order Completed", {
                    order_id: orderId, revenue: 99.5, currency: "EUR", products: [shirt]});
                return [added, ordered];
            }""",
            [user_id, email, phone, SHIRT, order_id],
        )
        assert isinstance(added, str) and isinstance(ordered, str) and added != ordered
        return added, ordered


@pytest.fixture
def shopper(browser: Any, site: Site, gateway: Gateway) -> Iterator[Shopper]:  # noqa: F811
    context = browser.new_context()
    page = context.new_page()
    yield Shopper(page, site, gateway, f"/t/{uuid.uuid4().hex[:12]}")
    context.close()


def wait_for(check: Callable[[], Any], what: str, gateway: Gateway, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(
        f"{what}: not within {timeout} s; dead letters {gateway.dead_letters()}; server log:\n{gateway.log()}"
    )


def settle(seconds: float = 1.5) -> None:
    """Longer than every vendor's batch wait (0.5 s) and a retry: what would be sent has been."""
    time.sleep(seconds)


def one(events: list[dict[str, Any]], what: str) -> dict[str, Any]:
    assert len(events) == 1, f"{what}: {len(events)} delivered, not exactly one: {events}"
    return events[0]


def assert_no_raw_pii(vendors: Vendors, email: str, phone: str) -> None:
    forms = pii_forms(email, phone)
    for vendor, request in vendors.every_request():
        seen = " ".join(
            urllib.parse.unquote_plus(text).lower()
            for text in (request.path, request.query_string, request.body.decode(errors="replace"))
        )
        leaked = [form for form in forms if form in seen]
        assert not leaked, f"{vendor} received {leaked} raw in {request.path}?{request.query_string}"


# -- tests -----------------------------------------------------------------------------------


def test_a_consenting_visitor_from_an_ad_reaches_each_platform_once_with_its_ids_and_hashes(
    shopper: Shopper, vendors: Vendors, gateway: Gateway
) -> None:
    container = GA4_MID.removeprefix("G-")
    landed_from = int(time.time() * 1000)
    shopper.land(
        "?fbclid=FB-1&gclid=GCLID-1&ttclid=TT-1",
        {"_ga": GA_COOKIE, f"_ga_{container}": SESSION_COOKIE, "_ttp": TTP},
        {"marketing": True, "advertising": True, "analytics": True},
    )
    landed_by = int(time.time() * 1000)
    landing = shopper.url("landing", "?fbclid=FB-1&gclid=GCLID-1&ttclid=TT-1")
    added_id, order_id = shopper.shop("user-1", EMAIL, PHONE, "o-1")

    ga4, tiktok, google, meta = vendors.ga4, vendors.tiktok, vendors.google, vendors.meta
    wait_for(lambda: ga4.count_by_transaction_id()["o-1"], "GA4's purchase", gateway)
    wait_for(lambda: tiktok.count_by_event_id()[order_id], "TikTok's CompletePayment", gateway)
    wait_for(lambda: google.count_by_order_id()["o-1"], "the Google Ads conversion", gateway)
    if meta is not None:
        wait_for(lambda: meta.count_by_event_id()[order_id], "Meta's Purchase", gateway)
    wait_for(lambda: ga4.events_named("add_to_cart"), "GA4's add_to_cart", gateway)
    wait_for(lambda: tiktok.count_by_event_id()[added_id], "TikTok's AddToCart", gateway)
    settle()

    email_sha = sha256(normal_email(EMAIL))
    phone_sha = sha256(e164(PHONE))
    user_sha = sha256("user-1")
    assert email_sha != sha256(EMAIL) and phone_sha != sha256(PHONE)  # the normal forms matter here
    mine = (added_id, order_id)
    assert [row for row in gateway.dead_letters() if row[1] in mine] == []

    # GA4: the site's own GA4 user and session, hashes in user_data, Consent Mode granted
    client_id = ga_client_id(GA_COOKIE)
    assert ga4.dropped == [] and ga4.duplicates() == {}
    for request in ga4.requests:
        assert request.path == "/mp/collect" and request.status == 204
        assert request.query == {"measurement_id": GA4_MID, "api_secret": GA4_SECRET}
    visitor = [e for e in ga4.accepted_events if e["client_id"] == client_id]
    purchase = one([e for e in visitor if e["name"] == "purchase"], "GA4 purchase")
    cart = one([e for e in visitor if e["name"] == "add_to_cart"], "GA4 add_to_cart")
    view = one([e for e in visitor if e["name"] == "page_view"], "GA4 page_view")  # after the consent
    assert view["params"]["page_location"] == landing
    assert ga4.count_by_transaction_id()["o-1"] == 1
    for event in (view, purchase, cart):
        assert event["params"]["session_id"] == ga_session_id(SESSION_COOKIE)
        assert event["consent"] == {"ad_user_data": "GRANTED", "ad_personalization": "GRANTED"}
    for event in (purchase, cart):
        assert event["user_id"] == "user-1"
        assert event["user_data"] == {"sha256_email_address": [email_sha], "sha256_phone_number": [phone_sha]}
    assert purchase["params"]["transaction_id"] == "o-1"
    assert (purchase["params"]["value"], purchase["params"]["currency"]) == (99.5, "EUR")
    assert [item["item_id"] for item in purchase["params"]["items"]] == ["SKU-1"]
    assert [item["item_id"] for item in cart["params"]["items"]] == ["SKU-1"]

    # TikTok: ttclid from the landing, the site's _ttp, hashes, event_id = messageId
    assert tiktok.duplicates() == {}
    assert {(r.path, r.status, r.header("Access-Token")) for r in tiktok.requests} == {
        ("/open_api/v1.3/event/track/", 200, TIKTOK_TOKEN)
    }
    tt_purchase = one([e for e in tiktok.accepted_events if e["event_id"] == order_id], "TikTok purchase")
    tt_cart = one([e for e in tiktok.accepted_events if e["event_id"] == added_id], "TikTok add to cart")
    assert (tt_purchase["event"], tt_cart["event"]) == ("CompletePayment", "AddToCart")
    tt_view = one([e for e in tiktok.ingested("Pageview") if e["page"]["url"] == landing], "TikTok Pageview")
    assert (tt_view["user"]["ttclid"], tt_view["user"]["ttp"]) == ("TT-1", TTP)
    for event in (tt_purchase, tt_cart):
        user = event["user"]
        assert (user["ttclid"], user["ttp"]) == ("TT-1", TTP)
        assert (user["email"], user["phone"], user["external_id"]) == (email_sha, phone_sha, user_sha)
        assert "HeadlessChrome" in user["user_agent"]
    assert tt_purchase["properties"]["order_id"] == "o-1"
    assert (tt_purchase["properties"]["value"], tt_purchase["properties"]["currency"]) == (99.5, "EUR")

    # Google Ads: the conversion of Order Completed with the landing's gclid, enhanced conversions
    conversion = one([c for c in google.accepted if c.get("gclid") == "GCLID-1"], "Google Ads conversion")
    assert google.duplicates() == {} and google.count_by_order_id()["o-1"] == 1
    assert conversion["orderId"] == "o-1"
    assert conversion["conversionAction"] == f"customers/{CUSTOMER_ID}/conversionActions/{GADS_ACTION}"
    assert (conversion["conversionValue"], conversion["currencyCode"]) == (99.5, "EUR")
    assert conversion["userIdentifiers"] == [{"hashedEmail": email_sha}, {"hashedPhoneNumber": phone_sha}]
    assert conversion["consent"] == {"adUserData": "GRANTED", "adPersonalization": "GRANTED"}
    assert [r.status for r in google.token_requests] == [200]
    assert {(r.path, r.status, r.header("developer-token")) for r in google.requests} == {
        (google.path, 200, GADS_DEV_TOKEN)
    }

    # Meta: fbc from the landing's fbclid (and when it was seen), the generated fbp, Meta's hashes
    if meta is not None:
        assert meta.duplicates() == {} and meta.refused() == []
        fb_purchase = one([e for e in meta.accepted_events if e["event_id"] == order_id], "Meta Purchase")
        fb_cart = one([e for e in meta.accepted_events if e["event_id"] == added_id], "Meta AddToCart")
        assert (fb_purchase["event_name"], fb_cart["event_name"]) == ("Purchase", "AddToCart")
        views = [e for e in meta.accepted_events if e["event_source_url"] == landing]
        fb_view = one([e for e in views if e["event_name"] == "PageView"], "Meta PageView")
        fbc, fbp = fb_purchase["user_data"]["fbc"], fb_purchase["user_data"]["fbp"]
        landed = re.fullmatch(r"fb\.1\.(\d{13})\.FB-1", fbc)
        assert landed and landed_from - 1000 <= int(landed.group(1)) <= landed_by + 1000, fbc
        assert re.fullmatch(r"fb\.1\.\d{13}\.\d+", fbp), fbp
        assert (fb_view["user_data"]["fbc"], fb_view["user_data"]["fbp"]) == (fbc, fbp)  # kept per visitor
        for event in (fb_purchase, fb_cart):
            user = event["user_data"]
            assert (user["fbc"], user["fbp"]) == (fbc, fbp)
            assert user["em"] == [email_sha] and user["ph"] == [sha256(meta_phone(PHONE))]
            assert user["external_id"] == [user_sha]
            assert "HeadlessChrome" in user["client_user_agent"] and ":" not in user["client_ip_address"]
            assert event["action_source"] == "website" and event["event_source_url"].startswith(
                shopper.url("")
            )
        custom = fb_purchase["custom_data"]
        assert (custom["order_id"], custom["value"], custom["currency"]) == ("o-1", 99.5, "EUR")
        assert custom["content_ids"] == ["SKU-1"]

    # nothing raw: not in any body, path or query string any stand-in received
    assert_no_raw_pii(vendors, EMAIL, PHONE)


def test_a_visitor_without_advertising_consent_reaches_no_ad_platform(
    shopper: Shopper, vendors: Vendors, gateway: Gateway
) -> None:
    container = GA4_MID.removeprefix("G-")
    shopper.land(
        "?fbclid=FB-2&gclid=GCLID-2&ttclid=TT-2",
        {"_ga": OTHER_GA_COOKIE, f"_ga_{container}": SESSION_COOKIE, "_ttp": OTHER_TTP},
        {"marketing": False, "advertising": False, "analytics": True},
    )
    added_id, order_id = shopper.shop("user-2", OTHER_EMAIL, OTHER_PHONE, "o-2")

    # the ungated webhook has the visitor's events: they reached the server and were routed
    def at_hook(message_id: str) -> list[Any]:
        return [e for e in vendors.hook.events() if e.get("messageId") == message_id]

    wait_for(lambda: at_hook(order_id) and at_hook(added_id), "both events at the ungated webhook", gateway)
    # each integration whose preset maps the event filters it for consent (Google Ads maps
    # only Order Completed)
    gated = {"ga4-main", "tiktok-main"} | ({"meta-main"} if vendors.meta is not None else set())
    expected = {added_id: gated, order_id: gated | {"gads-main"}}

    def filtered(message_id: str) -> list[tuple[Any, ...]]:
        rows = [row for row in gateway.log_rows(message_id) if row[1] == "filtered"]
        return rows if {row[0] for row in rows} == expected[message_id] else []

    for message_id in (added_id, order_id):
        rows = wait_for(
            lambda m=message_id: filtered(m), f"{message_id} filtered for each ad platform", gateway
        )
        assert all("advertising" in reason for _, _, reason in rows), rows
    settle()

    markers = [order_id, added_id, "o-2", "FB-2", "GCLID-2", "TT-2", OTHER_TTP, ga_client_id(OTHER_GA_COOKIE),
               sha256(normal_email(OTHER_EMAIL)), sha256(e164(OTHER_PHONE)), sha256(meta_phone(OTHER_PHONE)),
               sha256("user-2"), "user-2"]  # fmt: skip
    for vendor, request in vendors.every_request():
        seen = f"{request.path}?{request.query_string} {request.body.decode(errors='replace')}"
        assert not [m for m in markers if m in seen], (
            f"{vendor} received the refusing visitor's event: {seen}"
        )
    for integration, outcome, _ in gateway.log_rows(order_id) + gateway.log_rows(added_id):
        assert integration == "hook-everything" or outcome == "filtered", (integration, outcome)
    assert_no_raw_pii(vendors, OTHER_EMAIL, OTHER_PHONE)
