"""Field-source overrides through the management API: PATCH, validation, preview, read-only config."""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from management_client import ADMIN_PASSWORD, BASE_CONFIG, Client, login

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"

EXACTAG = {"vendor": "exactag", "settings": {"campaign_code": "CAMPAIGN-CODE-0123456789-abcdefgh"}, "consent": ["marketing"]}
SAMPLE = {
    "type": "track", "event": "Order Completed", "userId": "user-123",
    "properties": {"order_id": "ORD-1", "revenue": 99.99, "total": 120, "currency": "EUR"},
    "context": {"consent": {"canonical": {"marketing": True}}, "traits": {"email": "jane.doe@example.com"}},
}
FIELDS = {"uk": "context.traits.email_sha256", "euk": None, "totalprice": "properties.total", "level": "=web"}


def query_of(preview: dict[str, Any]) -> dict[str, str]:
    assert preview["outcome"] == "request", preview
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(preview["request"]["url"]).query))


def test_patch_fields_then_preview_shows_them_applied(api: Client) -> None:
    assert api.post("/api/integrations", EXACTAG).status == 201
    assert api.get("/api/integrations/exactag").json()["fields"] == {}
    before = query_of(api.post("/api/integrations/exactag/preview", {"event": SAMPLE}).json())
    assert before["euk"] and "uk" not in before and before["totalprice"] == "99.99"

    # unsaved fields: the preview applies them, nothing is stored
    unsaved = query_of(api.post("/api/integrations/exactag/preview", {"event": SAMPLE, "fields": FIELDS}).json())
    assert api.get("/api/integrations/exactag").json()["fields"] == {}
    email_sha = hashlib.sha256(b"jane.doe@example.com").hexdigest()
    assert unsaved["uk"] == email_sha and "euk" not in unsaved
    assert unsaved["totalprice"] == "120" and unsaved["level"] == "web"

    patched = api.patch("/api/integrations/exactag", {"fields": FIELDS})
    assert patched.status == 200, patched.text
    assert patched.json()["fields"] == FIELDS
    assert api.get("/api/integrations/exactag").json()["fields"] == FIELDS
    saved = query_of(api.post("/api/integrations/exactag/preview", {"event": SAMPLE}).json())
    assert {k: v for k, v in saved.items() if k != "sessionid"} == {
        k: v for k, v in unsaved.items() if k != "sessionid"  # a fresh session per preview
    }
    assert "jane.doe@example.com" not in json.dumps(saved)

    # other changes keep the fields; an empty mapping clears them
    assert api.patch("/api/integrations/exactag", {"consent": ["marketing", "advertising"]}).json()["fields"] == FIELDS
    assert api.patch("/api/integrations/exactag", {"fields": {}}).json()["fields"] == {}


def test_bad_field_sources_are_refused_with_one_line_each(api: Client) -> None:
    bad = {"uk": "context.traits.email", "campaign": "=x", "level": 5}
    created = api.post("/api/integrations", {**EXACTAG, "fields": bad})
    assert created.status == 400
    problems = created.json()["problems"]
    assert [p.split(":")[0] for p in problems] == ["fields.uk", "fields.campaign", "fields.level"], problems
    assert "raw email" in problems[0]
    assert api.post("/api/integrations", {**EXACTAG, "fields": {"level": "=web"}}).json()["fields"] == {"level": "=web"}
    patched = api.patch("/api/integrations/exactag", {"fields": {"uk": "traits.phone"}})
    assert patched.status == 400 and patched.json()["problems"][0].startswith("fields.uk: 'traits.phone' names a raw")
    preview = api.post("/api/integrations/exactag/preview", {"fields": {"x": "not a path"}})
    assert preview.status == 400 and preview.json()["problems"][0].startswith("fields.x: expected a dotted path")


def test_removing_every_user_key_previews_as_skipped(api: Client) -> None:
    assert api.post("/api/integrations", EXACTAG).status == 201
    result = api.post("/api/integrations/exactag/preview", {"event": SAMPLE, "fields": {"euk": None}}).json()
    assert result["outcome"] == "skipped" and "euk or uk" in result["reason"]


def test_config_file_integrations_stay_read_only_but_preview_fields(api: Client) -> None:
    assert api.patch("/api/integrations/exactag-config", {"fields": FIELDS}).status == 409
    query = query_of(api.post("/api/integrations/exactag-config/preview", {"event": SAMPLE, "fields": FIELDS}).json())
    assert "euk" not in query and query["level"] == "web"
    assert api.get("/api/integrations/exactag-config").json()["fields"] == {}


def test_fields_from_the_config_file_are_shown_and_previewed(serve: Any) -> None:
    config = {**BASE_CONFIG, "integrations": [{**BASE_CONFIG["integrations"][0], "fields": {"level": "=app"}}]}
    api = login(serve(config).url)
    assert api.get("/api/integrations/exactag-config").json()["fields"] == {"level": "=app"}
    query = query_of(api.post("/api/integrations/exactag-config/preview", {"event": SAMPLE}).json())
    assert query["level"] == "app"
    page = api.get("/integrations/exactag-config/mappings")
    assert page.status == 200 and 'id="fields-table"' in page.text and "=app" in page.text


def test_fields_survive_a_restart(serve: Any, tmp_path: Any) -> None:
    home = tmp_path / "fields-home"
    first = serve(BASE_CONFIG, home=home)
    api = login(first.url)
    assert api.post("/api/integrations", {**EXACTAG, "fields": FIELDS}).status == 201
    first.stop()
    api = login(serve(BASE_CONFIG, home=home).url)
    assert api.get("/api/integrations/exactag").json()["fields"] == FIELDS
    assert "uk" in query_of(api.post("/api/integrations/exactag/preview", {"event": SAMPLE}).json())


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
def test_the_field_mappings_page_edits_field_sources(serve: Any) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    expect = sync_api.expect
    server = serve(BASE_CONFIG)
    api = login(server.url)
    assert api.post("/api/integrations", EXACTAG).status == 201
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1440, "height": 960})
        page.set_default_timeout(15_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(server.url + "/login?next=/integrations/exactag/mappings")
        page.fill("input[name=password]", ADMIN_PASSWORD)
        page.click("button[type=submit]")
        expect(page.locator("#fields-empty")).to_be_visible()
        page.click("#add-field")
        page.locator("#fields-table .field-name").nth(0).fill("uk")
        page.locator("#fields-table .field-source").nth(0).fill("context.traits.email_sha256")
        page.click("#add-field")
        page.locator("#fields-table .field-name").nth(1).fill("euk")
        page.locator("#fields-table .field-remove").nth(1).check()
        expect(page.locator("#fields-table .field-source").nth(1)).to_be_disabled()
        page.fill("#sample-event", json.dumps(SAMPLE))
        page.click("#run-preview")
        expect(page.locator("#preview-request")).to_contain_text("&uk=")
        expect(page.locator("#preview-request")).not_to_contain_text("euk=")
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "10-field-sources-preview.png"), full_page=True)
        page.click("#save-mapping")
        expect(page.locator("#toasts")).to_contain_text("Mappings saved")
        # a raw-PII path is refused with the problem shown
        page.locator("#fields-table .field-source").nth(0).fill("context.traits.email")
        page.click("#run-preview")
        expect(page.locator("#preview-result .error-box")).to_contain_text("names a raw email")
        browser.close()
        assert errors == [], errors
    assert api.get("/api/integrations/exactag").json()["fields"] == {"uk": "context.traits.email_sha256", "euk": None}
