"""The pure parts of management: secrets, login throttling, health figures, redaction, mappings."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import stat
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from datafly.config import Integration
from datafly.destinations.base import mask_text
from datafly.destinations.exactag.destination import ExactagDestination
from datafly.destinations.rokt.destination import RoktDestination
from datafly.destinations.rules import header_problems, url_problem
from datafly.destinations.webhook.destination import WebhookDestination
from datafly.management.auth import LoginThrottle
from datafly.management.endpoints import endpoint_problem, is_internal
from datafly.management.health import percentile, summarise
from datafly.management.integration_store import is_masked, overrides_for
from datafly.management.preview import preview_request
from datafly.management.redact import redact
from datafly.management.secrets import SecretBox, SecretUnreadable
from datafly.management.web import ApiError


def test_secret_box_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    box = SecretBox.open(str(tmp_path), env={})
    token = box.encrypt("rsec-secret")
    assert token.startswith("gAAAA") and "rsec-secret" not in token
    key_file = tmp_path / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert SecretBox.open(str(tmp_path), env={}).decrypt(token) == "rsec-secret"
    os.chmod(key_file, 0o644)
    SecretBox.open(str(tmp_path), env={})
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_secret_box_key_from_environment(tmp_path: Path) -> None:
    from cryptography.fernet import Fernet

    fernet_key = Fernet.generate_key().decode()
    box = SecretBox.open(str(tmp_path), env={"DATAFLY_SECRET_KEY": fernet_key})
    assert not (tmp_path / "secret.key").exists()
    token = box.encrypt("x")
    assert SecretBox.open(str(tmp_path), env={"DATAFLY_SECRET_KEY": fernet_key}).decrypt(token) == "x"
    phrase = SecretBox.open(str(tmp_path), env={"DATAFLY_SECRET_KEY": "a passphrase"})
    assert SecretBox.open(str(tmp_path), env={"DATAFLY_SECRET_KEY": "a passphrase"}).decrypt(phrase.encrypt("y")) == "y"
    with pytest.raises(SecretUnreadable):
        phrase.decrypt(token)


def test_login_throttle_counts_failures_per_key_in_a_window() -> None:
    now = [0.0]
    throttle = LoginThrottle(limit=3, window=60, clock=lambda: now[0])
    for _ in range(3):
        assert throttle.retry_after("client:a") == 0
        throttle.failed("client:a", "user:admin")
    assert throttle.retry_after("client:a") == 60
    assert throttle.retry_after("client:b", "user:admin") == 60
    assert throttle.retry_after("client:b") == 0
    now[0] = 61
    assert throttle.retry_after("client:a", "user:admin") == 0


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile([5.0], 99) == 5


def test_summarise_counts_events_of_the_window() -> None:
    rows = [
        {"at": 100, "outcome": "done", "message_ids": ["a", "b"], "status": 200, "latency_ms": 10},
        {"at": 101, "outcome": "retry", "message_ids": ["c"], "status": 503, "latency_ms": 30},
        {"at": 102, "outcome": "auth_failed", "message_ids": ["d"], "status": 401, "latency_ms": 20, "reason": "401"},
        {"at": 103, "outcome": "filtered", "message_ids": ["e"]},
        {"at": 104, "outcome": "partial", "message_ids": ["f", "g", "h"], "status": 200, "latency_ms": 40},
        {"at": 105, "outcome": "skipped", "message_ids": ["i"]},
        {"at": 1, "outcome": "done", "message_ids": ["old"], "status": 200, "latency_ms": 999},
    ]
    dead = [{"message_id": "g", "created_at": 104}, {"message_id": "d", "created_at": 102},
            {"message_id": "old", "created_at": 1}]
    figures = summarise(sorted(rows, key=lambda r: -r["at"]), dead, since=50)
    assert figures["sent"] == 4 and figures["failed"] == 3 and figures["retrying"] == 1
    assert figures["filtered"] == 1 and figures["dead_lettered"] == 2
    assert figures["p50_ms"] == 20 and figures["p99_ms"] == 40 and figures["requests"] == 4
    assert figures["last_error"]["outcome"] == "skipped"


def test_redact_removes_raw_email_and_phone_and_masks_secrets() -> None:
    digest = "a" * 64
    value = {
        "traits": {"email": "jane@example.com", "phone": "+447700900123", "email_sha256": digest},
        "context": {"traits": {"email": digest}},
        "note": "write to jane@example.com",
        "url": "https://x/?campaign=CAMPAIGN-SECRET-01",
        "list": [{"mobile": "07700 900123"}],
    }
    shown = redact(value, ["CAMPAIGN-SECRET-01"])
    assert shown["traits"] == {"email": "[redacted]", "phone": "[redacted]", "email_sha256": digest}
    assert shown["context"]["traits"]["email"] == digest
    assert shown["note"] == "write to [redacted email]"
    assert "CAMPAIGN-SECRET-01" not in shown["url"] and "CAMP****" in shown["url"]
    assert shown["list"] == [{"mobile": "[redacted]"}]


def test_overrides_turn_a_preset_into_the_wanted_mapping() -> None:
    preset = {"page": "pageview", "Order Completed": "conversion"}
    assert overrides_for(preset, preset) == {}
    assert overrides_for(preset, {"page": "pv", "Signed Up": "lead"}) == {
        "Order Completed": None, "page": "pv", "Signed Up": "lead"}
    assert is_masked("rsec****") and is_masked("") and not is_masked("rsec-new")


# issue 14 ------------------------------------------------------------------------------------------


def test_login_throttle_keeps_its_memory_bounded() -> None:
    now = [0.0]
    throttle = LoginThrottle(limit=2, window=60, clock=lambda: now[0], max_keys=10)
    for i in range(100):
        now[0] += 0.01
        throttle.failed(f"client-{i}")
    assert len(throttle._failures) <= 10
    assert throttle.retry_after("client-99") == 0  # one failure: still allowed
    throttle.failed("client-99")
    assert throttle.retry_after("client-99") > 0
    for _ in range(100):
        throttle.failed("client-99")
    assert len(throttle._failures["client-99"]) == 2  # only the last `limit` failures are kept


def test_masking_never_rewrites_a_short_secret_inside_words() -> None:
    # a one-letter secret (only an integration stored before the rules can hold one)
    assert mask_text("exactag tag t", ["t"]) == "exactag tag ****"
    assert redact({"url": "https://m.exactag.com/s2s/pi.ashx?campaign=t&tag=1"}, ["t"]) == {
        "url": "https://m.exactag.com/s2s/pi.ashx?campaign=****&tag=1"}
    # a secret of 8 characters or more is masked wherever it appears whole, raw or URL-encoded
    secret = "Xq7+Lr2/Ka9mWp4TzE1vBn6hUc3sYd=="
    text = f"campaign={urllib.parse.quote(secret, safe='')}&x=1 echo:{secret}. in{secret}side"
    shown = mask_text(text, [secret])
    assert secret not in shown and urllib.parse.quote(secret, safe="") not in shown
    assert shown == "campaign=Xq7+****&x=1 echo:Xq7+****. inXq7+****side"
    assert mask_text("rsec-pii and rsec-piii", ["rsec-pii"]) == "**** and ****i"  # whole secret only
    assert mask_text("nothing here", ["rsec-pii"]) == "nothing here"


def test_setting_rules_of_the_vendor_schemas() -> None:
    exactag = {f.name: f for f in ExactagDestination.settings_schema}["campaign_code"]
    assert exactag.problems("c" * 32) == [] and exactag.problems("Xq7+Lr2/Ka9mWp4TzE1vBn6hUc3sYd==") == []
    assert exactag.problems("t")[0].startswith("too short: at least 32 characters")
    assert exactag.problems("c" * 31 + " ")[0].startswith("not in the expected format")
    rokt = {f.name: f for f in RoktDestination.settings_schema}
    assert rokt["api_key"].problems("rpub-pii") == [] and rokt["api_secret"].problems("rsec-pii") == []
    assert rokt["api_key"].problems("rsec-swapped")[0].startswith("not in the expected format")
    assert rokt["api_secret"].problems("rsec-\r\n1234")[0].startswith("must not contain control characters")
    webhook = {f.name: f for f in WebhookDestination.settings_schema}
    assert webhook["secret"].problems("1234567") == ["too short: at least 8 characters"]
    assert webhook["secret"].problems("12345678") == []
    assert webhook["url"].problems("https://hooks.example.com/x?y=1") == []
    assert webhook["headers"].problems({"X-Api-Key": "k", "X-Num": 5}) == []
    assert len(webhook["headers"].problems({"Host": "h", "TE": "trailers", "X-A": "a\nb", "a b": "c"})) == 4


def test_url_rules() -> None:
    assert url_problem("http://93.184.216.34:8080/a?b=c#d") is None
    assert url_problem("HTTPS://Example.COM") is None
    for bad in ("file:///etc/passwd", "gopher://h/", "javascript:alert(1)", "data:text/html,x", "http:/h", "h/x",
                "http://", "http://h\r\n/x", "http://h/\x00", "http://h/ x", "http://h\\@evil/", "http://h:0x50/",
                "http://h:65536/", "http://é.example/", 5, None):
        assert url_problem(bad) is not None, bad


def test_header_rules() -> None:
    assert header_problems({"X-Signature-Version": "2", "Authorization": "Bearer x\tmore"}) == []
    assert header_problems(["X-A"]) and header_problems({str(i): "v" for i in range(51)})
    for name in ("Host", "content-length", "Transfer-Encoding", "Connection", "Keep-Alive", "Upgrade", "Expect"):
        assert header_problems({name: "x"}) == [f"{name}: cannot be set here: the HTTP client sets it (it frames the request)"]
    assert header_problems({"X-A": "x" * 8193}) == ["X-A: at most 8192 characters"]
    assert header_problems({":authority": "x"})[0].startswith("':authority': a header name is")


def test_endpoint_problem_resolves_names_and_refuses_internal_addresses() -> None:
    def problem(url: str) -> str | None:
        return asyncio.run(endpoint_problem(url))

    for url in ("http://127.0.0.1/", "http://localhost:8080/", "http://169.254.169.254/", "http://[::1]/",
                "http://[::ffff:10.0.0.1]/", "http://[2002:a00:1::]/", "http://10.0.0.1/", "http://0/"):
        found = problem(url)
        assert found is not None and "internal address" in found, (url, found)
    assert problem("http://93.184.216.34/hook") is None
    assert problem("https://[2606:4700:4700::1111]/") is None
    assert "cannot be resolved" in (problem("http://no-such-host.invalid/") or "")
    assert is_internal(ipaddress.ip_address("100.64.1.1")) and not is_internal(ipaddress.ip_address("8.8.8.8"))


def test_the_preview_turns_a_formatter_error_into_422_with_the_secret_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "rsec-preview-secret-1"
    integration = Integration("rokt", "rokt", "default", {"account_id": "1", "api_key": "rpub-key-1",
                                                        "api_secret": secret}, consent=())

    def broken(self: Any, item: Any, settings: Any, now: float | None = None) -> Any:
        raise ValueError(f"cannot encode {settings['api_secret']}")

    monkeypatch.setattr(RoktDestination, "format_item", broken)
    sample = {"type": "track", "event": "Order Completed", "properties": {"order_id": "1"},
              "context": {"page": {"url": "https://shop.example/?rclid=abc"}}}
    with pytest.raises(ApiError) as raised:
        preview_request(integration, integration.settings, sample)
    assert raised.value.status == 422
    assert "ValueError: cannot encode rsec****" in raised.value.message and secret not in raised.value.message
    with pytest.raises(ApiError) as refused:
        preview_request(integration, integration.settings, {"type": "track"})
    assert refused.value.status == 400 and "event name" in refused.value.message
