"""Fixtures of the scale-out tests: real Redis and PostgreSQL servers, backends of both kinds."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from datafly.config import Config
from datafly.store.base import Backend

from .servers import PostgresServer, RedisServer, have_servers, scaled_config, shared_servers

pytestmark = pytest.mark.skipif(not have_servers(), reason="redis-server and postgresql are not installed")


@pytest.fixture
def scaled_urls() -> dict[str, str]:
    """``{"storage": "postgresql://...", "queue": "redis://..."}``: fresh databases on shared servers."""
    if not have_servers():
        pytest.skip("redis-server and postgresql are not installed")
    return scaled_config()


@pytest.fixture
def own_servers(tmp_path: Path) -> Iterator[tuple[RedisServer, PostgresServer]]:
    """A Redis and a PostgreSQL of the test's own, for tests that stop and restart them."""
    if not have_servers():
        pytest.skip("redis-server and postgresql are not installed")
    redis_server = RedisServer().start()
    postgres = PostgresServer().start()
    try:
        yield redis_server, postgres
    finally:
        redis_server.cleanup()
        postgres.cleanup()


def open_backend(kind: str, home: Path, urls: dict[str, str] | None = None) -> Backend:
    if kind == "embedded":
        from datafly.store.embedded.backend import EmbeddedBackend

        return EmbeddedBackend(str(home))
    from datafly.store.scaled.backend import open_scaled_backend

    assert urls is not None
    return open_scaled_backend(Config(storage=urls["storage"], queue=urls["queue"]), str(home))


@pytest.fixture(params=["embedded", "scaled"])
async def backend(request: Any, tmp_path: Path) -> AsyncIterator[Backend]:
    """The same contract tests run against the embedded and the scaled backend."""
    urls = None
    if request.param == "scaled":
        if not have_servers():
            pytest.skip("redis-server and postgresql are not installed")
        urls = scaled_config()
    store = open_backend(request.param, tmp_path / "home", urls)
    await store.start()
    try:
        yield store
    finally:
        await store.close()


__all__ = ["open_backend", "shared_servers"]
