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
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

from itcollect.kernel import checks as C
from itcollect.kernel.errors import ServiceError, UsageError
from itcollect.kernel.progress import progress
from itcollect.llm.batch import LOCK_FILE, BatchCall, BatchRunner, batch_status
from itcollect.simulate.driver import DialogueDriver, DialogueState
from itcollect.simulate.estimate import estimate_run
from itcollect.simulate.online import make_client, make_driver, specs_to_play
from itcollect.simulate.summary import BatchSummary, SimulateOptions
from itcollect.store import process_holder
from itcollect.store.interfaces import SimulateStore
from itcollect.workspace import WorkspaceLock

#: Lease of the specs a batch run holds; renewed at every poll (polls are at most poll_max_s apart).
LEASE_S = 3600.0
#: The command that collects batches (named in ``--status`` and in errors).
COMMAND = "itcollect simulate --batch-api"


class Rounds:
    """Advances dialogues from the ledger and takes the next call of each (one round)."""

    def __init__(self, store: SimulateStore, driver: DialogueDriver, llm: Any, runner: BatchRunner) -> None:
        self.store = store
        self.driver = driver
        self.llm = llm
        self.runner = runner

    def next_call(self, state: DialogueState, *, write: bool) -> tuple[str, BatchCall | None]:
        """Walk a dialogue forward over everything the ledger can answer.

        Returns ("finished", None) | ("call", call) | ("in_flight", call) | ("straggler", call)
        | ("ready", None) (``write`` false: an answer is in the ledger, nothing applied).
        """
        driver = self.driver
        while True:
            step = driver.next_step(state)
            if step is None:
                return "finished", None
            if step.kind == "template":
                outcome = driver.apply(state, step)
                if write:
                    driver.record(self.store, state, step, outcome)
                else:
                    state.turns.append({"role": "user", "content": outcome.content,
                                        "interaction_type": step.interaction_type, "idx": step.idx})
                continue
            call = self.llm.batch_call(step.role, step.messages or [], sample=step.sample)
            known = self.runner.lookup(call.key)
            if known.kind == "answered":
                if not write:
                    return "ready", None
                driver.record(self.store, state, step, driver.apply(state, step, known.result))
                continue
            if known.kind in ("in_flight", "straggler"):
                return known.kind, call
            return "call", call


def simulate_batch_status(store: SimulateStore) -> dict[str, Any]:
    """What ``simulate --batch-api --status`` shows, from the store alone (no network)."""
    return {**batch_status(store, command=COMMAND), "specs": store.spec_counts()}


def _dry_run(store: SimulateStore, opts: SimulateOptions, llm: Any, driver: DialogueDriver,
             runner: BatchRunner) -> dict[str, Any]:
    """The whole remaining run at batch prices (as online ``--dry-run`` estimates it), and the
    next round exactly: its calls, tokens, cost and input files. Writes nothing."""
    specs = specs_to_play(store, opts.limit)
    estimate = estimate_run(store, driver, llm, specs, batch=True, lookup=lambda key: runner.lookup(key).kind)
    rounds = Rounds(store, driver, llm, runner)
    calls: dict[str, BatchCall] = {}
    counts = {"ready": 0, "in_flight": 0, "straggler": 0}
    remaining = 0
    for spec in specs:
        state = driver.load(store, spec)
        kind, call = rounds.next_call(state, write=False)
        if kind == "call" and call is not None:
            calls.setdefault(call.key, call)
        elif kind in counts:
            counts[kind] += 1
        if not state.done:
            left = 2 * spec["n_turns"] - len(state.turns)
            if not state.turns and not driver.opening_by_llm(spec):
                left -= 1  # the first request is a template: no call
            remaining += left
    nxt = runner.estimate(calls.values())
    files = len(runner.split(list(calls.values())))
    estimate.update(ready=counts["ready"], in_flight=counts["in_flight"], stragglers=counts["straggler"],
                    max_attempts=runner.max_attempts, batches_out=len(runner.open_batches()),
                    remaining_calls=remaining, batches=files,
                    next_round={"calls": nxt.calls, "by_role": nxt.by_role, "prompt_tokens": nxt.prompt_tokens,
                                "completion_tokens": nxt.completion_tokens,
                                "max_completion_tokens": nxt.max_completion_tokens,
                                "cost_usd": round(nxt.cost_usd, 6), "cost_usd_online": round(nxt.cost_usd_online, 6),
                                "cost_usd_max": round(nxt.cost_usd_max, 6), "batches": files})
    return estimate


