"""``simulate``: an LLM plays the annotator, another (or the same) answers as the assistant.

The dialogue logic is a resumable state machine, :class:`DialogueDriver`, with no I/O of its own
beyond the store writes in :meth:`DialogueDriver.record`:

* :meth:`~DialogueDriver.load` rebuilds a dialogue's state from its committed turns (creating the
  dialogue record the first time), so a resume continues from the last committed turn;
* :meth:`~DialogueDriver.next_step` says what happens next: the first request from a template, the
  simulated annotator's next request, or the assistant's next answer — with the exact messages,
  the template name and hash, and the *sample number* (the count of rejected samples already
  stored at that position, so a re-run after a crash asks for the same sample and gets the
  ledger's answer, while a re-sample after a failed validation gets a new call);
* :meth:`~DialogueDriver.apply` validates an answer (taxonomy checks) into an :class:`Outcome`;
* :meth:`~DialogueDriver.record` commits it: an accepted turn, or a rejected sample (kept with
  ``state='rejected'`` and its reasons) — and fails the dialogue once the retries are used up.

The online runner (:func:`run_simulation`) drives many dialogues with asyncio tasks over
:class:`itcollect.llm.LLMClient`; the Batch API mode (:mod:`itcollect.batch`) drives the same
driver round by round.
"""

from __future__ import annotations

import asyncio
import gc
import re
import time
from dataclasses import dataclass, field
from typing import Any

from . import checks as C
from .dialogue import Expectation, RequestInfo, expectations, planned_params
from .errors import InputError, ItcollectError, ServiceError, StoreConflict, UsageError
from .langid import warm_up
from .prompting import Prompts, load_prompts
from .taxonomy import INTERACTION_TYPES, CheckContext

#: A call that failed after all its retries: the dialogue is left for the next run.
CALL_FAILED = "call_failed"
TAKEN_OVER = "taken_over"
VALIDATION = "validation"

_LABEL = re.compile(r"^\s*(?:\[?(?:user|human|annotator|request|用户|请求)\]?\s*[:：]\s*|\[(?:user|用户)\]\s*)",
                    re.IGNORECASE)
_WRAP = (('"', '"'), ("“", "”"), ("'", "'"), ("「", "」"))


@dataclass
class Step:
    """One thing a dialogue needs next.

    ``kind``: ``"template"`` (first request, no LLM call: ``text`` is the request), ``"annotator"``
    or ``"assistant"`` (an LLM call with ``messages`` and ``sample``).
    """

    kind: str
    idx: int
    turn_no: int
    interaction_type: str
    template_name: str
    template_hash: str
    expected_lang: str
    params: dict[str, Any]
    messages: list[dict[str, str]] | None = None
    text: str | None = None
    sample: int = 0
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def role(self) -> str:
        return "assistant" if self.kind == "assistant" else "annotator"


@dataclass
class Outcome:
    """The verdict on one answer: ``reasons`` empty = accepted (``content`` is what is stored)."""

    content: str
    reasons: list[str]
    result: Any = None

    @property
    def accepted(self) -> bool:
        return not self.reasons


@dataclass
class DialogueState:
    spec: dict[str, Any]
    source_text: str
    dialogue_id: str | None
    turns: list[dict[str, Any]]
    rejected: dict[int, int]
    status: str = "in_progress"
    status_reason: str | None = None

    @property
    def done(self) -> bool:
        return self.status in ("done", "failed", "skipped")


def clean_request(text: str) -> str:
    """An annotator's output as a user would have typed it: no "User:" label, no wrapping quotes."""
    t = _LABEL.sub("", text.strip()).strip()
    for a, b in _WRAP:
        if len(t) > 2 and t.startswith(a) and t.endswith(b) and t.count(a) + (t.count(b) if a != b else 0) == 2:
            t = t[1:-1].strip()
    return t


