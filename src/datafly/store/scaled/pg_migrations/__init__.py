"""PostgreSQL schema migrations of the scale-out backend: ``NNNN_name.sql``, applied in order once each.

Every migration here is additive (new tables, columns with defaults, indexes), so a process may
apply it on start while older processes still run. A migration whose first line is
``-- datafly: manual`` is applied only by ``datafly migrate``.
"""
