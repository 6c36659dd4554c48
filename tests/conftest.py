"""Shared fixtures: a real ``datafly serve`` process on a free loopback port."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))


from server_process import ServerProcess


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    """Factory: ``serve(config_dict, env=None, role='all')`` starts a server and returns it."""
    started: list[ServerProcess] = []

    def start(
        config: dict[str, Any] | str,
        env: dict[str, str] | None = None,
        role: str = "all",
        home: Path | None = None,
        wait: bool = True,
    ) -> ServerProcess:
        server = ServerProcess(tmp_path, config, env, role=role, home=home)
        started.append(server)
        return server.start(wait)

    yield start
    for server in started:
        server.stop()
