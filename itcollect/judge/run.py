"""The judge run: one LLM call per active answer of every finished dialogue that has no current
judgement by this judge (model, templates), online many at once or in Batch API rounds.

* The judgement of one answer — its prompt, the one re-ask of an unreadable reply, its row — is
  :mod:`itcollect.llm.judgement.ask` (:class:`Judge`, :class:`JudgementMachine`), driven by the
  shared runners of :mod:`itcollect.llm.runners` (online: :class:`_OnlineJudging` on
  :class:`OnlineRunner`; ``--batch-api``: :class:`_BatchJudging` on :class:`BatchRounds`). This
  module chooses the answers (:class:`_Plan`: generations, ``--rejudge``, ``--limit``) and writes
  and counts their rows.
* Calls go through :class:`itcollect.llm.LLMClient` as role ``judge``: the request ledger (written
  before a call is sent, answered calls never paid twice: a re-run after ``kill -9`` gets every
  answered call from the ledger and turns it into the same judgement), limits, retries, breaker,
  ``--max-cost``; ``--dry-run`` estimates the whole run from a sample without sending or writing.
* Sample numbers: a judgement's call is sample ``2 x generation`` (``+1`` for the one re-ask of an
  unparsable answer). ``--rejudge`` judges every answer again at the next generation (new ledger
  keys: new answers); a re-run of a ``--rejudge`` that was killed continues it (lowest generation
  + 1) instead of starting over. A stale judgement (the dialogue's turns changed) is redone at its
  own generation, so an unchanged prompt is answered from the ledger for free.
* Judgements are written in small groups (one transaction per few dozen); one lost to a kill is
  rebuilt from the ledger by the next run.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from itcollect.judge.candidates import candidate_tasks, save_rows, tagged
from itcollect.kernel.errors import ServiceError, UsageError
from itcollect.llm.batch import CollectReport
from itcollect.llm.judgement.ask import Asking, Judge, JudgementMachine, Task
from itcollect.llm.runners.batch_rounds import FINISHED, IN_FLIGHT, STRAGGLER, BatchRounds
from itcollect.llm.runners.online import CALL_FAILED, PARKED, Ended, OnlineRunner
from itcollect.settings import settings
from itcollect.store.interfaces import JudgeStore

if TYPE_CHECKING:
    from itcollect.workspace import Workspace


@dataclass
class JudgeOptions:
    limit: int | None = None  # judge at most this many answers in this run
    concurrency: int | None = None
    base_url: str | None = None
    model: str | None = None
    rejudge: bool = False
    dry_run: bool = False
    max_cost: float | None = None


@dataclass
class JudgeSummary:
    judged: int = 0
    unparsed: int = 0
    reasked: int = 0  # answers asked a second time (then judged or unparsed)
    call_errors: int = 0  # calls that failed after all retries: left for the next run
    in_batch: int = 0  # calls out in a Batch API batch: left to it
    todo: int = 0
    candidates: int = 0  # of the judged and unparsed: candidates of a person's comparisons
    model: str = ""
    stopped: str | None = None
    stop_kind: str | None = None  # "endpoint" (exit 1) | "cost" (--max-cost reached)
    calls: dict[str, Any] = field(default_factory=dict)
    estimate: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)

    def count(self, row: dict[str, Any]) -> None:
        """One judgement row written (online or collected from a batch): judged, with its score, or unparsed."""
        if "comparison_id" in row:
            self.candidates += 1
        if row["status"] == "judged":
            self.judged += 1
            if row.get("score") is not None:
                self.scores.append(float(row["score"]))
        else:
            self.unparsed += 1

    def to_json(self) -> dict[str, Any]:
        return {"judged": self.judged, "unparsed": self.unparsed, "reasked": self.reasked,
                "call_errors": self.call_errors, "in_batch": self.in_batch, "todo": self.todo,
                "candidates": self.candidates, "model": self.model,
                "stopped": self.stopped, "warnings": self.warnings, "calls": self.calls}


def _client(ws: Workspace, opts: JudgeOptions, *, dry_run: bool = False) -> Any:
    from itcollect.llm import EndpointFlags, LLMClient, resolve_endpoints

    max_cost = opts.max_cost if opts.max_cost is not None else (settings(ws.config).judge.max_cost_usd or None)
    endpoints = resolve_endpoints(settings(ws.config), ("judge",), flags={"judge": EndpointFlags(opts.base_url, opts.model)})
    return LLMClient(ws.config, ws.store, command="judge", endpoints=endpoints, concurrency=opts.concurrency,
                     max_cost_usd=max_cost, dry_run=dry_run)


def _same_model(a: str, b: str) -> bool:
    a, b = a.lower().rsplit("/", 1)[-1], b.lower().rsplit("/", 1)[-1]
    return a == b or a.startswith(b + "-") or b.startswith(a + "-")


def self_judging_warning(ws: Workspace, model: str) -> str | None:
    """A warning when the judge model wrote (or is configured to write) the answers it judges."""
    authors = set(ws.store.answer_models()) | {settings(ws.config).llm.assistant.model}
    same = sorted(m for m in authors if m and _same_model(m, model))
    if not same:
        return None
    return (f"the judge model {model} is also the assistant model ({', '.join(same)}): a model grading its own "
            f"answers is biased; consider --model with another model ([llm.judge] model)")


class _Plan:
    """Which generation this run judges at, and the answers it visits (a generator over pages)."""

    def __init__(self, store: JudgeStore, judge: Judge, rejudge: bool) -> None:
        self.store = store
        self.judge = judge
        self.rejudge = rejudge
        lo, hi = store.judge_generations()
        self.generation = lo + 1 if rejudge else hi
        self.min_generation = self.generation if rejudge else 0
        self.hashes = tuple(sorted(set(judge.hashes.values())))

    def count(self) -> int:
        """Answers to judge, candidates of a person's comparisons included (:mod:`itcollect.judge.candidates`)."""
        return (self.store.count_answers_to_judge(self.judge.model, self.hashes, self.min_generation)
                + self.store.count_candidates_to_judge(self.judge.model))

    def todo(self, limit: int | None) -> int:
        """The answers this run judges: every one to judge, or ``limit`` of them."""
        return self.count() if limit is None else min(self.count(), limit)

    def dialogue_pages(self, page: int = 200) -> Iterator[list[str]]:
        after = 0
        while True:
            rows = self.store.dialogues_to_judge(self.judge.model, self.hashes, self.min_generation, after=after,
                                                 limit=page)
            if not rows:
                return
            after = rows[-1][0]
            yield [i for _, i in rows]

    def tasks_of(self, ids: list[str]) -> Iterator[Task]:
        for d, turns, stored in self.store.dialogues_for_judging(ids):
            if d["status"] != "done":
                continue
            yield from self.judge.tasks(d, turns, stored, min_generation=self.min_generation,
                                        generation=self.generation, rejudge=self.rejudge)

    def answer_tasks(self) -> Iterator[Task]:
        for ids in self.dialogue_pages():
            yield from self.tasks_of(ids)

    def tasks(self, limit: int | None = None) -> Iterator[Task]:
        """Every answer to judge, then every candidate (at most ``limit`` in all), page by page."""
        n = 0
        for task in itertools.chain(self.answer_tasks(), candidate_tasks(self.store, self.judge)):
            if limit is not None and n >= limit:
                return
            n += 1
            yield task


