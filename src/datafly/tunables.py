"""The environment variables that tune a running server (``DATAFLY_*``), read and checked in one
place. They are not config keys: they choose how this process runs, not what it delivers (see
docs/config.md, "Environment variables"). A value that is not allowed is an error at start, with
the variable's name, never a value pasted into SQL.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from datafly.errors import ConfigError

__all__ = ["Tunables", "tunables"]

_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True)
class Tunables:
    home: str = "./.datafly"  # DATAFLY_HOME
    log_level: str = "INFO"  # DATAFLY_LOG_LEVEL
    sqlite_synchronous: str = "FULL"  # DATAFLY_SQLITE_SYNCHRONOUS
    processor_process: bool = False  # DATAFLY_PROCESSOR=process
    inbox_fsync_inline: bool = False  # DATAFLY_INBOX_FSYNC=inline
    switch_interval: float = 0.0005  # DATAFLY_SWITCH_INTERVAL, seconds (CPython's GIL switch interval)


def tunables(env: Mapping[str, str] | None = None) -> Tunables:
    """The tunables of this process, from ``env`` (default: the environment)."""
    env = os.environ if env is None else env
    problems: list[str] = []
    synchronous = env.get("DATAFLY_SQLITE_SYNCHRONOUS", "FULL").strip().upper() or "FULL"
    if synchronous not in _SYNCHRONOUS:
        problems.append(f"DATAFLY_SQLITE_SYNCHRONOUS: expected one of {', '.join(_SYNCHRONOUS)}, got {synchronous!r}")
    level = env.get("DATAFLY_LOG_LEVEL", "INFO").strip().upper() or "INFO"
    if level not in _LEVELS:
        problems.append(f"DATAFLY_LOG_LEVEL: expected one of {', '.join(_LEVELS)}, got {level!r}")
    processor = env.get("DATAFLY_PROCESSOR", "").strip().lower()
    if processor not in ("", "process", "inline"):
        problems.append(f"DATAFLY_PROCESSOR: expected 'process' or nothing, got {processor!r}")
    fsync = env.get("DATAFLY_INBOX_FSYNC", "").strip().lower()
    if fsync not in ("", "inline", "helper"):
        problems.append(f"DATAFLY_INBOX_FSYNC: expected 'inline' or nothing, got {fsync!r}")
    interval = 0.0005
    raw_interval = env.get("DATAFLY_SWITCH_INTERVAL", "").strip()
    if raw_interval:
        try:
            interval = float(raw_interval)
            if not 0 < interval <= 1:
                raise ValueError
        except ValueError:
            problems.append(f"DATAFLY_SWITCH_INTERVAL: expected seconds between 0 and 1, got {raw_interval!r}")
            interval = 0.0005
    if problems:
        raise ConfigError(problems)
    return Tunables(
        home=os.path.abspath(env.get("DATAFLY_HOME", "./.datafly") or "./.datafly"),
        log_level=level,
        sqlite_synchronous=synchronous,
        processor_process=processor == "process",
        inbox_fsync_inline=fsync == "inline",
        switch_interval=interval,
    )