class DialogueDriver:
    """The per-dialogue state machine shared by online simulate and the Batch API mode."""

    def __init__(self, config: dict[str, Any], *, prompts: Prompts | None = None, assistant_model: str = "",
                 annotator_model: str = "", base: Any = None) -> None:
        self.config = config
        self.prompts = prompts or load_prompts(config, base)
        self.languages = tuple(config["workspace"]["languages"])
        self.backend = config["ingest"]["langid_backend"]
        self.max_turn_retries = int(config["simulate"]["max_turn_retries"])
        self.assistant_model = assistant_model
        self.annotator_model = annotator_model
        self._assistant_system: dict[str, Any] = {}

    # -- state -------------------------------------------------------------------------------------
    def load(self, store: Any, spec: dict[str, Any], *, create: bool = True) -> DialogueState:
        """The dialogue of ``spec`` as committed (created, status in_progress, when it has none)."""
        d = store.dialogue_for_spec(spec["id"])
        if d is None:
            src = store.get_source(spec["source_id"])
            text = src["text"] if src else ""
            if not create:
                return DialogueState(spec, text, None, [], {})
            did = store.create_dialogue(origin="simulated", spec_id=spec["id"], annotator=self.annotator_model or None,
                                        source_id=spec["source_id"], source_text=text, src_lang=spec["src_lang"],
                                        tgt_lang=spec["tgt_lang"], instruction_lang=spec["instruction_lang"],
                                        meta={"seed": spec["seed"], "seq": spec["seq"],
                                              "assistant_model": self.assistant_model})
            return DialogueState(spec, text, did, [], {})
        all_turns = store.get_turns(d["id"], include_inactive=True)
        active = [t for t in all_turns if t["state"] == "active"]
        rejected: dict[int, int] = {}
        for t in all_turns:
            if t["state"] == "rejected":
                rejected[t["idx"]] = rejected.get(t["idx"], 0) + 1
        return DialogueState(spec, d["source_text"] or "", d["id"], active, rejected, d["status"], d["status_reason"])

    def _recorded_params(self, spec: dict[str, Any], k: int) -> dict[str, Any]:
        """The per-turn parameters a turn's record carries (the first turn's template step records
        its phrasing variant and terms itself)."""
        turns = spec["params"].get("turns") or []
        return dict(turns[k]) if k < len(turns) else {}

    def expectation(self, state: DialogueState, k: int) -> Expectation:
        """What user turn ``k`` expects, from the plan and the answers committed so far."""
        spec = state.spec
        answers = [x["content"] for x in state.turns if x["role"] == "assistant"]
        requests = [RequestInfo(spec["interaction_types"][j], planned_params(spec, j),
                                answers[j] if j < len(answers) else None) for j in range(k + 1)]
        return expectations(src_lang=spec["src_lang"], tgt_lang=spec["tgt_lang"],
                            instruction_lang=spec["instruction_lang"], requests=requests)[k]

    def context(self, state: DialogueState, k: int, request: str = "") -> CheckContext:
        """What the checks of user turn ``k`` (its request, and its answer to ``request``) need."""
        spec = state.spec
        return self.expectation(state, k).check_context(
            source=state.source_text, src_lang=spec["src_lang"], instruction_lang=spec["instruction_lang"],
            request=request, languages=self.languages, backend=self.backend)

    # -- what next ---------------------------------------------------------------------------------
    def next_step(self, state: DialogueState) -> Step | None:
        """The next step of the dialogue, or None when it is complete (or finished otherwise)."""
        if state.done:
            return None
        spec = state.spec
        idx = len(state.turns)
        if idx >= 2 * spec["n_turns"]:
            return None
        k = idx // 2
        t = spec["interaction_types"][k]
        instr = spec["instruction_lang"]
        sample = state.rejected.get(idx, 0)
        params = self._recorded_params(spec, k)
        exp = self.expectation(state, k)
        if idx % 2 == 0 and k == 0:
            terms = list(spec["params"].get("must_include") or [])
            name = f"first_turn_{instr}.j2"
            r = self.prompts.render(name, source=state.source_text, src_lang=spec["src_lang"],
                                    tgt_lang=spec["tgt_lang"], variant=int(spec["params"].get("variant", 0)),
                                    terms=terms)
            p = {"variant": int(spec["params"].get("variant", 0))}
            if terms:
                p["must_include"] = terms
            return Step("template", idx, k, t, r.name, r.hash, instr, p, text=r.text)
        if idx % 2 == 0:
            sys_r = self.prompts.render("annotator_system.j2", instruction_lang=instr, type_id=t,
                                        src_lang=spec["src_lang"], tgt_lang=exp.target_before, params=params,
                                        turn_no=k, n_turns=spec["n_turns"])
            name = f"annotator/{t}.j2"
            user_r = self.prompts.render(name, source=state.source_text, src_lang=spec["src_lang"],
                                         tgt_lang=exp.target_before, instruction_lang=instr,
                                         dialogue=[{"role": x["role"], "content": x["content"]} for x in state.turns],
                                         params=params)
            messages = [{"role": "system", "content": sys_r.text}, {"role": "user", "content": user_r.text}]
            return Step("annotator", idx, k, t, user_r.name, user_r.hash, instr, params, messages=messages,
                        sample=sample, provenance={"system_template": sys_r.name,
                                                   "system_template_hash": sys_r.hash})
        sys_r = self._assistant_system.get(instr)
        if sys_r is None:  # the same for every dialogue of an instruction language: render once
            sys_r = self._assistant_system[instr] = self.prompts.render("assistant_system.j2", instruction_lang=instr)
        messages = [{"role": "system", "content": sys_r.text}]
        messages += [{"role": x["role"], "content": x["content"]} for x in state.turns]
        return Step("assistant", idx, k, t, sys_r.name, sys_r.hash, exp.answer_lang or instr, params,
                    messages=messages, sample=sample)

    # -- judging -----------------------------------------------------------------------------------
    def apply(self, state: DialogueState, step: Step, result: Any = None) -> Outcome:
        """Validate ``result`` (a ChatResult; None for a template step) for ``step``."""
        if step.kind == "template":
            return Outcome(step.text or "", [])
        text = result.text if result is not None else ""
        if step.kind == "annotator":
            text = clean_request(text)
        else:
            text = text.strip()
        reasons: list[str] = []
        if result is not None and result.finish_reason == "length":
            reasons.append("truncated: finish_reason length")
        k = step.turn_no
        if step.kind == "annotator":
            ctx = self.context(state, k)
            reasons += INTERACTION_TYPES[step.interaction_type].check_request(text, ctx)
        else:
            request = state.turns[step.idx - 1]["content"] if step.idx >= 1 else ""
            ctx = self.context(state, k, request)
            reasons += INTERACTION_TYPES[step.interaction_type].check(text, ctx)
        return Outcome(text, reasons, result)

    # -- committing --------------------------------------------------------------------------------
    def record(self, store: Any, state: DialogueState, step: Step, outcome: Outcome) -> None:
        """Commit an accepted turn or a rejected sample; fail the dialogue when retries ran out."""
        r = outcome.result
        fields: dict[str, Any] = {
            "interaction_type": step.interaction_type, "template_name": step.template_name,
            "template_hash": step.template_hash, "lang": step.expected_lang,
            "params": {**step.params, "sample": step.sample, **step.provenance},
        }
        if step.kind == "template":
            role, fields["annotator"], fields["model"] = "user", "template", None
        elif step.kind == "annotator":
            role = "user"
            fields["annotator"] = r.model if r is not None else self.annotator_model
            fields["model"] = fields["annotator"]
        else:
            role = "assistant"
            fields["model"] = r.model if r is not None else self.assistant_model
        if r is not None:
            fields.update(call_key=r.call_key, prompt_tokens=r.prompt_tokens, completion_tokens=r.completion_tokens,
                          latency_ms=r.latency_ms, finish_reason=r.finish_reason)
        if outcome.accepted:
            store.add_turn(state.dialogue_id, role=role, content=outcome.content, author="model", idx=step.idx,
                           **fields)
            state.turns.append({"role": role, "content": outcome.content, "interaction_type": step.interaction_type,
                                "idx": step.idx})
            if len(state.turns) >= 2 * state.spec["n_turns"]:
                self.finish(store, state, "done")
            return
        store.add_turn(state.dialogue_id, role=role, content=outcome.content, author="model", idx=step.idx,
                       state="rejected", warnings=outcome.reasons, **fields)
        state.rejected[step.idx] = state.rejected.get(step.idx, 0) + 1
        if state.rejected[step.idx] > self.max_turn_retries:
            who = "request" if role == "user" else "answer"
            self.finish(store, state, "failed",
                        f"{VALIDATION}: {who} of turn {step.turn_no + 1} ({step.interaction_type}) failed "
                        f"{state.rejected[step.idx]} samples: {'; '.join(outcome.reasons)}")

    def finish(self, store: Any, state: DialogueState, status: str, reason: str | None = None) -> None:
        state.status, state.status_reason = status, reason
        if state.dialogue_id is not None:
            store.set_dialogue_status(state.dialogue_id, status, reason)


