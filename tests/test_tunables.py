"""The DATAFLY_* environment variables, read and checked in one place (datafly/tunables.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from datafly.errors import ConfigError
from datafly.tunables import tunables


def test_defaults() -> None:
    tuned = tunables({})
    assert (tuned.sqlite_synchronous, tuned.log_level, tuned.processor_process, tuned.inbox_fsync_inline) == (
        "FULL", "INFO", False, False,
    )
    assert tuned.home.endswith(".datafly")


def test_values_are_read_and_normalised() -> None:
    tuned = tunables(
        {"DATAFLY_SQLITE_SYNCHRONOUS": "normal", "DATAFLY_PROCESSOR": "process", "DATAFLY_INBOX_FSYNC": "inline",
         "DATAFLY_LOG_LEVEL": "warning", "DATAFLY_SWITCH_INTERVAL": "0.001", "DATAFLY_HOME": "/tmp/x"}
    )
    assert tuned.sqlite_synchronous == "NORMAL" and tuned.log_level == "WARNING"
    assert tuned.processor_process and tuned.inbox_fsync_inline and tuned.switch_interval == 0.001
    assert tuned.home == "/tmp/x"


@pytest.mark.parametrize(
    "name,value",
    [
        ("DATAFLY_SQLITE_SYNCHRONOUS", "FULL; DROP TABLE queue"),
        ("DATAFLY_LOG_LEVEL", "LOUD"),
        ("DATAFLY_PROCESSOR", "thread"),
        ("DATAFLY_INBOX_FSYNC", "never"),
        ("DATAFLY_SWITCH_INTERVAL", "-1"),
    ],
)
def test_a_bad_value_is_an_error_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        tunables({name: value})
    assert caught.value.problems[0].startswith(f"{name}: ")


def test_serve_refuses_to_start_with_a_bad_value(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("sources: [{id: web, key: dk_x}]\n")
    done = subprocess.run(
        [sys.executable, "-m", "datafly.cli", "serve", "--config", str(config), "--port", "1"],
        env={"DATAFLY_HOME": str(tmp_path / "home"), "DATAFLY_SQLITE_SYNCHRONOUS": "sometimes", "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 1
    assert "DATAFLY_SQLITE_SYNCHRONOUS: expected one of OFF, NORMAL, FULL, EXTRA" in done.stderr
