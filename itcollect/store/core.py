"""Connection handling shared by every part of the store: pragmas, transactions, migrations.

Every state change runs inside ``transaction()`` (BEGIN IMMEDIATE, so concurrent writers queue on
SQLite's lock instead of failing half-way), and SQLite errors leave as :class:`StoreError` naming
the database file, so a full disk or a locked file is one clear line, never a traceback.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from itcollect.kernel.errors import StoreConflict, StoreError
from itcollect.kernel.storeurl import describe, is_postgres_url
from itcollect.store.schema import MIGRATIONS, SCHEMA_VERSION

_second: tuple[int, str] = (-1, "")  # the last whole second and its text: utcnow runs per write


def utcnow() -> str:
    """Timestamps are ISO-8601 UTC with milliseconds: sortable as text and readable."""
    global _second
    now = time.time()
    sec = int(now)
    cached = _second
    if sec != cached[0]:
        cached = _second = (sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)))
    return f"{cached[1]}.{int((now - sec) * 1000):03d}Z"


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def loads(text: str | None, default: Any = None) -> Any:
    return default if text is None else json.loads(text)


def inserted_id(cur: sqlite3.Cursor) -> int:
    """The rowid of the row an INSERT on ``cur`` just wrote (``lastrowid`` is None only after
    statements that insert nothing)."""
    rowid = cur.lastrowid
    if rowid is None:  # pragma: no cover - every caller has just inserted one row
        raise StoreError("an INSERT wrote no row")
    return rowid


class StoreCore:
    """Owns the SQLite connection. Use one Store per thread (or per asyncio loop)."""

    def __init__(self, path: str | Path, *, migrate: bool = True, busy_timeout_s: float = 60.0) -> None:
        #: what opens this store again (another thread or process): the file's path or the URL
        self.target = str(path)
        #: "postgresql" for a server database, "sqlite" for the workspace's file
        self.backend = "postgresql" if is_postgres_url(self.target) else "sqlite"
        self._depth = 0
        self._lock = threading.RLock()
        self.conn: Any
        if self.backend == "postgresql":
            from itcollect.store.pg import PgConnection

            self.path = Path(describe(self.target))  # what error messages name: host:port/database
            self.conn = PgConnection(self.target)
        else:
            self.path = Path(path)
            try:
                self.conn = sqlite3.connect(str(self.path), timeout=busy_timeout_s, isolation_level=None,
                                            check_same_thread=False)
                self.conn.row_factory = sqlite3.Row
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA foreign_keys=ON")
                self.conn.execute("PRAGMA synchronous=NORMAL")
                self.conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open the store: {exc}", path=str(self.path)) from None
        if migrate:
            self.migrate()

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        try:
            self.conn.close()
        except sqlite3.Error:  # pragma: no cover
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- schema --------------------------------------------------------------------------------
    @property
    def schema_version(self) -> int:
        if self.backend == "postgresql":
            from itcollect.store.pgschema import pg_schema_version

            return pg_schema_version(self.conn)
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def migrate(self, target: int = SCHEMA_VERSION) -> int:
        """Bring the schema forward to ``target``; returns the number of migrations applied."""
        current = self.schema_version
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"the store has schema version {current}, newer than this itcollect supports "
                f"({SCHEMA_VERSION}); upgrade itcollect", path=str(self.path))
        if self.backend == "postgresql":
            from itcollect.store.pgschema import pg_migrate

            return pg_migrate(self.conn, current, target, where=str(self.path))
        applied = 0
        for version in range(current + 1, target + 1):
            script = MIGRATIONS[version - 1]
            try:
                if callable(script):
                    self.conn.execute("BEGIN IMMEDIATE")
                    if self.schema_version >= version:  # another process migrated meanwhile
                        self.conn.execute("ROLLBACK")
                        continue
                    script(self.conn)
                    self.conn.execute(f"PRAGMA user_version={version}")
                    self.conn.execute("COMMIT")
                else:
                    # executescript commits implicitly, so the BEGIN/COMMIT are inside the script.
                    self.conn.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version={version};\nCOMMIT;")
            except sqlite3.Error as exc:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                if self.schema_version >= version:  # another process migrated meanwhile
                    continue
                raise StoreError(f"migration to schema version {version} failed: {exc}", path=str(self.path)) from None
            applied += 1
        return applied

    # -- transactions --------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit of work; nested calls join the outer transaction (via a savepoint)."""
        with self._lock:
            outer = self._depth == 0
            name = f"sp{self._depth}"
            try:
                if outer:
                    self.conn.execute("BEGIN IMMEDIATE")
                else:
                    self.conn.execute(f"SAVEPOINT {name}")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot start a transaction: {exc}", path=str(self.path)) from None
            self._depth += 1
            try:
                yield self.conn
            except BaseException as exc:
                self._depth -= 1
                try:
                    if outer:
                        self.conn.execute("ROLLBACK")
                    else:
                        self.conn.execute(f"ROLLBACK TO {name}")
                        self.conn.execute(f"RELEASE {name}")
                except sqlite3.Error:  # pragma: no cover - connection already gone
                    pass
                if isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc):
                    raise StoreConflict(f"store write lost to another writer: {exc}", path=str(self.path)) from None
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"store write failed: {exc}", path=str(self.path)) from None
                raise
            else:
                self._depth -= 1
                try:
                    if outer:
                        self.conn.execute("COMMIT")
                    else:
                        self.conn.execute(f"RELEASE {name}")
                except sqlite3.Error as exc:
                    if outer and self.conn.in_transaction:
                        self.conn.execute("ROLLBACK")
                    raise StoreError(f"store commit failed: {exc}", path=str(self.path)) from None

    @contextmanager
    def background_checkpoints(self, interval_s: float = 0.25) -> Iterator[None]:
        """Move WAL checkpoints off this connection's thread while a long run writes.

        With SQLite's automatic checkpoints, every ~1000 WAL pages one COMMIT of this connection
        copies them into the database file and fsyncs it (~0.1 ms more per commit on average,
        in bursts); in an asyncio run that blocks the event loop. Here a thread with its own
        connection checkpoints (PASSIVE: it never blocks a writer), with the GIL released while
        SQLite works. Durability is unchanged: a commit is in the WAL either way, and a crash
        leaves a WAL that the next open replays.
        """
        if self.backend != "sqlite":  # the server checkpoints on its own
            yield
            return
        stop = threading.Event()
        try:
            checkpointer = sqlite3.connect(str(self.path), timeout=1.0, isolation_level=None,
                                           check_same_thread=False)
            self.conn.execute("PRAGMA wal_autocheckpoint=0")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the store: {exc}", path=str(self.path)) from None

        def run() -> None:
            while not stop.wait(interval_s):
                try:
                    checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:  # busy or gone: the next round (or autocheckpoint) catches up
                    time.sleep(interval_s)

        thread = threading.Thread(target=run, name="itcollect-checkpoint", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            checkpointer.close()
            try:
                self.conn.execute("PRAGMA wal_autocheckpoint=1000")
            except sqlite3.Error:  # pragma: no cover - connection already gone
                pass

    def refresh_statistics(self, *tables: str) -> None:
        """After a bulk load outside any transaction: on PostgreSQL, ``ANALYZE`` the tables so the
        planner's next queries (a claim's ``NOT EXISTS``) do not run on empty statistics until
        autovacuum catches up; nothing to do on SQLite."""
        if self.backend != "sqlite" and self._depth == 0:
            for table in tables:
                self.conn.execute(f"ANALYZE {table}")

    def query(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        """Read helper used inside the store package; stages call named methods instead."""
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"store read failed: {exc}", path=str(self.path)) from None

    def rows_by_status(self, table: str, statuses: Any = None, *, order_by: str,
                       limit: int | None = None) -> list[sqlite3.Row]:
        """Rows of ``table`` (a store table name, never user input), optionally only those whose
        status is one of ``statuses``, in ``order_by`` order, at most ``limit``."""
        sql, params = f"SELECT * FROM {table}", []
        if statuses is not None:
            params = list(statuses)
            sql += f" WHERE status IN ({','.join('?' * len(params))})"
        sql += f" ORDER BY {order_by}"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return self.query(sql, params)

    def stream(self, sql: str, params: Any = (), chunk: int = 5000) -> Iterator[tuple]:
        """Plain tuples of a large result, fetched in chunks so memory stays flat."""
        cur = self.conn.cursor()
        cur.row_factory = None
        try:
            cur.execute(sql, params)
            while True:
                rows = cur.fetchmany(chunk)
                if not rows:
                    return
                yield from rows
        except sqlite3.Error as exc:
            raise StoreError(f"store read failed: {exc}", path=str(self.path)) from None

    def scalar(self, sql: str, params: Any = ()) -> Any:
        rows = self.query(sql, params)
        return rows[0][0] if rows else None
