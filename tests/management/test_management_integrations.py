"""Integrations and sources through the API: validation, read-only config, secrets never in full."""

from __future__ import annotations

import os
import sqlite3
import stat
from typing import Any

from management_client import BASE_CONFIG, Client, browser_login, login, send_event

ROKT = {
    "vendor": "rokt",
    "preset": "retail",
    "settings": {"account_id": "12345", "api_key": "rpub-abcdefghijklmnop", "api_secret": "rsec-topsecretvalue99"},
    "consent": ["advertising"],
    "endpoint": "http://127.0.0.1:9/v1/conversions",
}
SECRETS = ("rpub-abcdefghijklmnop", "rsec-topsecretvalue99", "EXACTAG-CAMPAIGN-SECRET-0001-abcd")


def _no_secret_in(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def test_library_lists_vendors_with_schemas_and_presets(api: Client) -> None:
    vendors = {v["vendor"]: v for v in api.get("/api/vendors").json()["vendors"]}
    assert {"exactag", "rokt", "webhook"} <= set(vendors)
    rokt = vendors["rokt"]
    assert [p["name"] for p in rokt["presets"]] == ["default", "retail"]
    fields = {f["name"]: f for f in rokt["settings"]}
    assert fields["api_secret"]["secret"] and fields["api_secret"]["required"]
    assert api.get("/api/vendors/exactag").json()["settings"][0]["name"] == "campaign_code"
    assert api.get("/api/vendors/nope").status == 404


def test_create_edit_disable_delete(api: Client, server: Any) -> None:
    created = api.post("/api/integrations", ROKT)
    assert created.status == 201, created.text
    view = created.json()
    assert view["id"] == "rokt" and view["managed_by"] == "ui" and not view["read_only"]
    assert view["settings"]["api_secret"] == "rsec****" and view["settings"]["account_id"] == "12345"
    assert view["mapping"] == {"Order Completed": "purchase", "Order Refunded": "refund", "Signed Up": "signup"}
    assert api.post("/api/integrations", {**ROKT, "id": "rokt"}).status == 409
    assert api.post("/api/integrations", ROKT).json()["id"] == "rokt-2"

    # a masked or blank secret keeps the stored one; a new value replaces it
    changed = api.patch("/api/integrations/rokt", {"settings": {"api_secret": "rsec****", "api_key": ""},
                                                   "consent": ["advertising", "marketing"]})
    assert changed.status == 200, changed.text
    assert changed.json()["secrets_set"] == ["api_key", "api_secret"]
    assert changed.json()["consent"] == ["advertising", "marketing"]
    disabled = api.patch("/api/integrations/rokt", {"enabled": False}).json()
    assert disabled["enabled"] is False
    mapped = api.patch("/api/integrations/rokt", {"mapping": {"Order Completed": "purchase", "Lead Generated": "lead"}})
    assert mapped.json()["mapping"] == {"Order Completed": "purchase", "Lead Generated": "lead"}
    assert mapped.json()["events"] == {"Order Refunded": None, "Signed Up": None, "Lead Generated": "lead"}
    assert api.patch("/api/integrations/rokt", {"vendor": "exactag"}).status == 400
    assert api.delete("/api/integrations/rokt-2").status == 200
    assert api.get("/api/integrations/rokt-2").status == 404
    ids = [i["id"] for i in api.get("/api/integrations").json()["integrations"]]
    assert ids == ["exactag-config", "rokt"]


def test_settings_are_validated_against_the_vendor_schema(api: Client) -> None:
    missing = api.post("/api/integrations", {**ROKT, "settings": {"account_id": "1"}})
    assert missing.status == 400
    assert {"settings.api_key: required", "settings.api_secret: required"} <= set(missing.json()["problems"])
    unknown = api.post("/api/integrations", {**ROKT, "settings": {**ROKT["settings"], "colour": "red"}})
    assert any(p.startswith("settings.colour: unknown setting") for p in unknown.json()["problems"])
    assert api.post("/api/integrations", {**ROKT, "preset": "nope"}).status == 400
    assert api.post("/api/integrations", {**ROKT, "vendor": "nope"}).status == 400
    assert api.post("/api/integrations", {**ROKT, "sources": ["nope"]}).status == 400
    assert api.post("/api/integrations", {**ROKT, "endpoint": "ftp://x"}).status == 400
    assert api.post("/api/integrations", {**ROKT, "id": "bad id!"}).status == 400
    assert api.post("/api/integrations", {**ROKT, "consent": ["bad category!"]}).status == 400
    bad_kind = api.post("/api/integrations", {**ROKT, "settings": {**ROKT["settings"], "test": "maybe"}})
    assert "settings.test: expected a boolean" in bad_kind.text
    assert api.post("/api/integrations", {**ROKT, "colour": 1}).status == 400


def test_config_file_integrations_are_read_only_with_the_reason(api: Client) -> None:
    view = api.get("/api/integrations/exactag-config").json()
    assert view["read_only"] and view["managed_by"] == "config"
    assert "config" in view["read_only_reason"] and "restart" in view["read_only_reason"]
    assert view["settings"]["campaign_code"] == "EXAC****"
    for attempt in (api.patch("/api/integrations/exactag-config", {"enabled": True}),
                    api.delete("/api/integrations/exactag-config")):
        assert attempt.status == 409 and "read-only" in attempt.json()["error"]
    assert api.post("/api/integrations", {**ROKT, "id": "exactag-config"}).status == 409


def test_secrets_are_never_shown_in_full_and_encrypted_at_rest(api: Client, server: Any) -> None:
    assert api.post("/api/integrations", ROKT).status == 201
    texts = [api.get(p).text for p in ("/api/integrations", "/api/integrations/rokt", "/api/health",
                                        "/api/dead-letters", "/api/integrations/rokt/deliveries")]
    texts.append(api.post("/api/integrations/rokt/preview", {}).text)
    texts.append(api.patch("/api/integrations/rokt", {"consent": ["advertising"]}).text)
    browser = browser_login(server.url)
    texts += [browser.get(p).text for p in ("/", "/integrations", "/integrations/rokt", "/integrations/rokt/mappings",
                                            "/integrations/exactag-config", "/debugger")]
    for text in texts:
        _no_secret_in(text)
    preview = api.post("/api/integrations/rokt/preview", {}).json()
    assert preview["request"]["headers"]["Authorization"] == "Basic ****"
    # at rest: a Fernet token in the document, the key file readable by its owner only
    home = server.home
    database = sqlite3.connect(os.path.join(home, "datafly.db"))
    stored = b"".join(row[0] for row in database.execute("SELECT data FROM documents"))
    database.close()
    for secret in SECRETS[:2]:
        assert secret.encode() not in stored
    assert b"gAAAA" in stored
    key_file = os.path.join(home, "secret.key")
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    server.stop()
    _no_secret_in(server.log())


def test_ui_integrations_and_sources_survive_a_restart(serve: Any, tmp_path: Any) -> None:
    home = tmp_path / "shared-home"
    first = serve(BASE_CONFIG, home=home)
    api = login(first.url)
    assert api.post("/api/integrations", ROKT).status == 201
    key = api.post("/api/sources", {"id": "app"}).json()["key"]
    first.stop()
    second = serve(BASE_CONFIG, home=home)
    api = login(second.url)
    view = api.get("/api/integrations/rokt").json()
    assert view["settings"]["api_key"] == "rpub****" and view["problem"] is None and view["enabled"]
    assert send_event(second.url, key, {"type": "track", "event": "Signed Up"}) == 200


def test_a_changed_secret_key_asks_for_the_credentials_again(serve: Any, tmp_path: Any) -> None:
    home = tmp_path / "keyed-home"
    first = serve(BASE_CONFIG, home=home, env={"DATAFLY_SECRET_KEY": "first passphrase"})
    assert login(first.url).post("/api/integrations", ROKT).status == 201
    first.stop()
    second = serve(BASE_CONFIG, home=home, env={"DATAFLY_SECRET_KEY": "another passphrase"})
    api = login(second.url)
    view = api.get("/api/integrations/rokt").json()
    assert view["enabled"] is False and "Enter the credentials again" in view["problem"]
    fixed = api.patch("/api/integrations/rokt", {"settings": ROKT["settings"], "enabled": True}).json()
    assert fixed["problem"] is None and fixed["enabled"]


def test_preview_shows_the_exact_request_with_unsaved_mappings(api: Client) -> None:
    assert api.post("/api/integrations", ROKT).status == 201
    result = api.post("/api/integrations/rokt/preview", {}).json()
    assert result["outcome"] == "request" and result["mapping"] == "purchase"
    request = result["request"]
    assert request["method"] == "POST" and request["url"] == ROKT["endpoint"]
    assert '"conversionType":"purchase"' in request["body"] and '"accountId":"12345"' in request["body"]
    custom = api.post("/api/integrations/rokt/preview", {"mapping": {"Order Completed": "checkout"}}).json()
    assert '"conversionType":"checkout"' in custom["request"]["body"]
    assert api.get("/api/integrations/rokt").json()["mapping"]["Order Completed"] == "purchase"  # not saved
    unmapped = api.post("/api/integrations/rokt/preview", {"event": {"type": "track", "event": "Cart Viewed"}})
    assert unmapped.json()["outcome"] == "not_mapped"
    no_consent = api.post("/api/integrations/rokt/preview", {"event": {"type": "track", "event": "Order Completed",
                                                                        "properties": {"order_id": "1"}}}).json()
    assert no_consent["outcome"] == "filtered" and "advertising" in no_consent["reason"]
    refused = api.post("/api/integrations/rokt/preview", {"event": {"type": "nope"}})  # as the gateway would
    assert refused.status == 400 and "unknown event type 'nope'" in refused.json()["error"]
    email = api.post("/api/integrations/rokt/preview", {"event": {
        "type": "track", "event": "Order Completed", "properties": {"order_id": "9", "email": "jane@example.com"},
        "context": {"consent": {"canonical": {"advertising": True}}, "traits": {"email": "jane@example.com"}}}})
    assert "jane@example.com" not in email.text


def test_exactag_preview_puts_the_campaign_code_masked_in_the_url(api: Client) -> None:
    body = {"vendor": "exactag", "settings": {"campaign_code": "CAMPAIGN-CODE-0123456789-abcdefgh"}, "consent": ["marketing"]}
    assert api.post("/api/integrations", body).status == 201
    result = api.post("/api/integrations/exactag/preview", {}).json()
    assert result["outcome"] == "request"
    assert "campaign=CAMP****" in result["request"]["url"] and "sitegroup=conversion" in result["request"]["url"]
    assert "CAMPAIGN-CODE-0123456789-abcdefgh" not in str(result)


def test_sources_create_rotate_revoke(api: Client, server: Any) -> None:
    created = api.post("/api/sources", {"id": "app", "origins": ["https://shop.example.com"]})
    assert created.status == 201, created.text
    source = created.json()
    key = source["key"]
    assert source["snippet"] == f'<script async src="{server.url}/d.js" data-pipeline-key="{key}"></script>'
    assert send_event(server.url, key, {"type": "track", "event": "Signed Up"}) == 200
    listed = {s["id"]: s for s in api.get("/api/sources").json()["sources"]}
    assert listed["web"]["read_only"] and listed["app"]["managed_by"] == "ui"
    rotated = api.post("/api/sources/app/rotate").json()
    assert rotated["key"] != key
    assert send_event(server.url, key, {"type": "track", "event": "Signed Up"}) == 401
    assert send_event(server.url, rotated["key"], {"type": "track", "event": "Signed Up"}) == 200
    assert api.patch("/api/sources/app", {"origins": ["nope"]}).status == 400
    assert api.patch("/api/sources/app", {"origins": []}).json()["origins"] == []
    assert api.post("/api/sources", {"id": "app"}).status == 409
    assert api.post("/api/sources", {"id": "web"}).status == 409
    assert api.post("/api/sources/web/rotate").status == 409
    assert api.delete("/api/sources/app").status == 200
    assert send_event(server.url, rotated["key"], {"type": "track", "event": "Signed Up"}) == 401
    assert api.get("/api/sources/app").status == 404
    # an integration may be limited to a UI-managed source
    api.post("/api/sources", {"id": "app2"})
    assert api.post("/api/integrations", {**ROKT, "sources": ["app2"]}).json()["sources"] == ["app2"]
