"""Login, sessions, API tokens, CSRF and the OpenAPI document, through the real server."""

from __future__ import annotations

import re
import time
from typing import Any

from management_client import ADMIN_PASSWORD, BASE_CONFIG, Client, browser_login, login


def _concrete(path: str) -> str:
    return re.sub(r"{\w+}", "x", path)


def test_openapi_is_public_and_valid(server: Any) -> None:
    answer = Client(server.url).get("/api/openapi.json")
    assert answer.status == 200
    doc = answer.json()
    assert doc["openapi"].startswith("3.1")
    assert doc["info"]["title"] and doc["info"]["version"]
    operation_ids: set[str] = set()
    schemas = doc["components"]["schemas"]

    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if "$ref" in node else []
            return found + [r for v in node.values() for r in refs(v)]
        if isinstance(node, list):
            return [r for v in node for r in refs(v)]
        return []

    for ref in refs(doc):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref
    for path, item in doc["paths"].items():
        assert path.startswith("/api/")
        for method, op in item.items():
            assert method in {"get", "post", "put", "patch", "delete"}
            assert op["operationId"] not in operation_ids
            operation_ids.add(op["operationId"])
            assert op["responses"], (method, path)
            for code in op["responses"]:
                assert re.fullmatch(r"[1-5]\d\d", code)
                assert op["responses"][code]["description"]
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == set(re.findall(r"{(\w+)}", path)), (method, path)
            for parameter in op.get("parameters", []):
                assert parameter["in"] in {"path", "query", "header", "cookie"}
                assert "schema" in parameter
            if "requestBody" in op:
                assert "application/json" in op["requestBody"]["content"]
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_every_route_is_documented() -> None:
    from datafly.management.app import api_routes
    from datafly.management.routes.openapi import openapi_document

    paths = openapi_document()["paths"]
    for route in api_routes():
        for method in route.methods - {"HEAD"}:  # type: ignore[attr-defined]
            assert method.lower() in paths.get(route.path, {}), (method, route.path)  # type: ignore[attr-defined]


def test_every_api_route_answers_401_without_login(server: Any) -> None:
    doc = Client(server.url).get("/api/openapi.json").json()
    anonymous = Client(server.url)
    bogus = Client(server.url, token="dft_not-a-real-token")
    checked = 0
    for path, item in doc["paths"].items():
        for method in item:
            if (method, path) in {("post", "/api/login"), ("get", "/api/openapi.json")}:
                continue
            for client in (anonymous, bogus):
                body = {} if method in ("post", "patch", "put") else None
                answer = client.call(method.upper(), _concrete(path), body)
                assert answer.status == 401, (method, path, answer.status, answer.text)
                assert "error" in answer.json()
            checked += 1
    assert checked >= 25
    assert anonymous.get("/api/no-such-route").status == 401


def test_login_gives_a_token_and_a_session_cookie(server: Any) -> None:
    client = Client(server.url)
    answer = client.post("/api/login", {"username": "admin", "password": ADMIN_PASSWORD})
    assert answer.status == 200
    token = answer.json()["token"]
    cookie = next(c for c in answer.set_cookies if c.startswith("datafly_session="))
    assert "HttpOnly" in cookie and re.search(r"SameSite=lax", cookie, re.I) and "Path=/" in cookie
    assert Client(server.url, token).get("/api/integrations").status == 200
    ids = [i["id"] for i in Client(server.url, token).get("/api/integrations").json()["integrations"]]
    assert ids == ["exactag-config"]
    assert client.get("/api/me").json()["user"] == "admin"  # the cookie alone


def test_wrong_password_and_unknown_user_answer_401(server: Any) -> None:
    client = Client(server.url)
    assert client.post("/api/login", {"username": "admin", "password": "nope"}).status == 401
    assert client.post("/api/login", {"username": "root", "password": ADMIN_PASSWORD}).status == 401
    assert client.post("/api/login", {"username": "admin"}).status == 400
    assert client.call("POST", "/api/login", raw=b"username=admin",
                       headers={"Content-Type": "application/x-www-form-urlencoded"}).status == 415


