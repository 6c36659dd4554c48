"""The gateway through a real server: every ingestion form, keys, CORS, cookie, bad input."""

from __future__ import annotations

import gzip
import hashlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from http_client import basic, get, post, request
from standins import WebhookStandIn

KEY = "dk_test_web"
OPEN_KEY = "dk_test_open"


def config(hook_url: str, **gateway: Any) -> dict[str, Any]:
    return {
        "sources": [
            {"id": "web", "key": KEY, "origins": ["http://shop.example"]},
            {"id": "open", "key": OPEN_KEY},
        ],
        "integrations": [
            {
                "id": "hook",
                "vendor": "webhook",
                "preset": "all",
                "settings": {"url": hook_url, "batch_size": 50},
            }
        ],
        "gateway": {"max_body_bytes": 64 * 1024, "max_batch_events": 20, **gateway},
        "delivery": {"initial_backoff": "100ms"},
    }


@pytest.fixture
def hook() -> Iterator[WebhookStandIn]:
    with WebhookStandIn().running_in_thread() as stand_in:
        yield stand_in


@pytest.fixture
def server(serve: Any, hook: WebhookStandIn) -> Any:
    return serve(config(hook.url))


def delivered_ids(hook: WebhookStandIn, expected: set[str], timeout: float = 10.0) -> set[str]:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = {str(e.get("messageId")) for e in hook.events()}
        if expected <= got:
            return got
        time.sleep(0.05)
    return {str(e.get("messageId")) for e in hook.events()}


def mid() -> str:
    return uuid.uuid4().hex


def test_every_key_form_and_route_is_accepted(server: Any, hook: WebhookStandIn) -> None:
    ids = [mid() for _ in range(8)]
    url = server.url
    answers = [
        post(
            f"{url}/v1/batch", {"batch": [{"type": "track", "event": "A", "messageId": ids[0]}]}, basic(KEY)
        ),
        post(
            f"{url}/v1/batch",
            {"batch": [{"type": "page", "messageId": ids[1]}]},
            {"Authorization": f"Bearer {KEY}"},
        ),
        post(
            f"{url}/v1/batch",
            {"writeKey": KEY, "batch": [{"type": "identify", "userId": "u1", "messageId": ids[2]}]},
        ),
        post(
            f"{url}/v1/batch?key={KEY}", {"batch": [{"type": "group", "groupId": "g1", "messageId": ids[3]}]}
        ),
        post(f"{url}/v1/t?key={KEY}", {"event": "Clicked", "messageId": ids[4]}),
        post(f"{url}/v1/p?key={KEY}", {"name": "Home", "messageId": ids[5]}),
        post(f"{url}/v1/i?key={KEY}", {"userId": "u2", "traits": {"plan": "pro"}, "messageId": ids[6]}),
        post(f"{url}/v1/g?key={KEY}", {"groupId": "g2", "message_id": ids[7]}),
    ]
    assert [a.status for a in answers] == [200] * 8, [a.body for a in answers]
    assert all(a.json()["success"] is True for a in answers)
    got = delivered_ids(hook, set(ids))
    assert set(ids) <= got
    by_id = {e["messageId"]: e for e in hook.events()}
    assert [by_id[i]["type"] for i in ids] == [
        "track",
        "page",
        "identify",
        "group",
        "track",
        "page",
        "identify",
        "group",
    ]
    assert all(by_id[i]["sourceId"] == "web" for i in ids)


def test_gzip_body_and_snake_case_fields(server: Any, hook: WebhookStandIn) -> None:
    m = mid()
    body = gzip.compress(
        b'{"batch": [{"type": "track", "event": "Zipped", "message_id": "%s", "user_id": "u-9",'
        b' "anonymous_id": "anon-9", "context": {"user_agent": "UA/1"}}]}' % m.encode()
    )
    answer = post(f"{server.url}/v1/batch", body, {**basic(KEY), "Content-Encoding": "gzip"})
    assert answer.status == 200, answer.body
    delivered_ids(hook, {m})
    event = next(e for e in hook.events() if e["messageId"] == m)
    assert event["userId"] == "u-9" and event["anonymousId"] == "anon-9"
    assert event["context"]["userAgent"] == "UA/1"


