"""Workspace, config, store and CLI contract of the foundation."""

from __future__ import annotations

import json
import sqlite3

import pytest

from itcollect.config import DEFAULT_CONFIG_TEXT, parse_config
from itcollect.kernel.errors import ConfigError, StoreError
from itcollect.store import MIGRATIONS, SCHEMA_VERSION, Store

from .conftest import run_cli


def test_init_creates_workspace_and_refuses_overwrite(tmp_path):
    r = run_cli("init", str(tmp_path / "ws"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "ws" / "itcollect.toml").read_text(encoding="utf-8") == DEFAULT_CONFIG_TEXT
    assert (tmp_path / "ws" / "itcollect.db").exists()
    r = run_cli("init", str(tmp_path / "ws"))
    assert r.returncode == 1
    assert "already an itcollect workspace" in r.stderr
    assert "Traceback" not in r.stderr
    assert run_cli("init", "--force", str(tmp_path / "ws")).returncode == 0


def test_stats_json_contract_keys_on_empty_workspace(tmp_path):
    assert run_cli("init", str(tmp_path / "ws")).returncode == 0
    r = run_cli("-C", str(tmp_path / "ws"), "stats", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    for key in ("sources", "ingest", "specs", "dialogues", "turns", "calls", "filter"):
        assert key in data
    assert data["specs"] == {"total": 0, "pending": 0, "in_progress": 0, "done": 0, "failed": 0, "skipped": 0}
    assert data["dialogues"]["by_origin"] == {"simulated": 0, "human": 0, "imported": 0}
    assert set(data["calls"]) >= {"sent", "from_ledger", "failed", "prompt_tokens", "completion_tokens", "cost_usd"}


def test_exit_codes(tmp_path):
    r = run_cli("stats", cwd=tmp_path)
    assert r.returncode == 1 and "no itcollect workspace" in r.stderr and "Traceback" not in r.stderr
    assert run_cli("no-such-command", cwd=tmp_path).returncode == 2
    assert run_cli("stats", "--no-such-option", cwd=tmp_path).returncode == 2
    r = run_cli("--version")
    assert r.returncode == 0 and "itcollect" in r.stdout
    assert run_cli("--help").returncode == 0


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'llm.timeot_s'"):
        parse_config("[llm]\ntimeot_s = 3\n")
    with pytest.raises(ConfigError, match="'llm.concurrency' must be an integer"):
        parse_config("[llm]\nconcurrency = 'many'\n")
    with pytest.raises(ConfigError, match="mix.pairs"):
        parse_config('[mix]\npairs = { "en-xx" = 1 }\n')
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse_config("[llm\n")
    cfg = parse_config("[llm.assistant]\nmodel = 'm1'\n")
    assert cfg.llm_role("annotator")["model"] == "m1"  # inherits the empty value


def test_broken_config_is_one_line_exit_1(tmp_path):
    assert run_cli("init", str(tmp_path / "ws")).returncode == 0
    (tmp_path / "ws" / "itcollect.toml").write_text("[mix]\nmax_uses_per_source = 0\n")
    r = run_cli("-C", str(tmp_path / "ws"), "stats")
    assert r.returncode == 1
    assert "max_uses_per_source" in r.stderr and "itcollect.toml" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_migration_from_schema_1_keeps_data(tmp_path):
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db)
    conn.executescript(MIGRATIONS[0] + "\nPRAGMA user_version=1;")
    conn.execute("INSERT INTO ingest_runs(path, format, started_at, lines, kept) VALUES ('a.txt','txt','t',1,1)")
    conn.execute("INSERT INTO sources(id, text, lang, origin_file, run_id, created_at)"
                 " VALUES ('abc','Hello there, world.','en','a.txt',1,'t')")
    conn.commit()
    conn.close()
    store = Store(db)
    assert store.schema_version == SCHEMA_VERSION
    assert store.get_source("abc")["text"] == "Hello there, world."
    assert store.spec_counts()["total"] == 0  # tables from later migrations exist
    store.close()


def test_newer_schema_is_refused(tmp_path):
    db = tmp_path / "new.db"
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 5}")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer than this itcollect supports"):
        Store(db)


def test_transaction_rolls_back_everything_on_error(workspace):
    store = workspace.store
    with pytest.raises(RuntimeError):
        with store.transaction():
            run = store.begin_ingest_run("x.txt", "txt")
            store.add_source(source_id="s1", text="A sentence here.", lang="en", origin_file="x.txt", run_id=run)
            with store.transaction():  # nested joins the outer one
                store.add_reference("s1", "de", "Ein Satz hier.")
            raise RuntimeError("boom")
    assert store.get_source("s1") is None
    assert store.ingest_runs() == []