# -- online runner -------------------------------------------------------------------------------------
@dataclass
class SimulateOptions:
    limit: int | None = None
    concurrency: int | None = None
    base_url: str | None = None
    model: str | None = None
    annotator_base_url: str | None = None
    annotator_model: str | None = None
    max_cost: float | None = None
    dry_run: bool = False
    lease_s: float | None = None  # default: [simulate] lease_s
    claim_batch: int | None = None


@dataclass
class SimulateSummary:
    done: int = 0
    failed: int = 0
    skipped_batched: int = 0
    call_errors: int = 0  # dialogues left for the next run because a call failed after its retries
    taken_over: int = 0  # dialogues another process took over while this one stalled past its lease
    stopped: str | None = None
    stop_kind: str | None = None  # "endpoint" (exit 1) | "cost" (the --max-cost budget was reached)
    calls: dict[str, Any] = field(default_factory=dict)
    estimate: dict[str, Any] | None = None
    failures: dict[str, int] = field(default_factory=dict)


def _client(ws: Any, opts: SimulateOptions, *, dry_run: bool = False):
    from .llm import LLMClient

    max_cost = opts.max_cost if opts.max_cost is not None else (ws.config["simulate"]["max_cost_usd"] or None)
    return LLMClient(ws.config, ws.store, command="simulate", base_url=opts.base_url, model=opts.model,
                     annotator_base_url=opts.annotator_base_url, annotator_model=opts.annotator_model,
                     concurrency=opts.concurrency, max_cost_usd=max_cost, dry_run=dry_run)


