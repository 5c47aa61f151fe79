"""The local llama.cpp endpoint: model discovery, server lifecycle, serve-local.

Real llama.cpp server, real bundled model, real HTTP through the openai SDK. Needs
``itcollect[local]``; .ci/run installs it (README Quick start line 2).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from itcollect.config import parse_config
from itcollect.kernel.errors import ServiceError
from itcollect.llm.local import (
    BUNDLED_DISTRIBUTION,
    BUNDLED_MODEL_NAME,
    LOCAL_API_KEY,
    find_bundled_model,
    local_server,
    resolve_model,
)

from .conftest import run_cli
from .waiting import wait_until

_HAVE_LLAMA = importlib.util.find_spec("llama_cpp") is not None

pytestmark = [
    pytest.mark.llamacpp,
    pytest.mark.skipif(not _HAVE_LLAMA, reason="llama_cpp is not importable: pip install -e '.[test,local]' "
                                                 "to run the real llama.cpp integration tests"),
]


def _models(base_url: str) -> list[str]:
    import json

    with urllib.request.urlopen(f"{base_url}/models", timeout=10) as resp:
        return [m["id"] for m in json.loads(resp.read())["data"]]


def _refused(base_url: str) -> bool:
    try:
        urllib.request.urlopen(f"{base_url}/models", timeout=3)
    except (urllib.error.URLError, ConnectionError, OSError):
        return True
    return False


def _wait_gone(pid: int, timeout: float = 15) -> bool:
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def test_bundled_model_is_found_inside_the_installed_distribution():
    path = find_bundled_model()
    assert path.is_file() and path.suffix == ".gguf"
    assert path.stat().st_size > 50_000_000
    with path.open("rb") as f:
        assert f.read(4) == b"GGUF"
    dist = importlib.metadata.distribution(BUNDLED_DISTRIBUTION)
    assert path in {Path(str(dist.locate_file(f))).resolve() for f in dist.files}
    assert resolve_model(parse_config("")) == (path, BUNDLED_MODEL_NAME)


def test_local_server_answers_plain_and_streaming_and_stops_on_error():
    import openai
    import psutil

    with pytest.raises(RuntimeError, match="boom"):
        with local_server(parse_config("[local]\nn_ctx = 1024\nn_threads = 1\n")) as (base_url, model):
            assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
            assert model == BUNDLED_MODEL_NAME
            assert _models(base_url) == [model]
            server_pids = [p.pid for p in psutil.Process().children(recursive=True)
                           if "llama_cpp.server" in " ".join(p.cmdline())]
            assert len(server_pids) == 1
            client = openai.OpenAI(base_url=base_url, api_key=LOCAL_API_KEY, max_retries=0, timeout=120)
            messages = [{"role": "system", "content": "You are a translator."},
                        {"role": "user", "content": "Translate into French: The parliament passed the bill."}]
            reply = client.chat.completions.create(model=model, messages=messages, max_tokens=24, temperature=0)
            assert reply.choices[0].message.content.strip()
            assert reply.usage.prompt_tokens > 10 and 0 < reply.usage.completion_tokens <= 24
            assert reply.choices[0].finish_reason in ("stop", "length")
            messages += [{"role": "assistant", "content": reply.choices[0].message.content},
                         {"role": "user", "content": "Make it shorter."}]
            stream = client.chat.completions.create(model=model, messages=messages, max_tokens=24, temperature=0,
                                                    stream=True)
            chunks = list(stream)
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert len(chunks) > 2 and text.strip()
            assert chunks[-1].choices[0].finish_reason in ("stop", "length")
            raise RuntimeError("boom")
    assert _refused(base_url)
    assert _wait_gone(server_pids[0])


def _start_serve_local(tmp_path: Path, *args: str) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, ITCOLLECT_PROGRESS="0")
    env.pop("OPENAI_BASE_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "itcollect", "serve-local", "--n-ctx", "512", "--n-threads", "1", *args],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()  # blocks until the server answers (or the command fails)
    if not line.startswith("base_url: "):
        proc.kill()
        raise AssertionError(f"serve-local printed {line!r}; stderr: {proc.stderr.read()}")
    return proc, line.split(": ", 1)[1].strip()


def _server_child(proc: subprocess.Popen) -> int:
    import psutil

    children = [p for p in psutil.Process(proc.pid).children(recursive=True)
                if "llama_cpp.server" in " ".join(p.cmdline())]
    assert len(children) == 1
    return children[0].pid


def test_serve_local_prints_url_answers_and_stops_on_sigint(tmp_path):
    proc, base_url = _start_serve_local(tmp_path)
    try:
        assert proc.stdout.readline().split() == ["model:", BUNDLED_MODEL_NAME]
        assert _models(base_url) == [BUNDLED_MODEL_NAME]
        server_pid = _server_child(proc)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert "Stopped the local server" in proc.stderr.read()
        assert _refused(base_url)
        assert _wait_gone(server_pid)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_serve_local_killed_hard_leaves_no_orphan_server(tmp_path):
    proc, base_url = _start_serve_local(tmp_path)
    server_pid = _server_child(proc)
    proc.kill()  # kill -9: no Python cleanup runs; the server must still go (PR_SET_PDEATHSIG)
    proc.wait(timeout=30)
    assert _wait_gone(server_pid), "llama.cpp server outlived a kill -9 of serve-local"
    assert _refused(base_url)


def test_startup_failure_is_one_clear_error(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)  # a GGUF header and nothing else: llama.cpp refuses to load it
    r = run_cli("serve-local", "--model-path", str(bad), cwd=tmp_path, timeout=120)
    assert r.returncode == 1
    assert "the local llama.cpp server (pid " in r.stderr and "exited with code" in r.stderr and "broken.gguf" in r.stderr
    assert "Traceback" not in r.stderr.splitlines()[-1]


def test_busy_port_is_reported(tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(ServiceError, match="address already in use"):
            with local_server(parse_config(f"[local]\nport = {port}\nn_ctx = 512\n")):
                pass


def _log_path_in(message: str) -> Path:
    path = Path(message.split("full log: ", 1)[1].split(";", 1)[0].strip())
    assert path.is_file(), message
    return path


def test_serve_local_reports_a_server_that_crashed(tmp_path):
    """A server of ours that dies (here: SIGSEGV, as a build for another CPU does) is reported as
    such — pid, signal, log tail, log file — and serve-local exits 1."""
    proc, base_url = _start_serve_local(tmp_path)
    try:
        server_pid = _server_child(proc)
        os.kill(server_pid, signal.SIGSEGV)
        assert proc.wait(timeout=30) == 1
        err = proc.stderr.read()
        line = [ln for ln in err.splitlines() if ln.startswith("itcollect: error:")][-1]
        assert f"the local llama.cpp server (pid {server_pid}) died with signal 11 (SIGSEGV)" in line
        assert "last lines of its log:" in line and "--force-reinstall" in line
        assert "is the server running" not in err
        assert "llama" in _log_path_in(line).read_text(errors="replace").lower()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_simulate_local_says_the_server_it_started_died_not_is_it_running(tmp_path):
    from .test_session import make_workspace

    ws = make_workspace(tmp_path / "ws", 3, types=("translate", "polish"))
    cfg = ws / "itcollect.toml"
    cfg.write_text(cfg.read_text(encoding="utf-8").replace("n_ctx = 2048", "n_ctx = 1024")
                   .replace("n_threads = 0", "n_threads = 1"), encoding="utf-8")
    env = dict(os.environ, ITCOLLECT_PROGRESS="0")
    env.pop("OPENAI_BASE_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "itcollect", "-C", str(ws), "simulate", "--local"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    import psutil

    try:
        def server():
            try:
                return next((p for p in psutil.Process(proc.pid).children(recursive=True)
                             if "llama_cpp.server" in " ".join(p.cmdline())), None)
            except psutil.NoSuchProcess:
                return None

        def started():
            if proc.poll() is not None:
                raise AssertionError(f"simulate ended first: {proc.communicate()}")
            return server()

        child = wait_until(started, 120, interval=0.05, what="the llama.cpp server to start")
        port = int(child.cmdline()[child.cmdline().index("--port") + 1])
        wait_until(lambda: not _refused(f"http://127.0.0.1:{port}/v1"), 120, interval=0.05, what="the server to answer")
        import sqlite3

        def calls_sent() -> int:  # the ledger row of a call is committed before the call is sent
            with sqlite3.connect(ws / "itcollect.db") as db:
                return db.execute("SELECT COUNT(*) FROM llm_calls").fetchone()[0]

        wait_until(calls_sent, 120, interval=0.05, what="the first call")
        child.send_signal(signal.SIGSEGV)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, (out, err)
    assert "is the server running" not in err
    line = [ln for ln in err.splitlines() if ln.startswith("itcollect: error:")][-1]
    assert f"the local llama.cpp server (pid {child.pid}) died with signal 11 (SIGSEGV)" in line
    log = _log_path_in(line)
    assert log.parent == (ws / ".itcollect" / "logs").resolve()
    # nothing of the dialogues was lost or marked failed because of the crash
    r = run_cli("-C", str(ws), "stats", "--json")
    import json

    assert json.loads(r.stdout)["specs"]["failed"] == 0


def test_quick_start_builds_the_pinned_llama_cpp_portably():
    """The README's install lines carry the portable CMake flags, and the [local] extra is bounded
    to the llama-cpp-python release the demo and these tests were run with."""
    from itcollect.llm.local import LLAMA_CPP_VERSION, PORTABLE_CMAKE_ARGS

    repo = Path(__file__).resolve().parent.parent
    readme = (repo / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    lines = [ln for ln in block.strip().splitlines()]
    assert len(lines) == 2
    for line in lines:
        assert line.startswith(f'CMAKE_ARGS="{PORTABLE_CMAKE_ARGS}" pip install ')
    assert "-DGGML_NATIVE=OFF" in PORTABLE_CMAKE_ARGS
    pyproject = (repo / "pyproject.toml").read_text(encoding="utf-8")
    major, minor, patch = LLAMA_CPP_VERSION.split(".")
    assert f'"llama-cpp-python[server]>={LLAMA_CPP_VERSION},<{major}.{minor}.{int(patch) + 1}"' in pyproject
    assert importlib.metadata.version("llama-cpp-python") == LLAMA_CPP_VERSION