_FIGURES = ("calls", "from_ledger", "prompt_tokens", "completion_tokens", "cost_usd")


def _figures(client: Any) -> dict[str, float]:
    st = client.stats()
    return {"calls": client.estimated_calls, "from_ledger": client.from_ledger, "prompt_tokens": st["prompt_tokens"],
            "completion_tokens": st["completion_tokens"], "cost_usd": st["cost_usd"]}


async def _estimate(ws: Workspace, opts: JudgeOptions, sample_dialogues: int = 200) -> dict[str, Any]:
    """``--dry-run``: the prompts of a sample of the dialogues to judge, and of a sample of the
    candidates to judge, go through the client in dry-run mode (nothing sent or written; answers
    already in the ledger count as free) and each part's figures are scaled to every answer (every
    candidate) the run would judge."""
    from itcollect.llm import CallInBatch

    client = _client(ws, opts, dry_run=True)
    try:
        judge = Judge(ws.config, client.model_for("judge"), base=ws.root)
        machine = JudgementMachine(judge)
        plan = _Plan(ws.store, judge, opts.rejudge)
        n_candidates = ws.store.count_candidates_to_judge(judge.model)
        todo = plan.todo(opts.limit)
        answers_todo = min(todo, plan.count() - n_candidates)  # the run judges the answers first
        parts_todo = (answers_todo, todo - answers_todo)
        ids = [i for page in plan.dialogue_pages(page=2000) for i in page]
        ids = ids[::max(1, len(ids) // sample_dialogues)]
        parts = ((t for start in range(0, len(ids), 100) for t in plan.tasks_of(ids[start:start + 100])),
                 itertools.islice(candidate_tasks(ws.store, judge), 0, None, max(1, n_candidates // sample_dialogues)))
        total = dict.fromkeys(_FIGURES, 0.0)
        sampled = 0
        for part, part_todo in zip(parts, parts_todo):
            before, n = _figures(client), 0
            for task in part:
                (call,) = machine.calls(Asking(task))
                try:
                    await client.chat(call.role, call.messages, sample=call.sample, **call.params)
                except CallInBatch:
                    pass
                n += 1
            scale = part_todo / n if n else 0.0
            after = _figures(client)
            for k in _FIGURES:
                total[k] += (after[k] - before[k]) * scale
            sampled += n
    finally:
        await client.aclose()
    return {"answers": todo, "candidates": parts_todo[1], "sampled": sampled,
            **{k: round(total[k], 4) if k == "cost_usd" else round(total[k]) for k in _FIGURES},
            "model": judge.model, "response_format": judge.mode, "rejudge": opts.rejudge}


def _open_judge(ws: Workspace, client: Any, summary: JudgeSummary, warn: Callable[[str], None] | None) -> Judge:
    """The judge of a run (online or batch), its model on the summary, and the warning when it is
    the assistant's own model, said once."""
    judge = Judge(ws.config, client.model_for("judge"), base=ws.root)
    summary.model = judge.model
    warning = self_judging_warning(ws, judge.model)
    if warning:
        summary.warnings.append(warning)
        if warn is not None:
            warn(warning)
    return judge


class _OnlineJudging:
    """The judge's side of an online run (:class:`OnlineRunner`): answers from the plan's pages,
    each judged by a :class:`JudgementMachine`, rows written in small groups (one transaction per
    64 rows or a quarter second; a row lost to a kill is rebuilt from the ledger by the next run)."""

    def __init__(self, store: JudgeStore, judge: Judge, plan: _Plan, summary: JudgeSummary, client: Any,
                 bar: Any, limit: int | None) -> None:
        self.machine = JudgementMachine(judge)
        self.store = store
        self.summary = summary
        self.client = client
        self.bar = bar
        self.tasks = plan.tasks(limit)
        self.pending: list[dict[str, Any]] = []
        self.last_flush = time.monotonic()
        self.last_postfix = 0.0

    async def next_item(self) -> Task | None:
        return next(self.tasks, None)

    def start(self, task: Task) -> Asking:
        return Asking(task)

    def end(self, task: Task, st: Asking | None, ended: Ended) -> None:
        summary = self.summary
        if ended.kind == PARKED:  # out in a Batch API batch: left to it
            summary.in_batch += 1
            return
        if ended.kind == CALL_FAILED:  # left for the next run
            summary.call_errors += 1
            return
        assert st is not None and st.row is not None
        row = tagged(task, st.row)
        summary.reasked += st.reasked
        summary.count(row)
        self.pending.append(row)
        if len(self.pending) >= 64 or time.monotonic() - self.last_flush > 0.25:
            self.flush()
        if self.bar is not None:
            self.bar.update(1)
        self.postfix()

    def flush(self) -> None:
        if self.pending:
            rows = self.pending[:]
            self.pending.clear()
            save_rows(self.store, rows)
        self.last_flush = time.monotonic()

    def close(self) -> None:
        self.flush()

    def postfix(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.bar is None or (not force and now - self.last_postfix < 0.5):
            return
        self.last_postfix = now
        st, summary = self.client.stats(), self.summary
        self.bar.set_postfix_str(f"judged {summary.judged} unparsed {summary.unparsed} | {st['calls_per_s']:.1f} "
                                 f"calls/s | {st['tokens']:,} tok | ${st['cost_usd']:.4f}", refresh=False)


async def _run_online(ws: Workspace, opts: JudgeOptions, summary: JudgeSummary, bar: Any = None,
                      warn: Callable[[str], None] | None = None) -> None:
    store: JudgeStore = ws.store
    client = _client(ws, opts)
    try:
        judge = _open_judge(ws, client, summary, warn)
        plan = _Plan(store, judge, opts.rejudge)
        summary.todo = plan.todo(opts.limit)
        if bar is not None:
            bar.reset(total=summary.todo)
        work = _OnlineJudging(store, judge, plan, summary, client, bar, opts.limit)
        judge.prompts.warm_up()
        runner: OnlineRunner[Task, Asking] = OnlineRunner(client, limit=opts.limit,
                                                           checkpoints=store.background_checkpoints())
        await runner.run(work)
        work.postfix(force=True)
        summary.stopped, summary.stop_kind = runner.stop_reason, runner.stop_kind
        if summary.stopped is None and summary.call_errors and not (summary.judged or summary.unparsed):
            summary.stopped = f"every judge call of this run failed; the last: {runner.last_call_error}"
            summary.stop_kind = "endpoint"
    finally:
        summary.calls = client.stats()
        await client.aclose()


#: ``judge --batch-api``: its own lock (a simulate batch run may be polling meanwhile) and the
#: stage its batches are recorded under.
BATCH_STAGE = "judge"
BATCH_LOCK_FILE = ".itcollect-batch-judge.lock"


class _BatchJudging:
    """The judge's side of Batch API rounds (:class:`BatchRounds`): each round takes every answer
    still to judge afresh from the store, turns those whose reply is in the ledger into judgements
    (a reply that cannot be read gets its one re-ask in the next round) and writes them at the
    round's end."""

    def __init__(self, store: JudgeStore, judge: Judge, plan: _Plan, summary: JudgeSummary, limit: int | None,
                 max_cost: float | None) -> None:
        self.machine = JudgementMachine(judge)
        self.store = store
        self.plan = plan
        self.summary = summary
        self.limit = limit
        self.max_cost = max_cost
        self.rows: list[dict[str, Any]] = []
        self.in_flight = self.stragglers = 0

    def begin(self) -> None:
        self.summary.todo = self.plan.todo(self.limit)

    def items(self) -> Iterator[tuple[Task, Asking]]:
        self.rows, self.in_flight, self.stragglers = [], 0, 0
        for task in self.plan.tasks(self.limit):
            yield task, Asking(task)

    def settle(self, task: Task, st: Asking, kind: str) -> None:
        if kind == FINISHED:
            assert st.row is not None
            self.rows.append(tagged(task, st.row))
        elif kind == IN_FLIGHT:
            self.in_flight += 1
        elif kind == STRAGGLER:
            self.stragglers += 1

    def end_round(self) -> None:
        summary = self.summary
        if self.rows:
            save_rows(self.store, self.rows)
            for row in self.rows:
                summary.count(row)
                summary.reasked += row["sample"] % 2
        summary.in_batch, summary.call_errors = self.in_flight, self.stragglers

    def collected(self, reports: Sequence[CollectReport]) -> None:
        pass  # the judge's figures are its rows; the client's stats count the run's calls

    def over_budget(self, kept: int, total: int, spent: float, upper: float) -> str | None:
        if kept:
            return None  # submit what fits; the next round sees what is left of the budget
        return f"--max-cost ${self.max_cost:.2f}: no further judge call fits the budget (spent ${spent:.4f})"


async def _run_batch(ws: Workspace, opts: JudgeOptions, summary: JudgeSummary, echo: Callable[[str], None],
                     warn: Callable[[str], None] | None = None) -> None:
    """``judge --batch-api``: rounds through the Batch API transport (:mod:`itcollect.llm.batch`),
    until nothing is left (``[batch] wait = false``: one round and return while a batch is out).
    Crash-safe as simulate's rounds: a killed run's batches are resumed and collected first, and
    answers advance from the ledger."""
    from itcollect.llm.batch import BatchRunner

    store: JudgeStore = ws.store
    client = _client(ws, opts)
    try:
        judge = _open_judge(ws, client, summary, warn)
        typed = settings(ws.config)
        max_cost = opts.max_cost if opts.max_cost is not None else (typed.judge.max_cost_usd or None)
        runner = BatchRunner(store, ws.config, client, echo=echo, stage=BATCH_STAGE)
        rounds: BatchRounds[Task, Asking] = BatchRounds(runner, client, wait=typed.batch.wait, max_cost=max_cost)
        work = _BatchJudging(store, judge, _Plan(store, judge, opts.rejudge), summary, opts.limit, max_cost)
        end = await rounds.run(work)
        if end.still_out:
            summary.in_batch = end.waiting
        if end.stopped:
            summary.stopped, summary.stop_kind = end.stopped, "cost"
    finally:
        summary.calls = client.stats()
        await client.aclose()


def run_judge(ws: Workspace, opts: JudgeOptions, *, show_progress: bool = True,
              warn: Callable[[str], None] | None = None, batch_api: bool = False,
              echo: Callable[[str], None] | None = None) -> JudgeSummary:
    """Judge every answer of every finished dialogue that needs it (or ``opts.limit`` of them)."""
    if opts.concurrency is not None and opts.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    if opts.limit is not None and opts.limit < 0:
        raise UsageError("--limit must be zero or more")
    if opts.dry_run:
        return JudgeSummary(estimate=asyncio.run(_estimate(ws, opts)))
    summary = JudgeSummary()
    if batch_api:
        import openai  # deferred heavy import (~0.6 s)

        from itcollect.workspace import WorkspaceLock

        with WorkspaceLock(ws.root, BATCH_LOCK_FILE, "`judge --batch-api`", store_url=ws.store_url):
            try:
                asyncio.run(_run_batch(ws, opts, summary, echo or (lambda _m: None), warn))
            except openai.APIError as exc:
                raise ServiceError(f"the Batch API failed: {type(exc).__name__}: {exc}; nothing is lost, re-run "
                                   f"`itcollect judge --batch-api` to continue") from None
        return summary
    bar = None
    if show_progress:
        from itcollect.kernel.progress import progress

        bar = progress(total=0, desc="judge", unit="ans")
    try:
        asyncio.run(_run_online(ws, opts, summary, bar, warn))
    finally:
        if bar is not None:
            bar.close()
    if summary.stopped and summary.stop_kind != "cost":
        raise ServiceError(f"{summary.stopped} ({summary.judged} answers judged and {summary.unparsed} unparsed in "
                           f"this run are committed; re-run to continue)")
    return summary


__all__ = ["JudgeOptions", "JudgeSummary", "run_judge", "self_judging_warning"]
