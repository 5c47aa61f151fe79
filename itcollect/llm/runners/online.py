"""The one online runner: many items at once over :class:`itcollect.llm.LLMClient`, each driven by
its stage's :class:`~itcollect.llm.runners.machine.Machine`.

A stage hands :meth:`OnlineRunner.run` an :class:`OnlineWork`: where the items come from
(``next_item``: a claim of specs, a page of answers to judge), how an item's state is loaded
(``start``), what its end means to the stage (``end``: counts, claims, rows to write) and what is
left to do once the workers stopped (``close``: flush, release claims). The runner owns the rest,
the same for every stage:

* more workers than call slots (``concurrency + max(8, concurrency // 2)``, at most ``limit``):
  while one item records an answer or waits for its next item, another holds the slot, so the
  endpoint stays at the concurrency bound (the client's semaphore still bounds calls in flight);
* the calls an item needs at once are sent together (one alone without the cost of a gather);
* a failed call (after the client's retries) leaves its item for the next run
  (:data:`CALL_FAILED`), or answers an optional call with :class:`Failed`; a call out in a Batch
  API batch parks its item (:data:`PARKED`); a lost store race (another process took the item
  over) leaves it to the other (:data:`TAKEN_OVER`); the endpoint down or ``--max-cost`` reached
  stops the run (:attr:`OnlineRunner.stop_reason`, :attr:`OnlineRunner.stop_kind`);
* ``gc.freeze()`` of the long-lived objects (the SDK's, lingua's, jinja's) and the store's WAL
  checkpoints in a thread for the length of the run.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from itcollect.kernel.errors import ItcollectError, StoreConflict
from itcollect.llm.errors import CallInBatch, CostLimitReached, EndpointDown, LLMCallError
from itcollect.llm.runners.machine import Answer, Call, Failed, Machine

I = TypeVar("I")  # noqa: E741 - the item type
S = TypeVar("S")

#: The item's machine has no call left: it is finished (as far as this run goes).
FINISHED = "finished"
#: A required call failed after all its retries: the item is left for the next run.
CALL_FAILED = "call_failed"
#: A call is out in a Batch API batch: the item is left to the batch run that collects it.
PARKED = "parked"
#: Another process took the item over (a store write lost the race): the item is the other's.
TAKEN_OVER = "taken_over"


@dataclass(frozen=True)
class Ended:
    """How an item's play ended in this run: one of the kinds above, and why (for the last three)."""

    kind: str
    reason: str | None = None


class OnlineWork(Protocol[I, S]):
    """A stage's side of an online run (see the module docstring)."""

    @property
    def machine(self) -> Machine[S]: ...

    async def next_item(self) -> I | None:
        """The next item to play, or None when there is none left for this run."""
        ...

    def start(self, item: I) -> S:
        """The item's state as committed (creating its record the first time, if the stage has one)."""
        ...

    def end(self, item: I, state: S | None, ended: Ended) -> None:
        """The item's play ended (``state`` None when it was taken over before it was loaded)."""
        ...

    def close(self) -> None:
        """The workers stopped (done, stopped or interrupted): write what is pending, release claims."""
        ...