def test_unknown_or_missing_key_is_401(server: Any) -> None:
    event = {"batch": [{"type": "track", "event": "A"}]}
    assert post(f"{server.url}/v1/batch", event, basic("wrong")).status == 401
    assert post(f"{server.url}/v1/batch", event, {"Authorization": "Bearer wrong"}).status == 401
    assert post(f"{server.url}/v1/batch?key=wrong", event).status == 401
    missing = post(f"{server.url}/v1/batch", event)
    assert missing.status == 401 and "key" in missing.json()["error"]


@pytest.mark.parametrize(
    ("body", "headers", "status", "words"),
    [
        (b'{"batch": [', {}, 400, "malformed JSON"),
        (b"[1, 2]", {}, 400, "JSON object"),
        (b'{"batch": [{"type": "bogus"}]}', {}, 400, "unknown event type"),
        (b'{"batch": [{"type": "track"}]}', {}, 400, "event name"),
        (b'{"batch": ["not an event"]}', {}, 400, "JSON object"),
        (b'{"batch": [{"type": "track", "event": "\xff\xfe"}]}', {}, 400, "malformed JSON"),
        (b'{"batch": [{"type": "track", "event": "A", "timestamp": "yesterday"}]}', {}, 400, "timestamp"),
        (b'{"batch": [{"type": "track", "event": "A", "properties": [1]}]}', {}, 400, "properties"),
        (b'{"batch": []}', {}, 400, "empty"),
        (b"x" * (65 * 1024), {}, 413, "larger than"),
        (gzip.compress(b" " * (200 * 1024)), {"Content-Encoding": "gzip"}, 413, "larger than"),
        (b"not gzip", {"Content-Encoding": "gzip"}, 400, "gzip"),
    ],
    ids=[
        "truncated",
        "array",
        "unknown-type",
        "no-event-name",
        "non-object-event",
        "invalid-utf8",
        "bad-timestamp",
        "bad-properties",
        "empty-batch",
        "oversized",
        "gzip-bomb",
        "bad-gzip",
    ],
)
def test_bad_input_is_refused_clearly(
    server: Any, hook: WebhookStandIn, body: bytes, headers: dict[str, str], status: int, words: str
) -> None:
    answer = post(f"{server.url}/v1/batch", body, {**basic(KEY), **headers})
    assert answer.status == status, answer.body
    assert words in answer.json()["error"]
    # the server keeps serving and a good request right after is delivered
    good = mid()
    assert post(f"{server.url}/v1/t?key={KEY}", {"event": "After", "messageId": good}).status == 200
    assert good in delivered_ids(hook, {good})


def test_too_many_events_is_refused_and_a_bad_event_refuses_the_whole_request(
    server: Any, hook: WebhookStandIn
) -> None:
    many = {"batch": [{"type": "track", "event": "A"} for _ in range(21)]}
    answer = post(f"{server.url}/v1/batch", many, basic(KEY))
    assert answer.status == 413 and "too many events" in answer.json()["error"]
    good, bad = mid(), mid()
    mixed = {"batch": [{"type": "track", "event": "A", "messageId": bad}, {"type": "nope"}]}
    answer = post(f"{server.url}/v1/batch", mixed, basic(KEY))
    assert answer.status == 400 and "batch[1]" in answer.json()["error"]
    assert post(f"{server.url}/v1/t?key={KEY}", {"event": "B", "messageId": good}).status == 200
    got = delivered_ids(hook, {good})
    assert good in got and bad not in got


