"""The management tests' client: JSON over HTTP with cookies and CSRF, the debugger stream, events."""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any

from e2e_support import wait_until  # noqa: F401 - re-exported for the management tests

ADMIN_PASSWORD = "admin-pass-123"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    text: str
    set_cookies: list[str] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.text)


class Client:
    """JSON over HTTP to the management API, as a script (Bearer) or a browser (cookie + CSRF)."""

    def __init__(self, base: str, token: str | None = None, source: str | None = None) -> None:
        self.base = base
        self.token = token
        self.source = source  # a loopback address to connect from (127.0.0.2): another client
        self.cookies: dict[str, str] = {}
        self.csrf: str | None = None

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
             raw: bytes | None = None) -> Answer:
        sent = dict(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        if self.token:
            sent.setdefault("Authorization", f"Bearer {self.token}")
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if self.source:
            answer = self._call_from(method, path, data, sent)
        else:
            answer = self._call(method, path, data, sent)
        for header in answer.set_cookies:
            jar: SimpleCookie = SimpleCookie()
            jar.load(header)
            for name, morsel in jar.items():
                if morsel["max-age"] == "0" or not morsel.value:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        return answer

    def _call_from(self, method: str, path: str, data: bytes | None, sent: dict[str, str]) -> Answer:
        host, port = self.base.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=15, source_address=(self.source or "", 0))
        try:
            conn.request(method, path, body=data, headers=sent)
            r = conn.getresponse()
            return Answer(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode(),
                          [v for k, v in r.getheaders() if k.lower() == "set-cookie"])
        finally:
            conn.close()

    def _call(self, method: str, path: str, data: bytes | None, sent: dict[str, str]) -> Answer:
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=sent)
        try:
            with urllib.request.urlopen(request, timeout=15) as r:
                answer = Answer(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read().decode(),
                                r.headers.get_all("Set-Cookie") or [])
        except urllib.error.HTTPError as e:
            answer = Answer(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read().decode(),
                            e.headers.get_all("Set-Cookie") or [])
        return answer

    def get(self, path: str, **kw: Any) -> Answer:
        return self.call("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Answer:
        return self.call("POST", path, body if body is not None else {}, **kw)

    def patch(self, path: str, body: Any, **kw: Any) -> Answer:
        return self.call("PATCH", path, body, **kw)

    def delete(self, path: str, **kw: Any) -> Answer:
        return self.call("DELETE", path, **kw)


def login(base: str, password: str = ADMIN_PASSWORD) -> Client:
    """A Bearer client (the token of POST /api/login)."""
    answer = Client(base).post("/api/login", {"username": "admin", "password": password})
    assert answer.status == 200, answer.text
    return Client(base, answer.json()["token"])


def browser_login(base: str) -> Client:
    """A cookie client, as the UI: the session cookie plus the CSRF token."""
    client = Client(base)
    answer = client.post("/api/login", {"username": "admin", "password": ADMIN_PASSWORD})
    assert answer.status == 200, answer.text
    client.csrf = answer.json()["csrf_token"]
    return client


def send_event(base: str, key: str, event: dict[str, Any]) -> int:
    request = urllib.request.Request(
        base + "/v1/t", data=json.dumps(event).encode(), method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def order_completed(order_id: str, consent: dict[str, bool] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Order Completed",
        "messageId": f"msg-{order_id}",
        "properties": {"order_id": order_id, "revenue": 99.99, "currency": "USD"},
        "context": {
            "page": {"url": f"https://shop.example.com/checkout?rclid=rclid-{order_id}"},
            "consent": {"canonical": consent if consent is not None else {"advertising": True}},
            "traits": {"email": "jane.doe@example.com"},
        },
        **extra,
    }




class EventStream:
    """Reads the debugger's server-sent events, one JSON entry at a time."""

    def __init__(self, base: str, token: str, query: str = "") -> None:
        host, port = base.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=10)
        self.conn.request("GET", "/api/debugger/stream" + query, headers={"Authorization": f"Bearer {token}"})
        self.response = self.conn.getresponse()
        self.entries: list[dict[str, Any]] = []

    def next(self, timeout: float = 10.0) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        data: list[str] = []
        while time.monotonic() < deadline:
            try:
                line = self.response.fp.readline().decode()
            except TimeoutError:
                return None
            if line.startswith("data: "):
                data.append(line[6:].strip())
            elif line.strip() == "" and data:
                entry = json.loads("".join(data))
                self.entries.append(entry)
                return dict(entry)
            elif line == "":
                return None
        return None

    def until(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.next(deadline - time.monotonic())
            if entry is not None and entry.get("stage") != "hello" and predicate(entry):
                return entry
        raise AssertionError(f"no matching stream entry; got {self.entries}")

    def close(self) -> None:
        self.conn.close()


BASE_CONFIG: dict[str, Any] = {
    "sources": [{"id": "web", "key": "dk_test_web"}],
    "integrations": [
        {
            "id": "exactag-config",
            "vendor": "exactag",
            "preset": "default",
            "consent": ["marketing"],
            "settings": {"campaign_code": "EXACTAG-CAMPAIGN-SECRET-0001-abcd"},
            "endpoint": "http://127.0.0.1:9/s2s/pi.ashx",
            "enabled": False,
        }
    ],
    "delivery": {"initial_backoff": "200ms", "max_attempts": 3},
    # the tests add integrations through the API pointing at loopback vendor stand-ins
    "management": {"allow_private_endpoints": True},
}


