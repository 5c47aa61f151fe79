"""Workspace, config, store and CLI contract of the foundation."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pydantic
import pytest

from itcollect.config import (
    DEFAULT_CONFIG_TEXT,
    default_config,
    parse_config,
    settings,
    validated,
    with_values,
)
from itcollect.config.render import default_config_text, markdown_reference
from itcollect.kernel.errors import ConfigError, StoreError
from itcollect.llm.endpoints import resolve_endpoints
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
    assert resolve_endpoints(cfg.settings)["annotator"].model == "m1"  # inherits the empty value


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


_STORE_TEXT = (
    "[store]\n"
    "# Where the store lives.\n"
    "# Empty: the workspace's itcollect.db. A PostgreSQL database: postgresql://USER@HOST[:PORT]/DB\n"
    "# (libpq URL parameters such as ?sslmode=require pass through; extra `itcollect[postgres]`). The\n"
    "# password never goes here: libpq reads PGPASSWORD or ~/.pgpass. ITCOLLECT_STORE_URL overrides this.\n"
    "url = \"\"\n"
    "\n")

_LANGUAGE_TEXT = (
    "# The pages' language (buttons, messages, warnings) for an account that has not chosen one on\n"
    "# the page (the choice is stored per account): \"en\", \"zh\", or \"auto\" = the browser's\n"
    "# (Chinese when it prefers Chinese, else English).\n"
    "language = \"auto\"\n")

_WAIT_TEXT = (
    "# Seconds between looks for work while every spec left is leased by someone else: the session\n"
    "# says so and waits (protocol: a `waiting` event each time) until a lease is released or expires.\n"
    "wait_seconds = 5.0\n")

_ACCESS_LOG_TEXT = (
    "# Where the access log goes: one line per request (UTC time, client, method, path without its\n"
    "# query, status, account, milliseconds). \"\" = stderr; a path (relative to the workspace) =\n"
    "# appended to that file. No line ever holds a login token.\n"
    "access_log = \"\"\n")

_ANNOTATOR_NAMES_TEXT = (
    "# The `annotator` column: \"keep\" (the account names) or \"pseudonymise\" (ann- and a keyed hash\n"
    "# of each name, stable across exports with the same key; the key is $ITCOLLECT_PSEUDONYM_KEY, else\n"
    "# the workspace's .itcollect/pseudonym.key, made on first use; never exported).\n"
    "annotator_names = \"keep\"\n")

_PREFERENCE_PAIRS_TEXT = (
    "# Preference rows (export --format dpo) of a turn compared among more than two systems:\n"
    "# \"best_vs_worst\" (one row: the chosen answer against the worst) or \"best_vs_each\" (one row for\n"
    "# each answer it beat).\n"
    "preference_pairs = \"best_vs_worst\"\n")


def test_default_config_text_is_generated_byte_for_byte_as_released(tmp_path):
    """The default file comes from the declaration (itcollect/config/schema.py); it is, byte for
    byte, what `init` wrote before the declaration existed (the fixture saved from 1f145b1), and
    `init` writes it."""
    released = (Path(__file__).parent / "data" / "default_config_1f145b1.toml").read_text(encoding="utf-8")
    # keys added since, deliberately, each with its comment: [export] preference_pairs (issue 23)
    released = released.replace("shard_size = 50000\n", "shard_size = 50000\n" + _PREFERENCE_PAIRS_TEXT)
    # and [store] url (issue 25), after [workspace]
    released = released.replace("\n[ingest]\n", "\n" + _STORE_TEXT + "[ingest]\n", 1)
    # [web] language (issue 24 item 6), [web] access_log and [export] annotator_names (issue 24 item 9)
    released = released.replace('secure_cookie = "auto"\n', 'secure_cookie = "auto"\n' + _LANGUAGE_TEXT, 1)
    released = released.replace('trusted_proxies = "127.0.0.1"\n', 'trusted_proxies = "127.0.0.1"\n' + _ACCESS_LOG_TEXT, 1)
    released = released.replace('preference_pairs = "best_vs_worst"\n',
                                'preference_pairs = "best_vs_worst"\n' + _ANNOTATOR_NAMES_TEXT, 1)
    # [session] wait_seconds (issue 24 item 8)
    released = released.replace("lease_minutes = 30\n", "lease_minutes = 30\n" + _WAIT_TEXT, 1)
    assert default_config_text() == DEFAULT_CONFIG_TEXT == released
    assert run_cli("init", str(tmp_path / "ws")).returncode == 0
    assert (tmp_path / "ws" / "itcollect.toml").read_text(encoding="utf-8") == released
    # Every declared default is what the file says, key for key and type for type (the file has no
    # [llm.systems]: an empty open table writes nothing).
    import tomllib

    def same(written, declared, where=""):
        assert set(written) == set(declared) - {"systems"}, where
        for key, value in written.items():
            if isinstance(value, dict) and key not in ("pairs", "instruction_langs", "turns", "interaction_types"):
                same(value, declared[key], f"{where}.{key}")
            else:
                assert value == declared[key] and type(value) is type(declared[key]), (where, key)

    written = tomllib.loads(released)
    assert written.pop("prices") == default_config()["prices"]
    same(written, {k: v for k, v in default_config().items() if k != "prices"})
    assert parse_config(released) == default_config() == validated({})


def test_docs_config_md_is_the_generated_reference():
    """docs/config.md is generated from the declaration: regenerate it with
    `python -m itcollect.config --markdown > docs/config.md` when a setting changes."""
    page = (Path(__file__).resolve().parent.parent / "docs" / "config.md").read_text(encoding="utf-8")
    assert page == markdown_reference(), "docs/config.md is stale: python -m itcollect.config --markdown > docs/config.md"
    for key in ("`min_chrf`", "`[llm.judge]`", "`[prices]`", "`[llm.systems.NAME]`", "`response_format`"):
        assert key in page


def test_typed_settings_come_from_the_declaration():
    from itcollect import settings as S

    typed = parse_config("[filter]\nmin_chrf = 12\n[export]\ntest_share = 0.1\n").settings
    assert typed.filter.min_chrf == 12.0 and isinstance(typed.filter.min_chrf, float)
    assert typed.export.test_share == 0.1 and typed.export.validation_share == 0.02
    assert typed.llm.judge.response_format == "json_schema" and typed.llm.annotator.max_tokens == 200
    assert typed.workspace.languages == ("en", "zh", "de", "fr") and typed.prices["gpt-4o"] == (2.5, 10.0, 1.25, 5.0)
    assert typed.llm.systems == {}
    assert S.settings({}) == parse_config("").settings  # a plain mapping is merged with the defaults
    assert S.settings({"filter": {"min_chrf": 3}}).filter.min_chrf == 3.0
    with pytest.raises(pydantic.ValidationError):
        typed.filter.min_chrf = 1.0  # frozen
    # A config changed after loading is read as it is now, and checked again.
    cfg = parse_config("")
    cfg["filter"]["min_user_turns"] = 2
    assert settings(cfg).filter.min_user_turns == 2
    cfg["filter"]["min_user_turns"] = "2"
    with pytest.raises(ConfigError, match="'filter.min_user_turns' must be an integer"):
        settings(cfg)
    cfg["filter"]["min_user_turns"] = 1
    # Options over the file: a validated copy, the original untouched.
    quick = with_values(cfg, "llm", max_retries=2)
    assert quick.settings.llm.max_retries == 2 and cfg["llm"]["max_retries"] == 6
    with pytest.raises(ConfigError, match="local.n_ctx must be at least 256 tokens"):
        with_values(None, "local", n_ctx=16)


def test_assistant_systems_are_an_open_table_of_the_assistant_keys():
    cfg = parse_config('[llm.systems.base]\nmodel = "m-base"\n[llm.systems.tuned]\nmodel = "m-tuned"\n'
                       'base_url = "http://127.0.0.1:9/v1"\ntemperature = 0.2\n')
    systems = cfg.settings.llm.systems
    assert list(systems) == ["base", "tuned"] and systems["tuned"].temperature == 0.2
    assert systems["base"].max_tokens == 512 and systems["base"].base_url == ""  # the assistant's defaults
    with pytest.raises(ConfigError, match="unknown key 'llm.systems.base.response_format'"):
        parse_config('[llm.systems.base]\nresponse_format = "none"\n')
    with pytest.raises(ConfigError, match="'llm.systems.base' must be a table"):
        parse_config("[llm.systems]\nbase = 3\n")


@pytest.mark.parametrize("text, message", [
    ("[llm]\ntimeout_s = 'x'\n", "'llm.timeout_s' must be int or float, got 'x'"),
    ("[llm]\nconcurrency = true\n", "'llm.concurrency' must be an integer, got True"),
    ("[filter]\nnear_dup = 1\n", "'filter.near_dup' must be true/false, got 1"),
    ("[web]\nhost = 1\n", "'web.host' must be a string, got 1"),
    ("llm = 3\n", "'llm' must be a table"),
    ("[mix]\npairs = 3\n", "[mix.pairs] must be a table"),
    ('[mix]\npairs = { "en-zh" = "a" }\n', "mix.pairs.en-zh must be int or float, got 'a'"),
    ('[mix]\npairs = { "en-zh" = 0 }\n', "mix.pairs needs at least one positive weight and none negative"),
    ("[mix]\ninstruction_langs = { fr = 1 }\n", "mix.instruction_langs: 'fr' (instructions are written in en or zh)"),
    ('[mix]\nturns = { "0" = 1 }\n', "mix.turns: '0' is not a positive whole number of user turns"),
    ("[mix]\nmust_include_share = 2\n", "mix.must_include_share must be between 0 and 1"),
    ('[workspace]\nlanguages = ["en", "xx"]\n', "workspace.languages: unsupported language 'xx'"),
    ("[workspace]\nlanguages = [1]\n", "'workspace.languages' must be a list of strings, got 1 in it"),
    ('[workspace]\nlanguages = ["en", "zh"]\n', "mix.pairs: 'en-de' is not SRC-TGT over workspace.languages"),
    ("[prices]\nm = 3\n", "prices.m must be a list, got 3"),
    ("[prices]\nm = [1, 2, 3]\n", "prices.m must be [input, output] or [input, output, batch_input, batch_output]"),
    ("[batch]\npoll_max_s = 1.0\n", "batch: poll_interval_s must be > 0, poll_backoff >= 1 and poll_max_s >= "
                                      "poll_interval_s"),
    ("[export]\ntest_share = 0.99\n", "export.validation_share + export.test_share must be in [0, 1)"),
    ('[llm.judge]\nresponse_format = "xml"\n', "llm.judge.response_format must be one of json_schema, json_object, "
                                              "none"),
    ('[ingest]\nlangid_backend = "fasttext"\n', 'ingest.langid_backend must be "lingua" or "langdetect"'),
    ('[web]\npublic_url = "example.org"\n', "web.public_url must start with http:// or https://"),
    ("[web]\nmax_body_bytes = 10\n", "web.max_body_bytes must be at least 1024"),
    ("[judge]\nmajor = -1\n", "judge.major must be 0 or more (a weight)"),
    ("[filter]\nmax_critical_errors = -2\n", "filter.max_critical_errors must be -1 (off) or 0 or more"),
    ("[local]\nport = 70000\n", "local.port must be 0 (any free port) or a TCP port number"),
])
def test_config_errors_name_the_key_and_the_file(text, message):
    with pytest.raises(ConfigError) as e:
        parse_config(text, "/ws/itcollect.toml")
    assert message in str(e.value) and str(e.value).startswith("/ws/itcollect.toml: ")


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