def test_cookie_is_set_once_and_used_as_anonymous_id(server: Any, hook: WebhookStandIn) -> None:
    first = post(f"{server.url}/v1/t?key={KEY}", {"event": "A", "messageId": mid()})
    cookie = first.header("Set-Cookie") or ""
    assert cookie.startswith("_dfid=")
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "path", "max-age", "samesite"} <= attributes
    assert "samesite=lax" in cookie.lower() and "secure" not in attributes  # plain http here
    max_age = int(cookie.lower().split("max-age=")[1].split(";")[0])
    assert 390 * 86400 <= max_age <= 400 * 86400
    visitor = cookie.split(";")[0].split("=", 1)[1]
    assert first.json()["anonymousId"] == visitor
    second_id = mid()
    second = post(
        f"{server.url}/v1/t?key={KEY}", {"event": "B", "messageId": second_id}, {"Cookie": f"_dfid={visitor}"}
    )
    assert second.status == 200 and second.header("Set-Cookie") is None
    delivered_ids(hook, {second_id})
    event = next(e for e in hook.events() if e["messageId"] == second_id)
    assert event["anonymousId"] == visitor


def test_secure_cookie_behind_a_trusted_https_proxy_and_forwarded_ip(
    serve: Any, hook: WebhookStandIn
) -> None:
    server = serve(config(hook.url, trusted_proxies=["127.0.0.1/32"]))
    m = mid()
    answer = post(
        f"{server.url}/v1/t?key={KEY}",
        {"event": "A", "messageId": m},
        {
            "X-Forwarded-For": "198.51.100.7, 127.0.0.1",
            "X-Forwarded-Proto": "https",
            "User-Agent": "Shopper/1.0",
        },
    )
    assert answer.status == 200
    assert "Secure" in (answer.header("Set-Cookie") or "")
    delivered_ids(hook, {m})
    event = next(e for e in hook.events() if e["messageId"] == m)
    assert event["context"]["ip"] == "198.51.100.7"
    assert event["context"]["userAgent"] == "Shopper/1.0"


def test_forwarded_for_is_ignored_from_untrusted_peers(server: Any, hook: WebhookStandIn) -> None:
    m = mid()
    post(f"{server.url}/v1/t?key={KEY}", {"event": "A", "messageId": m}, {"X-Forwarded-For": "198.51.100.7"})
    delivered_ids(hook, {m})
    event = next(e for e in hook.events() if e["messageId"] == m)
    assert event["context"]["ip"] == "127.0.0.1"


