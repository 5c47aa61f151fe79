"""Online ``simulate``: many dialogues at once over :class:`itcollect.llm.LLMClient`.

:class:`OnlineRun` claims specs a batch at a time and plays each dialogue in a worker task; the
client bounds the calls in flight (its call slots), so more dialogues than slots are in play: while
one records a turn or waits for its next claim, another holds the slot. Every turn is committed
before the dialogue's next call, so a run killed at any point continues where it stopped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from itcollect.compare.record import finish_run, start_run
from itcollect.kernel import checks as C
from itcollect.kernel.errors import InputError, ServiceError, UsageError
from itcollect.kernel.langid import warm_up
from itcollect.kernel.progress import progress
from itcollect.llm import DEFAULT_ROLES, EndpointFlags, LLMClient, resolve_endpoints
from itcollect.llm.endpoints import SYSTEM_ROLE_PREFIX, system_name, system_role
from itcollect.llm.judgement.ask import Judge
from itcollect.llm.runners.online import CALL_FAILED, PARKED, TAKEN_OVER, Ended, OnlineRunner
from itcollect.settings import settings
from itcollect.simulate.compare import CompareMachine, compare_systems
from itcollect.simulate.driver import DialogueDriver, DialogueState
from itcollect.simulate.estimate import estimate_run
from itcollect.simulate.machine import DialogueMachine
from itcollect.simulate.summary import SimulateOptions, SimulateSummary
from itcollect.store import process_holder
from itcollect.store.interfaces import SimulateCompareStore, SimulateStore

if TYPE_CHECKING:
    from itcollect.workspace import Workspace


def make_client(ws: Workspace, opts: SimulateOptions, *, command: str = "simulate", dry_run: bool = False,
                max_cost: bool = True) -> LLMClient:
    """The run's LLM client, from the options (``--max-cost`` or ``[simulate] max_cost_usd``); with
    ``--compare`` also the judge (``--judge-model`` / ``--judge-base-url``, else ``[llm.judge]``)
    and every system the run compares or a dialogue it may continue keeps."""
    typed = settings(ws.config)
    limit = opts.max_cost if opts.max_cost is not None else (typed.simulate.max_cost_usd or None)
    roles = (*DEFAULT_ROLES, "judge") if opts.compare else DEFAULT_ROLES
    endpoints = resolve_endpoints(typed, roles, base_url=opts.base_url, model=opts.model,
                                  flags={"annotator": EndpointFlags(opts.annotator_base_url, opts.annotator_model),
                                         "judge": EndpointFlags(opts.judge_base_url, opts.judge_model)})
    if opts.compare:
        run, kept = compare_systems(typed, ws.store, opts.compare, base_url=opts.base_url)
        endpoints.update({e.role: e for e in (*run, *kept)})
    return LLMClient(ws.config, ws.store, command=command, endpoints=endpoints, concurrency=opts.concurrency,
                     max_cost_usd=limit if max_cost else None, dry_run=dry_run)


def make_machine(ws: Workspace, opts: SimulateOptions, llm: LLMClient, driver: DialogueDriver, *,
                 write: bool = True, run_id: int | None = None,
                 on_end: Callable[[DialogueState], None] | None = None) -> DialogueMachine | CompareMachine:
    """The machine of one dialogue: a plain one, or with ``--compare`` the compared one."""
    if not opts.compare:
        return DialogueMachine(ws.store, driver, write=write, on_end=on_end)
    names = [system_name(r) for r in llm.roles if r.startswith(SYSTEM_ROLE_PREFIX)]
    systems = {n: {"name": n, "model": llm.model_for(system_role(n)), "base_url": llm.base_url_for(system_role(n))}
               for n in names}
    judge = Judge(ws.config, llm.model_for("judge"), prompts=driver.prompts)
    return CompareMachine(ws.store, driver, judge, systems=systems, run_systems=list(opts.compare), run_id=run_id,
                          write=write, on_end=on_end)


def start_compare_run(ws: Workspace, opts: SimulateOptions, llm: LLMClient, machine: Any, command: str) -> None:
    """Record the compare run and the systems it compares (nothing for a plain run)."""
    if isinstance(machine, CompareMachine):
        machine.run_id = machine.counts.run_id = start_run(
            ws.store, command, "judge", [machine.systems[n] for n in machine.run_systems],
            judge_model=llm.model_for("judge"))


def make_driver(ws: Workspace, llm: LLMClient) -> DialogueDriver:
    return DialogueDriver(ws.config, assistant_model=llm.model_for("assistant"),
                          annotator_model=llm.model_for("annotator"), base=ws.root)


def specs_to_play(store: SimulateStore, limit: int | None, *, compare: bool = False) -> list[dict[str, Any]]:
    """The specs a run would play, in claim order: pending and in progress, at most ``limit``
    (replay specs and the dialogues a comparison started only for a ``--compare`` run)."""
    left = set() if compare else store.compared_spec_ids()
    specs = [s for s in store.iter_specs(("pending", "in_progress"))
             if compare or not (s.get("replay_of") or s["id"] in left)]
    return specs if limit is None else specs[:limit]


async def _estimate(ws: Workspace, opts: SimulateOptions) -> dict[str, Any]:
    """``--dry-run`` online: the whole remaining run at online prices (see :mod:`.estimate`)."""
    client = make_client(ws, opts, dry_run=True)
    try:
        driver = make_driver(ws, client)
        machine = make_machine(ws, opts, client, driver, write=False)
        return estimate_run(ws.store, driver, client, specs_to_play(ws.store, opts.limit, compare=bool(opts.compare)),
                            compare=machine if isinstance(machine, CompareMachine) else None)
    finally:
        await client.aclose()


class OnlineRun:
    """simulate's side of an online run (:class:`OnlineRunner`): its claims, and what a dialogue's
    end means; each dialogue is played by a :class:`DialogueMachine`.

    Specs are claimed a batch at a time, each batch under a fresh holder name
    (``simulate-b<n>@host:pid``): a claim hands a holder's own in-progress specs back first, which
    within one run would hand out specs already being worked on; fresh names avoid that while
    keeping the dead-process takeover (same host:pid form). Within a claimed batch the longest
    dialogues start first (LPT): a dialogue's calls are sequential, so a long one started last
    would leave the endpoint idle while it finishes. Batches are half the call slots: with
    several simulate processes on one workspace, large batches left one process holding the last
    few hundred specs alone.

    Every turn is committed before the dialogue's next call; the last one in the same transaction
    as the dialogue's status and the release of its spec.
    """

    def __init__(self, ws: Workspace, opts: SimulateOptions, bar: Any = None) -> None:
        self.store: SimulateCompareStore = ws.store
        self.opts = opts
        self.bar = bar
        self.summary = SimulateSummary()
        self.client = make_client(ws, opts)
        self.driver = make_driver(ws, self.client)
        self.machine = make_machine(ws, opts, self.client, self.driver, on_end=self._release)
        start_compare_run(ws, opts, self.client, self.machine, "simulate --compare")
        self.summary.compare = self.machine.counts if isinstance(self.machine, CompareMachine) else None
        self.runner: OnlineRunner[dict[str, Any], DialogueState] = OnlineRunner(
            self.client, limit=opts.limit, checkpoints=self.store.background_checkpoints())
        self.claim_size = opts.claim_batch or max(16, self.client.concurrency // 2)
        self.lease_s = float(opts.lease_s or settings(ws.config).simulate.lease_s)
        # claims
        self.queue: list[dict[str, Any]] = []  # claimed specs not yet started, longest first
        self.claim_lock = asyncio.Lock()
        self.claims_made = 0
        self.left_to_claim = opts.limit  # None: no --limit
        self.claims_exhausted = False  # the store (or --limit) has no spec left to hand this run
        self.holders: dict[str, int] = {}  # holder -> specs it still holds
        self.spec_holder: dict[int, str] = {}
        self.released: dict[int, bool] = {}  # spec id -> its claim was finished with its last turn (False: lost)
        # scheduling of calls: see next_spec
        self.ranked_by_most_left = False
        self._renewer: asyncio.Task[None] | None = None
        self._last_postfix = 0.0

    # -- claims -----------------------------------------------------------------------------------
    async def next_item(self) -> dict[str, Any] | None:
        """The next spec to play (claiming a new batch when the queue is empty), or None."""
        async with self.claim_lock:
            if not self.queue and self.runner.stop_reason is None and not self.claims_exhausted:
                self._claim()
            spec = self.queue.pop(0) if self.queue and self.runner.stop_reason is None else None
            # Who gets a free call slot first. While dialogues are still to be started: the one
            # closest to its end (it frees its worker for the next spec soonest). Once every
            # dialogue of the run has started: the one with the most calls left, so they all end
            # together instead of a late one finishing alone on an idle endpoint. The rule changes
            # in the slots themselves, so calls already queued are ranked by the new rule too.
            if self.claims_exhausted and not self.queue and not self.ranked_by_most_left:
                self.ranked_by_most_left = True
                self.client.rank_calls_by(lambda left: -left)
            return spec

    def _claim(self) -> None:
        left = self.left_to_claim
        n = self.claim_size if left is None else min(self.claim_size, left)
        if n <= 0:
            return
        self.claims_made += 1
        holder = process_holder(f"simulate-b{self.claims_made}")
        ids = self.store.claim_specs(holder, n, lease_s=self.lease_s, compare=bool(self.opts.compare))
        if len(ids) < n or (left is not None and left - len(ids) <= 0):
            self.claims_exhausted = True
        if ids:
            self.holders[holder] = len(ids)
        if left is not None:
            self.left_to_claim = left - len(ids)
        for i in ids:
            spec = self.store.get_spec(i)
            if spec is not None:
                self.spec_holder[i] = holder
                self.queue.append(spec)
        self.queue.sort(key=lambda sp: (-sp["n_turns"], sp["id"]))

    def _forget_claim(self, spec_id: int) -> str:
        holder = self.spec_holder.pop(spec_id)
        self.holders[holder] -= 1
        if self.holders[holder] <= 0:
            del self.holders[holder]
        return holder

    def _finish_claim(self, spec: dict[str, Any], state: DialogueState) -> bool:
        return self.store.finish_claim(spec["id"], self._forget_claim(spec["id"]), state.status, state.status_reason)

    def _release(self, state: DialogueState) -> None:
        """The dialogue ended (inside the transaction of its last turn): release its spec."""
        self.released[state.spec["id"]] = self._finish_claim(state.spec, state)

    async def _renew_leases(self) -> None:
        while True:
            await asyncio.sleep(max(1.0, self.lease_s / 3))
            for h in list(self.holders):
                self.store.renew_claims(h, lease_s=self.lease_s)

    # -- one dialogue ------------------------------------------------------------------------------
    def start(self, spec: dict[str, Any]) -> DialogueState:
        # Fewer commits, same guarantees: a new dialogue and its first (template) turn are one transaction.
        with self.store.transaction():
            state = self.driver.load_or_create(self.store, spec)
            if isinstance(self.machine, CompareMachine):
                self.machine.begin(state)
            self.machine.calls(state)
        return state

    def end(self, spec: dict[str, Any], state: DialogueState | None, ended: Ended) -> None:
        summary = self.summary
        if ended.kind == TAKEN_OVER:
            if spec["id"] in self.spec_holder:
                self._forget_claim(spec["id"])
            summary.taken_over += 1
            return
        if ended.kind == PARKED:  # its spec goes back to pending with the holder's other claims
            summary.parked += 1
            return
        if ended.kind == CALL_FAILED:
            # A call that failed after all its retries is an endpoint problem, not the dialogue's:
            # the dialogue stays in progress and goes back to pending at the end of this run, so
            # the next run retries it (the circuit breaker stops a run when the endpoint is down).
            summary.call_errors += 1
            return
        assert state is not None
        if state.compare is not None and state.compare.stalled:  # no system answered: left for the next run
            summary.call_errors += 1
            runner_error = state.compare.stalled
            self.runner.last_call_error = runner_error
            return
        released = self.released.pop(spec["id"], None)
        if released is None:  # complete but not yet marked (e.g. a crash right before), or ended earlier
            with self.store.transaction():
                if state.status == "in_progress":
                    self.driver.finish(self.store, state, "done")
                released = self._finish_claim(spec, state)
        if not released:  # the spec's lease had passed to another process
            summary.taken_over += 1
            return
        if state.status == "done":
            summary.done += 1
        else:
            summary.failed += 1
            summary.count_failure(C.reason_code(state.status_reason or "failed"))
        if self.bar is not None:
            self.bar.update(1)
        self._postfix()

    def close(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
        for h in list(self.holders):  # unfinished (interrupted, parked) specs go back to pending
            self.store.release_claims(h)

    def _postfix(self, force: bool = False) -> None:
        if self.bar is None:
            return
        now = time.monotonic()
        if not force and now - self._last_postfix < 0.5:
            return
        self._last_postfix = now
        st = self.client.stats()
        self.bar.set_postfix_str(f"done {self.summary.done} failed {self.summary.failed} | "
                                 f"{st['calls_per_s']:.1f} calls/s | {st['tokens']:,} tok | ${st['cost_usd']:.4f}",
                                 refresh=False)

    async def run(self) -> SimulateSummary:
        client, summary, runner = self.client, self.summary, self.runner
        self._renewer = asyncio.create_task(self._renew_leases())
        try:
            # language models and templates are loaded now, not between two calls of the run
            warm_up(self.driver.languages, self.driver.backend)
            self.driver.prompts.warm_up()
            await runner.run(self)
        finally:
            if self._renewer is not None:
                self._renewer.cancel()
            summary.calls = client.stats()
            await client.aclose()
            if summary.compare is not None and summary.compare.run_id is not None:
                finish_run(self.store, summary.compare.run_id)
            self._postfix(force=True)
        stop_reason, summary.stop_kind = runner.stop_reason, runner.stop_kind
        if stop_reason is None and summary.call_errors and not summary.done and not summary.failed:
            # Too few calls to trip the circuit breaker, yet every dialogue's call failed: the run did
            # nothing, which is a failed service (exit 1), not a success with a footnote.
            stop_reason = f"every dialogue of this run hit a failed LLM call; the last: {runner.last_call_error}"
            summary.stop_kind = "endpoint"
        summary.stopped = stop_reason
        return summary


async def _run_online(ws: Workspace, opts: SimulateOptions, bar: Any) -> SimulateSummary:
    # built inside the event loop: the client's HTTP transport belongs to it
    return await OnlineRun(ws, opts, bar).run()


def run_simulation(ws: Workspace, opts: SimulateOptions, *, show_progress: bool = True) -> SimulateSummary:
    """Simulate every pending spec of the workspace (or ``opts.limit`` of them) online;
    ``opts.dry_run``: estimate the whole remaining run instead, sending and writing nothing."""
    if opts.concurrency is not None and opts.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    if opts.limit is not None and opts.limit < 0:
        raise UsageError("--limit must be zero or more")
    counts = ws.store.spec_counts()
    if counts["total"] == 0:
        raise InputError("the workspace has no dialogue specs yet: run 'itcollect plan --dialogues N' first",
                         path=str(ws.root))
    if opts.dry_run:
        return SimulateSummary(estimate=asyncio.run(_estimate(ws, opts)))
    total = counts["pending"] + counts["in_progress"]
    if opts.limit is not None:
        total = min(total, opts.limit)
    bar = progress(total=total, desc="simulate", unit="dlg") if show_progress else None
    try:
        summary = asyncio.run(_run_online(ws, opts, bar))
    finally:
        if bar is not None:
            bar.close()
    if summary.stopped and summary.stop_kind != "cost":
        raise ServiceError(f"{summary.stopped} ({summary.done} dialogues done and {summary.failed} failed in this "
                           f"run are committed; re-run to continue)")
    return summary
