"""Human annotator sessions (``itcollect session``): leases, the engine, the terminal UI, the line
protocol for scripts, and the review mode.

:func:`run_session` is what the CLI calls; the interactive UI is used when stdin and stdout are
terminals, the line protocol (:mod:`.protocol`) otherwise.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import Any

from itcollect.config import Config, settings, with_values
from itcollect.session.engine import AnswerFailed, CommandError, Session
from itcollect.store.interfaces import SessionStore

__all__ = ["Session", "CommandError", "AnswerFailed", "run_session", "session_config"]


def session_config(config: Config) -> Config:
    """The config for a person waiting at a terminal: few retries, so an unreachable endpoint is
    reported in seconds (with a retry choice) instead of after minutes of backoff."""
    llm = settings(config).llm
    return with_values(config, "llm", max_retries=min(llm.max_retries, 2), backoff_max_s=min(llm.backoff_max_s, 4.0))


def run_session(config: Config, store: SessionStore, annotator: str, *, base_url: str | None = None,
                model: str | None = None, review: bool = False, interactive: bool | None = None,
                history_dir: Any = None, order: str = "default", compare: Sequence[str] | None = None) -> int:
    """Run one session until the annotator quits or the pool is empty; returns the exit status.
    ``compare``: the systems a compare session asks (``--compare A,B``, :mod:`.compare`)."""
    if review:
        from itcollect.session.review import run_review

        return run_review(store, annotator, interactive=interactive, order=order)

    cfg = session_config(config)
    systems = None
    if compare is not None:
        from itcollect.llm.endpoints import resolve_systems

        systems = resolve_systems(settings(cfg), compare, base_url=base_url)

    def factory():
        from itcollect.llm import LLMClient

        if systems is not None:  # every system answers each request, at once
            return LLMClient(cfg, store, command="session", endpoints={e.role: e for e in systems},
                             concurrency=len(systems))
        return LLMClient(cfg, store, command="session", base_url=base_url, model=model, concurrency=1)

    session = Session(cfg, store, annotator, factory)
    if systems is not None:
        from itcollect.session.compare import CompareTurns

        session.compare = CompareTurns(session, systems)
    # Build the client now: a missing endpoint or key is one clear error before any spec is leased.
    _ = session.client
    if interactive is None:
        interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if interactive:
        from itcollect.session.tui import TerminalUI

        front: Any = TerminalUI(session, history_dir=history_dir)
    else:
        from itcollect.session.protocol import LineProtocol

        front = LineProtocol(session)
    try:
        return asyncio.run(front.run())
    finally:
        if session.compare is not None:
            session.compare.close()