def test_background_checkpoints_copy_the_wal_into_the_database(tmp_path):
    # Automatic checkpoints are off for the writer inside the block; the thread's checkpoints are
    # the only way committed pages reach the database file, so the file growing shows they ran.
    import threading
    import time

    store = Store(tmp_path / "s.db")
    db_size = (tmp_path / "s.db").stat().st_size
    with store.background_checkpoints(interval_s=0.01):
        assert store.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        did = store.create_dialogue(origin="simulated")
        for i in range(40):
            store.add_turn(did, role="user" if i % 2 == 0 else "assistant", content="x" * 4000 + str(i),
                           author="model", idx=i)
        deadline = time.monotonic() + 20
        while (tmp_path / "s.db").stat().st_size <= db_size + 100_000 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert (tmp_path / "s.db").stat().st_size > db_size + 100_000
    assert store.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
    assert not any(t.name == "itcollect-checkpoint" for t in threading.enumerate())
    assert len(store.get_turns(did)) == 40
    store.close()
    reopened = Store(tmp_path / "s.db")
    assert [t["content"][-2:] for t in reopened.get_turns(did)][-1] == "39"


def test_utcnow_is_iso_utc_with_milliseconds():
    import re
    from datetime import datetime, timezone

    from itcollect.store.core import utcnow

    before = datetime.now(timezone.utc).replace(microsecond=0)
    stamps = [utcnow() for _ in range(2000)]
    after = datetime.now(timezone.utc)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", s) for s in stamps)
    assert stamps == sorted(stamps)
    parsed = [datetime.fromisoformat(s.replace("Z", "+00:00")) for s in (stamps[0], stamps[-1])]
    assert before <= parsed[0] <= parsed[1] <= after


def test_typed_settings_mirror_the_default_config_key_for_key():
    """The typed sections declare names and types only; the default config holds the values. Every
    section has exactly the default config's keys, each of the declared type, so neither side can
    drift (a key added to one and not the other fails here)."""
    import dataclasses
    import typing

    from itcollect import settings as S
    from itcollect.config import default_config, parse_config

    defaults = default_config()
    hints = {c: typing.get_type_hints(c) for c in (S.Settings, *(getattr(S, n) for n in S._SECTIONS))}

    def check(cls, values, where):
        names = {f.name for f in dataclasses.fields(cls)}
        optional = {f.name for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
        assert set(values) <= names and names - set(values) <= optional, (where, names ^ set(values))
        for key, value in values.items():
            hint = hints[cls][key]
            if isinstance(hint, type) and dataclasses.is_dataclass(hint):
                check(hint, value, f"{where}.{key}")
            elif hint in (int, float, str, bool):
                assert isinstance(value, hint) and not (hint is int and isinstance(value, bool)), (where, key, value)
            else:  # tuple[...] / Mapping[...]
                assert isinstance(value, (list, dict)), (where, key, value)

    check(S.Settings, defaults, "")
    typed = parse_config("[filter]\nmin_chrf = 12\n[export]\ntest_share = 0.1\n").settings
    assert typed.filter.min_chrf == 12.0 and isinstance(typed.filter.min_chrf, float)
    assert typed.export.test_share == 0.1 and typed.export.validation_share == defaults["export"]["validation_share"]
    assert typed.llm.judge.response_format == defaults["llm"]["judge"]["response_format"]
    assert S.settings({}) == parse_config("").settings  # a plain mapping is merged with the defaults


def test_every_package_of_the_code_is_installed():
    """A non-editable install (the Quick start's `pip install '.[local]'`) ships only the packages
    pyproject lists: a subpackage left out works in the editable dev install and fails for users
    (it happened: `itcollect.simulate`)."""
    from pathlib import Path

    import tomllib

    repo = Path(__file__).resolve().parent.parent
    tool = tomllib.loads((repo / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    listed = set(tool["packages"])
    code = {".".join(p.parent.relative_to(repo).parts) for p in (repo / "itcollect").rglob("*.py")
            if "__pycache__" not in p.parts}
    assert code - listed == set(), f"packages missing from pyproject.toml: {sorted(code - listed)}"
    # folders of data files too (prompts/annotator, the web page's static/): setuptools warns that it
    # will stop shipping a folder it finds but is not told about
    roots = {"itcollect": repo / "itcollect", **{name: repo / path for name, path in tool["package-dir"].items()}}
    folders = {".".join([name, *d.relative_to(root).parts]) for name, root in roots.items()
               for d in [root, *root.rglob("*")] if d.is_dir() and "__pycache__" not in d.parts
               and any(f.is_file() for f in d.iterdir())}
    assert folders - listed == set(), f"folders missing from pyproject.toml packages: {sorted(folders - listed)}"
    # and every data file in them matches a package-data pattern (langid's word list, the demo's dialogues)
    from fnmatch import fnmatch

    patterns = tool["package-data"]
    unshipped = [str(f.relative_to(repo)) for name, root in roots.items() for f in root.rglob("*")
                 if f.is_file() and f.suffix not in (".py", ".pyc") and "__pycache__" not in f.parts
                 and not any(fnmatch(f.name, pat)
                             for pat in patterns.get(".".join([name, *f.parent.relative_to(root).parts]), []))]
    assert unshipped == [], f"data files no package-data pattern of pyproject.toml ships: {unshipped}"
