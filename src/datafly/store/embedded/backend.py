"""The embedded backend: one SQLite file under ``$DATAFLY_HOME``, one process.

A lock file keeps a second process off the same home. Leases do not outlive the process:
items leased when a process died are due again as soon as the next one starts (leases are kept in
memory, see ``_leases_of``).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from datafly.errors import DataflyError, StorageUnavailable
from datafly.store.base import Backend
from datafly.store.embedded.schema import INBOX_SCHEMA, migrate
from datafly.store.embedded.sqlite import SqliteDatabase, TickCommitter
from datafly.store.home import private_file, private_home
from datafly.store.records import (
    UNPROCESSABLE,
    DeadLetter,
    InboundEvent,
    LogRow,
    NewDelivery,
    QueuedItem,
    Retry,
    Unprocessable,
    inbound_record,
)
from datafly.store.rows import DEAD_LETTER_COLUMNS, LOG_COLUMNS, dead_letter_view, log_view, parse_ids
from datafly.store.signals import LocalSignals
from datafly.visitor import Profile

_QUEUE_COLUMNS = "id, integration_id, message_id, mapping, first_in_session, event, attempts, enqueued_at"


def _item(row: tuple[Any, ...]) -> QueuedItem:
    return QueuedItem(str(row[0]), row[1], row[2], row[3], bool(row[4]), row[5], row[6], row[7])


def _log_params(rows: Sequence[LogRow]) -> list[tuple[Any, ...]]:
    return [
        (
            r.at,
            r.integration_id,
            orjson.dumps(list(r.message_ids)).decode(),
            r.outcome,
            r.reason,
            r.request,
            r.status,
            r.response,
            r.latency_ms,
            r.attempt,
        )
        for r in rows
    ]


_LOG_ROWS = 2_000_000  # the delivery log keeps at most this many rows (and at most 7 days)
_INSERT_LOG = (
    "INSERT INTO delivery_log (at, integration_id, message_ids, outcome, reason, request, status, response,"
    " latency_ms, attempt) VALUES "
)
_PER_STATEMENT = 200  # rows per multi-row statement (each statement step costs a GIL hand-off)


def insert_log(c: sqlite3.Connection, rows: Sequence[LogRow]) -> None:
    """Insert delivery-log rows, many per statement."""
    params = _log_params(rows)
    for start in range(0, len(params), _PER_STATEMENT):
        chunk = params[start : start + _PER_STATEMENT]
        c.execute(_INSERT_LOG + ",".join(["(?,?,?,?,?,?,?,?,?,?)"] * len(chunk)), [v for row in chunk for v in row])


def delete_queued(c: sqlite3.Connection, ids: Sequence[int]) -> None:
    for start in range(0, len(ids), _PER_STATEMENT):
        chunk = ids[start : start + _PER_STATEMENT]
        c.execute(f"DELETE FROM queue WHERE id IN ({','.join('?' * len(chunk))})", chunk)


def synchronous_of(db: SqliteDatabase) -> str:
    return db.synchronous


_INBOX_CACHE_KIB = 2000  # each inbox row is written once and read once: a page cache buys little


class EmbeddedBackend(Backend):
    def __init__(
        self, home: str, synchronous: str = "FULL", requests_in_flight: Callable[[], int] | None = None
    ) -> None:
        self.home = home
        private_home(home)
        for name in ("datafly.db", "inbox.db"):
            private_file(os.path.join(home, name))
        self.db = SqliteDatabase(os.path.join(home, "datafly.db"), synchronous)
        # Accepted requests have a file (and a writer thread) of their own, so the gateway's
        # appends never wait behind the processor's or the workers' transactions.
        self.inbox_db = SqliteDatabase(os.path.join(home, "inbox.db"), synchronous, _INBOX_CACHE_KIB)
        self._lock_fd: int | None = None
        self._inbox: TickCommitter | None = None  # the inbox's writer: the owner of the home only
        self._cursor = 0
        self._signals = LocalSignals()
        self._leases: dict[str, dict[int, float]] = {}
        # called after every append (the processor's process is woken through it, see processor/child.py)
        self.inbound_listener: Callable[[], None] | None = None
        self.requests_in_flight = requests_in_flight  # the gateway's, see TickCommitter

    # lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        fd = os.open(os.path.join(self.home, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise DataflyError(f"another datafly process is using {self.home}") from exc
        self._lock_fd = fd
        self.db.run_sync(migrate)
        self.db.run_sync(
            lambda c: c.execute("UPDATE queue SET leased=0, due_at=? WHERE leased=1", (time.time(),))
        )  # (files written before leases moved to memory; the column is no longer set)
        self._cursor = cursor = self.stored_cursor()

        def prepare_inbox(c: sqlite3.Connection) -> None:
            c.execute(INBOX_SCHEMA)
            c.execute("DELETE FROM inbox WHERE seq <= ?", (cursor,))  # processed before a crash

        self.inbox_db.run_sync(prepare_inbox)
        self.db.start()  # the inbox needs no writer thread: appends commit in the loop (TickCommitter)
        self._inbox = TickCommitter(
            self.inbox_db.path,
            "INSERT INTO inbox (body) VALUES (?)",
            synchronous_of(self.inbox_db),
            self.requests_in_flight,
            _INBOX_CACHE_KIB,
        )

    async def open_for_processor(self) -> None:
        """Open the files as the processor's own process does (``processor/child.py``): the
        server's process owns the home (its lock, the schema, the inbox's writer); this one holds
        ``processor.lock``, reads the inbox and writes ``datafly.db``. Processed inbox rows are
        left for the owner to delete (:meth:`forget_inbound` does nothing here)."""
        fd = os.open(os.path.join(self.home, "processor.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)  # a previous child may still be ending
        self._lock_fd = fd
        self._cursor = self.stored_cursor()
        self.db.start()

    def stored_cursor(self) -> int:
        """The inbox position processed up to, as committed with what it queued."""
        row = self.db.run_sync(lambda c: c.execute("SELECT value FROM meta WHERE key='cursor'").fetchone())
        return int(row[0]) if row else 0

    async def close(self) -> None:
        if self._inbox is not None:
            self._inbox.close()
        await self.inbox_db.close()
        await self.db.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # gateway -----------------------------------------------------------------------------
    async def append_inbound(self, events: Sequence[bytes]) -> None:
        try:
            if self._inbox is None:
                raise StorageUnavailable("this process does not own the inbox")
            await self._inbox.insert([(body,) for body in events])
        except (sqlite3.Error, OSError) as exc:  # (OSError: the fsync that makes it durable failed)
            raise StorageUnavailable(str(exc)) from exc
        self.notify("inbound")
        if self.inbound_listener is not None:
            self.inbound_listener()

    # processor ---------------------------------------------------------------------------
    async def read_inbound(self, limit: int, max_bytes: int | None = None) -> list[InboundEvent]:
        after = self._cursor

        def read(c: sqlite3.Connection) -> list[tuple[int, bytes]]:
            if max_bytes is None:
                return c.execute("SELECT seq, body FROM inbox WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)).fetchall()
            rows: list[tuple[int, bytes]] = []
            size = 0
            for seq, length in c.execute(
                "SELECT seq, length(body) FROM inbox WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
            ):
                if rows and size + length > max_bytes:
                    break
                rows.append((seq, length))
                size += length
            if not rows:
                return []
            return c.execute(
                "SELECT seq, body FROM inbox WHERE seq > ? AND seq <= ? ORDER BY seq", (after, rows[-1][0])
            ).fetchall()

        rows = await self.inbox_db.read(read)
        return [inbound_record(seq, bytes(body)) for seq, body in rows]

    async def load_profiles(self, anonymous_ids: Sequence[str]) -> dict[str, Profile]:
        ids = list(anonymous_ids)

        def load(c: sqlite3.Connection) -> dict[str, Profile]:
            found: dict[str, Profile] = {}
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for aid, data in c.execute(
                    f"SELECT anonymous_id, data FROM profiles WHERE anonymous_id IN ({marks})", chunk
                ):
                    found[aid] = Profile.from_json(aid, data)
            return found

        return await self.db.read(load)

    async def seen_message_ids(self, message_ids: Sequence[str], since: float) -> set[str]:
        ids = list(message_ids)

        def load(c: sqlite3.Connection) -> set[str]:
            seen: set[str] = set()
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                query = f"SELECT message_id FROM seen WHERE message_id IN ({marks}) AND at >= ?"
                seen.update(r[0] for r in c.execute(query, [*chunk, since]))
            return seen

        return await self.db.read(load)

    async def commit_processed(
        self,
        upto: Sequence[InboundEvent],
        profiles: Sequence[Profile],
        message_ids: Sequence[tuple[str, float]],
        deliveries: Sequence[NewDelivery],
        log: Sequence[LogRow],
        unprocessable: Sequence[Unprocessable] = (),
    ) -> None:
        if not upto:
            return
        cursor = max(e.token for e in upto)
        now = time.time()
        profile_rows = [(p.anonymous_id, orjson.dumps(p)) for p in profiles]
        queue_rows = [
            (d.integration_id, d.message_id, d.mapping, int(d.first_in_session), d.event, now, now)
            for d in deliveries
        ]

        def commit(c: sqlite3.Connection) -> None:
            c.executemany("INSERT OR REPLACE INTO profiles (anonymous_id, data) VALUES (?, ?)", profile_rows)
            c.executemany("INSERT OR REPLACE INTO seen (message_id, at) VALUES (?, ?)", message_ids)
            c.executemany(
                "INSERT INTO queue (integration_id, message_id, mapping, first_in_session, event, enqueued_at, due_at)"
                " VALUES (?,?,?,?,?,?,?)",
                queue_rows,
            )
            insert_log(c, log)
            c.executemany(
                "INSERT INTO dead_letters (integration_id, message_id, mapping, first_in_session, event, attempts,"
                " outcome, reason, last_request, enqueued_at, created_at) VALUES ('',?,'',0,?,0,?,?,'',?,?)",
                [(u.message_id, u.record, UNPROCESSABLE, u.reason, u.received_at, now) for u in unprocessable],
            )
            c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('cursor', ?)", (str(cursor),))

        await self.db.write(commit)  # the cursor moves with what was queued: the commit point
        self._cursor = cursor
        self.forget_inbound(cursor)
        for integration_id in {d.integration_id for d in deliveries}:
            self.notify(f"queue:{integration_id}")

    def forget_inbound(self, upto: int) -> None:
        """Delete the stored requests processed up to ``upto`` (the processor's cursor is stored);
        only the process that owns the inbox's writer does."""
        if self._inbox is not None:
            self._inbox.execute("DELETE FROM inbox WHERE seq <= ?", (upto,))

    # delivery ----------------------------------------------------------------------------
    # Leases live in memory (one process owns the file, see the lock): a lease costs no write, and
    # items leased when a process died are due again as soon as the next one starts. The lease
    # table of an integration is changed only by jobs of the writer thread, so a lease never takes
    # an item that a settle is deleting; readers work on a copy.
    def _leases_of(self, integration_id: str) -> dict[int, float]:
        """Queue ids leased for ``integration_id`` -> when the lease ends."""
        return self._leases.setdefault(integration_id, {})

    async def next_due(self, integration_id: str) -> float | None:
        leases = self._leases_of(integration_id)

        def load(c: sqlite3.Connection) -> float | None:
            held, now = leases.copy(), time.time()
            rows = c.execute(
                "SELECT id, due_at FROM queue WHERE integration_id=? ORDER BY due_at, id LIMIT ?",
                (integration_id, len(held) + 1),
            ).fetchall()
            for row_id, due_at in rows:
                until = held.get(row_id)
                if until is None or until <= now:
                    return float(due_at)
            ends = [held[r[0]] for r in rows]
            return min(ends) if ends else None  # all leased: due again when the first lease ends

        return await self.db.read(load)

    async def ready_count(self, integration_id: str, now: float, cap: int) -> int:
        leases = self._leases_of(integration_id)

        def load(c: sqlite3.Connection) -> int:
            held = leases.copy()
            rows = c.execute(
                "SELECT id FROM queue WHERE integration_id=? AND due_at<=? ORDER BY due_at, id LIMIT ?",
                (integration_id, now, cap + len(held)),
            ).fetchall()
            return min(cap, sum(1 for (row_id,) in rows if held.get(row_id, 0.0) <= now))

        return await self.db.read(load)

    async def lease(self, integration_id: str, limit: int, now: float, lease_for: float) -> list[QueuedItem]:
        leases = self._leases_of(integration_id)

        def lease(c: sqlite3.Connection) -> list[QueuedItem]:
            candidates = c.execute(  # the index alone answers this
                "SELECT id FROM queue WHERE integration_id=? AND due_at<=? ORDER BY due_at, id LIMIT ?",
                (integration_id, now, limit + len(leases)),
            ).fetchall()
            ids = [row_id for (row_id,) in candidates if leases.get(row_id, 0.0) <= now][:limit]
            if not ids:
                return []
            rows = c.execute(
                f"SELECT {_QUEUE_COLUMNS} FROM queue WHERE id IN ({','.join('?' * len(ids))})"
                " ORDER BY due_at, id",
                ids,
            ).fetchall()
            until = now + lease_for
            for row in rows:
                leases[row[0]] = until
            return [_item(r) for r in rows]

        return await self.db.write(lease)

    async def settle(
        self,
        integration_id: str,
        done: Sequence[str],
        retries: Sequence[Retry],
        dead: Sequence[DeadLetter],
        log: Sequence[LogRow],
    ) -> None:
        now = time.time()
        leases = self._leases_of(integration_id)
        settled = [*done, *(r.id for r in retries), *(d.item.id for d in dead)]

        def settle(c: sqlite3.Connection) -> None:
            for settled_id in settled:
                leases.pop(int(settled_id), None)
            delete_queued(c, [int(i) for i in [*done, *(d.item.id for d in dead)]])
            c.executemany(
                "UPDATE queue SET due_at=?, attempts=?, last_error=? WHERE id=?",
                [(r.due_at, r.attempts, r.error[:500], int(r.id)) for r in retries],
            )
            for d in dead:
                i = d.item
                c.execute(
                    "INSERT INTO dead_letters (integration_id, message_id, mapping, first_in_session, event, attempts,"
                    " outcome, reason, last_request, enqueued_at, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        i.integration_id,
                        i.message_id,
                        i.mapping,
                        int(i.first_in_session),
                        i.event,
                        d.attempts,
                        d.outcome,
                        d.reason,
                        d.last_request,
                        i.enqueued_at,
                        now,
                    ),
                )
            insert_log(c, log)

        await self.db.write(settle)

    async def queue_depths(self) -> dict[str, int]:
        rows = await self.db.read(
            lambda c: c.execute(
                "SELECT integration_id, count(*) FROM queue GROUP BY integration_id"
            ).fetchall()
        )
        return {r[0]: int(r[1]) for r in rows}

    # dead letters and the delivery log ---------------------------------------------------
    async def dead_letters(self, integration_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        def load(c: sqlite3.Connection) -> list[dict[str, Any]]:
            where, params = (" WHERE integration_id=?", [integration_id]) if integration_id else ("", [])
            rows = c.execute(
                f"SELECT {', '.join(DEAD_LETTER_COLUMNS)} FROM dead_letters{where} ORDER BY id DESC LIMIT ?",
                [*params, limit],
            )
            return [dead_letter_view(row) for row in rows]

        return await self.db.read(load)

    @staticmethod
    def _dead_filter(ids: Sequence[str] | None, integration_id: str | None) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if ids is not None:
            numbers = parse_ids(ids)
            clauses.append(f"id IN ({','.join('?' * len(numbers))})" if numbers else "0")
            params.extend(numbers)
        if integration_id:
            clauses.append("integration_id=?")
            params.append(integration_id)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    async def replay_dead_letters(
        self, ids: Sequence[str] | None, integration_id: str | None, now: float
    ) -> int:
        where, params = self._dead_filter(ids, integration_id)

        # unprocessable events go back to the inbox first (another file): a crash in between
        # processes them twice, deduplicated by messageId, never loses one
        unprocessable = await self.db.read(
            lambda c: c.execute(
                f"SELECT id, event FROM dead_letters{where}{' AND' if where else ' WHERE'} outcome=?",
                [*params, UNPROCESSABLE],
            ).fetchall()
        )
        if unprocessable:
            await self.append_inbound([bytes(r[1]) for r in unprocessable])
            taken = [(r[0],) for r in unprocessable]
            await self.db.write(lambda c: c.executemany("DELETE FROM dead_letters WHERE id=?", taken))

        def replay(c: sqlite3.Connection) -> list[str]:
            rows = c.execute(
                f"SELECT id, integration_id, message_id, mapping, first_in_session, event FROM dead_letters{where}"
                f"{' AND' if where else ' WHERE'} outcome<>?",
                [*params, UNPROCESSABLE],
            ).fetchall()
            c.executemany(
                "INSERT INTO queue (integration_id, message_id, mapping, first_in_session, event, enqueued_at, due_at)"
                " VALUES (?,?,?,?,?,?,?)",
                [(r[1], r[2], r[3], r[4], r[5], now, now) for r in rows],
            )
            c.executemany("DELETE FROM dead_letters WHERE id=?", [(r[0],) for r in rows])
            return [r[1] for r in rows]

        integrations = await self.db.write(replay)
        for iid in set(integrations):
            self.notify(f"queue:{iid}")
        return len(integrations) + len(unprocessable)

    async def discard_dead_letters(self, ids: Sequence[str] | None, integration_id: str | None) -> int:
        where, params = self._dead_filter(ids, integration_id)
        return await self.db.write(lambda c: c.execute(f"DELETE FROM dead_letters{where}", params).rowcount)

    async def delivery_log(
        self, integration_id: str | None = None, message_id: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        def load(c: sqlite3.Connection) -> list[dict[str, Any]]:
            clauses: list[str] = []
            params: list[Any] = []
            if integration_id:
                clauses.append("integration_id=?")
                params.append(integration_id)
            if message_id:
                clauses.append("message_ids LIKE ?")
                params.append(f'%"{message_id}"%')
            where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
            rows = c.execute(
                f"SELECT {', '.join(LOG_COLUMNS)} FROM delivery_log{where} ORDER BY id DESC LIMIT ?",
                [*params, limit],
            ).fetchall()
            return [log_view(row) for row in rows]

        return await self.db.read(load)

    async def append_log(self, rows: Sequence[LogRow]) -> None:
        await self.db.write(lambda c: insert_log(c, rows))

    async def prune(self, seen_before: float, log_before: float) -> None:
        def prune(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM seen WHERE at < ?", (seen_before,))
            c.execute("DELETE FROM delivery_log WHERE at < ?", (log_before,))
            c.execute(
                "DELETE FROM delivery_log WHERE id <= (SELECT max(id) FROM delivery_log) - ?", (_LOG_ROWS,)
            )

        await self.db.write(prune)

    # management documents ------------------------------------------------------------------
    async def list_documents(self, kind: str) -> list[dict[str, Any]]:
        rows = await self.db.read(
            lambda c: c.execute("SELECT data FROM documents WHERE kind=? ORDER BY id", (kind,)).fetchall()
        )
        return [orjson.loads(r[0]) for r in rows]

    async def get_document(self, kind: str, doc_id: str) -> dict[str, Any] | None:
        row = await self.db.read(
            lambda c: c.execute("SELECT data FROM documents WHERE kind=? AND id=?", (kind, doc_id)).fetchone()
        )
        return None if row is None else dict(orjson.loads(row[0]))

    async def put_document(self, kind: str, doc_id: str, document: dict[str, Any]) -> None:
        data = orjson.dumps({**document, "id": doc_id})
        now = time.time()
        await self.db.write(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO documents (kind, id, data, updated_at) VALUES (?,?,?,?)",
                (kind, doc_id, data, now),
            )
        )

    async def delete_document(self, kind: str, doc_id: str) -> bool:
        count = await self.db.write(
            lambda c: c.execute("DELETE FROM documents WHERE kind=? AND id=?", (kind, doc_id)).rowcount
        )
        return bool(count)

    # signals -----------------------------------------------------------------------------
    def notify(self, channel: str) -> None:
        self._signals.notify(channel)

    async def wait(self, channel: str, timeout: float) -> None:
        await self._signals.wait(channel, timeout)
