"""The web server's guards around every request: the access log (one line per request) and the
login rate limit. Both keep login tokens out of every log: a path is logged without its query,
and ``/login`` sends the browser on to a URL without the token.

Failed logins are counted in the store (:mod:`itcollect.store.webguard`), so a restart does not
reset them: after :data:`MAX_FAILURES` failed logins within :data:`WINDOW_S` seconds from one
client, every login from it gets 429 with ``Retry-After`` until the oldest failure of the window
is a minute old. Each failure is logged (warning, ``itcollect.web``).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import MutableMapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from itcollect.store.interfaces import WebStore

log = logging.getLogger("itcollect.web")
access = logging.getLogger("itcollect.web.access")

MAX_FAILURES = 10
WINDOW_S = 60.0
#: The key in the ASGI scope under which a request's handler leaves what the access log names.
SCOPE_KEY = "itcollect.access"


def client_of(scope: MutableMapping[str, Any]) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "-"


def retry_after(store: WebStore, client: str, *, now: float | None = None) -> int | None:
    """Seconds the client must wait before its next login, or None when it may log in now."""
    now = time.time() if now is None else now
    failures = store.login_failures(client, WINDOW_S, now=now)
    if len(failures) < MAX_FAILURES:
        return None
    return max(1, math.ceil(failures[-MAX_FAILURES] + WINDOW_S - now))


def login_failed(store: WebStore, client: str) -> None:
    store.record_login_failure(client)
    log.warning("failed login from %s (a wrong, revoked or old login link)", client)


def set_account(scope: MutableMapping[str, Any], name: str) -> None:
    """Name the account behind the request in its access-log line."""
    info = scope.get(SCOPE_KEY)
    if isinstance(info, dict):
        info["account"] = name


class AccessLog:
    """Pure ASGI middleware: after each request, one line ``TIME CLIENT METHOD PATH STATUS ACCOUNT
    MS`` (the path never with its query string; ``-`` for no account). A stream's line is written
    when the stream ends."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        info: dict[str, Any] = {"status": 0, "account": "-"}
        scope[SCOPE_KEY] = info

        async def send_status(message: dict) -> None:
            if message["type"] == "http.response.start":
                info["status"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            ms = (time.perf_counter() - started) * 1000
            stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            access.info("%s %s %s %s %s %s %.1f", stamp, client_of(scope), scope.get("method", "-"),
                        scope.get("path", "-"), info["status"] or "-", info["account"], ms)


def access_handler(setting: str, root: Path) -> logging.Handler:
    """Where ``[web] access_log`` sends the lines: stderr (``""``) or a file (relative to the workspace)."""
    if not setting:
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
    else:
        path = Path(setting)
        path = path if path.is_absolute() else Path(root) / path
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler
