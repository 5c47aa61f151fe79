"""Login links, their tokens, and where the running server of a workspace can be reached.

Used by ``itcollect annotators`` (no web server needed, nothing here imports Starlette) and by the
server. A token is 256 random bits (:mod:`secrets`), shown once inside the login link and stored
as its sha256 only.

The server records its address and process id in ``.itcollect/web.json`` inside the workspace
while it runs, so ``annotators add`` prints a link that points at it; the record of a server
that died (``kill -9``) is recognised by its process being gone.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
from pathlib import Path
from typing import Any
from urllib.parse import quote

from itcollect.config import Config, settings
from itcollect.session.engine import check_annotator_name
from itcollect.store.interfaces import AccountsStore

RECORD = Path(".itcollect") / "web.json"
TOKEN_BYTES = 32


def new_secret() -> str:
    """A fresh random secret (login token, session id, CSRF token): 256 bits, URL-safe."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def secret_hash(value: str) -> str:
    """What the store keeps of a secret. One sha256 suffices for 256 random bits."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def issue_token(store: AccountsStore, name: str, role: str = "annotator", *, renew: bool = False,
                role_given: bool = True) -> str:
    """Create an account (or, with ``renew``, give an existing one a new token) and return the
    token in clear: the only time it exists outside the browser that uses it."""
    name = check_annotator_name(name)
    token = new_secret()
    if renew:
        store.reissue_token(name, secret_hash(token), role if role_given else None)
    else:
        store.add_account(name, role, secret_hash(token))
    return token


# -- where the server is -------------------------------------------------------------------------
def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child its parent has not reaped yet is a zombie: not serving anything
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
    except OSError:
        return True


def url_host(host: str) -> str:
    """The host part of a URL for a listening address: a wildcard address is not one a browser
    can open, so the machine's name stands for it; IPv6 literals get brackets."""
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    return f"[{host}]" if ":" in host else host


def write_server_record(root: Path, *, url: str, link_url: str, pid: int | None = None) -> Path:
    path = Path(root) / RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"url": url, "link_url": link_url, "pid": pid or os.getpid()}), encoding="utf-8")
    os.replace(tmp, path)
    return path


def remove_server_record(root: Path, pid: int | None = None) -> None:
    """Remove the record if it is this process's (a newer server may have replaced it)."""
    path = Path(root) / RECORD
    rec = _read(path)
    if rec is not None and rec.get("pid") == (pid or os.getpid()):
        try:
            path.unlink()
        except OSError:
            pass


def _read(path: Path) -> dict[str, Any] | None:
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


def running_server(root: Path) -> dict[str, Any] | None:
    """``{"url", "link_url", "pid"}`` of the live ``session --web`` server of this workspace, or None."""
    rec = _read(Path(root) / RECORD)
    if rec is None or not isinstance(rec.get("pid"), int) or not _pid_alive(rec["pid"]):
        return None
    return rec


def link_base(root: Path, config: Config) -> str:
    """The address login links point at: the running server's (its ``[web] public_url`` when set),
    else ``[web] public_url``, else the configured host and port."""
    rec = running_server(root)
    if rec is not None:
        return str(rec.get("link_url") or rec["url"]).rstrip("/")
    web = settings(config).web
    if web.public_url:
        return web.public_url.rstrip("/")
    return f"http://{url_host(web.host)}:{web.port or 8765}"


def login_url(base: str, token: str) -> str:
    return f"{base.rstrip('/')}/login?token={quote(token, safe='')}"
