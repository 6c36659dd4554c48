"""Durable state behind one interface (:class:`datafly.store.base.Backend`).

The embedded backend (SQLite under ``$DATAFLY_HOME``) is the default; the scale-out backends
implement the same interface.
"""
