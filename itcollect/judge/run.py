"""The judge run: one LLM call per active answer of every finished dialogue that has no current
judgement by this judge (model, templates), online, many at once.

* What each answer is comes from :func:`itcollect.kernel.dialogue.expectations` (its type, the target
  language in force, the translation it revises, the request it answers), so the judge, simulate,
  the session and the filter agree about it.
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
import gc
import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from itcollect.kernel.dialogue import answered_request, expectations
from itcollect.kernel.errors import ItcollectError, ServiceError, UsageError
from itcollect.kernel.prompting import Prompts, load_prompts
from itcollect.llm.judgement.parse import Judgement, Unparsable, parse_judgement
from itcollect.llm.judgement.schema import (
    KINDS,
    SYSTEM_TEMPLATE,
    TEMPLATES,
    Weights,
    kind_of,
    response_format,
)
from itcollect.store.interfaces import JudgeStore

#: What a judge is told when its answer could not be read (the one re-ask).
REASK = ("Your reply could not be read as the JSON object asked for ({why}). Reply again with only that JSON "
         "object, complete, and nothing else.")


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
    model: str = ""
    stopped: str | None = None
    stop_kind: str | None = None  # "endpoint" (exit 1) | "cost" (--max-cost reached)
    calls: dict[str, Any] = field(default_factory=dict)
    estimate: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)

    def count(self, row: dict[str, Any]) -> None:
        """One judgement row written (online or collected from a batch): judged, with its score, or unparsed."""
        if row["status"] == "judged":
            self.judged += 1
            if row.get("score") is not None:
                self.scores.append(float(row["score"]))
        else:
            self.unparsed += 1

    def to_json(self) -> dict[str, Any]:
        return {"judged": self.judged, "unparsed": self.unparsed, "reasked": self.reasked,
                "call_errors": self.call_errors, "in_batch": self.in_batch, "todo": self.todo, "model": self.model,
                "stopped": self.stopped, "warnings": self.warnings, "calls": self.calls}


@dataclass
class Task:
    """One answer to judge: the call to make and what its judgement row records."""

    dialogue_id: str
    turn_id: int
    dialogue_rev: int
    kind: str
    type_id: str | None
    revision: bool
    messages: list[dict[str, str]]
    template_name: str
    template_hash: str
    generation: int
    response_format: dict[str, Any] | None

    @property
    def sample(self) -> int:
        return 2 * self.generation


def _combined_hash(*hashes: str) -> str:
    return hashlib.sha256("\0".join(hashes).encode()).hexdigest()


class Judge:
    """Builds the judge's prompt for each answer of a dialogue and turns its reply into a row."""

    def __init__(self, config: dict[str, Any], model: str, *, prompts: Prompts | None = None, base: Any = None) -> None:
        self.prompts = prompts or load_prompts(config, base)
        self.weights = Weights.from_config(config)
        self.mode = config["llm"]["judge"]["response_format"]
        self.model = model
        system = self.prompts.render(SYSTEM_TEMPLATE)
        self.system = system.text
        #: the template hash a judgement records: the system template's and its kind template's
        self.hashes = {k: _combined_hash(system.hash, self.prompts.template_hash(TEMPLATES[k])) for k in KINDS}

    def is_current(self, stored: dict[str, Any] | None, dialogue_rev: int, min_generation: int) -> bool:
        return (stored is not None and stored["judge_model"] == self.model
                and stored["template_hash"] in self.hashes.values() and stored["dialogue_rev"] == dialogue_rev
                and stored["generation"] >= min_generation)

    def tasks(self, d: dict[str, Any], turns: list[dict[str, Any]], stored: dict[int, dict[str, Any]], *,
              min_generation: int = 0, generation: int = 0, rejudge: bool = False) -> list[Task]:
        """The answers of dialogue ``d`` (its active ``turns``) that need a judge call.

        ``generation``: of a new judgement (``--rejudge``: of every one); a stale judgement is
        redone at its own generation otherwise."""
        answers = [i for i, t in enumerate(turns) if t["role"] == "assistant"]
        if not answers:
            return []
        users: list[dict[str, Any]] = []
        for i in answers:
            j = i - 1
            while j >= 0 and turns[j]["role"] != "user":
                j -= 1
            users.append(turns[j] if j >= 0 else {"content": "", "params": {}})
        exps = expectations(src_lang=d.get("src_lang"), tgt_lang=d.get("tgt_lang"),
                            instruction_lang=d.get("instruction_lang"),
                            requests=[answered_request(u, turns[i]) for u, i in zip(users, answers)])
        out = []
        for i, user, exp in zip(answers, users, exps):
            t = turns[i]
            prev = stored.get(t["id"])
            if self.is_current(prev, d["turns_rev"], min_generation):
                continue
            gen = generation if rejudge or prev is None else int(prev["generation"])
            kind = kind_of(exp.type)
            revision = exp.k > 0 or kind == "rating"
            src, instr = d.get("src_lang") or "unknown", d.get("instruction_lang") or "unknown"
            source = d.get("source_text") or ""
            common = {"type_id": exp.type, "k": exp.k, "revision": revision, "source": source, "src_lang": src,
                      "instruction_lang": instr, "request": user.get("content") or "", "answer": t["content"],
                      "params": dict(exp.params), "previous_translation": exp.previous_translation or ""}
            if kind == "translation":
                if exp.type == "back_translate":
                    from_text = exp.previous_translation or exp.previous_answer or source
                    from_lang, to_lang = exp.target_before or "unknown", src
                else:
                    from_text, from_lang, to_lang = source, src, exp.target or "unknown"
                rendered = self.prompts.render(TEMPLATES[kind], **common, from_text=from_text, from_lang=from_lang,
                                               to_lang=to_lang, terms=list(exp.must_include),
                                               source_in_request=not from_text)
            else:
                rendered = self.prompts.render(TEMPLATES[kind], **common, to_lang=exp.target_before or "unknown")
            messages = [{"role": "system", "content": self.system}, {"role": "user", "content": rendered.text}]
            out.append(Task(d["id"], t["id"], d["turns_rev"], kind, exp.type, revision, messages, rendered.name,
                            self.hashes[kind], gen, response_format(self.mode, kind, revision)))
        return out

    def row(self, task: Task, *, call_key: str, sample: int, judgement: Judgement | None = None,
            raw: str | None = None, why: str | None = None) -> dict[str, Any]:
        """The judgements row of ``task``: parsed, or ``unparsed`` with the raw text and the reason."""
        row: dict[str, Any] = {
            "turn_id": task.turn_id, "dialogue_id": task.dialogue_id, "dialogue_rev": task.dialogue_rev,
            "kind": task.kind, "interaction_type": task.type_id, "judge_model": self.model,
            "template_name": task.template_name, "template_hash": task.template_hash, "call_key": call_key,
            "generation": task.generation, "sample": sample}
        if judgement is None:
            row.update(status="unparsed", errors=[], n_critical=0, raw=raw, reason=why)
        else:
            row.update(status="judged", score=judgement.score, errors=judgement.errors, n_critical=judgement.n_critical,
                       compliance=judgement.compliance, reason=judgement.reason, rating=judgement.rating,
                       in_instruction_language=judgement.in_instruction_language)
        return row

    def parse(self, task: Task, text: str) -> Judgement:
        return parse_judgement(text, task.kind, task.revision, self.weights)


