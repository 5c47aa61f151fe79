"""Recording compared turns: the one way ``simulate --compare`` (the judge chooses) and a compare
session (a person chooses) write runs, a dialogue's systems and a turn's candidates.

Every compared turn is written in one transaction: the comparison with all its candidates, the
decision, and the answer that continues the dialogue (an ordinary active assistant turn, so every
other stage reads the dialogue as before). A re-run after a crash finds either all of it or none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from itcollect.kernel.outcomes import break_tie, judge_tiers, participants
from itcollect.store.interfaces import CompareStore

#: the candidate fields that the continuing answer turn takes over
_TURN_FROM_CANDIDATE = ("call_key", "prompt_tokens", "completion_tokens", "latency_ms", "finish_reason", "warnings")


@dataclass(frozen=True)
class RecordedTurn:
    """What :func:`record_judged_turn` wrote."""

    comparison_id: int
    turn_id: int | None  # the answer that continues (None: no candidate may continue)
    winner: str | None
    tie: bool  # the best were equal on every criterion; the seed chose the winner
    void: bool  # fewer than two answers: not a comparison (``reason`` says why)
    reason: str | None = None


def start_run(store: CompareStore, command: str, chooser: str, systems: Sequence[Mapping[str, Any]], *,
              judge_model: str | None = None, seed: int | None = None) -> int:
    """Record a compare run and the systems it compares (in the order given)."""
    names = [s["name"] for s in systems]
    if len(names) < 2 or len(set(names)) != len(names):
        raise ValueError(f"a comparison needs two or more distinct systems, got {names}")
    return store.start_compare_run(command, chooser, systems, judge_model=judge_model, seed=seed)


def finish_run(store: CompareStore, run_id: int) -> None:
    store.finish_compare_run(run_id)


def systems_of(store: CompareStore, dialogue_id: str, systems: Sequence[Mapping[str, Any]],
               run_id: int | None = None) -> tuple[list[dict[str, Any]], bool]:
    """The systems the dialogue is compared with, and whether they differ from ``systems`` (a
    dialogue keeps the systems it started with: the caller says so and asks those)."""
    kept = store.set_dialogue_systems(dialogue_id, systems, run_id)
    return kept, [s["name"] for s in kept] != [s["name"] for s in systems]


def record_judged_turn(store: CompareStore, dialogue_id: str, idx: int, candidates: Sequence[Mapping[str, Any]], *,
                       seed: int, judge_model: str, turn: Mapping[str, Any], run_id: int | None = None,
                       labels: Sequence[str] | None = None) -> RecordedTurn:
    """Write one turn the judge decided: ``candidates`` (one per system, with their judgements),
    the judge's rank (:func:`~itcollect.kernel.outcomes.judge_tiers`), the winner (the best; a
    tie broken by ``seed``) and the winner's answer as the active assistant turn at ``idx``, with
    the provenance in ``turn`` (``interaction_type``, ``template_name``, ``params``, ...; the
    content, model and call figures are the winner's).

    With fewer than two candidates taking part, or none that passed the checks, the turn is not a
    comparison (void, with the reason); a single answer that passed the checks still continues."""
    by_system = {c["system"]: c for c in candidates}
    taking_part = participants({"candidates": candidates})
    answered = [s for s in taking_part if by_system[s]["status"] == "answered"]
    reason = None
    if len(taking_part) < 2:
        reason = f"fewer than two answers ({len(taking_part)} of {len(candidates)}): not a comparison"
    elif not answered:
        reason = "every answer failed a check: not a comparison"
    with store.transaction():
        cid = store.add_comparison(dialogue_id, idx, candidates, labels=labels, run_id=run_id)
        if reason is not None:
            turn_id = _add_answer(store, dialogue_id, idx, by_system[answered[0]], turn) if answered else None
            store.void_comparison(cid, reason, turn_id)
            return RecordedTurn(cid, turn_id, answered[0] if answered else None, False, True, reason)
        order = judge_tiers(candidates)
        best = order[0]
        winner = best[0] if len(best) == 1 else break_tie(best, seed, dialogue_id, idx)
        turn_id = _add_answer(store, dialogue_id, idx, by_system[winner], turn)
        store.decide_comparison(cid, chooser="judge", decision="rank", winner=winner, ranking=order,
                                tie=len(best) > 1, annotator=judge_model, turn_id=turn_id)
    return RecordedTurn(cid, turn_id, winner, len(best) > 1, False)


def _add_answer(store: CompareStore, dialogue_id: str, idx: int, candidate: Mapping[str, Any],
                turn: Mapping[str, Any]) -> int:
    fields = {k: v for k, v in turn.items() if k not in ("role", "content", "author", "idx", "model")}
    fields.update({k: candidate[k] for k in _TURN_FROM_CANDIDATE if candidate.get(k) is not None})
    return store.add_turn(dialogue_id, role="assistant", content=candidate["content"], author="model", idx=idx,
                          model=candidate["model"], **fields)


__all__ = ["RecordedTurn", "start_run", "finish_run", "systems_of", "record_judged_turn"]
