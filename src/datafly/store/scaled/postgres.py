"""PostgreSQL half of the scale-out backend: management documents, dead letters, delivery log.

None of it is on the path of an event: the gateway, processor and delivery workers write only
to Redis, and dead letters and log rows reach PostgreSQL through the Redis sink stream
(:meth:`PostgresStore.insert_sink` copies them, idempotently by sink id). So PostgreSQL may be
down for a while without stopping ingestion or delivery; only management reads and writes fail
(with :class:`StorageUnavailable`) until it is back. The pool reconnects by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import logging
import re
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import orjson

from datafly.errors import StorageUnavailable
from datafly.store.rows import DEAD_LETTER_COLUMNS, LOG_COLUMNS, dead_letter_view, log_view, parse_ids

log = logging.getLogger("datafly.store.postgres")

# Failures that mean "the server cannot be reached right now" rather than a bug.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, cannot connect now
)
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_MIGRATION_LOCK = 0x64_61_74_61_66_6C_79  # pg_advisory_lock key: "datafly"
@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def manual(self) -> bool:
        return self.sql.lstrip().startswith("-- datafly: manual")


def migrations() -> list[Migration]:
    found = []
    for entry in importlib.resources.files("datafly.store.scaled.pg_migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


def describe(url: str) -> str:
    """The server's address without credentials, for messages."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"


@dataclass(frozen=True)
class ReplayRow:
    integration_id: str
    message_id: str
    mapping: str
    first_in_session: bool
    event: bytes
    outcome: str = ""