def test_failed_logins_are_throttled(server: Any) -> None:
    client = Client(server.url)
    statuses = [client.post("/api/login", {"username": "admin", "password": f"bad{i}"}).status for i in range(11)]
    assert statuses[:10] == [401] * 10
    assert statuses[10] == 429
    answer = client.post("/api/login", {"username": "admin", "password": ADMIN_PASSWORD})
    assert answer.status == 429 and int(answer.headers["retry-after"]) > 0


def test_cookie_requests_that_change_state_need_the_csrf_token(server: Any) -> None:
    browser = browser_login(server.url)
    body = {"id": "app"}
    refused = browser.post("/api/sources", body)
    assert refused.status == 403 and "CSRF" in refused.json()["error"]
    wrong = browser.post("/api/sources", body, headers={"X-CSRF-Token": "guess"})
    assert wrong.status == 403
    foreign = browser.post("/api/sources", body, headers={"X-CSRF-Token": browser.csrf or "",
                                                         "Origin": "https://evil.example"})
    assert foreign.status == 403
    ok = browser.post("/api/sources", body, headers={"X-CSRF-Token": browser.csrf or ""})
    assert ok.status == 201, ok.text
    # a URL-encoded form carries it as a field
    form = browser.call("POST", "/api/logout", raw=f"csrf_token={browser.csrf}".encode(),
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status == 200
    assert browser.get("/api/me").status == 401  # logged out
    # reading needs no token; Bearer scripts need none either
    assert login(server.url).post("/api/sources", {"id": "app2"}).status == 201


def test_sessions_expire(serve: Any) -> None:
    server = serve(BASE_CONFIG, env={"DATAFLY_SESSION_MAX": "2"})
    api = login(server.url)
    assert api.get("/api/me").status == 200
    time.sleep(2.5)
    assert api.get("/api/me").status == 401


def test_api_tokens_are_shown_once_and_can_be_revoked(api: Client, server: Any) -> None:
    created = api.post("/api/tokens", {"name": "deploy script"})
    assert created.status == 201
    token = created.json()["token"]
    assert token.startswith("dft_")
    listed = api.get("/api/tokens").json()["tokens"]
    assert [t["name"] for t in listed] == ["deploy script"]
    assert token not in api.get("/api/tokens").text
    script = Client(server.url, token)
    assert script.get("/api/integrations").status == 200
    assert script.post("/api/sources", {"id": "from-script"}).status == 201  # no CSRF for tokens
    assert api.delete(f"/api/tokens/{created.json()['id']}").status == 200
    assert script.get("/api/integrations").status == 401
    assert api.post("/api/tokens", {"name": ""}).status == 400


def test_password_change(api: Client, server: Any) -> None:
    assert api.post("/api/password", {"current_password": "wrong", "new_password": "x" * 12}).status == 403
    assert api.post("/api/password", {"current_password": ADMIN_PASSWORD, "new_password": "short"}).status == 400
    assert api.post("/api/password", {"current_password": ADMIN_PASSWORD, "new_password": "a-new-password"}).status == 200
    assert Client(server.url).post("/api/login", {"username": "admin", "password": ADMIN_PASSWORD}).status == 401
    assert login(server.url, "a-new-password").get("/api/me").status == 200


def test_pages_redirect_to_login_and_render_after(server: Any) -> None:
    anonymous = Client(server.url)
    answer = anonymous.get("/integrations")
    assert answer.status == 200 and "Sign in" in answer.text  # followed the redirect to /login
    browser = browser_login(server.url)
    for path in ("/", "/integrations", "/integrations/new", "/integrations/new/rokt", "/integrations/exactag-config",
                 "/integrations/exactag-config/mappings", "/sources", "/debugger", "/dead-letters", "/settings"):
        page = browser.get(path)
        assert page.status == 200, path
        assert "content-security-policy" in page.headers
        assert f'name="csrf-token" content="{browser.csrf}"' in page.text
    assert browser.get("/integrations/nope").status == 404
