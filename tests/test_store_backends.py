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


def _rounded(value):
    """stats --json with floats to 6 significant digits (the copy's figures are the same numbers)."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def _filled_workspace(tmp_path, fake_openai):
    from itcollect.plan import plan_specs
    from itcollect.workspace import init_workspace

    from .responders import fill_workspace_sources, responder

    fake_openai.responder = responder
    ws = init_workspace(tmp_path / "old")
    fill_workspace_sources(ws.store)
    plan_specs(ws.store, ws.config, 6, seed=0)
    ws.close()
    env = {"ITCOLLECT_STORE_URL": ""}
    r = run_cli("-C", str(tmp_path / "old"), "simulate", "--base-url", fake_openai.base_url, "--model",
                "gpt-4o-mini", env=env)
    assert r.returncode == 0, r.stderr
    assert run_cli("-C", str(tmp_path / "old"), "filter", env=env).returncode == 0
    return tmp_path / "old"


def test_store_copy_to_postgresql_and_back_keeps_every_row_and_the_stats(tmp_path, pg_url, fake_openai):
    import json

    from itcollect.store.copy import row_counts

    old = _filled_workspace(tmp_path, fake_openai)
    env = {"ITCOLLECT_STORE_URL": ""}
    stats = json.loads(run_cli("-C", str(old), "stats", "--json", env=env).stdout)
    r = run_cli("-C", str(old), "store", "copy", "--to", pg_url, env=env)
    assert r.returncode == 0, r.stderr
    assert f'url = "{pg_url}"' in r.stdout and "row counts checked" in r.stdout
    with Store(old / "itcollect.db") as a, Store(pg_url) as b:
        counts = row_counts(a)
        assert counts == row_counts(b) and counts["llm_calls"] > 0 and counts["turns"] > 0
    on_pg = json.loads(run_cli("-C", str(old), "stats", "--json", env={"ITCOLLECT_STORE_URL": pg_url}).stdout)
    assert _rounded(on_pg) == _rounded(stats)
    # a non-empty target is refused
    again = run_cli("-C", str(old), "store", "copy", "--to", pg_url, env=env)
    assert again.returncode == 1 and "not empty" in again.stderr
    # and back to SQLite, from the PostgreSQL store
    back = tmp_path / "back.db"
    r = run_cli("-C", str(old), "store", "copy", "--to", str(back), env={"ITCOLLECT_STORE_URL": pg_url})
    assert r.returncode == 0, r.stderr
    with Store(back) as c:
        assert row_counts(c) == counts
    with Store(pg_url) as b:  # the copy goes on: a new row takes an id after the copied ones
        top = b.scalar("SELECT MAX(id) FROM specs")
        source = b.scalar("SELECT id FROM sources WHERE lang = 'en' ORDER BY id LIMIT 1")
        b.add_specs([{"seed": 99, "seq": 0, "source_id": source, "src_lang": "en", "tgt_lang": "zh",
                      "instruction_lang": "en", "n_turns": 2, "interaction_types": ["translate", "polish"]}])
        assert b.scalar("SELECT MAX(id) FROM specs") == top + 1


def test_a_copy_killed_mid_way_leaves_the_target_empty(tmp_path, pg_url, fake_openai):
    import signal
    import subprocess
    import sys
    import time

    from itcollect.store.copy import row_counts

    old = _filled_workspace(tmp_path, fake_openai)
    child = ("import sys, time\n"
             "import itcollect.store.copy as cp\n"
             "from itcollect.store import Store\n"
             "cp._CHUNK = 1\n"
             "real = cp.table_columns\n"
             "def slow(store, table):\n"
             "    if store.backend == 'postgresql' and table == 'turns':\n"
             "        print('copying', flush=True); time.sleep(60)\n"
             "    return real(store, table)\n"
             "cp.table_columns = slow\n"
             "with Store(sys.argv[1]) as s:\n"
             "    cp.copy_store(s, sys.argv[2], lambda t: Store(t))\n")
    for target in (pg_url, str(tmp_path / "killed.db")):
        proc = subprocess.Popen([sys.executable, "-c", child, str(old / "itcollect.db"), target],
                                stdout=subprocess.PIPE, text=True)
        if target == pg_url:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "copying"
        else:
            time.sleep(0)  # the SQLite target: kill it as soon as it runs
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    with Store(pg_url) as b:
        assert not any(row_counts(b).values())
    assert not (tmp_path / "killed.db").exists()


def test_a_dropped_connection_is_reconnected_outside_a_transaction(pg_server, pg_url):
    """The server ends the store's connection (as a restart does): the next statement reconnects;
    committed rows are all there; a transaction cut mid-way is one StoreError, nothing half-written."""
    store = Store(pg_url)
    try:
        store.add_source(source_id="s1", text="A sentence about the news today.", lang="en", origin_file="x.txt")
        pid = store.scalar("SELECT pg_backend_pid()")
        pg_server.admin(f"SELECT pg_terminate_backend({int(pid)})")
        assert store.scalar("SELECT COUNT(*) FROM sources") == 1  # reconnected
        assert store.scalar("SELECT pg_backend_pid()") != pid
        with pytest.raises(StoreError):
            with store.transaction() as c:
                c.execute("INSERT INTO ingest_runs(path, format, started_at) VALUES ('a', 'txt', 'now')")
                pg_server.admin(f"SELECT pg_terminate_backend({int(store.scalar('SELECT pg_backend_pid()'))})")
                c.execute("INSERT INTO ingest_runs(path, format, started_at) VALUES ('b', 'txt', 'now')")
        assert store.scalar("SELECT COUNT(*) FROM ingest_runs") == 0
        assert store.scalar("SELECT COUNT(*) FROM sources") == 1
    finally:
        store.close()


def test_a_refused_login_is_one_line_naming_the_server(pg_server):
    pg_server.admin("DROP ROLE IF EXISTS nologin_role")
    pg_server.admin("CREATE ROLE nologin_role NOLOGIN")
    url = pg_server.url().replace("postgres@", "nologin_role@")
    with pytest.raises(StoreError) as err:
        Store(url)
    text = str(err.value)
    assert text.startswith(f"127.0.0.1:{pg_server.port}/postgres") and len(text.splitlines()) == 1
    assert "not permitted to log in" in text


def test_the_batch_api_lock_of_a_postgresql_store_is_an_advisory_lock_on_the_server(tmp_path, pg_url):
    """Workspaces on two hosts share one store: the Batch API lock is held on the database server,
    so the second run is refused whatever folder it runs in, and the lock goes with its holder."""
    from itcollect.kernel.errors import ServiceError
    from itcollect.workspace import WorkspaceLock

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = WorkspaceLock(tmp_path / "a", ".itcollect-batch.lock", "`simulate --batch-api`", store_url=pg_url)
    with first:
        with pytest.raises(ServiceError) as err:
            with WorkspaceLock(tmp_path / "b", ".itcollect-batch.lock", "`simulate --batch-api`", store_url=pg_url):
                pass
        assert "another `simulate --batch-api` is running on this store" in str(err.value)
        with WorkspaceLock(tmp_path / "b", ".itcollect-batch-judge.lock", "`judge --batch-api`", store_url=pg_url):
            pass  # another run's lock is another name
    with WorkspaceLock(tmp_path / "b", ".itcollect-batch.lock", "`simulate --batch-api`", store_url=pg_url):
        pass
    assert not (tmp_path / "a" / ".itcollect-batch.lock").exists()
