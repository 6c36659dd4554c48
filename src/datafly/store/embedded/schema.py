"""Schema of the embedded (SQLite) backend: numbered migrations, applied in order once each."""

from __future__ import annotations

import sqlite3

INBOX_SCHEMA = "CREATE TABLE IF NOT EXISTS inbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, body BLOB NOT NULL)"
"""The accepted requests waiting for the processor, in ``inbox.db`` (the table of the same name in
``datafly.db`` is unused)."""

MIGRATIONS: list[str] = [
    # 1: the pipeline
    """
    CREATE TABLE inbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, body BLOB NOT NULL);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE profiles (anonymous_id TEXT PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID;
    CREATE TABLE seen (message_id TEXT PRIMARY KEY, at REAL NOT NULL) WITHOUT ROWID;
    CREATE INDEX seen_at ON seen (at);
    CREATE TABLE queue (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        integration_id TEXT NOT NULL,
        message_id TEXT NOT NULL,
        mapping TEXT NOT NULL,
        first_in_session INTEGER NOT NULL,
        event BLOB NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        enqueued_at REAL NOT NULL,
        due_at REAL NOT NULL,
        leased INTEGER NOT NULL DEFAULT 0,
        last_error TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX queue_due ON queue (integration_id, due_at);
    CREATE TABLE dead_letters (
        id INTEGER PRIMARY KEY,
        integration_id TEXT NOT NULL,
        message_id TEXT NOT NULL,
        mapping TEXT NOT NULL,
        first_in_session INTEGER NOT NULL,
        event BLOB NOT NULL,
        attempts INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        reason TEXT NOT NULL,
        last_request TEXT NOT NULL,
        enqueued_at REAL NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX dead_by_integration ON dead_letters (integration_id, id);
    CREATE TABLE delivery_log (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        integration_id TEXT NOT NULL,
        message_ids TEXT NOT NULL,
        outcome TEXT NOT NULL,
        reason TEXT NOT NULL,
        request TEXT NOT NULL,
        status INTEGER,
        response TEXT NOT NULL,
        latency_ms REAL,
        attempt INTEGER NOT NULL
    );
    CREATE INDEX log_by_integration ON delivery_log (integration_id, id);
    CREATE TABLE documents (
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        data BLOB NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (kind, id)
    ) WITHOUT ROWID;
    """,
]


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the migrations not applied yet; returns the schema version."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        for statement in script.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version={number}")
    return len(MIGRATIONS)
