"""``itcollect store copy --to URL|PATH.db``: the whole store into an empty target (issue 25).

Every table of the schema (the ledger included) is copied row for row, in creation order (parents
before children), in ONE transaction of the target: a copy killed half-way leaves a PostgreSQL
target as it was (empty, its schema migrated), and a SQLite target is written to a scratch file
beside it that is renamed into place only once complete. The row counts of every table are
compared at the end; PostgreSQL's identity sequences are moved past the copied ids.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from itcollect.kernel.errors import StoreError

_CHUNK = 2000


def store_tables(store: Any) -> list[str]:
    """The schema's tables in creation order (parents first)."""
    if store.backend == "sqlite":
        return [r[0] for r in store.query("SELECT name FROM sqlite_master WHERE type='table'"
                                          " AND name NOT LIKE 'sqlite_%' ORDER BY rowid")]
    return [r[0] for r in store.query(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = current_schema() AND c.relkind = 'r' AND c.relname <> 'itcollect_schema'"
        " ORDER BY c.oid")]


def table_columns(store: Any, table: str) -> list[str]:
    if store.backend == "sqlite":
        return [r[1] for r in store.query(f"PRAGMA table_info({table})")]
    return [r[0] for r in store.query(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
        " AND table_name = ? AND column_name <> 'rowid' ORDER BY ordinal_position", (table,))]


def row_counts(store: Any) -> dict[str, int]:
    return {t: int(store.scalar(f"SELECT COUNT(*) FROM {t}") or 0) for t in store_tables(store)}


def _order(store: Any, table: str) -> str:
    """Creation order: SQLite's rowid; on PostgreSQL the hidden rowid of a table without an
    integer key, else that key (the first column)."""
    if store.backend == "sqlite":
        return "rowid"
    hidden = store.scalar("SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = current_schema()"
                          " AND table_name = ? AND column_name = 'rowid'", (table,))
    return "rowid" if hidden else "1"


def copy_store(source: Any, target_spec: str, open_store: Any) -> dict[str, int]:
    """Copy ``source`` (an open store) into ``target_spec`` (a PostgreSQL URL or a ``.db`` path)
    with ``open_store(target) -> Store``; returns the row counts per table."""
    counts = row_counts(source)
    sqlite_target = "://" not in target_spec
    final = Path(target_spec) if sqlite_target else None
    if final is not None:
        if final.exists():
            raise StoreError("the target file exists: copy into a new file", path=str(final))
        scratch = final.with_name(f".{final.name}.copy-{os.getpid()}.tmp")
        scratch.unlink(missing_ok=True)
        target = open_store(str(scratch))
    else:
        target = open_store(target_spec)
    try:
        if any(row_counts(target).values()):
            raise StoreError("the target store is not empty: copy into an empty database", path=str(target.path))
        tables = store_tables(target)
        if set(tables) != set(counts):
            raise StoreError(f"the target's tables differ from the source's: {sorted(set(tables) ^ set(counts))}",
                             path=str(target.path))
        with target.transaction() as c:
            if target.backend == "sqlite":
                c.execute("PRAGMA defer_foreign_keys=ON")
            else:
                c.execute("SET CONSTRAINTS ALL DEFERRED")
            for table in tables:
                cols = [col for col in table_columns(source, table) if col in set(table_columns(target, table))]
                names = ", ".join(f'"{col}"' for col in cols)
                insert = f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(cols))})"
                rows: list[tuple] = []
                for row in source.stream(f"SELECT {names} FROM {table} ORDER BY {_order(source, table)}"):
                    rows.append(tuple(row))
                    if len(rows) >= _CHUNK:
                        c.executemany(insert, rows)
                        rows = []
                if rows:
                    c.executemany(insert, rows)
            if target.backend != "sqlite":
                _advance_sequences(target, tables)
        copied = row_counts(target)
        if copied != counts:
            diff = {t: (counts[t], copied.get(t)) for t in counts if counts[t] != copied.get(t)}
            raise StoreError(f"row counts differ after the copy: {diff}", path=str(target.path))
    finally:
        target.close()
    if final is not None:
        for suffix in ("-wal", "-shm"):
            Path(f"{scratch}{suffix}").unlink(missing_ok=True)
        os.replace(scratch, final)
    return counts


def _advance_sequences(target: Any, tables: list[str]) -> None:
    for table in tables:
        key = table_columns(target, table)[0]
        seq = target.scalar("SELECT pg_get_serial_sequence(?, ?)", (table, key))
        if seq:
            target.conn.execute(f"SELECT setval(?, COALESCE((SELECT MAX({key}) FROM {table}), 0) + 1, false)",
                                (seq,))
