"""Helpers for the tests of ``itcollect session --web``: the real server as a subprocess (started
through the CLI on a free port) and a small HTTP client that logs in with a link, keeps the cookie
and the CSRF token, and reads the server-sent answer stream. Standard library only."""

from __future__ import annotations

import http.client as httpclient
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .conftest import run_cli

LISTENING = re.compile(r"^listening on (http://127\.0\.0\.1:(\d+))$")


class WebServer:
    """``itcollect -C WS session --web --port 0 ...`` in a subprocess; ``.url``, ``.stop()``, ``.kill9()``."""

    def __init__(self, ws: Path, llm_url: str | None, *extra: str) -> None:
        """``llm_url`` None: ``--local`` (the bundled model behind a llama.cpp server it starts)."""
        env = dict(os.environ, ITCOLLECT_PROGRESS="0")
        env.pop("OPENAI_BASE_URL", None)
        endpoint = ["--local"] if llm_url is None else ["--base-url", llm_url, "--model", "fake-model"]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "itcollect", "-C", str(ws), "session", "--web", "--port", "0",
             *endpoint, *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.first_line = self.proc.stdout.readline().rstrip("\n")
        m = LISTENING.match(self.first_line)
        if not m:
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""
            self.proc.kill()
            raise AssertionError(f"unexpected first line {self.first_line!r}; stderr: {err}")
        self.url = m.group(1)
        self.port = int(m.group(2))
        # the server writes an access-log line per request to stderr: read it as it comes, so a
        # full pipe never blocks the server, and keep it for the tests that look at it
        self._err: list[str] = []
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        stream = self.proc.stderr
        try:
            for line in iter(stream.readline, ""):
                self._err.append(line)
        except (ValueError, OSError):  # closed under us
            pass

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM (as a service manager stops it); the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._close()

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self._close()

    def _close(self) -> None:
        if self.proc.poll() is not None:
            self._reader.join(10)
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None and not f.closed:
                f.close()

    def stderr(self) -> str:
        """What the server wrote to stderr so far (all of it once it has stopped)."""
        if self.proc.poll() is not None:
            self._reader.join(10)
        return "".join(self._err)


def add_account(ws: Path, name: str, role: str = "annotator") -> str:
    """``itcollect annotators add``; returns the login URL (its last line)."""
    r = run_cli("-C", str(ws), "annotators", "add", name, "--role", role)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip().splitlines()[-1]


def http(base: str, method: str, path: str, *, body: Any = None, headers: dict[str, str] | None = None,
         timeout: float = 30, chunked: bool = False) -> tuple[int, dict[str, str], bytes, list[str]]:
    """One request: (status, headers (lower-case names), body, every Set-Cookie). ``chunked``:
    send an iterable body without a Content-Length."""
    u = urlsplit(base)
    conn = httpclient.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {}, encode_chunked=chunked)
        resp = conn.getresponse()
        data = resp.read()
        cookies = resp.headers.get_all("set-cookie") or []
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data, cookies
    finally:
        conn.close()


class Client:
    """One browser's worth of state: the session cookie, the CSRF token, the last state."""

    def __init__(self, base: str, login_url: str | None = None, *, tab: str = "t1") -> None:
        self.base = base
        self.cookie: str | None = None
        self.csrf = ""
        self.tab = tab
        self.last: dict[str, Any] = {}
        self.lang: str | None = None  # the page's language (X-Lang), as the page sends it
        if login_url is not None:
            self.login(login_url)

    def login(self, login_url: str) -> int:
        u = urlsplit(login_url)
        status, headers, _, cookies = http(self.base, "GET", f"{u.path}?{u.query}")
        for c in cookies:
            if c.startswith("itcollect_session="):
                self.cookie = c.split(";", 1)[0]
        self.login_headers = headers
        self.login_cookies = cookies
        return status

    def headers(self, csrf: bool = True) -> dict[str, str]:
        h = {"X-Tab": self.tab}
        if self.cookie:
            h["Cookie"] = self.cookie
        if csrf and self.csrf:
            h["X-CSRF-Token"] = self.csrf
        if self.lang:
            h["X-Lang"] = self.lang
        return h

    def get(self, path: str) -> tuple[int, dict[str, Any]]:
        status, _, data, _ = http(self.base, "GET", path, headers=self.headers())
        out = json.loads(data) if data else {}
        if status == 200 and isinstance(out, dict) and out.get("csrf"):
            self.csrf = out["csrf"]
        return status, out

    def state(self, load: bool = False) -> dict[str, Any]:
        status, out = self.get("/api/state" + ("?load=1" if load else ""))
        assert status == 200, (status, out)
        self.last = out
        return out

    def post(self, path: str, body: dict[str, Any] | None = None, *, csrf: bool = True,
             version: bool = True, raw: bytes | None = None,
             extra: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        payload = dict(body or {})
        if version and "version" not in payload and self.last.get("dialogue"):
            payload["version"] = self.last["dialogue"]["version"]
        data = raw if raw is not None else json.dumps(payload).encode()
        headers = {**self.headers(csrf), "Content-Type": "application/json", **(extra or {})}
        status, _, resp, _ = http(self.base, "POST", path, body=data, headers=headers)
        out = json.loads(resp) if resp else {}
        if status == 200 and "dialogue" in out:
            self.last = out
        return status, out

    def act(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        status, out = self.post(path, body)
        assert status == 200, (path, status, out)
        return out

    def stream(self, timeout: float = 60) -> list[tuple[str, dict[str, Any]]]:
        """The answer stream, read to its ``end`` event."""
        u = urlsplit(self.base)
        conn = httpclient.HTTPConnection(u.hostname, u.port, timeout=timeout)
        events: list[tuple[str, dict[str, Any]]] = []
        try:
            conn.request("GET", "/api/stream", headers=self.headers())
            resp = conn.getresponse()
            assert resp.status == 200, resp.status
            event = None
            while True:
                line = resp.fp.readline().decode("utf-8")
                if not line:
                    break
                line = line.rstrip("\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event:
                    events.append((event, json.loads(line[6:])))
                    if event == "end":
                        break
        finally:
            conn.close()
        return events

    def answer(self, timeout: float = 60) -> dict[str, Any]:
        """Wait for the answer being streamed; the state after it."""
        deadline = time.time() + timeout
        while True:
            st = self.state()
            if not st["streaming"]:
                return st
            if time.time() > deadline:
                raise AssertionError("the answer did not arrive")
            self.stream(timeout=max(1.0, deadline - time.time()))
