"""One store, two backends (issue 25): the schema, its version and its migration lock, and the
one-line errors of a PostgreSQL store that cannot be reached."""

from __future__ import annotations

import multiprocessing as mp

import pytest

from itcollect.kernel.errors import StoreError
from itcollect.store import SCHEMA_VERSION, Store
from itcollect.store.dialect import pg_sql

from .conftest import run_cli


def _tables(store: Store) -> dict[str, set[str]]:
    if store.backend == "sqlite":
        names = [r[0] for r in store.query("SELECT name FROM sqlite_master WHERE type='table'"
                                           " AND name NOT LIKE 'sqlite_%'")]
        return {n: {r[1] for r in store.query(f"PRAGMA table_info({n})")} for n in names}
    out: dict[str, set[str]] = {}
    for table, column in store.query("SELECT table_name, column_name FROM information_schema.columns"
                                     " WHERE table_schema = 'public'"):
        out.setdefault(table, set()).add(column)
    out.pop("itcollect_schema", None)
    return {t: cols - {"rowid"} for t, cols in out.items()}


def test_both_backends_have_the_same_tables_and_columns(tmp_path, pg_url):
    lite, pg = Store(tmp_path / "s.db"), Store(pg_url)
    try:
        assert lite.schema_version == pg.schema_version == SCHEMA_VERSION
        assert _tables(lite) == _tables(pg)
    finally:
        lite.close()
        pg.close()


def _open(url: str, queue) -> None:
    store = Store(url, migrate=False)
    queue.put(store.migrate())
    store.close()


def test_processes_opening_a_fresh_database_at_once_migrate_it_once(store):
    if store.backend == "sqlite":
        target = store.target
    else:  # a fresh database: the fixture's is migrated already
        store.conn.execute("DROP TABLE itcollect_schema")
        store.conn.execute("DROP SCHEMA public CASCADE")
        store.conn.execute("CREATE SCHEMA public")
        target = store.target
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_open, args=(target, queue)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    applied = sorted(queue.get(timeout=5) for _ in procs)
    fresh = 0 if store.backend == "sqlite" else SCHEMA_VERSION
    assert sum(applied) == fresh and all(p.exitcode == 0 for p in procs)
    again = Store(target)
    assert again.schema_version == SCHEMA_VERSION
    again.close()


def test_a_program_older_than_the_database_refuses_with_one_line(store):
    with store.transaction() as c:
        if store.backend == "sqlite":
            c.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
        else:
            c.execute("UPDATE itcollect_schema SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError) as err:
        Store(store.target)
    assert "newer than this itcollect supports" in str(err.value)
    assert len(str(err.value).splitlines()) == 1


def test_store_sql_is_rewritten_once_for_postgresql():
    assert pg_sql("SELECT a FROM t WHERE b = ? AND c LIKE 'x%?'") == "SELECT a FROM t WHERE b = %s AND c LIKE 'x%%?'"
    assert pg_sql("INSERT OR IGNORE INTO t(a) VALUES (?)") == "INSERT INTO t(a) VALUES (%s) ON CONFLICT DO NOTHING"
    assert pg_sql("BEGIN IMMEDIATE") == "BEGIN"


def test_an_unreachable_server_or_a_missing_database_is_one_line_naming_it(tmp_path, pg_server):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for url, where in [(f"postgresql://itc@127.0.0.1:{port}/itc", f"127.0.0.1:{port}/itc"),
                       (pg_server.url("no_such_db"), f"127.0.0.1:{pg_server.port}/no_such_db")]:
        with pytest.raises(StoreError) as err:
            Store(url)
        assert str(err.value).startswith(where) and len(str(err.value).splitlines()) == 1
        r = run_cli("init", str(tmp_path / f"ws{port}{len(where)}"), "--store", url)
        assert r.returncode == 1 and where in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


def test_init_store_url_makes_a_workspace_on_postgresql(tmp_path, pg_url):
    r = run_cli("init", str(tmp_path / "team"), "--store", pg_url, env={"ITCOLLECT_STORE_URL": ""})
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "team" / "itcollect.db").exists()
    r = run_cli("-C", str(tmp_path / "team"), "stats", "--json", env={"ITCOLLECT_STORE_URL": ""})
    assert r.returncode == 0, r.stderr
    pg = Store(pg_url)
    assert pg.schema_version == SCHEMA_VERSION
    pg.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_ws(request, tmp_path):
    """An initialised workspace whose store is on each backend (``init --store`` for PostgreSQL)."""
    args = [] if request.param == "sqlite" else ["--store", request.getfixturevalue("pg_url")]
    r = run_cli("init", str(tmp_path / "ws"), *args, env={"ITCOLLECT_STORE_URL": ""})
    assert r.returncode == 0, r.stderr
    return tmp_path / "ws"


def test_every_writing_stage_runs_on_both_backends(backend_ws, tmp_path, fake_openai):
    """ingest (and a bad file that changes nothing), plan, simulate, filter, export, stats: the
    same CLI on the same code, the store either the workspace's file or a PostgreSQL database."""
    import json

    from .responders import responder

    fake_openai.responder = responder
    env = {"ITCOLLECT_STORE_URL": ""}
    ws = str(backend_ws)
    from .responders import CORPUS

    files = []
    for lang in ("en", "zh"):
        files.append(tmp_path / f"news.{lang}.txt")
        files[-1].write_text("".join(entry[lang] + "\n" for entry in CORPUS), encoding="utf-8")
    r = run_cli("-C", ws, "ingest", *map(str, files), env=env)
    assert r.returncode == 0, r.stderr
    bad = tmp_path / "bad.en.txt"  # fails after 2500 good lines were staged
    bad.write_bytes("".join(f"The council approved plan number {i} for the new bridge over the river.\n"
                            for i in range(2500)).encode() + b"Caf\xe9 prices rose again in the city centre.\n")
    before = run_cli("-C", ws, "stats", "--json", env=env).stdout
    assert run_cli("-C", ws, "ingest", str(bad), "--lang", "en", env=env).returncode == 1
    assert run_cli("-C", ws, "stats", "--json", env=env).stdout == before  # the bad file changed nothing
    r = run_cli("-C", ws, "plan", "--dialogues", "6", "--seed", "1", env=env)
    assert r.returncode == 0, r.stderr
    r = run_cli("-C", ws, "simulate", "--base-url", fake_openai.base_url, "--model", "gpt-4o-mini",
                "--concurrency", "4", env=env)
    assert r.returncode == 0, r.stderr
    assert not fake_openai.paid_twice()
    r = run_cli("-C", ws, "filter", env=env)
    assert r.returncode == 0, r.stderr
    r = run_cli("-C", ws, "export", "--hf", str(tmp_path / "out"), env=env)
    assert r.returncode == 0, r.stderr
    r = run_cli("-C", ws, "stats", "--json", env=env)
    assert r.returncode == 0, r.stderr
    stats = json.loads(r.stdout)
    assert stats, stats
