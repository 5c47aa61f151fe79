"""Annotator names in exports: kept as they are, or pseudonymised (``[export] annotator_names``).

A pseudonym is a keyed hash of the name, ``ann-`` and 12 hex digits of HMAC-SHA256(key, name):
stable (the same person has the same pseudonym in every export made with the same key, so a
trainer can still group or hold out by annotator) and not reversible without the key. The key is
``ITCOLLECT_PSEUDONYM_KEY`` when that environment variable is set, else the file
``.itcollect/pseudonym.key`` in the workspace, 256 random bits written on the first pseudonymised
export (mode 0600). It is never written into an export; keep it out of anything you publish, and
keep it for as long as pseudonyms must stay the same (a new key gives everyone new pseudonyms).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

KEY_ENV = "ITCOLLECT_PSEUDONYM_KEY"
KEY_FILE = Path(".itcollect") / "pseudonym.key"


def pseudonym_key(root: Path) -> bytes:
    """The key (see the module doc), created in the workspace on first use."""
    env = os.environ.get(KEY_ENV)
    if env:
        return env.encode("utf-8")
    path = Path(root) / KEY_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode("ascii")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key + b"\n")
    return key


def pseudonym(key: bytes, name: str | None) -> str | None:
    if name is None:
        return None
    return "ann-" + hmac.new(key, name.encode("utf-8"), hashlib.sha256).hexdigest()[:12]
