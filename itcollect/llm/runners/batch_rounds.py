"""The one batch-rounds runner: items advanced round by round over the Batch API transport
(:mod:`itcollect.llm.batch`), each driven by its stage's
:class:`~itcollect.llm.runners.machine.Machine` — the same machine the online runner drives.

A *round* walks every item of the stage forward over everything the request ledger already
answers (:meth:`BatchRounds.advance`), collects the calls the items need next, and submits them
together; when the round is collected the next round walks the items again, until no call is left
(``[batch] wait = false``: one round, and return while a batch is out). Advancing from the ledger
is idempotent (an item's state is what is committed), so a run killed at any point — between
collection and advancing included — continues with the next run, which first resumes and collects
whatever batches the killed one left out (:meth:`BatchRunner.resume`).

A stage hands :meth:`BatchRounds.run` a :class:`RoundsWork`: ``begin`` (after the resume: claim
the items), ``items`` (this round's items and their states), ``settle`` (where an item stands after
its walk: finished, in flight elsewhere, a straggler, or waiting for the calls submitted now),
``end_round`` (write what the round decided), ``collected`` (count what collection wrote) and
``over_budget`` (``--max-cost``: what to say when not every call fits).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from itcollect.llm.batch import BatchCall, BatchRunner, CollectReport
from itcollect.llm.runners.machine import Answer, Failed, Machine

I = TypeVar("I")  # noqa: E741 - the item type
S = TypeVar("S")

#: Where an item stands after :meth:`BatchRounds.advance`:
FINISHED = "finished"  # its machine has no call left
SEND = "send"  # it waits for the calls returned with it (to submit in this round)
IN_FLIGHT = "in_flight"  # a call of it is out in a batch this run did not submit: left to that batch
STRAGGLER = "straggler"  # a required call failed in [batch] max_attempts batches: left to an online run
READY = "ready"  # (``apply=False``) its next calls are answered in the ledger; nothing applied


@dataclass
class RoundsEnd:
    """How a batch-rounds run ended: calls still out (``[batch] wait = false``, or a resume that
    found batches still running), why it stopped early (``--max-cost``), what it submitted."""

    still_out: bool = False  # batches are still out at the provider (``waiting`` calls in them)
    waiting: int = 0
    stopped: str | None = None
    rounds: int = 0
    submitted: int = 0
    resumed_only: bool = False  # batches of an earlier run are still out: no round was started
    collected: list[CollectReport] = field(default_factory=list)


class RoundsWork(Protocol[I, S]):
    """A stage's side of a batch-rounds run (see the module docstring)."""

    @property
    def machine(self) -> Machine[S]: ...

    def begin(self) -> None:
        """Earlier batches are collected: take the items of the run (claims, counts)."""
        ...

    def items(self) -> Iterable[tuple[I, S]]:
        """This round's items, each with its state (rebuilt from the store, or kept across rounds)."""
        ...

    def settle(self, item: I, state: S, kind: str) -> None:
        """Where ``item`` stands after this round's walk (:data:`FINISHED`, :data:`SEND`, ...)."""
        ...

    def end_round(self) -> None:
        """Every item of the round was walked: write what the round decided."""
        ...

    def collected(self, reports: Sequence[CollectReport]) -> None:
        """Batches were collected into the ledger (count their answers, failures, cost)."""
        ...

    def over_budget(self, kept: int, total: int, spent: float, upper: float) -> str | None:
        """Only ``kept`` of this round's ``total`` calls fit in what is left of ``--max-cost``
        (``spent`` so far, ``upper`` the worst case of the kept ones): the reason to stop after
        submitting the kept calls, or None to submit them and go on."""
        ...


class BatchRounds(Generic[I, S]):
    """Rounds of one stage over ``runner`` (its :class:`BatchRunner`) and ``client`` (the run's
    LLMClient, which builds each call's ledger key and body). ``max_cost``: the run's budget in
    USD (None: no limit)."""

    def __init__(self, runner: BatchRunner, client: Any, *, wait: bool, max_cost: float | None = None) -> None:
        self.runner = runner
        self.client = client
        self.wait = wait
        self.max_cost = max_cost or None
        self.spent = 0.0

    def advance(self, machine: Machine[S], state: S, *, apply: bool = True) -> tuple[str, list[BatchCall]]:
        """Walk one item forward over everything the ledger answers; returns where it stands and
        the calls to submit for it (:data:`SEND`; also with :data:`IN_FLIGHT` when some of its
        calls are out elsewhere and others are not). ``apply`` false: stop at the first answered
        step (:data:`READY`) and change nothing (a dry run)."""
        while True:
            calls = machine.calls(state)
            if not calls:
                return FINISHED, []
            batch_calls = [self.client.batch_call(c.role, c.messages, sample=c.sample, **c.params) for c in calls]
            answers: list[Answer | None] = []
            kinds: list[str] = []
            for c, bc in zip(calls, batch_calls):
                known = self.runner.lookup(bc.key)
                kinds.append(known.kind)
                if known.kind == "answered":
                    answers.append(known.result)
                elif known.kind == "straggler" and c.optional:
                    answers.append(Failed(c.describe(f"failed in {self.runner.max_attempts} batches")))
                else:
                    answers.append(None)
            if all(a is not None for a in answers):
                if not apply:
                    return READY, []
                machine.apply(state, calls, answers)  # type: ignore[arg-type]
                continue
            open_kinds = {k for k, a in zip(kinds, answers) if a is None}
            if "straggler" in open_kinds:
                return STRAGGLER, []
            to_send = [bc for bc, k, a in zip(batch_calls, kinds, answers) if a is None and k == "to_send"]
            return (IN_FLIGHT if "in_flight" in open_kinds else SEND), to_send

    def round_calls(self, work: RoundsWork[I, S]) -> list[BatchCall]:
        """Walk every item of the round (settling each); the calls to submit, each once."""
        calls: list[BatchCall] = []
        for item, state in work.items():
            kind, item_calls = self.advance(work.machine, state)
            work.settle(item, state, kind)
            calls += item_calls
        work.end_round()
        return list({c.key: c for c in calls}.values())  # identical calls: submitted (and paid) once

    async def run(self, work: RoundsWork[I, S]) -> RoundsEnd:
        """Resume what an earlier run left out, then rounds until no call is left, a batch is still
        out (``wait`` false) or the budget is spent."""
        end = RoundsEnd()
        out = await self.runner.resume(wait=self.wait)
        self._collected(work, end, out.collected)
        if out.still_out:
            end.still_out, end.waiting, end.resumed_only = True, out.waiting, True
            return end
        work.begin()
        while calls := self.round_calls(work):
            if self.max_cost:
                kept, upper = self.runner.within_budget(calls, self.max_cost - self.spent)
                if len(kept) < len(calls):
                    end.stopped = work.over_budget(len(kept), len(calls), self.spent, upper)
                calls = kept
                if not calls:
                    break
            out = await self.runner.submit(calls, wait=self.wait)
            end.rounds += 1
            end.submitted += out.submitted
            self._collected(work, end, out.collected)
            if out.still_out:
                end.still_out, end.waiting = True, out.waiting
                break
            if end.stopped:
                break
        return end

    def _collected(self, work: RoundsWork[I, S], end: RoundsEnd, reports: Sequence[CollectReport]) -> None:
        self.spent += sum(rep.cost_usd for rep in reports)
        end.collected += reports
        work.collected(reports)


__all__ = ["BatchRounds", "RoundsWork", "RoundsEnd", "FINISHED", "SEND", "IN_FLIGHT", "STRAGGLER", "READY"]
