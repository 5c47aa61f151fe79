"""Endpoints served by a process this run started itself (the local llama.cpp server).

When such a server dies, a call to it fails with "connection refused" or "connection reset", and
the generic advice for that ("is the server running, is --base-url right?") is wrong: we started
it, and it crashed. The owner registers a probe for its base URL here; the LLM client asks it on
every connection failure and, when the probe says the process is gone, stops the run with the
probe's message (exit status, signal, the log's last lines and where the full log is).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

_probes: dict[str, Callable[[], str | None]] = {}
_lock = threading.Lock()


def _key(base_url: str) -> str:
    return base_url.rstrip("/")


def watch_endpoint(base_url: str, probe: Callable[[], str | None]) -> None:
    """``probe()`` returns None while the server behind ``base_url`` lives, else why it died."""
    with _lock:
        _probes[_key(base_url)] = probe


def unwatch_endpoint(base_url: str) -> None:
    with _lock:
        _probes.pop(_key(base_url), None)


def owned_endpoint_failure(base_url: str | None) -> str | None:
    """Why the server we started for ``base_url`` is gone, or None (alive, or not ours)."""
    if not base_url:
        return None
    with _lock:
        probe = _probes.get(_key(base_url))
    return probe() if probe is not None else None
