"""Selecting the store (issue 25): ``[store] url``, ``ITCOLLECT_STORE_URL``, ``init --store``; a
password in a URL is refused with one line and never written or printed."""

from __future__ import annotations

import pytest

from itcollect.config import DEFAULT_CONFIG_TEXT, parse_config
from itcollect.kernel.errors import ConfigError
from itcollect.kernel.storeurl import STORE_URL_ENV, check_store_url, describe, store_url
from itcollect.workspace import config_text_with_store

from .conftest import run_cli

SECRET = "s3cr3t-pw"


def test_default_config_has_an_empty_store_url_that_means_the_workspace_file(tmp_path):
    assert parse_config(DEFAULT_CONFIG_TEXT).settings.store.url == ""
    r = run_cli("init", str(tmp_path / "ws"), env={STORE_URL_ENV: ""})
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "ws" / "itcollect.db").is_file()


@pytest.mark.parametrize("url", [
    f"postgresql://itc:{SECRET}@db.internal/itc",
    f"postgres://itc:{SECRET}@db.internal:5433/itc?sslmode=require",
    f"postgresql://itc@db.internal/itc?password={SECRET}",
])
def test_a_password_in_the_url_is_refused_everywhere_with_one_line(tmp_path, url):
    assert "PGPASSWORD" in (check_store_url(url) or "")
    # in the config file
    with pytest.raises(ConfigError) as err:
        parse_config(config_text_with_store("postgresql://itc@h/itc").replace("itc@h", f"itc:{SECRET}@h"))
    assert "store.url" in str(err.value) and "PGPASSWORD" in str(err.value) and SECRET not in str(err.value)
    # on the command line: nothing is created, one line, the secret not echoed
    r = run_cli("init", str(tmp_path / "ws"), "--store", url)
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1 and "PGPASSWORD" in r.stderr and "~/.pgpass" in r.stderr
    assert SECRET not in r.stderr + r.stdout
    assert not (tmp_path / "ws").exists()
    # from the environment, over a workspace that has none
    assert run_cli("init", str(tmp_path / "plain"), env={STORE_URL_ENV: ""}).returncode == 0
    r = run_cli("-C", str(tmp_path / "plain"), "stats", env={STORE_URL_ENV: url})
    assert r.returncode == 1 and STORE_URL_ENV in r.stderr and SECRET not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_only_postgresql_urls_are_store_urls():
    assert check_store_url("") is None
    assert check_store_url("postgresql://itc@db/itc?sslmode=require&sslrootcert=/ca.pem") is None
    assert "postgresql://" in (check_store_url("mysql://x@y/z") or "")
    assert "postgresql://" in (check_store_url("itcollect.db") or "")


def test_the_environment_overrides_the_config(monkeypatch):
    monkeypatch.setenv(STORE_URL_ENV, "postgresql://env@h/envdb")
    assert store_url("postgresql://file@h/filedb") == "postgresql://env@h/envdb"
    monkeypatch.setenv(STORE_URL_ENV, "")
    assert store_url("postgresql://file@h/filedb") == "postgresql://file@h/filedb"
    assert store_url("") == ""


def test_init_store_writes_exactly_the_url_line():
    url = "postgresql://itc@db.internal:5433/itc?sslmode=require"
    text = config_text_with_store(url)
    changed = [(a, b) for a, b in zip(DEFAULT_CONFIG_TEXT.splitlines(), text.splitlines()) if a != b]
    assert changed == [('url = ""', f'url = "{url}"')]
    assert parse_config(text).settings.store.url == url


def test_describe_names_host_port_database_and_no_parameters():
    assert describe("postgresql://itc@db.internal:5433/itc?sslmode=require") == "db.internal:5433/itc"
    assert describe("postgresql://itc@db.internal/itc") == "db.internal:5432/itc"
    assert describe("postgresql:///itc?host=/run/pg&port=6000").startswith("/run/pg:")
