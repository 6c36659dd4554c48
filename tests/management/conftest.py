"""Fixtures of the management tests: a server with a config-file integration, and a logged-in client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from management_client import BASE_CONFIG, Client, login


@pytest.fixture
def server(serve: Callable[..., Any]) -> Iterator[Any]:
    yield serve(BASE_CONFIG)


@pytest.fixture
def api(server: Any) -> Client:
    return login(server.url)
