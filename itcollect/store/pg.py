"""A PostgreSQL connection with the face of the ``sqlite3`` connection the store's mixins use.

psycopg 3 (the ``postgres`` extra) in autocommit mode, so the store's own ``BEGIN`` / ``SAVEPOINT``
/ ``COMMIT`` statements delimit transactions exactly as on SQLite. Statements pass through
:func:`itcollect.store.dialect.pg_sql`; rows index by position and by name like ``sqlite3.Row``;
driver errors leave as the matching ``sqlite3`` exception class (an integrity error as
``sqlite3.IntegrityError`` whose text says UNIQUE for a unique violation), so every ``except
sqlite3.Error`` of the store keeps working unchanged and the message the user sees names the
server's host, port and database (:class:`StoreError`'s path), never a password.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

from itcollect.kernel.errors import StoreError
from itcollect.kernel.storeurl import describe
from itcollect.store.dialect import pg_sql

#: The advisory lock key of the store's write transactions ("itcwrit" in ASCII). SQLite's BEGIN
#: IMMEDIATE lets one writer in at a time, and the store's read-then-write transactions (claims,
#: leases, a dialogue's next turn) rely on that; on PostgreSQL every write transaction takes this
#: transaction-scoped lock first, so they keep exactly that rule across processes and hosts, while
#: reads never wait for it. No deadlock is possible among them: each takes it before any row lock.
WRITE_LOCK = 0x69746377726974

#: How often a statement outside a transaction reconnects after a dropped connection (backing off
#: 0.5, 1, 2, 4, 8 s: a server restart of ~15 s is ridden out).
RECONNECT_ATTEMPTS = 5

#: Hidden columns: PostgreSQL's stand-in for SQLite's rowid, left out of ``keys()`` / ``dict(row)``.
_HIDDEN = frozenset({"rowid"})


class Row(tuple):
    """A result row: ``row[0]``, ``row["name"]``, ``dict(row)`` (as ``sqlite3.Row``)."""

    _names: tuple[str, ...] = ()
    _index: dict[str, int] = {}

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return [n for n in self._names if n not in _HIDDEN]


def _row_class(names: tuple[str, ...]) -> type[Row]:
    index: dict[str, int] = {}
    for i, name in enumerate(names):
        index.setdefault(name, i)
    return type("Row", (Row,), {"_names": names, "_index": index})


def _sqlite_error(exc: Exception) -> sqlite3.Error:
    import psycopg

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, psycopg.errors.UniqueViolation):
        return sqlite3.IntegrityError(f"UNIQUE constraint failed: {text}")
    if isinstance(exc, psycopg.errors.IntegrityError):
        return sqlite3.IntegrityError(text)
    if isinstance(exc, psycopg.OperationalError):
        return sqlite3.OperationalError(text)
    return sqlite3.DatabaseError(text)


class PgCursor:
    def __init__(self, conn: PgConnection) -> None:
        self._conn = conn
        self._cur = conn.raw.cursor()
        self.row_factory: Any = None
        self._row: type[Row] | None = None
        self.rowcount = -1

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> PgCursor:
        import psycopg

        try:
            self._cur.execute(pg_sql(sql), params)
        except psycopg.Error as exc:
            if os.environ.get("ITCOLLECT_SQL_DEBUG"):
                print(f"SQL failed: {pg_sql(sql)}", file=sys.stderr)
            raise _sqlite_error(exc) from None
        self.rowcount = self._cur.rowcount
        if self.rowcount > 0 and self._cur.description is None:
            self._conn.total_changes += self.rowcount
        desc = self._cur.description
        self._row = _row_class(tuple(d.name for d in desc)) if desc else None
        return self

    def executemany(self, sql: str, seq: Any) -> PgCursor:
        import psycopg

        try:
            self._cur.executemany(pg_sql(sql), list(seq))
        except psycopg.Error as exc:
            raise _sqlite_error(exc) from None
        self.rowcount = self._cur.rowcount
        if self.rowcount > 0:
            self._conn.total_changes += self.rowcount
        return self

    def _wrap(self, rows: list[Any]) -> list[Any]:
        cls = self._row
        return [cls(r) for r in rows] if cls is not None else rows

    def fetchone(self) -> Any:
        row = self._cur.fetchone()
        return None if row is None or self._row is None else self._row(row)

    def fetchall(self) -> list[Any]:
        return self._wrap(self._cur.fetchall())

    def fetchmany(self, size: int) -> list[Any]:
        return self._wrap(self._cur.fetchmany(size))

    def __iter__(self) -> Iterator[Any]:
        while True:
            rows = self.fetchmany(1000)
            if not rows:
                return
            yield from rows

    @property
    def lastrowid(self) -> int | None:
        """The id the last INSERT of this session drew from an identity column."""
        row = self._conn.raw.execute("SELECT lastval()").fetchone()
        return None if row is None else int(row[0])

    @property
    def description(self) -> Any:
        return self._cur.description


class PgConnection:
    """The subset of ``sqlite3.Connection`` the store uses, over one psycopg connection."""

    def __init__(self, url: str, *, connect_timeout_s: float = 10.0) -> None:
        try:
            import psycopg
        except ImportError:
            raise StoreError("a PostgreSQL store needs the postgres extra: pip install 'itcollect[postgres]'",
                             path=describe(url)) from None
        self.url = url
        self.where = describe(url)
        self.total_changes = 0
        self.connect_timeout = max(1, int(connect_timeout_s))
        try:
            self.raw = psycopg.connect(url, autocommit=True, connect_timeout=self.connect_timeout)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to the PostgreSQL store: {_reason(exc)}", path=self.where) from None

    def cursor(self) -> PgCursor:
        return PgCursor(self)

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> PgCursor:
        if not self.in_transaction:  # a statement that starts work: a dropped connection is retried
            return self._retrying(sql, params)
        return self._execute(sql, params)

    def _execute(self, sql: str, params: Sequence[Any] | dict[str, Any]) -> PgCursor:
        if sql == "BEGIN IMMEDIATE":  # the store's write transaction: one writer at a time, as in SQLite
            cur = PgCursor(self).execute("BEGIN")
            return cur.execute("SELECT pg_advisory_xact_lock(?)", (WRITE_LOCK,))
        return PgCursor(self).execute(sql, params)

    def _retrying(self, sql: str, params: Sequence[Any] | dict[str, Any]) -> PgCursor:
        """Outside a transaction nothing is lost when the connection drops (a server restart, a
        proxy's idle cut): reconnect and run the statement again, a bounded number of times. Inside
        one, the error leaves as it is: the transaction is gone, and what was committed before stays."""
        for attempt in range(RECONNECT_ATTEMPTS + 1):
            if self.raw.closed or self.raw.broken:
                self._reconnect(attempt)
            try:
                return self._execute(sql, params)
            except sqlite3.OperationalError:
                if not (self.raw.closed or self.raw.broken) or attempt == RECONNECT_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _reconnect(self, attempt: int) -> None:
        import psycopg

        if attempt:
            time.sleep(min(8.0, 0.5 * 2 ** (attempt - 1)))
        try:
            self.raw = psycopg.connect(self.url, autocommit=True, connect_timeout=self.connect_timeout)
        except psycopg.Error as exc:
            if attempt >= RECONNECT_ATTEMPTS:
                raise StoreError(f"lost the connection to the PostgreSQL store: {_reason(exc)}",
                                 path=self.where) from None

    def executemany(self, sql: str, seq: Any) -> PgCursor:
        return PgCursor(self).executemany(sql, seq)

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        return self.raw.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR,
                                                    TransactionStatus.ACTIVE)

    def close(self) -> None:
        self.raw.close()


def _reason(exc: Exception) -> str:
    """The first line of a driver error, without the connection string (libpq never prints a
    password, and the URL holds none)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def try_run_lock(url: str, name: str) -> PgConnection | None:
    """A session-level advisory lock named ``name`` on the store's server, held on a connection of
    its own for a run (e.g. the Batch API runs of one stage): the connection while held, None when
    another process (on any host) holds it. It goes with the connection, so a killed holder never
    leaves it behind."""
    import zlib

    conn = PgConnection(url)
    key = zlib.crc32(f"itcollect:{name}".encode())
    if conn.execute("SELECT pg_try_advisory_lock(?)", (key,)).fetchone()[0]:
        return conn
    conn.close()
    return None
