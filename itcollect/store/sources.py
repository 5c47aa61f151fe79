"""Sources (news sentences with their references) and ingest-run bookkeeping."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from itcollect.kernel.errors import StoreError
from itcollect.store.core import StoreCore, inserted_id, utcnow

_STAGE = "ingest_stage"
_STAGE_PREFIX = ".itcollect-ingest-"


def source_id_for(text: str) -> str:
    """Stable id of a normalised sentence: re-ingesting the same text always finds the same row."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


class SourcesMixin(StoreCore):
    def begin_ingest_run(self, path: str, fmt: str, declared_lang: str | None = None,
                         ref_lang: str | None = None, *, started_at: str | None = None) -> int:
        """Call inside the file's transaction, so a failed file leaves no run behind either."""
        cur = self.conn.execute(
            "INSERT INTO ingest_runs(path, format, declared_lang, ref_lang, started_at) VALUES (?,?,?,?,?)",
            (path, fmt, declared_lang, ref_lang, started_at or utcnow()))
        return inserted_id(cur)

    def finish_ingest_run(self, run_id: int, *, lines: int, kept: int, dropped: dict[str, int]) -> None:
        self.conn.execute("UPDATE ingest_runs SET finished_at=?, lines=?, kept=? WHERE id=?",
                          (utcnow(), lines, kept, run_id))
        self.conn.executemany("INSERT INTO ingest_drops(run_id, reason, count) VALUES (?,?,?)",
                              [(run_id, r, n) for r, n in sorted(dropped.items()) if n])

    def has_source(self, source_id: str) -> bool:
        return self.conn.execute("SELECT 1 FROM sources WHERE id=?", (source_id,)).fetchone() is not None

    def add_source(self, *, source_id: str, text: str, lang: str, origin_file: str,
                   origin_line: int | None = None, docid: str | None = None, origlang: str | None = None,
                   seg_id: str | None = None, run_id: int | None = None) -> bool:
        """Insert a source; returns False (and changes nothing) when the id already exists."""
        cur = self.conn.execute(
            "INSERT OR IGNORE INTO sources(id, text, lang, docid, origlang, seg_id, origin_file, origin_line,"
            " run_id, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (source_id, text, lang, docid, origlang, seg_id, origin_file, origin_line, run_id, utcnow()))
        return cur.rowcount == 1

    def add_reference(self, source_id: str, lang: str, text: str, translator: str = "") -> None:
        self.conn.execute(
            "INSERT OR IGNORE INTO source_refs(source_id, lang, text, translator) VALUES (?,?,?,?)",
            (source_id, lang, text, translator or ""))

    def get_source(self, source_id: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM sources WHERE id=?", (source_id,)).fetchone()
        if row is None:
            return None
        src = dict(row)
        src["references"] = [dict(r) for r in self.conn.execute(
            "SELECT lang, text, translator FROM source_refs WHERE source_id=? ORDER BY lang, translator",
            (source_id,))]
        return src

    def iter_sources(self, lang: str | None = None) -> Iterator[dict[str, Any]]:
        """Sources in insertion order (deterministic for planning)."""
        sql = "SELECT id, text, lang, docid, origlang FROM sources"
        params: tuple = ()
        if lang is not None:
            sql += " WHERE lang=?"
            params = (lang,)
        sql += " ORDER BY rowid"
        for row in self.conn.execute(sql, params):
            yield dict(row)

    def source_counts_by_lang(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self.query("SELECT lang, COUNT(*) FROM sources GROUP BY lang ORDER BY lang")}

    def ingest_totals(self) -> dict[str, Any]:
        kept = self.scalar("SELECT COALESCE(SUM(kept),0) FROM ingest_runs") or 0
        dropped = {r[0]: r[1] for r in self.query(
            "SELECT reason, SUM(count) FROM ingest_drops GROUP BY reason ORDER BY reason")}
        return {"kept": int(kept), "dropped": dropped}

    def ingest_runs(self) -> list[dict[str, Any]]:
        runs = [dict(r) for r in self.query("SELECT * FROM ingest_runs ORDER BY id")]
        drops: dict[int, dict[str, int]] = {}
        for r in self.query("SELECT run_id, reason, count FROM ingest_drops"):
            drops.setdefault(r[0], {})[r[1]] = r[2]
        for run in runs:
            run["dropped"] = drops.get(run["id"], {})
        return runs

    # -- ingest of one file, staged outside the write lock -----------------------------------------
    @contextmanager
    def staged_ingest(self) -> Iterator[IngestStaging]:
        """Collect one file's rows in a scratch database next to the store, then merge them in one
        short transaction (:meth:`IngestStaging.merge`).

        Why: a file of millions of lines takes minutes to read, normalise and identify; holding
        the store's write lock for all of it made every other writer (a running ``simulate``, an
        annotator's session) wait, and give up after the busy timeout. Now the lock is held only
        for the final merge (INSERT ... SELECT). A file that fails half-way leaves the store as it
        was (nothing reached it); a killed ingest leaves a scratch file that the next one removes.
        """
        started_at = utcnow()  # the run starts with the file, before its scratch file exists
        # On PostgreSQL the scratch database is a local SQLite file of this process (in the temp
        # folder), merged into the server in one transaction; on SQLite it is attached to the store.
        server = self.backend != "sqlite"
        folder = Path(tempfile.gettempdir()) if server else self.path.parent
        for stale in folder.glob(f"{_STAGE_PREFIX}*.tmp"):
            pid = stale.name[len(_STAGE_PREFIX):].split("-", 1)[0]
            if pid.isdigit() and not _pid_alive(int(pid)):
                stale.unlink(missing_ok=True)
        scratch = folder / f"{_STAGE_PREFIX}{os.getpid()}-{id(self):x}.tmp"
        scratch.unlink(missing_ok=True)
        try:
            stage = sqlite3.connect(":memory:", isolation_level=None) if server else self.conn
            stage.execute(f"ATTACH DATABASE ? AS {_STAGE}", (str(scratch),))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot create the ingest scratch file {scratch.name}: {exc}",
                             path=str(self.path)) from None
        try:
            stage.executescript(f"""
                PRAGMA {_STAGE}.journal_mode=OFF;
                PRAGMA {_STAGE}.synchronous=OFF;
                CREATE TABLE {_STAGE}.sources (id TEXT PRIMARY KEY, text TEXT, lang TEXT, docid TEXT,
                    origlang TEXT, seg_id TEXT, origin_file TEXT, origin_line INTEGER);
                CREATE TABLE {_STAGE}.source_refs (source_id TEXT, lang TEXT, text TEXT, translator TEXT,
                    PRIMARY KEY (source_id, lang, translator));
            """)
            yield IngestStaging(self, started_at, stage=stage)
        except sqlite3.Error as exc:
            raise StoreError(f"ingest scratch file {scratch.name}: {exc}", path=str(self.path)) from None
        finally:
            if self.conn.in_transaction and self._depth == 0:
                self.conn.execute("ROLLBACK")
            try:
                if server:
                    stage.close()
                else:
                    self.conn.execute(f"DETACH DATABASE {_STAGE}")
            except sqlite3.Error:  # pragma: no cover - connection gone
                pass
            scratch.unlink(missing_ok=True)

    def tune_for_bulk_insert(self, cache_mib: int = 128) -> None:
        """A bigger page cache for this connection: source ids are hashes, so every insert lands at
        a random place in the id index, and with SQLite's 2 MiB default most of them miss."""
        if self.backend == "sqlite":
            self.conn.execute(f"PRAGMA cache_size=-{int(cache_mib) * 1024}")

    def ingest_table_counts(self) -> dict[str, int]:
        """Row counts of the ingest tables (tests check a failed file changed none of them)."""
        return {t: int(self.scalar(f"SELECT COUNT(*) FROM {t}") or 0)
                for t in ("sources", "source_refs", "ingest_runs", "ingest_drops")}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class IngestStaging:
    """The rows of one file on their way into the store (see :meth:`SourcesMixin.staged_ingest`).

    Writes go to the scratch database only, in deferred transactions that never take the store's
    write lock; look-ups see the store and the rows staged so far, so duplicates within the file
    and against the store are found as before.
    """

    def __init__(self, store: SourcesMixin, started_at: str | None = None, *, stage: Any = None) -> None:
        self.store = store
        self.conn = store.conn
        #: the connection that holds the scratch database: the store's own on SQLite (attached)
        self.stage = store.conn if stage is None else stage
        self.server = self.stage is not self.conn
        self.started_at = started_at or utcnow()  # the run's start is the file's, not the merge's
        self.staged = 0  # sources staged so far

    def existing_source_ids(self, ids: list[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(ids), 450):
            chunk = ids[start:start + 450]
            marks = ",".join("?" * len(chunk))
            if self.server:
                found.update(r[0] for r in self.conn.execute(f"SELECT id FROM sources WHERE id IN ({marks})", chunk))
                found.update(r[0] for r in self.stage.execute(
                    f"SELECT id FROM {_STAGE}.sources WHERE id IN ({marks})", chunk))
                continue
            found.update(r[0] for r in self.conn.execute(
                f"SELECT id FROM main.sources WHERE id IN ({marks})"
                f" UNION SELECT id FROM {_STAGE}.sources WHERE id IN ({marks})", chunk + chunk))
        return found

    def _write(self, sql: str, rows: list[tuple]) -> int:
        stage = self.stage
        before = stage.total_changes
        stage.execute("BEGIN")  # deferred: locks only the scratch database it writes
        try:
            stage.executemany(sql, rows)
            stage.execute("COMMIT")
        except BaseException:
            stage.execute("ROLLBACK")
            raise
        return stage.total_changes - before

    def add_sources_batch(self, rows: list[tuple]) -> None:
        """(id, text, lang, docid, origlang, seg_id, origin_file, origin_line) rows."""
        self.staged += self._write(f"INSERT OR IGNORE INTO {_STAGE}.sources VALUES (?,?,?,?,?,?,?,?)", rows)

    def add_references_batch(self, rows: list[tuple[str, str, str, str]]) -> int:
        """(source_id, lang, text, translator) rows; returns how many were staged (:meth:`merge`
        tells how many of them were new to the store)."""
        return self._write(f"INSERT OR IGNORE INTO {_STAGE}.source_refs VALUES (?,?,?,?)", rows) if rows else 0

    def merge(self, path: str, fmt: str, declared_lang: str | None, ref_lang: str | None, *, lines: int,
              dropped: dict[str, int]) -> tuple[int, int, int]:
        """Move the staged rows into the store with the run's record, in one transaction; returns
        (run id, sources added, references added). Rows another writer stored meanwhile are counted
        as duplicates, not added."""
        store = self.store
        with store.transaction() as c:
            now = utcnow()
            run_id = store.begin_ingest_run(path, fmt, declared_lang, ref_lang, started_at=self.started_at)
            if self.server:
                kept, refs = self._copy_staged(run_id, now)
            else:
                kept, refs = self._merge_attached(c, run_id, now)
            dropped = dict(dropped)
            if self.staged > kept:
                dropped["duplicate"] = dropped.get("duplicate", 0) + self.staged - kept
            store.finish_ingest_run(run_id, lines=lines, kept=kept, dropped={k: v for k, v in dropped.items() if v})
        return run_id, kept, refs

    def _merge_attached(self, c: Any, run_id: int, now: str) -> tuple[int, int]:
        before = self.conn.total_changes
        c.execute("INSERT OR IGNORE INTO main.sources(id, text, lang, docid, origlang, seg_id, origin_file,"
                  " origin_line, run_id, created_at) SELECT id, text, lang, docid, origlang, seg_id,"
                  f" origin_file, origin_line, ?, ? FROM {_STAGE}.sources ORDER BY rowid", (run_id, now))
        kept = self.conn.total_changes - before
        before = self.conn.total_changes
        c.execute("INSERT OR IGNORE INTO main.source_refs(source_id, lang, text, translator)"
                  f" SELECT source_id, lang, text, translator FROM {_STAGE}.source_refs ORDER BY rowid")
        refs = self.conn.total_changes - before
        return kept, refs

    def _copy_staged(self, run_id: int, now: str, chunk: int = 5000) -> tuple[int, int]:
        """The staged rows into the server's tables, in staging order, inside the caller's
        transaction; returns (sources added, references added)."""
        counts = []
        for select, insert in (
                (f"SELECT id, text, lang, docid, origlang, seg_id, origin_file, origin_line, {int(run_id)}, ?"
                 f" FROM {_STAGE}.sources ORDER BY rowid",
                 "INSERT OR IGNORE INTO sources(id, text, lang, docid, origlang, seg_id, origin_file, origin_line,"
                 " run_id, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)"),
                (f"SELECT source_id, lang, text, translator FROM {_STAGE}.source_refs ORDER BY rowid",
                 "INSERT OR IGNORE INTO source_refs(source_id, lang, text, translator) VALUES (?,?,?,?)")):
            params: tuple = (now,) if "?" in select else ()
            cur = self.stage.execute(select, params)
            before = self.conn.total_changes
            while rows := cur.fetchmany(chunk):
                self.conn.executemany(insert, rows)
            counts.append(self.conn.total_changes - before)
        return counts[0], counts[1]