def test_cors_allowlist(server: Any) -> None:
    event = {"event": "A"}
    allowed = post(f"{server.url}/v1/t?key={KEY}", event, {"Origin": "http://shop.example"})
    assert allowed.status == 200
    assert allowed.header("Access-Control-Allow-Origin") == "http://shop.example"
    assert allowed.header("Access-Control-Allow-Credentials") == "true"
    denied = post(f"{server.url}/v1/t?key={KEY}", event, {"Origin": "http://evil.example"})
    assert denied.status == 403 and denied.header("Access-Control-Allow-Origin") is None
    preflight = request(
        "OPTIONS",
        f"{server.url}/v1/batch?key={KEY}",
        headers={"Origin": "http://shop.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status == 204
    assert "POST" in (preflight.header("Access-Control-Allow-Methods") or "")
    assert preflight.header("Access-Control-Allow-Origin") == "http://shop.example"
    refused = request(
        "OPTIONS",
        f"{server.url}/v1/batch?key={KEY}",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert refused.status == 403
    # a source without an allowlist takes any origin
    open_answer = post(f"{server.url}/v1/t?key={OPEN_KEY}", event, {"Origin": "http://anywhere.example"})
    assert open_answer.status == 200
    assert open_answer.header("Access-Control-Allow-Origin") == "http://anywhere.example"


def test_email_and_phone_are_hashed_before_storage(serve: Any, hook: WebhookStandIn, tmp_path: Any) -> None:
    cfg = config(hook.url)
    cfg["processing"] = {"phone_region": "GB"}
    server = serve(cfg)
    m = mid()
    email, phone = "  Jane.Doe@Example.com ", "07700 900123"
    answer = post(
        f"{server.url}/v1/i?key={KEY}",
        {"userId": "u1", "traits": {"email": email, "phone": phone}, "messageId": m},
    )
    assert answer.status == 200
    delivered_ids(hook, {m})
    event = next(e for e in hook.events() if e["messageId"] == m)
    assert event["traits"]["email_sha256"] == hashlib.sha256(b"jane.doe@example.com").hexdigest()
    assert event["traits"]["phone_sha256"] == hashlib.sha256(b"+447700900123").hexdigest()
    assert "email" not in event["traits"] and "phone" not in event["traits"]
    raw_forms = [b"Jane.Doe@Example.com", b"jane.doe@example.com", b"7700 900123", b"7700900123"]
    for path in server.home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(form in data for form in raw_forms), path
    assert not any(form.decode() in server.log() for form in raw_forms)
    assert all(form not in r.body for r in hook.requests for form in raw_forms)


def test_health_and_metrics(server: Any) -> None:
    assert get(f"{server.url}/healthz").status == 200
    assert get(f"{server.url}/readyz").json()["ready"] is True
    post(f"{server.url}/v1/t?key={KEY}", {"event": "A"})
    metrics = get(f"{server.url}/metrics").body.decode()
    assert 'datafly_events_accepted_total{source="web"}' in metrics


def test_rate_limit_answers_429_with_retry_after(serve: Any, hook: WebhookStandIn) -> None:
    cfg = config(hook.url)
    cfg["sources"][0]["rate_limit"] = 1
    server = serve(cfg)
    statuses = [post(f"{server.url}/v1/t?key={KEY}", {"event": "A"}).status for _ in range(105)]
    assert statuses.count(200) == 100  # the burst
    assert statuses[-1] == 429
    limited = post(f"{server.url}/v1/t?key={KEY}", {"event": "A"})
    assert limited.status == 429 and int(limited.header("Retry-After") or "0") >= 1


# the visitor cookie and the accepted counter, directly ------------------------------------------
def _ingest(cookie_name: str = "_dfid") -> Any:
    from datafly.config import GatewayConfig, ProcessingConfig, Source
    from datafly.gateway.ingest import Ingest
    from datafly.gateway.sources import SourceIndex
    from datafly.observe import Metrics

    return Ingest(None, SourceIndex([Source("web", KEY)]), GatewayConfig(cookie_name=cookie_name), ProcessingConfig(), Metrics())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"_dfid=abc-123", "abc-123"),
        (b"other=1; _dfid=abc.def_9", "abc.def_9"),
        (b'_dfid="quoted"', "quoted"),
        (b"a=1;   _dfid=spaced  ; b=2", "spaced"),
        (b"x_dfid=not-ours", None),  # another cookie whose name ends like ours
        (b"_dfid=", None),
        (b"_dfid=bad value; _dfid=good", "good"),  # the first valid one
        (b"_dfid=" + b"a" * 129 + b"; _dfid=short", "short"),  # at most 128 characters
        (b"_dfid=" + b"a" * 128, "a" * 128),
        (b"_dfid=a<b>", None),
        (b"_dfidx=1", None),
    ],
)
def test_the_visitor_cookie_is_read_strictly(header: bytes, expected: str | None) -> None:
    assert _ingest().visitor_id({b"cookie": header}) == expected


def test_a_renamed_visitor_cookie_is_read_by_its_own_name() -> None:
    assert _ingest("sid.v").visitor_id({b"cookie": b"_dfid=1; sid.v=mine"}) == "mine"
    assert _ingest("sid.v").visitor_id({b"cookie": b"sidxv=1"}) is None  # the dot is not a wildcard


def test_accepted_events_are_counted_per_source_for_prometheus() -> None:
    from prometheus_client import generate_latest

    ingest = _ingest()
    ingest.metrics.accepted.add("web", 3)
    ingest.metrics.accepted.add("web", 2)
    ingest.metrics.accepted.add("app", 1)
    text = generate_latest(ingest.metrics.registry).decode()
    assert 'datafly_events_accepted_total{source="web"} 5.0' in text
    assert 'datafly_events_accepted_total{source="app"} 1.0' in text
    assert "# TYPE datafly_events_accepted_total counter" in text