async def _cancel(ws: Any, opts: SimulateOptions, echo: Callable[[str], None]) -> BatchSummary:
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


async def _run(ws: Any, opts: SimulateOptions, echo: Callable[[str], None]) -> BatchSummary:
    store: SimulateStore = ws.store
    config = ws.config
    llm = make_client(ws, opts, command="simulate --batch-api", dry_run=opts.dry_run, max_cost=False)
    summary = BatchSummary()
    try:
        driver = make_driver(ws, llm)
        if opts.dry_run:
            summary.estimate = _dry_run(store, opts, llm, driver, BatchRunner(store, config, llm, echo=echo))
            return summary
        holder = process_holder("simulate-batch")
        wait = bool(config["batch"]["wait"])
        max_cost = opts.max_cost if opts.max_cost is not None else (config["simulate"]["max_cost_usd"] or None)

        async def renewing_sleep(seconds: float) -> None:
            store.renew_claims(holder, lease_s=LEASE_S)
            await asyncio.sleep(seconds)

        runner = BatchRunner(store, config, llm, echo=echo, sleep=renewing_sleep)
        rounds = Rounds(store, driver, llm, runner)
        try:
            # 1. whatever an earlier run left out there: finish submitting, poll, collect
            out = await runner.resume(wait=wait)
            summary.add_collected(out.collected)
            if out.still_out:
                summary.waiting = out.waiting
                return summary
            ids = store.claim_specs(holder, opts.limit if opts.limit is not None else 1 << 40, lease_s=LEASE_S)
            states = {i: driver.load_or_create(store, spec) for i in ids if (spec := store.get_spec(i)) is not None}
            # 2. rounds: advance every dialogue from the ledger, submit their next calls together
            while states:
                calls: list[BatchCall] = []
                bar = progress(total=len(states), desc=f"round {runner.next_round()}: advance dialogues",
                               unit="dlg", leave=False)
                for spec_id, state in list(states.items()):
                    bar.update(1)
                    kind, call = rounds.next_call(state, write=True)
                    if kind == "finished":
                        if state.status == "in_progress":
                            driver.finish(store, state, "done")
                        store.finish_claim(spec_id, holder, state.status, state.status_reason)
                        if state.status == "done":
                            summary.done += 1
                        elif state.status == "failed":
                            summary.failed += 1
                            summary.count_failure(C.reason_code(state.status_reason or "failed"))
                        del states[spec_id]
                    elif kind == "straggler":
                        store.finish_claim(spec_id, holder, "pending",
                                           f"left to online simulate: its call failed in {runner.max_attempts} "
                                           f"batches")
                        summary.stragglers += 1
                        del states[spec_id]
                    elif kind == "in_flight":  # submitted by another path; collected by a later run
                        summary.parked += 1
                        del states[spec_id]
                    elif call is not None:
                        calls.append(call)
                bar.close()
                calls = list({c.key: c for c in calls}.values())  # identical calls: submitted once
                if not calls:
                    break
                if max_cost:
                    kept, upper = runner.within_budget(calls, max_cost - summary.cost_usd)
                    if len(kept) < len(calls):
                        summary.stopped = (f"--max-cost ${max_cost:.2f}: submitting {len(kept):,} of {len(calls):,} "
                                           f"calls this round would stay within the budget (spent "
                                           f"${summary.cost_usd:.4f}, at most ${upper:.4f} more)")
                    calls = kept
                    if not calls:
                        break
                out = await runner.submit(calls, wait=wait)
                summary.rounds += 1
                summary.submitted += out.submitted
                summary.add_collected(out.collected)
                if out.still_out:
                    summary.waiting = out.waiting
                    break
                if summary.stopped:
                    break
        finally:
            store.release_claims(holder)
        return summary
    finally:
        await llm.aclose()


def run_batch_simulation(ws: Any, opts: SimulateOptions, *, echo: Callable[[str], None] | None = None,
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
    lock = nullcontext() if opts.dry_run else WorkspaceLock(ws.root, LOCK_FILE, "`simulate --batch-api`")
    with lock:
        try:
            return asyncio.run(_cancel(ws, opts, echo) if cancel else _run(ws, opts, echo))
        except openai.APIError as exc:
            raise ServiceError(f"the Batch API failed: {type(exc).__name__}: {exc}; nothing is lost, re-run "
                               f"`{COMMAND}` to continue") from None