class OnlineRunner(Generic[I, S]):
    """Drives an :class:`OnlineWork` to its end over ``client`` (an :class:`itcollect.llm.LLMClient`).

    ``limit``: at most this many items in the run (fewer workers then). ``checkpoints``: the
    store's background WAL checkpoints, entered for the length of the run."""

    def __init__(self, client: Any, *, limit: int | None = None,
                 checkpoints: AbstractContextManager[Any] | None = None) -> None:
        self.client = client
        self.limit = limit
        self.checkpoints = checkpoints if checkpoints is not None else nullcontext()
        self.stop_reason: str | None = None
        self.stop_kind: str | None = None  # "endpoint" (exit 1) | "cost" (--max-cost reached)
        self.last_call_error: str | None = None

    @property
    def n_workers(self) -> int:
        n = self.client.concurrency + max(8, self.client.concurrency // 2)
        return n if self.limit is None else max(1, min(n, self.limit))

    async def run(self, work: OnlineWork[I, S]) -> None:
        """Play items until ``work`` has none left or the run stops; ``work.close()`` in any case."""
        gc.collect()
        gc.freeze()  # long-lived objects: no full collection walks them again during the run
        self.checkpoints.__enter__()
        tasks = [asyncio.create_task(self._worker(work)) for _ in range(self.n_workers)]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for t in done:
                if not t.cancelled() and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            try:
                work.close()
            finally:
                self.checkpoints.__exit__(None, None, None)
                gc.unfreeze()

    def stop(self, exc: BaseException) -> None:
        """Stop the run for ``exc`` (EndpointDown, CostLimitReached); the first reason stays."""
        if self.stop_reason is None:
            self.stop_reason = exc.message if isinstance(exc, ItcollectError) else str(exc)
            self.stop_kind = "cost" if isinstance(exc, CostLimitReached) else "endpoint"

    async def _worker(self, work: OnlineWork[I, S]) -> None:
        while self.stop_reason is None:
            item = await work.next_item()
            if item is None:
                return
            try:
                state, ended = await self._play(work, item)
            except (EndpointDown, CostLimitReached) as exc:
                self.stop(exc)
                return
            work.end(item, state, ended)

    async def _play(self, work: OnlineWork[I, S], item: I) -> tuple[S | None, Ended]:
        machine = work.machine
        state: S | None = None
        try:
            state = work.start(item)
            while calls := machine.calls(state):
                answers = await self._answer(calls)
                if isinstance(answers, Ended):
                    return state, answers
                machine.apply(state, calls, answers)
        except StoreConflict as exc:
            # This process stalled past its lease (suspended, stopped) and another process took
            # the item over and stored the same row first: the item is the other's now. Nothing
            # of it was written here (the transaction rolled back); the run goes on.
            return state, Ended(TAKEN_OVER, exc.message)
        return state, Ended(FINISHED)

    async def _answer(self, calls: Sequence[Call]) -> list[Answer] | Ended:
        """The answers to ``calls``, sent together; or how the item ends when a required call failed
        (the others are answered first: their answers are in the ledger for the next run). Raises
        EndpointDown (of a required call) and CostLimitReached: the run stops."""
        chat = self.client.chat
        if len(calls) == 1 and not calls[0].optional:
            c = calls[0]
            try:
                return [await chat(c.role, c.messages, sample=c.sample, priority=c.priority, **c.params)]
            except CallInBatch:
                return Ended(PARKED)
            except LLMCallError as exc:
                return self._failed(c, exc)
        got = await asyncio.gather(*(chat(c.role, c.messages, sample=c.sample, priority=c.priority, **c.params)
                                     for c in calls), return_exceptions=True)
        answers: list[Answer] = []
        ended: Ended | None = None
        for c, a in zip(calls, got):
            if not isinstance(a, BaseException):
                answers.append(a)
            elif isinstance(a, CostLimitReached) or not isinstance(a, (LLMCallError, EndpointDown)):
                raise a  # the run stops, or a bug: not one call's failure
            elif isinstance(a, CallInBatch):
                ended = ended or Ended(PARKED)
            elif c.optional:
                answers.append(Failed(c.describe(a.message)))
            elif isinstance(a, EndpointDown):
                raise a
            else:
                ended = ended or self._failed(c, a)
        return ended if ended is not None else answers

    def _failed(self, call: Call, exc: LLMCallError) -> Ended:
        self.last_call_error = call.describe(exc.message)
        return Ended(CALL_FAILED, self.last_call_error)

__all__ = ["OnlineRunner", "OnlineWork", "Ended", "FINISHED", "CALL_FAILED", "PARKED", "TAKEN_OVER"]