def _params(task: Task) -> dict[str, Any]:
    return {"response_format": task.response_format} if task.response_format is not None else {}


async def judge_task(client: Any, judge: Judge, task: Task) -> tuple[dict[str, Any], bool]:
    """Judge one answer: the call, the parse, and once more when the reply is unparsable.
    Returns (row, re-asked). Raises the client's errors (LLMCallError, EndpointDown, ...)."""
    r = await client.chat("judge", task.messages, sample=task.sample, **_params(task))
    try:
        return judge.row(task, call_key=r.call_key, sample=task.sample, judgement=judge.parse(task, r.text)), False
    except Unparsable as exc:
        why = str(exc)
    again = _reask_messages(task, r.text, why)
    r2 = await client.chat("judge", again, sample=task.sample + 1, **_params(task))
    try:
        return judge.row(task, call_key=r2.call_key, sample=task.sample + 1,
                         judgement=judge.parse(task, r2.text)), True
    except Unparsable as exc:
        return judge.row(task, call_key=r2.call_key, sample=task.sample + 1, raw=r2.text,
                         why=f"{why}; asked again: {exc}"), True


def _client(ws: Any, opts: JudgeOptions, *, dry_run: bool = False) -> Any:
    from itcollect.llm import LLMClient

    max_cost = opts.max_cost if opts.max_cost is not None else (ws.config["judge"]["max_cost_usd"] or None)
    return LLMClient(ws.config, ws.store, command="judge", roles=("judge",), judge_base_url=opts.base_url,
                     judge_model=opts.model, concurrency=opts.concurrency, max_cost_usd=max_cost, dry_run=dry_run)


