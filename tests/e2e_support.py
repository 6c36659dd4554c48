"""Helpers shared by the end-to-end suites: polling, and reading the embedded store's SQLite files."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def db(home: Path, sql: str, *params: Any, file: str = "datafly.db") -> list[tuple[Any, ...]]:
    """Rows of ``sql`` on the embedded store of a server home (``inbox.db`` holds the inbox)."""
    conn = sqlite3.connect(home / file, timeout=10)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def wait_until(
    check: Callable[[], Any], timeout: float = 10.0, what: str = "condition", every: float = 0.03
) -> Any:
    """The first truthy value of ``check()``, polled every ``every`` seconds until ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"{what} not reached in {timeout}s")
