"""The store's CHECK constraints: the same rules as first released, without SQLite's per-row cost
of ``IN (list)`` (migration 9)."""

from __future__ import annotations

import re
import sqlite3

import pytest

from itcollect.store import MIGRATIONS, SCHEMA_VERSION, Store
from itcollect.store.imports import import_rows


def _v8_store(path) -> None:
    """A store as the release before migration 9 left it."""
    conn = sqlite3.connect(path)
    conn.executescript("".join(MIGRATIONS[:8]) + "\nPRAGMA user_version=8;")
    conn.close()


def _checks(conn: sqlite3.Connection) -> dict[tuple[str, str], str]:
    """(table, column) -> the CHECK expression on that column, for every table of the store."""
    out = {}
    for table, sql in conn.execute("SELECT name, sql FROM sqlite_master WHERE type='table' AND sql IS NOT NULL"):
        for m in re.finditer(r"CHECK \((.*)\)", sql):
            expr = m.group(1)
            column = re.match(r"\w+", expr).group(0)
            out[(table, column)] = expr
    return out


def _passes(conn: sqlite3.Connection, expr: str, column: str, value: str | None) -> bool:
    """Whether a CHECK ``expr`` on ``column`` lets ``value`` in (it fails only when false)."""
    sql = "SELECT (" + re.sub(rf"\b{column}\b", "?1", expr) + ") IS NOT 0"
    return bool(conn.execute(sql, (value,)).fetchone()[0])


def test_no_check_builds_a_list_per_row(tmp_path):
    store = Store(tmp_path / "s.db")
    schema = "\n".join(r[0] for r in store.conn.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL"))
    assert "CHECK" in schema
    assert not re.search(r"CHECK \(\w+ IN \(", schema), schema
    store.close()


def test_rewritten_checks_accept_and_reject_exactly_what_the_lists_did(tmp_path):
    _v8_store(tmp_path / "old.db")
    old = _checks(sqlite3.connect(tmp_path / "old.db"))
    new = _checks(Store(tmp_path / "new.db").conn)
    # every released CHECK is still there (later migrations add tables, spelled with OR already)
    assert old.keys() <= new.keys() and len(old) >= 10
    probe = sqlite3.connect(":memory:")
    for key, old_expr in old.items():
        table, column = key
        values = re.findall(r"'([^']*)'", old_expr)
        assert values, old_expr
        for value in [*values, None, "", "bogus", values[0].upper(), f" {values[0]}"]:
            verdicts = [_passes(probe, expr, column, value) for expr in (old_expr, new[key])]
            assert verdicts[0] == verdicts[1], (table, column, value, old_expr, new[key])


def test_migration_9_keeps_rows_and_reaches_connections_already_open(tmp_path):
    db = tmp_path / "old.db"
    _v8_store(db)
    other = sqlite3.connect(db, isolation_level=None)  # e.g. a web session open during the upgrade
    other.execute("INSERT INTO dialogues(id, origin, status, created_at, updated_at)"
                  " VALUES ('d1', 'human', 'in_progress', 't', 't')")
    other.execute("INSERT INTO turns(dialogue_id, idx, role, content, author, created_at)"
                  " VALUES ('d1', 0, 'user', 'Translate into German: \"Hello.\"', 'human', 't')")
    store = Store(db)
    assert store.schema_version == SCHEMA_VERSION
    assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    turns_sql = store.conn.execute("SELECT sql FROM sqlite_master WHERE name='turns'").fetchone()[0]
    assert "role = 'system' OR role = 'user' OR role = 'assistant'" in turns_sql
    assert store.get_turns("d1")[0]["content"].startswith("Translate into German")
    for conn in (store.conn, other):
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            conn.execute("INSERT INTO turns(dialogue_id, idx, role, content, author, created_at)"
                         " VALUES ('d1', 1, 'robot', 'x', 'human', 't')")
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            conn.execute("UPDATE dialogues SET status = 'finished' WHERE id = 'd1'")
    # the connection opened before the upgrade now uses the new definitions
    with pytest.raises(sqlite3.IntegrityError, match="OR"):
        other.execute("INSERT INTO turns(dialogue_id, idx, role, content, author, created_at)"
                      " VALUES ('d1', 1, 'user', 'x', 'robot', 't')")
    rows = import_rows({"id": "imp-1", "meta": {}}, [{"role": "user", "content": "Hi"},
                                                     {"role": "assistant", "content": "Hallo"}])
    assert store.import_dialogue_rows([rows]) == (1, 0)
    store.close()
    assert Store(db).migrate() == 0  # nothing left to do on the next open


def test_turns_position_keeps_one_active_turn_per_position(tmp_path):
    """Migration 10: one index for a dialogue's turns; still one active turn per position, any
    number of undone or rejected ones beside it, and both kinds found in position order."""
    store = Store(tmp_path / "s.db")
    did = store.create_dialogue(origin="human", annotator="ann")
    german = store.add_turn(did, role="user", content="Into German: Hello.", author="human")
    store.add_turn(did, role="assistant", content="Hallo.", author="model")
    store.set_turn_state(german, "undone")
    french = store.add_turn(did, role="user", content="Into French: Hello.", author="human", idx=0)
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):  # two active turns at position 0
        store.conn.execute("UPDATE turns SET state = 'active' WHERE id = ?", (german,))
    store.set_turn_state(french, "rejected")  # a second inactive turn at position 0 is fine
    store.add_turn(did, role="user", content="Into Chinese: Hello.", author="human", idx=0)
    assert [t["content"] for t in store.get_turns(did)] == ["Into Chinese: Hello.", "Hallo."]
    everything = store.get_turns(did, include_inactive=True)
    assert [(t["idx"], t["state"], t["content"][:13]) for t in everything] == [
        (0, "undone", "Into German: "), (0, "rejected", "Into French: "), (0, "active", "Into Chinese:"),
        (1, "active", "Hallo.")]
    indexes = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='turns'")}
    assert "turns_position" in indexes and not indexes & {"turns_active", "turns_dialogue"}
    store.close()