def _same_model(a: str, b: str) -> bool:
    a, b = a.lower().rsplit("/", 1)[-1], b.lower().rsplit("/", 1)[-1]
    return a == b or a.startswith(b + "-") or b.startswith(a + "-")


def self_judging_warning(ws: Any, model: str) -> str | None:
    """A warning when the judge model wrote (or is configured to write) the answers it judges."""
    authors = set(ws.store.answer_models()) | {ws.config.llm_role("assistant").get("model") or ""}
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
        return self.store.count_answers_to_judge(self.judge.model, self.hashes, self.min_generation)

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

    def tasks(self) -> Iterator[Task]:
        for ids in self.dialogue_pages():
            yield from self.tasks_of(ids)


async def _estimate(ws: Any, opts: JudgeOptions, sample_dialogues: int = 200) -> dict[str, Any]:
    """``--dry-run``: the prompts of a sample of the dialogues to judge go through the client in dry-run
    mode (nothing sent or written; answers already in the ledger count as free) and the figures are
    scaled to every answer the run would judge."""
    from itcollect.llm import CallInBatch

    client = _client(ws, opts, dry_run=True)
    try:
        judge = Judge(ws.config, client.model_for("judge"), base=ws.root)
        plan = _Plan(ws.store, judge, opts.rejudge)
        todo = plan.count()
        if opts.limit is not None:
            todo = min(todo, opts.limit)
        ids = [i for page in plan.dialogue_pages(page=2000) for i in page]
        step = max(1, len(ids) // sample_dialogues)
        sampled = 0
        for start in range(0, len(ids[::step]), 100):
            for task in plan.tasks_of(ids[::step][start:start + 100]):
                try:
                    await client.chat("judge", task.messages, sample=task.sample, **_params(task))
                except CallInBatch:
                    pass
                sampled += 1
        st = client.stats()
        est_calls, from_ledger = client.estimated_calls, client.from_ledger
    finally:
        await client.aclose()
    scale = todo / sampled if sampled else 0.0
    return {"answers": todo, "sampled": sampled, "calls": round(est_calls * scale),
            "from_ledger": round(from_ledger * scale), "prompt_tokens": round(st["prompt_tokens"] * scale),
            "completion_tokens": round(st["completion_tokens"] * scale), "cost_usd": round(st["cost_usd"] * scale, 4),
            "model": judge.model, "response_format": judge.mode, "rejudge": opts.rejudge}


def _open_judge(ws: Any, client: Any, summary: JudgeSummary, warn: Callable[[str], None] | None) -> Judge:
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


async def _run_online(ws: Any, opts: JudgeOptions, summary: JudgeSummary, bar: Any = None,
                      warn: Callable[[str], None] | None = None) -> None:
    from itcollect.llm import CallInBatch, CostLimitReached, EndpointDown, LLMCallError

    store: JudgeStore = ws.store
    client = _client(ws, opts)
    try:
        judge = _open_judge(ws, client, summary, warn)
        plan = _Plan(store, judge, opts.rejudge)
        summary.todo = plan.count() if opts.limit is None else min(plan.count(), opts.limit)
        if bar is not None:
            bar.reset(total=summary.todo)
        tasks = plan.tasks()
        handed = [0]
        stop: list[str] = []
        pending: list[dict[str, Any]] = []
        last_flush = [time.monotonic()]
        last_postfix = [0.0]
        last_error: list[str | None] = [None]

        def flush() -> None:
            if pending:
                rows = pending[:]
                pending.clear()
                store.save_judgements(rows)
            last_flush[0] = time.monotonic()

        def next_task() -> Task | None:
            if stop or (opts.limit is not None and handed[0] >= opts.limit):
                return None
            task = next(tasks, None)
            if task is not None:
                handed[0] += 1
            return task

        def postfix(force: bool = False) -> None:
            now = time.monotonic()
            if bar is None or (not force and now - last_postfix[0] < 0.5):
                return
            last_postfix[0] = now
            st = client.stats()
            bar.set_postfix_str(f"judged {summary.judged} unparsed {summary.unparsed} | {st['calls_per_s']:.1f} "
                                f"calls/s | {st['tokens']:,} tok | ${st['cost_usd']:.4f}", refresh=False)

        async def worker() -> None:
            while not stop:
                task = next_task()
                if task is None:
                    return
                try:
                    row, reasked = await judge_task(client, judge, task)
                except CallInBatch:
                    summary.in_batch += 1
                    continue
                except LLMCallError as exc:
                    summary.call_errors += 1
                    last_error[0] = exc.message
                    continue
                except (EndpointDown, CostLimitReached) as exc:
                    if not stop:
                        stop.append(exc.message if isinstance(exc, ItcollectError) else str(exc))
                        summary.stop_kind = "cost" if isinstance(exc, CostLimitReached) else "endpoint"
                    return
                summary.reasked += reasked
                summary.count(row)
                pending.append(row)
                if len(pending) >= 64 or time.monotonic() - last_flush[0] > 0.25:
                    flush()
                if bar is not None:
                    bar.update(1)
                postfix()

        judge.prompts.warm_up()
        gc.collect()
        gc.freeze()  # the SDK's and jinja's long-lived objects: no full collection walks them again
        n_workers = client.concurrency + max(8, client.concurrency // 2)
        if opts.limit is not None:
            n_workers = max(1, min(n_workers, opts.limit))
        checkpoints = store.background_checkpoints()
        checkpoints.__enter__()
        workers = [asyncio.create_task(worker()) for _ in range(n_workers)]
        try:
            done, _ = await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
            for t in done:
                if not t.cancelled() and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
        finally:
            for t in workers:
                t.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            try:
                flush()
            finally:
                checkpoints.__exit__(None, None, None)
                gc.unfreeze()
        postfix(force=True)
        if not stop and summary.call_errors and not (summary.judged or summary.unparsed):
            stop.append(f"every judge call of this run failed; the last: {last_error[0]}")
            summary.stop_kind = "endpoint"
        if stop:
            summary.stopped = stop[0]
    finally:
        summary.calls = client.stats()
        await client.aclose()


#: ``judge --batch-api``: its own lock (a simulate batch run may be polling meanwhile) and the
#: stage its batches are recorded under.
BATCH_STAGE = "judge"
BATCH_LOCK_FILE = ".itcollect-batch-judge.lock"


def _reask_messages(task: Task, first_reply: str, why: str) -> list[dict[str, str]]:
    return [*task.messages, {"role": "assistant", "content": first_reply[:4000]},
            {"role": "user", "content": REASK.format(why=why)}]


def _batch_step(runner: Any, client: Any, judge: Judge, task: Task) -> tuple[str, Any]:
    """Where one answer stands in batch mode, from the ledger alone: ("row", judgements row) when
    its reply (or its re-ask's) is in; ("send", BatchCall) for the call to submit next;
    ("in_flight" | "straggler", None). The same calls, keys and parsing as :func:`judge_task`."""
    call = client.batch_call("judge", task.messages, sample=task.sample, **_params(task))
    state = runner.lookup(call.key)
    if state.kind != "answered":
        return (state.kind, None) if state.kind != "to_send" else ("send", call)
    try:
        return "row", judge.row(task, call_key=call.key, sample=task.sample, judgement=judge.parse(task, state.result.text))
    except Unparsable as exc:
        why = str(exc)
    again = client.batch_call("judge", _reask_messages(task, state.result.text, why), sample=task.sample + 1,
                              **_params(task))
    state2 = runner.lookup(again.key)
    if state2.kind != "answered":
        return (state2.kind, None) if state2.kind != "to_send" else ("send", again)
    try:
        return "row", judge.row(task, call_key=again.key, sample=task.sample + 1,
                                judgement=judge.parse(task, state2.result.text))
    except Unparsable as exc:
        return "row", judge.row(task, call_key=again.key, sample=task.sample + 1, raw=state2.result.text,
                                why=f"{why}; asked again: {exc}")


async def _run_batch(ws: Any, opts: JudgeOptions, summary: JudgeSummary, echo: Callable[[str], None],
                     warn: Callable[[str], None] | None = None) -> None:
    """``judge --batch-api``: rounds through the Batch API transport (:mod:`itcollect.llm.batch`).

    A round takes every answer still to judge, turns those whose reply is already in the ledger into
    judgements (a reply that cannot be read gets its one re-ask in the next round), and submits the
    rest together; then the next round, until nothing is left (``[batch] wait = false``: one round
    and return while a batch is out). Crash-safe as simulate's rounds: a killed run's batches are
    resumed and collected first, and answers advance from the ledger."""
    from itcollect.llm.batch import BatchRunner

    store: JudgeStore = ws.store
    client = _client(ws, opts)
    try:
        judge = _open_judge(ws, client, summary, warn)
        settings = ws.config.settings
        wait = settings.batch.wait
        max_cost = opts.max_cost if opts.max_cost is not None else (settings.judge.max_cost_usd or None)
        runner = BatchRunner(store, ws.config, client, echo=echo, stage=BATCH_STAGE)
        spent = 0.0
        resumed = await runner.resume(wait=wait)
        spent += sum(rep.cost_usd for rep in resumed.collected)
        if resumed.still_out:
            summary.in_batch = resumed.waiting
            return
        plan = _Plan(store, judge, opts.rejudge)
        summary.todo = plan.count() if opts.limit is None else min(plan.count(), opts.limit)
        while True:
            rows: list[dict[str, Any]] = []
            to_send: list[Any] = []
            in_flight = stragglers = 0
            for n, task in enumerate(plan.tasks()):
                if opts.limit is not None and n >= opts.limit:
                    break
                kind, what = _batch_step(runner, client, judge, task)
                if kind == "row":
                    rows.append(what)
                elif kind == "send":
                    to_send.append(what)
                elif kind == "in_flight":
                    in_flight += 1
                else:
                    stragglers += 1
            if rows:
                store.save_judgements(rows)
                for row in rows:
                    summary.count(row)
                    summary.reasked += row["sample"] % 2
            summary.in_batch, summary.call_errors = in_flight, stragglers
            if not to_send:
                return
            if max_cost:
                to_send, worst = runner.within_budget(to_send, max_cost - spent)
                if not to_send:
                    summary.stopped = (f"--max-cost ${max_cost:.2f}: no further judge call fits the budget (spent "
                                       f"${spent:.4f})")
                    summary.stop_kind = "cost"
                    return
            result = await runner.submit(to_send, wait=wait)
            spent += sum(rep.cost_usd for rep in result.collected)
            if result.still_out:
                summary.in_batch = result.waiting
                return
    finally:
        summary.calls = client.stats()
        await client.aclose()


def run_judge(ws: Any, opts: JudgeOptions, *, show_progress: bool = True,
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

        with WorkspaceLock(ws.root, BATCH_LOCK_FILE, "`judge --batch-api`"):
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


__all__ = ["Judge", "JudgeOptions", "JudgeSummary", "Task", "run_judge", "judge_task", "self_judging_warning", "REASK"]
