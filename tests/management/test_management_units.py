"""The pure parts of management: secrets, login throttling, health figures, redaction, mappings."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from datafly.management.auth import LoginThrottle
from datafly.management.health import percentile, summarise
from datafly.management.integration_store import is_masked, overrides_for
from datafly.management.redact import redact
from datafly.management.secrets import SecretBox, SecretUnreadable


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
