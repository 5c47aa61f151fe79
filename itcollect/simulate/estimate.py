"""``simulate --dry-run``: the whole remaining run, estimated the same way in both modes.

A sample of the dialogues the run would play (at most :data:`SAMPLE_SIZE`, spread evenly over the
specs) is walked to its end with stand-in answers (the source for a translation, a short revision
request for the annotator): every LLM call on the way is looked up in the ledger (an answered one
is free; one out in a batch stops that dialogue: it is parked, left to the batch run) and the
others are estimated with :func:`itcollect.llm.answers.estimate_call`, the estimator the client and
the batch transport use. The sample's calls, tokens and cost are scaled to every dialogue. Online,
the cost is at online prices; with ``--batch-api`` at batch prices (with the online figure and the
worst case beside it). Nothing is sent and nothing is written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from itcollect.kernel.prompting import quote_source
from itcollect.llm.answers import estimate_call
from itcollect.llm.batch import BatchEstimate
from itcollect.llm.endpoints import system_role
from itcollect.llm.runners.machine import Call
from itcollect.simulate.driver import DialogueDriver
from itcollect.store.interfaces import SimulateStore

#: Dialogues walked at most; the rest is scaled from them.
SAMPLE_SIZE = 500

_STAND_IN_REQUEST = {"zh": "请改得更正式一些。"}
_STAND_IN_REQUEST_DEFAULT = "Could you make it a little more formal, please?"


def sample_specs(specs: Sequence[dict[str, Any]], size: int = SAMPLE_SIZE) -> list[dict[str, Any]]:
    """Every k-th spec, at most ``size`` of them."""
    return list(specs[::max(1, len(specs) // size)][:size])


def _count(llm: Any, totals: BatchEstimate, lookup: Callable[[str], str], calls: Sequence[Call]) -> bool:
    """Add ``calls`` to ``totals`` (free when the ledger answers them); False when one is not this
    run's (out in a batch, or a straggler): the dialogue stops there."""
    for c in calls:
        call = llm.batch_call(c.role, c.messages, sample=c.sample, **c.params)
        kind = lookup(call.key)
        if kind in ("in_flight", "straggler"):
            return False
        if kind == "answered":
            totals.count(call.role)
        else:
            totals.add(call.role, estimate_call(call.body), llm.price_for(call.role))
    return True


def walk(store: SimulateStore, driver: DialogueDriver, llm: Any, spec: dict[str, Any], totals: BatchEstimate,
         lookup: Callable[[str], str], compare: Any = None) -> None:
    """Play ``spec``'s dialogue from its committed turns to its end with stand-in answers, adding
    its calls to ``totals`` (calls the ledger answers count, with no tokens or cost). ``lookup(key)`` says what the ledger knows of a call: "answered",
    "in_flight" (the dialogue is parked), "straggler" (left to online simulate) or "to_send".
    ``compare`` (a :class:`~itcollect.simulate.compare.CompareMachine`): each answer is N calls,
    one per system of the dialogue, and N judgements."""
    state = driver.load(store, spec)
    systems = compare.systems_for(state) if compare is not None else []
    while (step := driver.next_step(state)) is not None:
        if step.kind == "template":
            content = step.text or ""
        else:
            if compare is not None and step.kind == "assistant":
                answers = [Call(system_role(n), step.messages or [], step.sample) for n in systems]
                judgements = [compare.judge_call(state, step, state.source_text) for _ in systems]
                calls = answers + judgements
            else:
                calls = [Call(step.role, step.messages or [], step.sample)]
            if not _count(llm, totals, lookup, calls):  # not this run's call: the dialogue stops here
                return
            if step.kind == "assistant":
                content = state.source_text
            else:
                content = _STAND_IN_REQUEST.get(step.expected_lang, _STAND_IN_REQUEST_DEFAULT)
                if step.opening:  # the source follows a first request the LLM wrote
                    content = f"{content}\n\n{quote_source(state.source_text)}"
        state.turns.append({"role": "user" if step.kind != "assistant" else "assistant", "content": content,
                            "interaction_type": step.interaction_type})


def online_lookup(store: SimulateStore) -> Callable[[str], str]:
    """What an online run does with a call: answered from the ledger, left to the batch run that
    has it out, or sent (a failed call is sent again)."""
    def lookup(key: str) -> str:
        row = store.ledger_answer(key)
        if row is None:
            return "to_send"
        return "in_flight" if row["status"] == "batched" else "answered"
    return lookup


def estimate_run(store: SimulateStore, driver: DialogueDriver, llm: Any, specs: Sequence[dict[str, Any]], *,
                 batch: bool = False, lookup: Callable[[str], str] | None = None,
                 sample_size: int = SAMPLE_SIZE, compare: Any = None) -> dict[str, Any]:
    """The estimate of playing ``specs`` to their end (see the module docstring): the keys of
    both modes, and with ``batch`` the batch-specific ones (costs at batch prices); ``compare``:
    a ``--compare`` run's machine (N answers and N judgements per answer)."""
    sample = sample_specs(specs, sample_size)
    totals = BatchEstimate()
    look = lookup or online_lookup(store)
    for spec in sample:
        walk(store, driver, llm, spec, totals, look, compare)
    scale = len(specs) / len(sample) if sample else 0.0
    out: dict[str, Any] = {"dialogues": len(specs), "sampled": len(sample), "calls": round(totals.calls * scale),
                           "prompt_tokens": round(totals.prompt_tokens * scale),
                           "completion_tokens": round(totals.completion_tokens * scale)}
    if not batch:
        out["cost_usd"] = round(round(totals.cost_usd_online, 6) * scale, 4)
    else:
        out.update(cost_usd=round(totals.cost_usd * scale, 6),
                   cost_usd_online=round(totals.cost_usd_online * scale, 6),
                   cost_usd_max=round(totals.cost_usd_max * scale, 6),
                   max_completion_tokens=round(totals.max_completion_tokens * scale),
                   by_role={r: round(n * scale) for r, n in totals.by_role.items()})
    out.update(assistant_model=llm.model_for("assistant"), annotator_model=llm.model_for("annotator"))
    if compare is not None:  # every answer by each system, each judged: N + N calls per answer
        out["compare"] = {"systems": list(compare.run_systems), "judge_model": compare.judge.model}
    return out
