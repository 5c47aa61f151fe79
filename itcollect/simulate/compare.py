"""``simulate --compare A,B[,...]``: every answer of a dialogue is a comparison of several systems.

The simulated annotator writes each request as in a plain run (:class:`DialogueMachine` takes
those steps); at each answer position :class:`CompareMachine` asks every system of the dialogue at
once (optional calls: a system whose endpoint is down fails with a reason and the turn goes on with
the others), runs simulate's own checks on each candidate (wrong language, a copy of the source, a
refusal...: a candidate that fails them loses without a judge call), has the others judged by the
judgement of ``itcollect judge`` (:class:`~itcollect.llm.judgement.ask.JudgementMachine`, pointwise
MQM + compliance) and records the turn through :func:`itcollect.compare.record.record_judged_turn`:
the best score wins, then compliance, then rating; equal on all three is a tie broken by the spec's
seed. The winner's answer is the dialogue's answer, so the next request is written against it.

Nothing of a compared turn is written before all of it is (one transaction), and every call is in
the request ledger, so a re-run or a resume after ``kill -9`` asks the same calls again and gets
them from the ledger, paying for nothing twice. The same machine runs online and in Batch API
rounds.

A dialogue keeps the systems it started with (:func:`~itcollect.compare.record.systems_of`): a
later run with another list asks the dialogue's own systems (the run's client serves them too) and
counts it; an answer of a system the dialogue did not start with is never asked for.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from itcollect.compare.record import record_judged_turn, systems_of
from itcollect.config.schema import Settings
from itcollect.llm.answers import ChatResult
from itcollect.llm.endpoints import Endpoint, resolve_systems, system_role
from itcollect.llm.judgement.ask import Asking, Judge, JudgementMachine
from itcollect.llm.runners.machine import Answer, Call, Failed
from itcollect.simulate.driver import VALIDATION, DialogueDriver, DialogueState, Outcome, Step
from itcollect.simulate.machine import DialogueMachine
from itcollect.store.interfaces import SimulateCompareStore


def compare_systems(s: Settings, store: SimulateCompareStore, names: Sequence[str], *,
                    base_url: str | None = None) -> tuple[list[Endpoint], list[Endpoint]]:
    """The run's systems (:func:`~itcollect.llm.endpoints.resolve_systems`, in the order given) and
    the systems earlier compare runs left dialogues with that the run does not name (their model
    and endpoint as recorded; sampling and key from their table, else the assistant's): a resumed
    dialogue asks its own systems."""
    run = resolve_systems(s, names, base_url=base_url)
    named = {e.role for e in run}
    kept: dict[str, Endpoint] = {}
    for row in store.compared_systems():
        role = system_role(row["name"])
        if role in named or role in kept:
            continue
        table = s.llm.systems.get(row["name"]) or s.llm.assistant
        key_env = str(getattr(table, "api_key_env", "")).strip() or s.llm.api_key_env
        kept[role] = Endpoint(role, row["base_url"] or None, row["model"], key_env, table.temperature, table.top_p,
                              table.max_tokens)
    return run, list(kept.values())


@dataclass
class CompareCounts:
    """What the compared turns of a run came to (the summary's ``compare`` object)."""

    systems: list[str] = field(default_factory=list)
    compared: int = 0  # turns decided among two or more answers
    void: int = 0  # turns with fewer than two answers (or none that passed the checks): not a comparison
    ties: int = 0  # compared turns whose best were equal: the seed chose which continues
    no_answer: int = 0  # turns no system answered (left for the next run)
    own_systems: int = 0  # dialogues that continued with the systems they started with, not the run's
    run_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"systems": self.systems, "compared": self.compared, "void": self.void, "ties": self.ties,
                "no_answer": self.no_answer, "own_systems": self.own_systems, "run_id": self.run_id}


@dataclass
class Turn:
    """One answer position in play: the step, then every system's answer, the checks' verdicts and
    the judgements of the candidates that passed them."""

    step: Step
    answers: list[Answer] | None = None
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    asking: dict[str, Asking] = field(default_factory=dict)


@dataclass
class Compared:
    """A compared dialogue's part of its :class:`DialogueState` (``state.compare``)."""

    systems: list[str]
    turn: Turn | None = None
    stalled: str | None = None  # no system answered a turn: the dialogue is left for the next run


def prompt_hash(messages: Sequence[Mapping[str, str]]) -> str:
    """sha256 of the messages every system of a turn was asked."""
    return hashlib.sha256(json.dumps(list(messages), ensure_ascii=False, sort_keys=True).encode()).hexdigest()


class CompareMachine:
    """A compared dialogue's calls (see the module docstring): the annotator's steps as
    :class:`DialogueMachine` takes them, each answer position as N system calls, then the judge
    calls of the candidates that passed the checks, then one recorded turn.

    ``systems``: every system the run can ask, by name (the run's and those dialogues kept);
    ``run_systems``: the run's list, in order (a new dialogue starts with it). ``write`` false (a
    dry run): nothing recorded, :meth:`apply` not called."""

    def __init__(self, store: SimulateCompareStore, driver: DialogueDriver, judge: Judge, *,
                 systems: Mapping[str, Mapping[str, Any]], run_systems: Sequence[str], run_id: int | None = None,
                 counts: CompareCounts | None = None, write: bool = True,
                 on_end: Callable[[DialogueState], None] | None = None) -> None:
        self.store = store
        self.driver = driver
        self.judge = judge
        self.judging = JudgementMachine(judge)
        self.systems = dict(systems)
        self.run_systems = list(run_systems)
        self.run_id = run_id
        self.counts = counts or CompareCounts(systems=list(run_systems), run_id=run_id)
        self.on_end = on_end
        self.dialogue = DialogueMachine(store, driver, write=write, on_end=on_end)

    # -- the dialogue's systems --------------------------------------------------------------------
    def begin(self, state: DialogueState) -> None:
        """Attach the dialogue's systems to ``state`` (recording the run's for a new dialogue), and
        count the tries of the next answer position that came to nothing (a new try is a new
        sample)."""
        wanted = [self.systems[n] for n in self.run_systems]
        if state.dialogue_id is None:  # a dry run's dialogue not started yet
            state.compare = Compared(list(self.run_systems))
            return
        kept, differs = systems_of(self.store, state.dialogue_id, wanted, self.run_id)
        state.compare = Compared([s["name"] for s in kept])
        if differs:
            self.counts.own_systems += 1
        here = len(state.turns)
        for c in self.store.comparisons_of(state.dialogue_id):
            if c["status"] == "void" and c["turn_id"] is None and c["idx"] >= here:
                state.rejected[c["idx"]] = state.rejected.get(c["idx"], 0) + 1

    def systems_for(self, state: DialogueState) -> list[str]:
        """The systems ``state``'s dialogue is compared with, as recorded, else the run's; writes
        nothing (what a dry run walks)."""
        kept = self.store.dialogue_systems(state.dialogue_id) if state.dialogue_id is not None else []
        return [s["name"] for s in kept] or list(self.run_systems)

    def attach(self, state: DialogueState) -> None:
        """:meth:`begin` for a dry run: the dialogue's systems on ``state``, nothing recorded."""
        state.compare = Compared(self.systems_for(state))

    def judge_call(self, state: DialogueState, step: Step, content: str) -> Call:
        """The judge's first call about ``content`` as the answer of ``step`` (what a dry run counts)."""
        task = self._judge_task(state, step, content)
        return Call("judge", task.messages, task.sample, task.params)

    # -- the machine protocol ----------------------------------------------------------------------
    def calls(self, state: DialogueState) -> Sequence[Call]:
        compared: Compared = state.compare
        if compared.stalled:
            return []
        turn = compared.turn
        if turn is None:
            if state.pending is None:
                state.pending = self.dialogue._next_call_step(state)
            step = state.pending
            if step is None:
                return []
            if step.kind != "assistant":
                return self.dialogue.calls(state)
            turn = compared.turn = Turn(step)
        step = turn.step
        if turn.answers is None:
            priority = 2 * state.spec["n_turns"] - step.idx
            return [Call(system_role(n), step.messages or [], step.sample, priority=priority, optional=True,
                         label=f"{n}'s answer for turn {step.turn_no + 1}") for n in compared.systems]
        return [c for st in turn.asking.values() if (c := self.judging.call(st)) is not None]

    def apply(self, state: DialogueState, calls: Sequence[Call], answers: Sequence[Answer]) -> None:
        compared: Compared = state.compare
        turn = compared.turn
        if turn is None:
            self.dialogue.apply(state, calls, answers)
            return
        if turn.answers is None:
            self._candidates(state, compared, turn, answers)
        else:
            waiting = [st for st in turn.asking.values() if st.row is None]  # the order calls() gave
            for st, call, answer in zip(waiting, calls, answers):
                assert isinstance(answer, ChatResult), "a judgement's calls are required"
                self.judging.answer(st, call, answer)
        if turn.answers is not None and all(st.row is not None for st in turn.asking.values()):
            self._record(state, compared, turn)

    def _candidates(self, state: DialogueState, compared: Compared, turn: Turn, answers: Sequence[Answer]) -> None:
        """Every system answered (or failed): check each answer; judge those that passed when two
        or more take part; no answer at all leaves the dialogue for the next run."""
        turn.answers = list(answers)
        for name, answer in zip(compared.systems, answers):
            if isinstance(answer, ChatResult):
                turn.outcomes[name] = self.driver.apply(state, turn.step, answer)
        if not turn.outcomes:
            reasons = "; ".join(a.reason for a in answers if isinstance(a, Failed))
            compared.stalled = f"no system answered turn {turn.step.turn_no + 1}: {reasons}"
            compared.turn = None
            state.pending = None
            self.counts.no_answer += 1
            return
        if len(turn.outcomes) < 2:
            return  # one answer: not a comparison, nothing to judge
        for name, out in turn.outcomes.items():
            if out.accepted:
                turn.asking[name] = Asking(self._judge_task(state, turn.step, out.content))

    def _judge_task(self, state: DialogueState, step: Step, content: str) -> Any:
        spec = state.spec
        d = {"id": state.dialogue_id or "", "turns_rev": 0, "src_lang": spec["src_lang"], "tgt_lang": spec["tgt_lang"],
             "instruction_lang": spec["instruction_lang"], "source_text": state.source_text}
        user = state.turns[step.idx - 1] if step.idx >= 1 else {"content": ""}
        return self.judge.task(d, {"id": 0, "content": content}, user, self.driver.expectation(state, step.turn_no))

    def candidates(self, compared: Compared, turn: Turn) -> list[dict[str, Any]]:
        """The candidate rows of ``turn`` (one per system, with provenance and judgement)."""
        assert turn.answers is not None
        digest = prompt_hash(turn.step.messages or [])
        out: list[dict[str, Any]] = []
        for name, answer in zip(compared.systems, turn.answers):
            system = self.systems.get(name, {})
            row: dict[str, Any] = {"system": name, "model": system.get("model") or name,
                                   "base_url": system.get("base_url"), "prompt_hash": digest}
            if isinstance(answer, Failed):
                out.append({**row, "status": "failed", "failure": answer.reason})
                continue
            verdict = turn.outcomes[name]
            row.update(model=answer.model or row["model"], status="answered" if verdict.accepted else "rejected",
                       content=verdict.content, warnings=verdict.reasons, call_key=answer.call_key,
                       prompt_tokens=answer.prompt_tokens, completion_tokens=answer.completion_tokens,
                       latency_ms=answer.latency_ms, finish_reason=answer.finish_reason)
            asked = turn.asking.get(name)
            if asked is not None and asked.row is not None:
                j = asked.row
                row.update(judge_status=j["status"], judge_model=j["judge_model"], judge_call_key=j["call_key"],
                           score=j.get("score"), compliance=j.get("compliance"), rating=j.get("rating"))
            out.append(row)
        return out

    def _record(self, state: DialogueState, compared: Compared, turn: Turn) -> None:
        step, store, driver = turn.step, self.store, self.driver
        assert state.dialogue_id is not None
        fields = {"interaction_type": step.interaction_type, "template_name": step.template_name,
                  "template_hash": step.template_hash, "lang": step.expected_lang,
                  "params": {**step.params, "sample": step.sample, **step.provenance}}
        with store.transaction():
            rec = record_judged_turn(store, state.dialogue_id, step.idx, self.candidates(compared, turn),
                                     seed=int(state.spec.get("seed") or 0), judge_model=self.judge.model, turn=fields,
                                     run_id=self.run_id)
            compared.turn, state.pending = None, None
            if rec.turn_id is not None:
                winner = turn.outcomes[rec.winner or ""]
                state.turns.append({"role": "assistant", "content": winner.content,
                                    "interaction_type": step.interaction_type, "idx": step.idx})
                if len(state.turns) >= 2 * state.spec["n_turns"]:
                    driver.finish(store, state, "done")
            else:
                state.rejected[step.idx] = tries = state.rejected.get(step.idx, 0) + 1
                if tries > driver.max_turn_retries:
                    reasons = "; ".join(r for o in turn.outcomes.values() for r in o.reasons)
                    driver.finish(store, state, "failed",
                                  f"{VALIDATION}: answer of turn {step.turn_no + 1} ({step.interaction_type}): no "
                                  f"system's answer passed the checks in {tries} tries: {reasons}")
            if state.done and self.on_end is not None:
                self.on_end(state)
        if rec.void:
            self.counts.void += 1
        else:
            self.counts.compared += 1
            self.counts.ties += int(rec.tie)


__all__ = ["CompareMachine", "CompareCounts", "Compared", "Turn", "compare_systems", "prompt_hash"]
