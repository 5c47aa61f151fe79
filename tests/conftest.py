"""Shared fixtures: real workspaces on disk, the real CLI entry point, real SQLite."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data"
SAMPLES = DATA / "samples"


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str, cwd: str | Path | None = None, env: dict | None = None, input: str | None = None,
            timeout: float = 300) -> CliResult:
    """Run ``itcollect`` as a user would: a subprocess through the real entry point."""
    full_env = dict(os.environ)
    full_env.pop("OPENAI_BASE_URL", None)
    full_env.setdefault("ITCOLLECT_PROGRESS", "0")
    if env:
        full_env.update(env)
    proc = subprocess.run([sys.executable, "-m", "itcollect", *args], cwd=cwd, env=full_env, input=input,
                          capture_output=True, text=True, timeout=timeout)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


pytest_plugins = ["tests.pgserver"]


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    """A fresh, migrated store on each backend: the workspace's SQLite file, and a database of its
    own on the suite's PostgreSQL server (tests/pgserver.py)."""
    from itcollect.store import Store

    if request.param == "sqlite":
        target = str(tmp_path / "itcollect.db")
    else:
        target = request.getfixturevalue("pg_url")
    s = Store(target)
    yield s
    s.close()


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def workspace(tmp_path):
    """A fresh initialised workspace; yields the Workspace object (closed afterwards)."""
    from itcollect.workspace import init_workspace

    ws = init_workspace(tmp_path / "ws")
    yield ws
    ws.close()


@pytest.fixture
def fake_openai():
    """The OpenAI-compatible loopback server (tests/fakeserver.py), started on a free port.

    ``.base_url`` (http://127.0.0.1:PORT/v1), ``.set_faults({...})`` (seeded per-kind rates),
    ``.queue_faults(kind, ...)`` (the next requests' faults, in order), ``.set_latency(s)``,
    ``.responder = fn``, ``.requests`` / ``.counts`` / ``.answered`` (per call key) /
    ``.paid_twice()`` / ``.max_in_flight``. See tests/fakeserver.py.
    """
    from tests.fakeserver import FakeOpenAI

    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture
def batch_server():
    """The loopback server with the OpenAI Files and Batches endpoints (tests/fake_batch.py, its knobs
    on ``.batch_api``), answering with the responder of tests/responders.py (``.responder = fn``
    replaces it, for the chat and the batch answers alike)."""
    from tests.fake_batch import FakeBatchAPI
    from tests.fakeserver import FakeOpenAI
    from tests.responders import responder

    api = FakeBatchAPI()
    server = FakeOpenAI(extra_routes=api.install, responder=responder).start()
    server.batch_api = api
    yield server
    server.stop()


@pytest.fixture
def batch_cfg(workspace):
    """The ``workspace`` fixture's config with batches polled every 10-20 ms."""
    c = workspace.config
    c["batch"]["poll_interval_s"] = 0.01
    c["batch"]["poll_max_s"] = 0.02
    return c


@pytest.fixture
def web_servers():
    """The ``session --web`` servers a test starts (tests/webutil.WebServer): killed at its end."""
    started: list = []
    yield started
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait(10)
        s._close()