async def _estimate(ws: Any, opts: SimulateOptions, sample_size: int = 500) -> dict[str, Any]:
    """``--dry-run``: play a sample of the pending dialogues with stand-in answers (nothing sent,
    nothing written) and scale its calls, tokens and cost to every dialogue the run would do."""
    from .llm import CallInBatch

    store = ws.store
    client = _client(ws, opts, dry_run=True)
    driver = DialogueDriver(ws.config, assistant_model=client.model_for("assistant"),
                            annotator_model=client.model_for("annotator"), base=ws.root)
    try:
        todo = [s for s in store.iter_specs(("pending", "in_progress"))]
        if opts.limit is not None:
            todo = todo[: opts.limit]
        n = len(todo)
        step_every = max(1, n // sample_size)
        sample = todo[::step_every][:sample_size]
        calls = 0
        for spec in sample:
            state = driver.load(store, spec, create=False)
            while (step := driver.next_step(state)) is not None:
                if step.kind == "template":
                    content = step.text or ""
                else:
                    try:
                        await client.chat(step.role, step.messages or [], sample=step.sample)
                    except CallInBatch:  # a run leaves this dialogue to the batch run
                        break
                    calls += 1
                    content = state.source_text if step.kind == "assistant" else \
                        ("Could you make it a little more formal, please?" if step.expected_lang != "zh" else "请改得更正式一些。")
                state.turns.append({"role": "user" if step.kind != "assistant" else "assistant", "content": content,
                                    "interaction_type": step.interaction_type})
        st = client.stats()
    finally:
        await client.aclose()
    scale = n / len(sample) if sample else 0.0
    return {"dialogues": n, "sampled": len(sample), "calls": round(calls * scale),
            "prompt_tokens": round(st["prompt_tokens"] * scale), "completion_tokens": round(st["completion_tokens"] * scale),
            "cost_usd": round(st["cost_usd"] * scale, 4),
            "assistant_model": client.model_for("assistant"), "annotator_model": client.model_for("annotator")}


async def _run_online(ws: Any, opts: SimulateOptions, bar: Any = None) -> SimulateSummary:
    from .llm import CallInBatch, CostLimitReached, EndpointDown, LLMCallError
    from .store.claims import process_holder

    store = ws.store
    summary = SimulateSummary()
    client = _client(ws, opts)
    driver = DialogueDriver(ws.config, assistant_model=client.model_for("assistant"),
                            annotator_model=client.model_for("annotator"), base=ws.root)
    # One holder name per claimed batch ("simulate-b<n>@host:pid"): the claim gives a holder's own
    # in-progress specs back first, which within one run would hand out specs already being worked
    # on; fresh names avoid that while keeping the dead-process takeover (same host:pid form).
    holders: dict[str, int] = {}  # holder -> specs still held
    spec_holder: dict[int, str] = {}
    batch_no = [0]
    remaining = opts.limit
    queue: list[dict[str, Any]] = []
    claim_lock = asyncio.Lock()
    parked: list[int] = []  # specs whose next call is in a submitted batch: released at the end
    claims_exhausted = [False]  # the store (or --limit) has no spec left to hand this run
    ranked_by_most_left: list[bool] = []  # [True] once every dialogue of the run has started
    # Claim specs a batch at a time and start the longest dialogues of a batch first (LPT): a
    # dialogue's calls are sequential, so a long one started last would leave the endpoint idle
    # while it finishes. Batches of half the call slots: with several simulate processes on one
    # workspace, large batches left one process holding the last few hundred specs alone.
    batch = opts.claim_batch or max(16, client.concurrency // 2)
    lease_s = float(opts.lease_s or ws.config["simulate"]["lease_s"])
    stop: list[str] = []
    last_postfix = [0.0]
    last_call_error: list[str | None] = [None]

    def postfix(force: bool = False) -> None:
        if bar is None:
            return
        now = time.monotonic()
        if not force and now - last_postfix[0] < 0.5:
            return
        last_postfix[0] = now
        st = client.stats()
        bar.set_postfix_str(f"done {summary.done} failed {summary.failed} | {st['calls_per_s']:.1f} calls/s "
                            f"| {st['tokens']:,} tok | ${st['cost_usd']:.4f}", refresh=False)

    async def next_spec() -> dict[str, Any] | None:
        nonlocal remaining
        async with claim_lock:
            if not queue and not stop and not claims_exhausted[0]:
                n = batch if remaining is None else min(batch, remaining)
                if n > 0:
                    batch_no[0] += 1
                    holder = process_holder(f"simulate-b{batch_no[0]}")
                    ids = store.claim_specs(holder, n, lease_s=lease_s)
                    if len(ids) < n or (remaining is not None and remaining - len(ids) <= 0):
                        claims_exhausted[0] = True
                    if ids:
                        holders[holder] = len(ids)
                    if remaining is not None:
                        remaining -= len(ids)
                    for i in ids:
                        spec = store.get_spec(i)
                        if spec is not None:
                            spec_holder[i] = holder
                            queue.append(spec)
                    queue.sort(key=lambda sp: (-sp["n_turns"], sp["id"]))
            return queue.pop(0) if queue and not stop else None

    def forget_claim(spec_id: int) -> str:
        holder = spec_holder.pop(spec_id)
        holders[holder] -= 1
        if holders[holder] <= 0:
            del holders[holder]
        return holder

    def finish_claim(spec: dict[str, Any], state: DialogueState) -> bool:
        return store.finish_claim(spec["id"], forget_claim(spec["id"]), state.status, state.status_reason)

    async def run_dialogue(spec: dict[str, Any]) -> tuple[str, str | None]:
        try:
            return await play_dialogue(spec)
        except StoreConflict as exc:
            # This process stalled past its lease (suspended, stopped) and another process took
            # the spec over and stored the same turn first: the dialogue is the other's now.
            # Nothing of it was written here (the transaction rolled back); the run goes on.
            if spec["id"] in spec_holder:
                forget_claim(spec["id"])
            return TAKEN_OVER, exc.message

    async def play_dialogue(spec: dict[str, Any]) -> tuple[str, str | None]:
        # Fewer commits, same guarantees: a new dialogue and its first (template) turn are one
        # transaction, and so are the last turn, the dialogue's status and the spec's release.
        with store.transaction():
            state = driver.load(store, spec)
            step = driver.next_step(state)
            while step is not None and step.kind == "template":
                driver.record(store, state, step, driver.apply(state, step))
                step = driver.next_step(state)
        while step is not None:
            try:
                # Who gets a free call slot first. While dialogues are still to be started: the one
                # closest to its end (it frees its worker for the next spec soonest). Once every
                # dialogue of the run has started: the one with the most calls left, so they all
                # end together instead of a late one finishing alone on an idle endpoint. The
                # rule changes in the slots themselves, so calls queued before the change (or on
                # their way to the queue) are ranked by the new rule too.
                if claims_exhausted[0] and not queue and not ranked_by_most_left:
                    ranked_by_most_left.append(True)
                    client.rank_calls_by(lambda left: -left)
                result = await client.chat(step.role, step.messages or [], sample=step.sample,
                                           priority=2 * spec["n_turns"] - step.idx)
            except CallInBatch:  # answered by the batch run that collects it: left to that run
                return "parked", None
            except LLMCallError as exc:
                # A call that failed after all its retries is an endpoint problem, not the dialogue's:
                # the dialogue stays in progress and goes back to pending at the end of this run, so
                # the next run retries it (the circuit breaker stops a run when the endpoint is down).
                last_call_error[0] = f"{step.role} call for turn {step.turn_no + 1}: {exc.message}"
                return CALL_FAILED, last_call_error[0]
            outcome = driver.apply(state, step, result)
            with store.transaction():
                driver.record(store, state, step, outcome)
                if state.done:
                    if not finish_claim(spec, state):
                        return TAKEN_OVER, "the spec's lease had passed to another process"
                    return state.status, state.status_reason
            step = driver.next_step(state)
        with store.transaction():
            if state.status == "in_progress":  # complete but not yet marked (e.g. a crash right before)
                driver.finish(store, state, "done")
            if not finish_claim(spec, state):
                return TAKEN_OVER, "the spec's lease had passed to another process"
        return state.status, state.status_reason

    async def worker() -> None:
        while not stop:
            spec = await next_spec()
            if spec is None:
                return
            try:
                status, reason = await run_dialogue(spec)
            except (EndpointDown, CostLimitReached) as exc:
                if not stop:
                    stop.append(exc.message if isinstance(exc, ItcollectError) else str(exc))
                    summary.stop_kind = "cost" if isinstance(exc, CostLimitReached) else "endpoint"
                return
            if status == TAKEN_OVER:
                summary.taken_over += 1
                continue
            if status in ("parked", CALL_FAILED):
                parked.append(spec["id"])
                if status == "parked":
                    summary.skipped_batched += 1
                else:
                    summary.call_errors += 1
                continue
            if status == "done":
                summary.done += 1
            else:
                summary.failed += 1
                code = C.reason_code(reason or "failed")
                summary.failures[code] = summary.failures.get(code, 0) + 1
            if bar is not None:
                bar.update(1)
            postfix()

    async def renew() -> None:
        while True:
            await asyncio.sleep(max(1.0, lease_s / 3))
            for h in list(holders):
                store.renew_claims(h, lease_s=lease_s)

    renewer = asyncio.create_task(renew())
    # language models and templates are loaded now, not between two calls of the run
    warm_up(driver.languages, driver.backend)
    driver.prompts.warm_up()
    # The SDK, lingua and jinja leave ~1M long-lived objects that every full garbage collection
    # would walk again (tens of ms with the event loop stopped): set them aside for the run.
    gc.collect()
    gc.freeze()
    # More dialogues than call slots: while one dialogue records a turn (SQLite, validation) or waits
    # for its next claim, another holds the slot, so the endpoint stays at the concurrency bound.
    # The client's semaphore still bounds the calls in flight.
    n_dialogues = client.concurrency + max(8, client.concurrency // 2)
    n_workers = n_dialogues if opts.limit is None else max(1, min(n_dialogues, opts.limit))
    # WAL checkpoints (a copy and an fsync every ~1000 pages) in a thread, not inside a commit
    # that holds up every dialogue of the event loop.
    checkpoints = store.background_checkpoints()
    checkpoints.__enter__()
    tasks = [asyncio.create_task(worker()) for _ in range(n_workers)]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for t in done:
            if not t.cancelled() and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        renewer.cancel()
        try:
            for h in list(holders):  # unfinished (interrupted, parked) specs go back to pending
                store.release_claims(h)
        finally:
            checkpoints.__exit__(None, None, None)
            gc.unfreeze()
            summary.calls = client.stats()
            await client.aclose()
            postfix(force=True)
    if not stop and summary.call_errors and not summary.done and not summary.failed:
        # Too few calls to trip the circuit breaker, yet every dialogue's call failed: the run did
        # nothing, which is a failed service (exit 1), not a success with a footnote.
        stop.append(f"every dialogue of this run hit a failed LLM call; the last: {last_call_error[0]}")
        summary.stop_kind = "endpoint"
    if stop:
        summary.stopped = stop[0]
    return summary


def run_simulation(ws: Any, opts: SimulateOptions, *, show_progress: bool = True) -> SimulateSummary:
    """Simulate every pending spec of the workspace (or ``opts.limit`` of them) online."""
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
    bar = None
    if show_progress:
        from .progress import progress

        bar = progress(total=total, desc="simulate", unit="dlg")
    try:
        summary = asyncio.run(_run_online(ws, opts, bar))
    finally:
        if bar is not None:
            bar.close()
    if summary.stopped and summary.stop_kind != "cost":
        raise ServiceError(f"{summary.stopped} ({summary.done} dialogues done and {summary.failed} failed in this "
                           f"run are committed; re-run to continue)")
    return summary


__all__ = ["DialogueDriver", "DialogueState", "Step", "Outcome", "SimulateOptions", "SimulateSummary",
           "run_simulation", "clean_request", "CALL_FAILED", "TAKEN_OVER", "VALIDATION"]
