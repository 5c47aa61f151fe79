"""``simulate --batch-api``: the same dialogues in rounds over the Batch API, at batch prices.

A *round* takes the next call of every pending dialogue (its first translation, the simulated
annotator's next request, or the assistant's next answer) and submits them together through the
Batch API transport (:mod:`itcollect.llm.batch`: recording, upload, polling, collection into the
ledger, crash safety); when the round is collected the dialogues advance from the ledger exactly
as online (the same :class:`DialogueDriver` validates each turn and re-samples a failed one in the
next round). Rounds repeat until every dialogue is done. Advancing from the ledger is idempotent
(a dialogue's state is its committed turns), so a crash between collection and advancing just
advances next run.

A call that failed in ``[batch] max_attempts`` batches leaves its dialogue to online ``simulate``
(a straggler). Online ``simulate`` in turn parks a dialogue whose next call is out in a batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from typing import Any

from itcollect.compare.record import finish_run
from itcollect.kernel import checks as C
from itcollect.kernel.errors import ServiceError, UsageError
from itcollect.kernel.progress import progress
from itcollect.llm.batch import LOCK_FILE, BatchCall, BatchRunner, CollectReport, batch_status
from itcollect.llm.runners.batch_rounds import FINISHED, IN_FLIGHT, READY, STRAGGLER, BatchRounds
from itcollect.settings import settings
from itcollect.simulate.compare import CompareMachine
from itcollect.simulate.driver import DialogueDriver, DialogueState
from itcollect.simulate.estimate import estimate_run
from itcollect.simulate.machine import DialogueMachine
from itcollect.simulate.online import make_client, make_driver, make_machine, specs_to_play, start_compare_run
from itcollect.simulate.summary import BatchSummary, SimulateOptions
from itcollect.store import process_holder
from itcollect.store.interfaces import SimulateStore
from itcollect.workspace import Workspace, WorkspaceLock

#: Lease of the specs a batch run holds; renewed at every poll (polls are at most poll_max_s apart).
LEASE_S = 3600.0
#: The command that collects batches (named in ``--status`` and in errors).
COMMAND = "itcollect simulate --batch-api"


def simulate_batch_status(store: SimulateStore) -> dict[str, Any]:
    """What ``simulate --batch-api --status`` shows, from the store alone (no network)."""
    return {**batch_status(store, command=COMMAND), "specs": store.spec_counts()}


def _dry_run(ws: Workspace, store: SimulateStore, opts: SimulateOptions, llm: Any, driver: DialogueDriver,
             runner: BatchRunner) -> dict[str, Any]:
    """The whole remaining run at batch prices (as online ``--dry-run`` estimates it), and the
    next round exactly: its calls, tokens, cost and input files. Writes nothing."""
    specs = specs_to_play(store, opts.limit, compare=bool(opts.compare))
    machine = make_machine(ws, opts, llm, driver, write=False)
    compare = machine if isinstance(machine, CompareMachine) else None
    estimate = estimate_run(store, driver, llm, specs, batch=True, lookup=lambda key: runner.lookup(key).kind,
                            compare=compare)
    rounds: BatchRounds[int, DialogueState] = BatchRounds(runner, llm, wait=False)
    calls: dict[str, BatchCall] = {}
    counts = {READY: 0, IN_FLIGHT: 0, STRAGGLER: 0}
    remaining = 0
    for spec in specs:
        state = driver.load(store, spec)
        if compare is not None:
            compare.attach(state)
        kind, to_send = rounds.advance(machine, state, apply=False)
        for call in to_send:
            calls.setdefault(call.key, call)
        if kind in counts:
            counts[kind] += 1
        if not state.done:
            left = 2 * spec["n_turns"] - len(state.turns)
            if not state.turns and not driver.opening_by_llm(spec):
                left -= 1  # the first request is a template: no call
            remaining += left
    nxt = runner.estimate(calls.values())
    files = len(runner.split(list(calls.values())))
    estimate.update(ready=counts[READY], in_flight=counts[IN_FLIGHT], stragglers=counts[STRAGGLER],
                    max_attempts=runner.max_attempts, batches_out=len(runner.open_batches()),
                    remaining_calls=remaining, batches=files,
                    next_round={"calls": nxt.calls, "by_role": nxt.by_role, "prompt_tokens": nxt.prompt_tokens,
                                "completion_tokens": nxt.completion_tokens,
                                "max_completion_tokens": nxt.max_completion_tokens,
                                "cost_usd": round(nxt.cost_usd, 6), "cost_usd_online": round(nxt.cost_usd_online, 6),
                                "cost_usd_max": round(nxt.cost_usd_max, 6), "batches": files})
    return estimate


async def _cancel(ws: Workspace, opts: SimulateOptions, echo: Callable[[str], None]) -> BatchSummary:
    """``simulate --batch-api --cancel``: stop every batch still out and collect what they answered."""
    llm = make_client(ws, opts, command="simulate --batch-api --cancel", max_cost=False)
    try:
        runner = BatchRunner(ws.store, ws.config, llm, echo=echo)
        summary = BatchSummary(cancelled=await runner.cancel_all())
        if summary.cancelled:
            await runner.drain(wait=True)  # until the provider reports each one cancelled (or finished)
        summary.add_collected(runner.collected)
        return summary
    finally:
        await llm.aclose()


class _Rounds:
    """simulate's side of Batch API rounds (:class:`BatchRounds`): the specs it claimed, each
    dialogue kept across rounds and advanced from the ledger by its :class:`DialogueMachine`;
    a dialogue leaves the rounds when it ends, when its call is out in another batch (parked)
    or when its call failed in ``[batch] max_attempts`` batches (left to online simulate)."""

    def __init__(self, store: SimulateStore, driver: DialogueDriver, runner: BatchRunner, holder: str,
                 opts: SimulateOptions, summary: BatchSummary, max_cost: float | None,
                 machine: DialogueMachine | CompareMachine) -> None:
        self.machine = machine
        self.compare = isinstance(machine, CompareMachine)
        self.store = store
        self.driver = driver
        self.runner = runner
        self.holder = holder
        self.limit = opts.limit
        self.summary = summary
        self.max_cost = max_cost
        self.states: dict[int, DialogueState] = {}

    def begin(self) -> None:
        store = self.store
        ids = store.claim_specs(self.holder, self.limit if self.limit is not None else 1 << 40, lease_s=LEASE_S,
                                compare=self.compare)
        self.states = {i: self.driver.load_or_create(store, spec) for i in ids
                       if (spec := store.get_spec(i)) is not None}
        if isinstance(self.machine, CompareMachine):
            for state in self.states.values():
                self.machine.begin(state)

    def items(self) -> Iterator[tuple[int, DialogueState]]:
        if not self.states:
            return
        bar = progress(total=len(self.states), desc=f"round {self.runner.next_round()}: advance dialogues",
                       unit="dlg", leave=False)
        try:
            for spec_id, state in list(self.states.items()):
                bar.update(1)
                yield spec_id, state
        finally:
            bar.close()

    def settle(self, spec_id: int, state: DialogueState, kind: str) -> None:
        store, summary = self.store, self.summary
        if kind == FINISHED and state.compare is not None and state.compare.stalled:
            store.finish_claim(spec_id, self.holder, "pending", state.compare.stalled)  # no system answered
            summary.call_errors += 1
        elif kind == FINISHED:
            if state.status == "in_progress":
                self.driver.finish(store, state, "done")
            store.finish_claim(spec_id, self.holder, state.status, state.status_reason)
            if state.status == "done":
                summary.done += 1
            elif state.status == "failed":
                summary.failed += 1
                summary.count_failure(C.reason_code(state.status_reason or "failed"))
        elif kind == STRAGGLER:
            store.finish_claim(spec_id, self.holder, "pending",
                               f"left to online simulate: its call failed in {self.runner.max_attempts} batches")
            summary.stragglers += 1
        elif kind == IN_FLIGHT:  # submitted by another path; collected by a later run
            summary.parked += 1
        else:
            return
        del self.states[spec_id]

    def end_round(self) -> None:
        pass  # every turn was committed as it was advanced

    def collected(self, reports: Sequence[CollectReport]) -> None:
        self.summary.add_collected(reports)

    def over_budget(self, kept: int, total: int, spent: float, upper: float) -> str | None:
        return (f"--max-cost ${self.max_cost:.2f}: submitting {kept:,} of {total:,} calls this round would stay "
                f"within the budget (spent ${spent:.4f}, at most ${upper:.4f} more)")


async def _run(ws: Workspace, opts: SimulateOptions, echo: Callable[[str], None]) -> BatchSummary:
    store: SimulateStore = ws.store
    config = ws.config
    llm = make_client(ws, opts, command="simulate --batch-api", dry_run=opts.dry_run, max_cost=False)
    summary = BatchSummary()
    try:
        driver = make_driver(ws, llm)
        if opts.dry_run:
            summary.estimate = _dry_run(ws, store, opts, llm, driver, BatchRunner(store, config, llm, echo=echo))
            return summary
        holder = process_holder("simulate-batch")
        typed = settings(config)
        max_cost = opts.max_cost if opts.max_cost is not None else (typed.simulate.max_cost_usd or None)

        async def renewing_sleep(seconds: float) -> None:
            store.renew_claims(holder, lease_s=LEASE_S)
            await asyncio.sleep(seconds)

        runner = BatchRunner(store, config, llm, echo=echo, sleep=renewing_sleep)
        rounds: BatchRounds[int, DialogueState] = BatchRounds(runner, llm, wait=typed.batch.wait, max_cost=max_cost)
        machine = make_machine(ws, opts, llm, driver)
        start_compare_run(ws, opts, llm, machine, "simulate --compare --batch-api")
        summary.compare = machine.counts if isinstance(machine, CompareMachine) else None
        try:
            # whatever an earlier run left out there first (finish submitting, poll, collect); then
            # rounds: advance every dialogue from the ledger, submit their next calls together
            end = await rounds.run(_Rounds(store, driver, runner, holder, opts, summary, max_cost, machine))
        finally:
            store.release_claims(holder)
            if summary.compare is not None and summary.compare.run_id is not None:
                finish_run(ws.store, summary.compare.run_id)
        summary.rounds += end.rounds
        summary.submitted += end.submitted
        if end.still_out:
            summary.waiting = end.waiting
        summary.stopped = end.stopped
        return summary
    finally:
        await llm.aclose()


def run_batch_simulation(ws: Workspace, opts: SimulateOptions, *, echo: Callable[[str], None] | None = None,
                         status: bool = False, cancel: bool = False) -> BatchSummary:
    """``itcollect simulate --batch-api``. ``echo`` receives one-line progress messages.

    ``status``: report batches in flight from the store and return.
    ``cancel``: cancel every batch still out at the provider, collect what they had answered, free
    the other calls; submit nothing.
    ``opts.dry_run``: estimate the whole remaining run at batch prices (and the next round), write
    nothing.
    Otherwise: collect what is out, then submit rounds until every dialogue is done (or, with
    ``[batch] wait = false``, submit or collect one round and return).
    """
    echo = echo or (lambda _msg: None)
    if status:
        return BatchSummary(status=simulate_batch_status(ws.store))
    if opts.limit is not None and opts.limit < 0:
        raise UsageError("--limit must be zero or more")
    import openai  # deferred heavy import (~0.6 s): --status, which ends above, needs none of the SDK

    # a dry run writes nothing, so it may run while a batch run polls
    lock = nullcontext() if opts.dry_run else WorkspaceLock(ws.root, LOCK_FILE, "`simulate --batch-api`",
                                                         store_url=ws.store_url)
    with lock:
        try:
            return asyncio.run(_cancel(ws, opts, echo) if cancel else _run(ws, opts, echo))
        except openai.APIError as exc:
            raise ServiceError(f"the Batch API failed: {type(exc).__name__}: {exc}; nothing is lost, re-run "
                               f"`{COMMAND}` to continue") from None