class PostgresStore:
    def __init__(self, url: str, pool_size: int = 4, timeout: float = 5.0) -> None:
        self.url = url
        self.where = describe(url)
        self.pool_size = pool_size
        self.timeout = timeout
        self._pool: asyncpg.Pool | None = None
        self._schema_ready = False
        self._down_since: float | None = None

    # connection ----------------------------------------------------------------------------
    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                self.url, min_size=0, max_size=self.pool_size, timeout=self.timeout, command_timeout=30
            )
        return self._pool

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; unreachable servers become :class:`StorageUnavailable`."""
        try:
            pool = await self._get_pool()
            async with pool.acquire(timeout=self.timeout) as conn:
                yield conn
        except CONNECTION_ERRORS as exc:
            self._went_down(exc)
            raise StorageUnavailable(f"PostgreSQL at {self.where} is unreachable: {exc}") from exc
        self._came_back()

    def _went_down(self, exc: BaseException) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.error("PostgreSQL at %s is unreachable: %s: %s", self.where, type(exc).__name__, exc)

    def _came_back(self) -> None:
        if self._down_since is not None:
            log.warning(
                "PostgreSQL at %s is reachable again after %.1fs",
                self.where,
                time.monotonic() - self._down_since,
            )
            self._down_since = None

    async def run(self, fn: Any, *args: Any) -> Any:
        """``fn(conn, *args)`` with one retry: a pooled connection may have died with a restart."""
        for attempt in (1, 2):
            try:
                async with self.connection() as conn:
                    if not self._schema_ready:
                        await self._migrate(conn, manual=False)
                    return await fn(conn, *args)
            except StorageUnavailable:
                if attempt == 2:
                    raise
                await asyncio.sleep(0.05)
        raise AssertionError("unreachable")

    async def ping(self) -> bool:
        try:
            async with self.connection() as conn:
                await conn.fetchval("SELECT 1")
            return True
        except StorageUnavailable:
            return False

    @property
    def reachable(self) -> bool:
        return self._down_since is None

    async def close(self) -> None:
        if self._pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._pool.close(), 5)
            self._pool = None

    # migrations ----------------------------------------------------------------------------
    async def migrate(self, manual: bool = True) -> int:
        """Apply the migrations not applied yet (under an advisory lock); returns the version."""
        async with self.connection() as conn:
            return await self._migrate(conn, manual)

    async def _migrate(self, conn: asyncpg.Connection, manual: bool) -> int:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            applied = {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            version = max(applied, default=0)
            for migration in migrations():
                if migration.version in applied:
                    continue
                if migration.manual and not manual:
                    log.warning("migration %s waits for `datafly migrate`", migration.name)
                    return version
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                        migration.version,
                        migration.name,
                    )
                log.info("applied migration %s", migration.name)
                version = migration.version
            self._schema_ready = True
            return version
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)

    # the sink: dead letters and log rows copied from Redis ------------------------------------
    async def insert_sink(self, logs: Sequence[dict[str, Any]], dead: Sequence[dict[str, Any]]) -> None:
        async def insert(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                if logs:
                    await conn.executemany(
                        "INSERT INTO delivery_log (sink_id, at, integration_id, message_ids, outcome, reason,"
                        " request, status, response, latency_ms, attempt)"
                        " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11) ON CONFLICT (sink_id) DO NOTHING",
                        [
                            (
                                r["sink_id"], float(r["at"]), r["integration_id"], list(r["message_ids"]),
                                r["outcome"], r["reason"], r["request"], r["status"], r["response"],
                                r["latency_ms"], int(r["attempt"]),
                            )
                            for r in logs
                        ],
                    )  # fmt: skip
                if dead:
                    await conn.executemany(
                        "INSERT INTO dead_letters (sink_id, integration_id, message_id, mapping, first_in_session,"
                        " event, attempts, outcome, reason, last_request, enqueued_at, created_at)"
                        " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12) ON CONFLICT (sink_id) DO NOTHING",
                        [
                            (
                                d["sink_id"], d["integration_id"], d["message_id"], d["mapping"],
                                bool(d["first_in_session"]), d["event"].encode(), int(d["attempts"]),
                                d["outcome"], d["reason"], d["last_request"], float(d["enqueued_at"]),
                                float(d["created_at"]),
                            )
                            for d in dead
                        ],
                    )  # fmt: skip

        await self.run(insert)

    # dead letters and the delivery log --------------------------------------------------------
    async def dead_letters(self, integration_id: str | None, limit: int) -> list[dict[str, Any]]:
        async def load(conn: asyncpg.Connection) -> list[dict[str, Any]]:
            query = f"SELECT {', '.join(DEAD_LETTER_COLUMNS)} FROM dead_letters"
            params: list[Any] = []
            if integration_id:
                query += " WHERE integration_id=$1"
                params.append(integration_id)
            query += f" ORDER BY id DESC LIMIT ${len(params) + 1}"
            return [dead_letter_view(row) for row in await conn.fetch(query, *params, limit)]

        result: list[dict[str, Any]] = await self.run(load)
        return result

    @staticmethod
    def _dead_filter(ids: Sequence[str] | None, integration_id: str | None) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if ids is not None:
            params.append(parse_ids(ids))
            clauses.append(f"id = ANY(${len(params)}::bigint[])")
        if integration_id:
            params.append(integration_id)
            clauses.append(f"integration_id=${len(params)}")
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    @contextlib.asynccontextmanager
    async def taking_dead_letters(
        self, ids: Sequence[str] | None, integration_id: str | None
    ) -> AsyncIterator[list[ReplayRow]]:
        """Lock and yield the chosen dead letters; they are deleted when the block succeeds."""
        where, params = self._dead_filter(ids, integration_id)
        async with self.connection() as conn, conn.transaction():
            rows = await conn.fetch(
                f"DELETE FROM dead_letters{where}"
                " RETURNING integration_id, message_id, mapping, first_in_session, event, outcome",
                *params,
            )
            yield [ReplayRow(r[0], r[1], r[2], bool(r[3]), bytes(r[4]), r[5]) for r in rows]

    async def discard_dead_letters(self, ids: Sequence[str] | None, integration_id: str | None) -> int:
        where, params = self._dead_filter(ids, integration_id)

        async def discard(conn: asyncpg.Connection) -> int:
            status = await conn.execute(f"DELETE FROM dead_letters{where}", *params)
            return int(status.split()[-1])

        count: int = await self.run(discard)
        return count

    async def delivery_log(
        self, integration_id: str | None, message_id: str | None, limit: int
    ) -> list[dict[str, Any]]:
        async def load(conn: asyncpg.Connection) -> list[dict[str, Any]]:
            clauses: list[str] = []
            params: list[Any] = []
            if integration_id:
                params.append(integration_id)
                clauses.append(f"integration_id=${len(params)}")
            if message_id:
                params.append([message_id])
                clauses.append(f"message_ids @> ${len(params)}::text[]")
            where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
            params.append(limit)
            rows = await conn.fetch(
                f"SELECT {', '.join(LOG_COLUMNS)} FROM delivery_log{where} ORDER BY id DESC LIMIT ${len(params)}",
                *params,
            )
            return [log_view(row) for row in rows]

        result: list[dict[str, Any]] = await self.run(load)
        return result

    async def prune(self, log_before: float) -> None:
        async def prune(conn: asyncpg.Connection) -> None:
            await conn.execute("DELETE FROM delivery_log WHERE at < $1", log_before)

        await self.run(prune)

    # management documents ----------------------------------------------------------------------
    async def list_documents(self, kind: str) -> list[dict[str, Any]]:
        async def load(conn: asyncpg.Connection) -> list[dict[str, Any]]:
            rows = await conn.fetch("SELECT data::text FROM documents WHERE kind=$1 ORDER BY id", kind)
            return [orjson.loads(r[0]) for r in rows]

        result: list[dict[str, Any]] = await self.run(load)
        return result

    async def get_document(self, kind: str, doc_id: str) -> dict[str, Any] | None:
        async def load(conn: asyncpg.Connection) -> dict[str, Any] | None:
            data = await conn.fetchval(
                "SELECT data::text FROM documents WHERE kind=$1 AND id=$2", kind, doc_id
            )
            return None if data is None else dict(orjson.loads(data))

        result: dict[str, Any] | None = await self.run(load)
        return result

    async def put_document(self, kind: str, doc_id: str, document: dict[str, Any]) -> None:
        data = orjson.dumps({**document, "id": doc_id}).decode()

        async def put(conn: asyncpg.Connection) -> None:
            await conn.execute(
                "INSERT INTO documents (kind, id, data, updated_at) VALUES ($1, $2, $3::jsonb, $4)"
                " ON CONFLICT (kind, id) DO UPDATE SET data=EXCLUDED.data, updated_at=EXCLUDED.updated_at",
                kind,
                doc_id,
                data,
                time.time(),
            )

        await self.run(put)

    async def delete_document(self, kind: str, doc_id: str) -> bool:
        async def delete(conn: asyncpg.Connection) -> bool:
            status: str = await conn.execute("DELETE FROM documents WHERE kind=$1 AND id=$2", kind, doc_id)
            return status.endswith(" 1")

        result: bool = await self.run(delete)
        return result
