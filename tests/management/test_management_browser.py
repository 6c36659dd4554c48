"""The management UI in Debian's Chromium through the real server and a loopback Rokt stand-in.

Walks the vendor document's flow (Integrations > Add Integration > Rokt, Retail preset,
credentials, consent category, Save), watches deliveries in the Event Debugger, breaks and fixes
the secret, replays the dead letter. Screenshots of the main pages go to artifacts/screenshots/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from management_client import ADMIN_PASSWORD, BASE_CONFIG, order_completed, send_event

from datafly.destinations.registry import all_destinations

CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run"]
SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
KEY = "dk_test_web"
API_KEY, API_SECRET = "rpub-browser-key-0001", "rsec-browser-secret-0001"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
sync_api = pytest.importorskip("playwright.sync_api")
standins = pytest.importorskip("standins")


@pytest.fixture
def browser_page() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        context = browser.new_context(viewport={"width": 1440, "height": 960})
        context.set_default_timeout(15_000)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page
        context.close()
        browser.close()
        assert errors == [], errors


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_add_rokt_watch_debugger_break_fix_replay(serve: Any, browser_page: Any) -> None:
    expect = sync_api.expect
    page = browser_page
    with standins.RoktStandIn(api_key=API_KEY, api_secret=API_SECRET).running_in_thread() as rokt:
        server = serve(BASE_CONFIG)
        base = server.url

        # log in
        page.goto(base + "/")
        expect(page).to_have_url(re.compile(r"/login\?next=/$"))
        shot(page, "01-login")
        page.fill("input[name=password]", "wrong-password")
        page.click("button[type=submit]")
        expect(page.locator("#login-error")).to_contain_text("Wrong user name or password")
        page.fill("input[name=password]", ADMIN_PASSWORD)
        page.click("button[type=submit]")
        expect(page.locator("h1")).to_have_text("Overview")
        shot(page, "02-overview-empty")

        # Integrations > Add Integration > Rokt
        page.click("nav >> text=Integrations")
        expect(page.locator("tr[data-integration=exactag-config]")).to_contain_text("config file")
        shot(page, "03-integrations")
        page.click("#add-integration")
        expect(page.locator("a.vendor")).to_have_count(len(all_destinations()))  # the library lists every folder
        shot(page, "04-library")
        page.click("a.vendor[data-vendor=rokt]")
        expect(page.locator("h1")).to_have_text("Add Rokt")
        page.check("input[name=preset][value=retail]")
        page.fill("#setting-account_id", "12345")
        page.fill("#setting-api_key", API_KEY)
        page.fill("#setting-api_secret", API_SECRET)
        page.check("input[name=consent][value=advertising]")
        page.click("details.step summary")
        page.fill("#endpoint", rokt.url)
        shot(page, "05-add-rokt-form")
        page.click("#save")
        expect(page).to_have_url(re.compile(r"/integrations/rokt$"))
        expect(page.locator("#toasts")).to_contain_text("Saved")
        expect(page.locator("input[name=preset][value=retail]")).to_be_checked()
        expect(page.locator("#setting-api_secret")).to_have_attribute("placeholder", re.compile(r"rsec\*\*\*\*"))
        assert API_SECRET not in page.content()

        # an Order Completed with consent, seen in the Event Debugger
        page.click("nav >> text=Event Debugger")
        expect(page.locator("#live-state")).to_have_attribute("data-state", "live")
        assert send_event(base, KEY, order_completed("UI-1")) == 200
        row = page.locator("tr[data-message-id=msg-UI-1]")
        expect(row.locator("[data-outcome=done]")).to_be_visible()
        row.click()
        journey = page.locator("#journey")
        expect(journey.locator(".request")).to_contain_text(f"POST {rokt.url}")
        expect(journey.locator(".request")).to_contain_text("Authorization: Basic ****")
        expect(journey.locator("[data-status='200']")).to_have_text("HTTP 200")
        assert rokt.wait_for_sync(1)[0].json()["events"][0]["conversionId"] == "UI-1"
        assert "jane.doe@example.com" not in page.content() and API_SECRET not in page.content()
        shot(page, "06-debugger-delivered")

        # break the secret: the 401 with the document's hint
        page.goto(base + "/integrations/rokt")
        page.fill("#setting-api_secret", "rsec-wrong-secret-000")
        page.click("#save")
        expect(page.locator("#toasts")).to_contain_text("Saved")
        page.click("nav >> text=Event Debugger")
        expect(page.locator("#live-state")).to_have_attribute("data-state", "live")
        assert send_event(base, KEY, order_completed("UI-2")) == 200
        row = page.locator("tr[data-message-id=msg-UI-2]")
        expect(row.locator("[data-outcome=auth_failed]")).to_be_visible()
        row.click()
        expect(journey.locator("[data-status='401']")).to_have_text("HTTP 401")
        expect(journey.locator("[data-hint]")).to_contain_text(
            "Check the api_key (rpub-…) and api_secret (rsec-…) are correct and belong to the same account.")
        expect(journey.locator(".banner.bad")).to_contain_text("dead letter")
        shot(page, "07-debugger-401-hint")

        # fix it, replay the dead letter, see it delivered
        page.goto(base + "/integrations/rokt")
        page.fill("#setting-api_secret", API_SECRET)
        page.click("#save")
        expect(page.locator("#toasts")).to_contain_text("Saved")
        watcher = page.context.new_page()
        watcher.goto(base + "/debugger")
        expect(watcher.locator("#live-state")).to_have_attribute("data-state", "live")
        page.click("nav >> text=Dead Letters")
        dead = page.locator("#dead-letter-table tbody tr")
        expect(dead).to_have_count(1)
        expect(dead).to_contain_text("auth failed")
        expect(dead).to_contain_text("Check the api_key")
        shot(page, "08-dead-letters")
        dead.locator("[data-replay]").click()
        expect(page.locator(".card.empty h2")).to_have_text("No dead letters")
        replayed = watcher.locator("tr[data-message-id=msg-UI-2]")
        expect(replayed.locator("[data-outcome=done]")).to_be_visible()
        replayed.click()
        expect(watcher.locator("#journey [data-status='200']")).to_have_text("HTTP 200")
        watcher.close()
        assert [e["conversionId"] for e in rokt.accepted_events] == ["UI-1", "UI-2"]

        # field mappings with a preview before saving
        page.goto(base + "/integrations/rokt/mappings")
        page.locator("#mapping-table tbody tr", has=page.locator("input[value='Order Completed']")) \
            .locator(".map-value").fill("checkout")
        page.click("#run-preview")
        expect(page.locator("#preview-request")).to_contain_text('"conversionType": "checkout"')
        expect(page.locator("#preview-request")).to_contain_text("Authorization: Basic ****")
        shot(page, "09-field-mappings-preview")
        page.click("#save-mapping")
        expect(page.locator("#toasts")).to_contain_text("Mappings saved")

        # sources: a new pipeline key and its snippet
        page.click("nav >> text=Sources")
        page.fill("#source-id", "shop")
        page.fill("#source-origins", "https://shop.example.com")
        page.click("#source-form button[type=submit]")
        snippet = page.locator("section[data-source=shop] [data-snippet]")
        expect(snippet).to_contain_text('data-pipeline-key="dk_live_')
        shot(page, "10-sources")

        # the overview with the last hour's health
        page.click("nav >> text=Overview")
        health = page.locator("#health-table tr[data-integration=rokt]")
        expect(health).to_be_visible()
        assert health.locator("td").nth(2).inner_text() == "2"
        shot(page, "11-overview-health")
        page.click("nav >> text=Settings")
        page.fill("#token-name", "deploy script")
        page.click("#token-form button[type=submit]")
        expect(page.locator("#new-token-value")).to_contain_text("dft_")
        shot(page, "12-settings")
        page.click("button:has-text('Sign out')")
        expect(page).to_have_url(re.compile(r"/login$"))
