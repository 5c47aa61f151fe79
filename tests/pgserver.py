"""A real PostgreSQL server for the test suite (issue 25): ``initdb`` in a temporary folder, started
with ``pg_ctl`` on a free port, as the ``postgres`` user when the suite runs as root (PostgreSQL
refuses to run as root, and CI runs as root), stopped at the end of the session. Each test gets a
database of its own (``CREATE DATABASE``), dropped after it.

Where ``initdb`` / ``pg_ctl`` are missing the PostgreSQL tests skip with that reason, except under
CI (``CI`` set), where they fail loudly: ``.ci/run`` installs the Debian ``postgresql`` package.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

_BIN_DIRS = ("/usr/local/bin", *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True))


def _tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in _BIN_DIRS:
        if os.access(os.path.join(folder, name), os.X_OK):
            return os.path.join(folder, name)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """One running server; ``database()`` makes a fresh, empty database and returns its URL."""

    def __init__(self) -> None:
        initdb, pg_ctl = _tool("initdb"), _tool("pg_ctl")
        if not initdb or not pg_ctl:
            raise RuntimeError("initdb / pg_ctl not found (install the Debian postgresql package)")
        self.pg_ctl = pg_ctl
        self.root = Path(tempfile.mkdtemp(prefix="itcollect-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", "postgres", "--"]
            os.chmod(self.root, 0o755)
            shutil.chown(self.root, "postgres")
        self._names = itertools.count(1)
        self._run([initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                   "--no-locale"])
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   f"-c max_connections=200 -c full_page_writes=off")
        self._run([pg_ctl, "-D", str(self.data), "-l", str(self.root / "log"), "-o", options, "-w",
                   "-t", "60", "start"])

    def _run(self, argv: list[str]) -> None:
        proc = subprocess.run([*self.as_user, *argv], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            log = self.root / "log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(argv[:2])} failed: {proc.stderr.strip()} {tail}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql)

    def database(self) -> str:
        name = f"itc_{os.getpid()}_{next(self._names)}"
        self.admin(f"CREATE DATABASE {name}")
        return self.url(name)

    def drop(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        try:
            self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        except Exception:  # pragma: no cover - the server went away; stop() cleans up
            pass

    def stop(self) -> None:
        try:
            self._run([self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop"])
        except (RuntimeError, subprocess.TimeoutExpired):  # pragma: no cover
            pass
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server():
    try:
        import psycopg  # noqa: F401
        server = PgServer()
    except (ImportError, RuntimeError, OSError) as exc:
        if os.environ.get("CI"):
            raise RuntimeError(f"PostgreSQL is required in CI and could not start: {exc}") from None
        pytest.skip(f"no PostgreSQL server for the tests: {exc}")
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server):
    """The URL of a fresh, empty database on the suite's server, dropped after the test."""
    url = pg_server.database()
    yield url
    pg_server.drop(url)
