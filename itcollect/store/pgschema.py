"""Schema migrations on PostgreSQL: the same numbered MIGRATIONS list as SQLite.

The version lives in a one-row table ``itcollect_schema`` (SQLite keeps it in ``PRAGMA
user_version``). Each migration runs in one transaction under a transaction-scoped advisory lock,
and re-reads the version after taking it, so two processes opening a fresh database never both
migrate: the second waits, sees the new version and skips. A migration that is a function of the
SQLite connection (SQLite-only schema surgery such as rewriting CHECK texts) has nothing to do on
PostgreSQL, whose tables were created from the already portable text.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from itcollect.kernel.errors import StoreError
from itcollect.store.dialect import PG_FUNCTIONS, pg_ddl
from itcollect.store.schema import MIGRATIONS

#: The advisory lock key of schema migrations (any fixed 64-bit number; "itcmigr" in ASCII).
MIGRATION_LOCK = 0x6974636D696772


def pg_schema_version(conn: Any) -> int:
    conn.execute("CREATE TABLE IF NOT EXISTS itcollect_schema (version BIGINT NOT NULL)")
    row = conn.execute("SELECT max(version) FROM itcollect_schema").fetchone()
    return int(row[0] or 0)


def pg_migrate(conn: Any, current: int, target: int, *, where: str) -> int:
    applied = 0
    for version in range(current + 1, target + 1):
        script = MIGRATIONS[version - 1]
        try:
            conn.execute("BEGIN")
            conn.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
            if pg_schema_version(conn) >= version:  # another process migrated meanwhile
                conn.execute("ROLLBACK")
                continue
            if version == 1:
                for statement in PG_FUNCTIONS:
                    conn.raw.execute(statement)
            if not callable(script):
                for statement in pg_ddl(script):
                    conn.raw.execute(statement)
            conn.execute("DELETE FROM itcollect_schema")
            conn.execute("INSERT INTO itcollect_schema (version) VALUES (?)", (version,))
            conn.execute("COMMIT")
        except Exception as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error) or type(exc).__module__.startswith("psycopg"):
                raise StoreError(f"migration to schema version {version} failed: {str(exc).splitlines()[0]}",
                                 path=where) from None
            raise
        applied += 1
    return applied
