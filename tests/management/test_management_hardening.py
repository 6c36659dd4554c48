"""Issue 14, management: no input leads the browser away, locks the admin out, outlives a password
change, gives a secret away or points the server into its own network. Through the real server."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

import yaml
from management_client import ADMIN_PASSWORD, BASE_CONFIG, Client, browser_login, login

# the tests' usual config without management.allow_private_endpoints: what a fresh install has
PLAIN_CONFIG = {key: value for key, value in BASE_CONFIG.items() if key != "management"}
PUBLIC = "http://93.184.216.34"  # a global address (saving an integration sends nothing)


def _data_next(html: str) -> str:
    found = re.search(r'data-next="([^"]*)"', html)
    assert found, html[:500]
    return found.group(1)


# 1. the login page's `next` ---------------------------------------------------------------------


def test_login_next_is_only_ever_a_path_on_this_origin(server: Any) -> None:
    port = server.url.rsplit(":", 1)[1]
    hostile = [
        f"/%5Clocalhost:{port}/x",  # /\host: a browser reads the backslash as a slash
        f"/%09/localhost:{port}/x",  # /<tab>/host: a browser drops the tab
        f"/%0A/localhost:{port}/x",
        f"//localhost:{port}/x",
        f"https://localhost:{port}/x",
        "javascript:alert(1)",
        "/%5C%5Cevil.example",
        "%2F%2Fevil.example",
    ]
    anonymous = Client(server.url)
    browser = browser_login(server.url)
    browser.source = "127.0.0.1"  # (this client does not follow redirects)
    for raw in hostile:
        page = anonymous.get(f"/login?next={raw}")
        assert page.status == 200 and _data_next(page.text) == "/", raw
        answer = browser.get(f"/login?next={raw}")  # logged in already: sent on at once
        assert answer.status == 303 and answer.headers["location"] == "/", (raw, answer.headers)
    assert browser.get("/login?next=/sources").headers["location"] == "/sources"
    # a same-origin path is kept, query included
    assert _data_next(anonymous.get("/login?next=/sources%3Fx%3D1").text) == "/sources?x=1"
    # the redirect to the login page keeps the path it came from
    assert _data_next(anonymous.get("/dead-letters?integration=exactag-config").text) == (
        "/dead-letters?integration=exactag-config"
    )


# 2. login throttling ------------------------------------------------------------------------------


def test_a_stranger_failing_for_admin_locks_out_only_himself(server: Any) -> None:
    stranger = Client(server.url, source="127.0.0.2")
    statuses = [stranger.post("/api/login", {"username": "admin", "password": f"guess-{i}"}).status
                for i in range(10)]
    assert statuses == [401] * 10
    refused = stranger.post("/api/login", {"username": "admin", "password": ADMIN_PASSWORD})
    assert refused.status == 429, refused.text  # the right password too, from that client
    assert 0 < int(refused.headers["retry-after"]) <= 301
    assert "too many failed attempts" in refused.json()["error"]
    # the admin, from anywhere else, still gets in
    admin = Client(server.url).post("/api/login", {"username": "admin", "password": ADMIN_PASSWORD})
    assert admin.status == 200, admin.text
    assert Client(server.url, source="127.0.0.3").post(
        "/api/login", {"username": "admin", "password": ADMIN_PASSWORD}).status == 200


def test_a_client_failing_for_many_user_names_is_stopped_too(server: Any) -> None:
    sprayer = Client(server.url, source="127.0.0.4")
    statuses = [sprayer.post("/api/login", {"username": f"user-{i}", "password": "guess"}).status for i in range(50)]
    assert statuses == [401] * 50
    assert sprayer.post("/api/login", {"username": "user-50", "password": "guess"}).status == 429
    assert Client(server.url).post("/api/login", {"username": "admin", "password": ADMIN_PASSWORD}).status == 200


def test_wrong_current_passwords_are_throttled(api: Client) -> None:
    statuses = [api.post("/api/password", {"current_password": f"wrong-{i}", "new_password": "x" * 12}).status
                for i in range(11)]
    assert statuses == [403] * 10 + [429]


# 3. sessions and API tokens ---------------------------------------------------------------------


def test_a_password_change_ends_other_sessions_and_revokes_api_tokens(server: Any) -> None:
    changer = login(server.url)
    other_bearer = login(server.url)
    other_browser = browser_login(server.url)
    token = changer.post("/api/tokens", {"name": "deploy"}).json()["token"]
    script = Client(server.url, token)
    for client in (changer, other_bearer, other_browser, script):
        assert client.get("/api/me").status == 200
    changed = changer.post("/api/password", {"current_password": ADMIN_PASSWORD, "new_password": "a-new-password"})
    assert changed.status == 200, changed.text
    assert changed.json() == {"changed": True, "revoked": {"sessions": 2, "tokens": 1}}
    assert changer.get("/api/me").status == 200  # the session that made the change stays
    for client in (other_bearer, other_browser, script):
        assert client.get("/api/me").status == 401
    assert changer.get("/api/tokens").json()["tokens"] == []
    assert login(server.url, "a-new-password").get("/api/me").status == 200


def test_a_password_change_made_with_a_token_keeps_that_token(server: Any) -> None:
    session = login(server.url)
    keep = Client(server.url, session.post("/api/tokens", {"name": "keep"}).json()["token"])
    other = Client(server.url, session.post("/api/tokens", {"name": "other"}).json()["token"])
    changed = keep.post("/api/password", {"current_password": ADMIN_PASSWORD, "new_password": "another-password"})
    assert changed.json()["revoked"] == {"sessions": 1, "tokens": 1}
    assert keep.get("/api/me").status == 200
    assert other.get("/api/me").status == 401 and session.get("/api/me").status == 401


def test_recovering_access_through_the_environment_ends_sessions_and_tokens(serve: Any, tmp_path: Path) -> None:
    home = tmp_path / "recovered"
    first = serve(BASE_CONFIG, home=home)
    api = login(first.url)
    token = api.post("/api/tokens", {"name": "leaked"}).json()["token"]
    first.stop()
    second = serve(BASE_CONFIG, home=home, env={"DATAFLY_ADMIN_PASSWORD": "recovered-password"})
    assert Client(second.url, token).get("/api/me").status == 401
    assert Client(second.url).post("/api/login", {"username": "admin", "password": ADMIN_PASSWORD}).status == 401
    recovered = login(second.url, "recovered-password")
    assert recovered.get("/api/tokens").json()["tokens"] == []
    new_token = recovered.post("/api/tokens", {"name": "new"}).json()["token"]
    second.stop()
    third = serve(BASE_CONFIG, home=home, env={"DATAFLY_ADMIN_PASSWORD": "recovered-password"})  # the same
    assert Client(third.url, new_token).get("/api/me").status == 200  # nothing replaced, nothing revoked


def test_logout_with_an_api_token_revokes_it(api: Client, server: Any) -> None:
    created = api.post("/api/tokens", {"name": "ci"}).json()
    script = Client(server.url, created["token"])
    assert script.get("/api/me").json()["via"] == "token"
    answer = script.post("/api/logout")
    assert answer.status == 200 and answer.json() == {"logged_out": True, "revoked_token": created["id"]}
    assert script.get("/api/me").status == 401
    assert created["id"] not in [t["id"] for t in api.get("/api/tokens").json()["tokens"]]
    assert api.get("/api/me").status == 200  # the session that created it is untouched


def test_api_tokens_can_expire(api: Client, server: Any) -> None:
    soon = api.post("/api/tokens", {"name": "short-lived", "expires_at": time.time() + 2})
    assert soon.status == 201, soon.text
    script = Client(server.url, soon.json()["token"])
    assert script.get("/api/me").status == 200
    monthly = api.post("/api/tokens", {"name": "monthly", "expires_in_days": 30}).json()
    assert abs(monthly["expires_at"] - (time.time() + 30 * 86400)) < 60
    forever = api.post("/api/tokens", {"name": "forever"}).json()
    assert forever["expires_at"] is None
    time.sleep(2.5)
    assert script.get("/api/me").status == 401
    names = [t["name"] for t in api.get("/api/tokens").json()["tokens"]]
    assert names == ["monthly", "forever"] or sorted(names) == ["forever", "monthly"]
    assert Client(server.url, monthly["token"]).get("/api/me").status == 200
    for bad in ({"expires_in_days": 0}, {"expires_in_days": 4000}, {"expires_in_days": "7"},
                {"expires_at": time.time() - 10}, {"expires_at": 1e300}, {"expires_in_days": 1, "expires_at": 2e9}):
        assert api.post("/api/tokens", {"name": "x", **bad}).status == 400, bad


# 4. secrets ---------------------------------------------------------------------------------------


def test_secrets_need_a_minimum_length_and_the_vendor_format(api: Client) -> None:
    cases = [
        ("exactag", {"campaign_code": "t"}, "settings.campaign_code: too short: at least 32 characters"),
        ("exactag", {"campaign_code": "has spaces and is long enough 0123"}, "settings.campaign_code: not in the expected format"),
        ("rokt", {"account_id": "1", "api_key": "pub-key-12345", "api_secret": "rsec-secret-1"},
         "settings.api_key: not in the expected format (the public key Rokt issued, starting with rpub-)"),
        ("rokt", {"account_id": "1", "api_key": "rpub-key-1", "api_secret": "rsec-"},
         "settings.api_secret: too short: at least 8 characters"),
        ("webhook", {"url": PUBLIC + "/hook", "secret": "x"}, "settings.secret: too short: at least 8 characters"),
        ("webhook", {"url": PUBLIC + "/hook", "secret": "line\nbreak-secret"}, "settings.secret: must not contain control"),
    ]
    for vendor, settings, problem in cases:
        answer = api.post("/api/integrations", {"vendor": vendor, "settings": settings})
        assert answer.status == 400, (vendor, settings, answer.text)
        assert any(p.startswith(problem) for p in answer.json()["problems"]), (problem, answer.json())
    created = api.post("/api/integrations", {"vendor": "webhook", "id": "hook",
                                             "settings": {"url": PUBLIC + "/hook", "secret": "hook-secret-1"}})
    assert created.status == 201, created.text
    assert api.patch("/api/integrations/hook", {"settings": {"secret": "short"}}).status == 400
    assert api.patch("/api/integrations/hook", {"settings": {"secret": "another-secret"}}).status == 200
    # the UI form carries the same rule
    form = api.get("/integrations/new/exactag").text
    assert 'minlength="32"' in form and "at least 32 letters, digits" in form
    assert 'minlength="8"' in api.get("/integrations/new/webhook").text
    vendor = api.get("/api/vendors/rokt").json()
    api_key = next(f for f in vendor["settings"] if f["name"] == "api_key")
    assert api_key["min_length"] == 8 and api_key["pattern"].startswith("rpub-")


def _check(tmp_path: Path, config: dict[str, Any]) -> tuple[int, str]:
    path = tmp_path / "check.yaml"
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [sys.executable, "-c", "from datafly.cli import main; raise SystemExit(main())", "check", "--config", str(path)],
        capture_output=True, text=True, timeout=60,
    )
    return done.returncode, done.stdout + done.stderr


def test_datafly_check_reports_the_same_setting_rules(tmp_path: Path) -> None:
    code, output = _check(tmp_path, {"integrations": [
        {"id": "a", "vendor": "exactag", "settings": {"campaign_code": "t"}},
        {"id": "b", "vendor": "rokt", "settings": {"account_id": "1", "api_key": "k" * 10, "api_secret": "rsec-1234"}},
        {"id": "c", "vendor": "webhook", "settings": {
            "url": "gopher://127.0.0.1:70/x",
            "headers": {"Host": "internal", "X-Ok": "fine", "X-Bad": "a\r\nInjected: 1", "Bad Name": "v"}}},
        {"id": "d", "vendor": "webhook", "endpoint": "file:///etc/passwd", "settings": {"url": "http://h/x"}},
    ]})
    assert code == 1, output
    for expected in (
        "integrations[0].settings.campaign_code: too short",
        "integrations[1].settings.api_key: not in the expected format",
        "integrations[2].settings.url: expected an http:// or https:// URL",
        "integrations[2].settings.headers: Host: cannot be set here",
        "integrations[2].settings.headers: X-Bad: a header value must not contain line breaks",
        "integrations[2].settings.headers: 'Bad Name': a header name is",
        "integrations[3].endpoint: expected an http:// or https:// URL",
    ):
        assert expected in output, (expected, output)
    assert "X-Ok" not in output
    # internal addresses are fine in the config file: it is trusted
    code, output = _check(tmp_path, {"integrations": [
        {"id": "e", "vendor": "webhook", "settings": {"url": "http://169.254.169.254/latest", "headers": {"X-A": "b"}}},
    ]})
    assert code == 0, output


# 5. webhook URLs, headers and internal endpoints --------------------------------------------------


def test_webhook_urls_must_be_http_with_a_host(api: Client) -> None:
    for url in ("file:///etc/passwd", "gopher://93.184.216.34:70/_x", "javascript:alert(1)", "ftp://93.184.216.34/x",
                f"{PUBLIC}/hook\r\nX-Injected: 1", f"{PUBLIC}/ho ok", "http:///nohost", "http://", "//93.184.216.34/x",
                f"{PUBLIC}:99999/x", "http://93.184.216.34\\@evil/x"):
        answer = api.post("/api/integrations", {"vendor": "webhook", "settings": {"url": url}})
        assert answer.status == 400, (url, answer.text)
        assert any(p.startswith("settings.url: ") for p in answer.json()["problems"]), answer.json()
    for endpoint in ("file:///etc/passwd", "gopher://x/", f"{PUBLIC}/x\n"):
        answer = api.post("/api/integrations", {"vendor": "rokt", "endpoint": endpoint, "settings": {
            "account_id": "1", "api_key": "rpub-key-1", "api_secret": "rsec-secret-1"}})
        assert answer.status == 400 and any(p.startswith("endpoint: ") for p in answer.json()["problems"]), endpoint


def test_webhook_headers_are_one_line_tokens_without_framing_headers(api: Client) -> None:
    for headers, problem in (
        ({"Host": "internal.example"}, "Host: cannot be set here"),
        ({"Transfer-Encoding": "chunked"}, "Transfer-Encoding: cannot be set here"),
        ({"content-length": "0"}, "content-length: cannot be set here"),
        ({"Connection": "close"}, "Connection: cannot be set here"),
        ({"X-Api-Key": "a\r\nX-Injected: 1"}, "X-Api-Key: a header value must not contain line breaks"),
        ({"X-Api-Key": "a\x00b"}, "X-Api-Key: a header value must not contain"),
        ({"Bad Name": "v"}, "'Bad Name': a header name is"),
        ({"X-A\r\nB": "v"}, "'X-A\\r\\nB': a header name is"),
        ({"X-List": ["a"]}, "X-List: expected a text value"),
    ):
        answer = api.post("/api/integrations", {"vendor": "webhook", "settings": {"url": PUBLIC + "/hook",
                                                                                  "headers": headers}})
        assert answer.status == 400, (headers, answer.text)
        assert f"settings.headers: {problem}" in " | ".join(answer.json()["problems"]), (problem, answer.json())
    fine = api.post("/api/integrations", {"vendor": "webhook", "settings": {
        "url": PUBLIC + "/hook", "headers": {"X-Api-Key": "k-123", "Authorization": "Bearer abc"}}})
    assert fine.status == 201, fine.text


def test_endpoints_on_internal_addresses_are_refused_from_the_api(serve: Any) -> None:
    server = serve(PLAIN_CONFIG)
    api = login(server.url)
    internal = ["http://169.254.169.254/latest/meta-data/", "http://127.0.0.1:9/hook", "http://localhost:9/hook",
                "http://10.1.2.3/hook", "http://192.168.1.10/hook", "http://172.16.0.1/hook", "http://100.64.0.1/hook",
                "http://0.0.0.0/hook", "http://[::1]/hook", "http://[::ffff:127.0.0.1]/hook", "http://[fe80::1]/hook",
                "http://2130706433/hook", "http://0x7f.1/hook", "https://224.0.0.1/hook"]
    for url in internal:
        answer = api.post("/api/integrations", {"vendor": "webhook", "settings": {"url": url}})
        assert answer.status == 400, (url, answer.text)
        assert any(p.startswith("settings.url: ") and "internal address" in p for p in answer.json()["problems"]), (
            url, answer.json())
    rokt = {"vendor": "rokt", "id": "rokt", "settings": {"account_id": "1", "api_key": "rpub-key-1",
                                                         "api_secret": "rsec-secret-1"}}
    answer = api.post("/api/integrations", {**rokt, "endpoint": "http://169.254.169.254/v1/conversions"})
    assert answer.status == 400 and "endpoint: " in answer.json()["problems"][0]
    unresolvable = api.post("/api/integrations", {"vendor": "webhook", "settings": {"url": "http://no-such-host.invalid/x"}})
    assert unresolvable.status == 400 and "cannot be resolved" in unresolvable.text
    # public addresses are fine, and a change to an internal one is refused too
    assert api.post("/api/integrations", {**rokt, "endpoint": PUBLIC + "/v1/conversions"}).status == 201
    assert api.patch("/api/integrations/rokt", {"endpoint": "http://10.0.0.8/v1/conversions"}).status == 400
    assert api.patch("/api/integrations/rokt", {"consent": ["advertising"]}).status == 200  # endpoint unchanged
    assert api.get("/api/integrations/rokt").json()["endpoint"] == PUBLIC + "/v1/conversions"
    # the config file is trusted: its integration on 127.0.0.1 is listed and served
    assert api.get("/api/integrations/exactag-config").json()["endpoint"] == "http://127.0.0.1:9/s2s/pi.ashx"


def test_internal_endpoints_are_allowed_when_the_config_says_so(api: Client) -> None:
    # BASE_CONFIG sets management.allow_private_endpoints: true (the tests' loopback stand-ins)
    answer = api.post("/api/integrations", {"vendor": "webhook", "settings": {"url": "http://127.0.0.1:9/hook"}})
    assert answer.status == 201, answer.text


# 6. every refusal is documented -------------------------------------------------------------------


def test_refusals_have_documented_statuses(serve: Any) -> None:
    server = serve(PLAIN_CONFIG)
    api = login(server.url)
    doc = Client(server.url).get("/api/openapi.json").json()

    def documented(method: str, path: str, status: int) -> bool:
        return str(status) in doc["paths"][path][method]["responses"]

    seen: list[tuple[str, str, int]] = []
    not_json = api.call("POST", "/api/integrations", raw=b"{}", headers={"Content-Type": "text/plain"})
    seen.append(("post", "/api/integrations", not_json.status))
    seen.append(("post", "/api/sources", api.call("POST", "/api/sources", raw=b"{" + b" " * (1024 * 1024 + 1) + b"}",
                                                  headers={"Content-Type": "application/json"}).status))
    seen.append(("post", "/api/sources", api.post("/api/sources", {"id": "web"}).status))  # the config's
    seen.append(("delete", "/api/integrations/{integration_id}", api.delete("/api/integrations/exactag-config").status))
    seen.append(("delete", "/api/integrations/{integration_id}",
                 api.delete("/api/integrations/" + urllib.parse.quote("x/preview", safe="")).status))
    seen.append(("get", "/api/integrations/{integration_id}",
                 api.get("/api/integrations/" + urllib.parse.quote("a/b/c", safe="")).status))
    seen.append(("post", "/api/integrations/{integration_id}/preview",
                 api.post("/api/integrations/exactag-config/preview", {"event": {"type": "track"}}).status))
    stranger = Client(server.url, source="127.0.0.5")
    for _ in range(11):
        last = stranger.post("/api/login", {"username": "admin", "password": "nope"}).status
    seen.append(("post", "/api/login", last))
    assert {status for _, _, status in seen} >= {415, 413, 409, 405, 404, 400, 429}, seen
    for method, path, status in seen:
        assert documented(method, path, status), (method, path, status)
