"""Group commit of the request ledger for the async client.

At hundreds of calls a second, three small SQLite transactions per call (pending, done, the run's
counters) cost more CPU and event-loop time than the rest of our per-call work together. The
writer collects the ledger writes that tasks ask for during one turn of the event loop and commits
them in a single transaction on the next turn; each caller awaits that commit, so:

* a call is still recorded ``pending`` *before* its request is sent (``begin`` returns only after
  the commit), and
* an answer is committed before ``chat()`` returns it (``done`` waits too),

which is everything the resume-after-``kill -9`` guarantees rely on. Counter updates
(``from_ledger`` hits) ride along with the next commit without anyone waiting for them.
"""

from __future__ import annotations

import asyncio

from itcollect.store import utcnow
from itcollect.store.interfaces import LLMStore


class LedgerWriter:
    def __init__(self, store: LLMStore, run_id: int | None) -> None:
        self.store = store
        self.run_id = run_id
        self._begin: list[tuple] = []
        self._done: list[tuple] = []
        self._failed: list[tuple] = []
        self._deltas: dict[str, float] = {}
        self._waiters: list[asyncio.Future] = []
        self._handle: asyncio.Handle | None = None
        self.commits = 0

    def _wait(self) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._waiters.append(fut)
        if self._handle is None:
            self._handle = loop.call_soon(self.flush)
        return fut

    def _add(self, **deltas: float) -> None:
        for k, v in deltas.items():
            self._deltas[k] = self._deltas.get(k, 0) + v

    async def begin(self, key: str, role: str, model: str, base_url: str | None, request_json: str) -> None:
        """Record the call ``pending``; returns once that is committed."""
        self._begin.append((key, role, model, base_url, request_json, utcnow()))
        await self._wait()

    async def done(self, key: str, *, response: str, finish_reason: str, prompt_tokens: int,
                   completion_tokens: int, cost_usd: float, latency_ms: float, attempts: int) -> None:
        """Store the answer and add it to the run's counters; returns once committed."""
        self._done.append((response, finish_reason, prompt_tokens, completion_tokens, cost_usd, latency_ms,
                           attempts, utcnow(), key))
        self._add(sent=1, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, cost_usd=cost_usd)
        await self._wait()

    async def failed(self, key: str, *, error: str, attempts: int) -> None:
        self._failed.append((error, attempts, key))
        self._add(failed=1)
        await self._wait()

    def count(self, **deltas: float) -> None:
        """Add to the run's counters with the next commit (nobody waits for it)."""
        self._add(**deltas)
        if self._handle is None:
            try:
                self._handle = asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop: write now
                self.flush()

    def flush(self) -> None:
        """Commit everything collected so far (also called directly at close)."""
        self._handle = None
        begin, done, failed, deltas, waiters = self._begin, self._done, self._failed, self._deltas, self._waiters
        self._begin, self._done, self._failed, self._deltas, self._waiters = [], [], [], {}, []
        error: BaseException | None = None
        try:
            self.store.ledger_apply(begin=begin, done=done, failed=failed, run_id=self.run_id, run_deltas=deltas)
            self.commits += 1
        except Exception as exc:  # every waiter learns the write failed
            error = exc
        for fut in waiters:
            if fut.done():
                continue
            if error is None:
                fut.set_result(None)
            else:
                fut.set_exception(error)
        if error is not None and not waiters:
            raise error
