"""The embedded backend: SQLite files under ``DATAFLY_HOME`` (``backend``), their schema, the
connections and group commit (``sqlite``) and the inbox's fsync helper (``wal_sync``)."""
