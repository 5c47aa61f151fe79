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

from itcollect.session.engine import AnswerFailed, CommandError, Session
from itcollect.store import LeaseLost

log = logging.getLogger("itcollect.web")

#: Seconds after which a tab that stopped calling in (its page pings every minute) counts as closed.
TAB_TIMEOUT_S = 150.0


class Desk:
    def __init__(self, session: Session) -> None:
        self.s = session
        self.lock = asyncio.Lock()
        self.task: asyncio.Task | None = None
        self.text = ""  # the answer streamed so far
        self.texts: dict[str, str] = {}  # a compare session's answers streamed so far, by label
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
        self.texts = {}
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

        def on_label(label: str, piece: str) -> None:
            self.texts[label] = self.texts.get(label, "") + piece
            self._send("delta", {"label": label, "text": piece})

        end: dict[str, Any] = {"ok": True}
        try:
            if self.s.compare is not None:  # every system answers, side by side (session/compare.py)
                asked = await self.s.compare.ask(on_label)
                end.update(comparison_id=asked.comparison_id, void=asked.void)
            else:
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
            q.put_nowait(("snapshot", {"text": self.text, "texts": dict(self.texts)}))
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
        """Server shutdown: stop an answer in flight (as Ctrl-C would), quit."""
        if self.streaming:
            assert self.task is not None
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        self.s.quit()


class SharedClient:
    """The server's one LLM client, lent to every annotator's session.

    A terminal session builds its own :class:`~itcollect.llm.LLMClient`; in a server that would be
    one per annotator, ~40 ms of the event loop each (SDK client, TLS context), paid while everyone
    else waits, and rate limits that do not know about each other. Here every session gets a
    handle on one client, with room for one call per annotator. The engine closes its client
    after the endpoint failed, so that "retry" really tries again: closing a handle instead
    retires the shared client (the next call gets a fresh one; the old one is closed once its
    calls in flight are done).
    """

    def __init__(self, factory: Any, first: Any = None) -> None:
        self._factory = factory
        self._client = first
        self._retired: list[Any] = []

    def current(self) -> Any:
        if self._client is None:
            self._client = self._factory()
        return self._client

    def handle(self) -> _ClientHandle:
        return _ClientHandle(self)

    def retire(self, client: Any) -> None:
        if client is self._client:
            self._client = None
            self._retired.append(client)
            asyncio.get_running_loop().create_task(self._close_when_idle(client))

    async def _close_when_idle(self, client: Any) -> None:
        while getattr(client, "in_flight", 0):
            await asyncio.sleep(2.0)
        if client in self._retired:
            self._retired.remove(client)
            await client.aclose()

    async def aclose(self) -> None:
        for client in [self._client, *self._retired]:
            if client is not None:
                try:
                    await client.aclose()
                except Exception:  # noqa: BLE001 - shutting down
                    log.exception("closing the LLM client")
        self._client = None
        self._retired.clear()


class _ClientHandle:
    """What a session holds as its client: calls go to the shared one; closing it (after an
    endpoint failure) retires the shared one."""

    def __init__(self, shared: SharedClient) -> None:
        self._shared = shared
        self._client = shared.current()

    async def chat(self, *args: Any, **kwargs: Any) -> Any:
        return await self._client.chat(*args, **kwargs)

    async def aclose(self) -> None:
        self._shared.retire(self._client)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

