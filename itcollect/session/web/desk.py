"""One annotator's place in the web server: their engine :class:`~..engine.Session`, and what a
browser needs beside it.

The engine does every piece of work (claims, requests, answers, decisions, the action log, each
committed before it returns); a desk only adds what a web page needs that a terminal does not:

* the answer being streamed runs as a task of its own, not as part of one HTTP request, so a
  reload, a closed tab or a dropped connection does not cancel a call that is being paid for: the
  answer is committed when it arrives and the next page load shows it. Its text so far is kept,
  so a tab that (re)connects to the stream gets what was already said, then the rest;
* a lock that puts the annotator's actions in a row (two tabs cannot interleave);
* the tabs open on it, so closing the last one counts as the terminal's quit (the clock of
  active time stops; the next load resumes with the terminal's words).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ...store import LeaseLost
from ..engine import AnswerFailed, CommandError, Session

log = logging.getLogger("itcollect.web")

#: Seconds after which a tab that stopped calling in (its page pings every minute) counts as closed.
TAB_TIMEOUT_S = 150.0


class Desk:
    def __init__(self, session: Session) -> None:
        self.s = session
        self.lock = asyncio.Lock()
        self.task: asyncio.Task | None = None
        self.text = ""  # the answer streamed so far
        self.error: str | None = None  # the endpoint failed on the pending request
        self.notice: str | None = None  # something the next page load must say (lease lost, ...)
        self.listeners: set[asyncio.Queue] = set()
        self.tabs: dict[str, float] = {}
        self.quit_after_answer = False
        self.last_heard = time.monotonic()

    # -- tabs ----------------------------------------------------------------------------------
    def heard(self, tab: str | None) -> None:
        now = time.monotonic()
        self.last_heard = now
        if tab:
            self.tabs[tab] = now
            self.quit_after_answer = False

    def open_tabs(self, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        for tab, seen in list(self.tabs.items()):
            if now - seen > TAB_TIMEOUT_S:
                del self.tabs[tab]
        return len(self.tabs)

    def tab_closed(self, tab: str | None) -> None:
        """A page went away (its last words, or it stopped calling in). The last tab closing is a
        quit: the lease stays, the action log pauses the clock, the next load resumes."""
        if tab:
            self.tabs.pop(tab, None)
        if self.open_tabs() or self.s.current is None:
            return
        if self.streaming:
            self.quit_after_answer = True  # keep the paid answer: quit once it is committed
            return
        self.s.quit()

    # -- the answer ----------------------------------------------------------------------------
    @property
    def streaming(self) -> bool:
        return self.task is not None and not self.task.done()

    def start_answer(self) -> None:
        """Ask the model for the pending request, in a task of its own (see the module doc)."""
        if self.streaming:
            return
        self.error = None
        self.text = ""
        self.task = asyncio.get_running_loop().create_task(self._answer())

    def stop_answer(self) -> bool:
        """The annotator stopped the answer (the terminal's Ctrl-C): the request stays."""
        if not self.streaming:
            return False
        assert self.task is not None
        self.task.cancel()
        return True

    async def _answer(self) -> None:
        def on_delta(piece: str) -> None:
            self.text += piece
            self._send("delta", {"text": piece})

        def on_reset() -> None:
            self.text = ""
            self._send("reset", {})

        end: dict[str, Any] = {"ok": True}
        try:
            ans = await self.s.get_answer(on_delta, on_reset)
            end.update(turn_id=ans.turn_id, warnings=ans.warnings, from_ledger=ans.from_ledger)
        except AnswerFailed as exc:
            self.error = exc.message
            end = {"ok": False, "error": f"The model could not answer: {exc.message}"}
        except LeaseLost as exc:
            self.s.lease_lost()
            self.notice = f"{exc.message}; moving on to the next dialogue (nothing of yours was lost)"
            end = {"ok": False, "error": self.notice}
        except CommandError as exc:
            end = {"ok": False, "error": exc.message}
        except asyncio.CancelledError:
            self.s.interrupted()
            self._send("end", {"ok": False, "stopped": True,
                               "error": "Stopped: the answer was discarded; your request is kept."})
            raise
        except Exception as exc:  # noqa: BLE001 - one annotator's failure must not take the server down
            log.exception("answer failed")
            self.error = f"{type(exc).__name__}: {exc}"
            end = {"ok": False, "error": f"internal error: {self.error}"}
        self._send("end", end)
        if self.quit_after_answer and not self.open_tabs():
            self.quit_after_answer = False
            self.s.quit()

    # -- listeners (server-sent events) --------------------------------------------------------
    def subscribe(self) -> asyncio.Queue:
        """A queue of ``(event, data)``: first what was streamed so far, then the rest, ending
        with ``end``; at once ``end`` when no answer is being streamed."""
        q: asyncio.Queue = asyncio.Queue()
        if self.streaming:
            q.put_nowait(("snapshot", {"text": self.text}))
            self.listeners.add(q)
        else:
            q.put_nowait(("end", {"ok": self.error is None, "idle": True, "error": self.error}))
        return q

    def unsubscribe(self, q: asyncio.Queue) -> None:
        self.listeners.discard(q)

    def _send(self, event: str, data: dict[str, Any]) -> None:
        for q in list(self.listeners):
            q.put_nowait((event, data))
        if event == "end":
            self.listeners.clear()

    async def close(self) -> None:
        """Server shutdown: stop an answer in flight (as Ctrl-C would), quit, close the client."""
        if self.streaming:
            assert self.task is not None
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        self.s.quit()
        await self.s.close()
