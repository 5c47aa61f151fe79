"""The candidates of a person's comparisons, judged by ``itcollect judge`` like any answer.

A turn a person decided among several systems (``session --compare``) keeps every candidate in
the store, but only the chosen answer is a turn; the judge scores the others too, so ``stats``
can set the person's pick against the judge's on those turns (``compare.agreement``). A
candidate's prompt is the one its turn's answer gets (the same request, type and expectations,
read from the dialogue as it is), with the candidate's text as the answer: a candidate whose text
is the chosen answer's has the same ledger key, and is answered from the ledger for free.

* A candidate needs a judgement when it answered (not rejected by a check, not failed), its turn
  was decided by a person (``human`` or ``human_edit``; the judge's own comparisons were scored
  when it picked), its dialogue is finished, and this judge model has not scored it. Its call is
  sample 0 (1 for the one re-ask), as an answer's first judgement; ``--rejudge`` does not redo
  it (a candidate keeps one judgement, of the latest judge model that scored it).
* Its row goes to the candidate (:meth:`set_candidate_judgements`), not to ``judgements``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from itcollect.llm.judgement.ask import Judge, Task
from itcollect.store.interfaces import JudgeStore


@dataclass
class CandidateTask(Task):
    """The judgement of one candidate: the task its turn's answer would get, with the candidate's
    text as the answer, and where its row goes."""

    comparison_id: int = 0
    system: str = ""


def candidate_tasks(store: JudgeStore, judge: Judge, *, page: int = 200) -> Iterator[CandidateTask]:
    """Every candidate this judge has yet to score, page by page (by candidate id, so rows written
    meanwhile do not move the pages)."""
    after = 0
    while True:
        rows = store.candidates_to_judge(judge.model, after=after, limit=page)
        if not rows:
            return
        after = rows[-1]["id"]
        dialogues: dict[str, dict[str, Any]] = {}
        positions: dict[str, dict[int, Any]] = {}
        for d, turns, _ in store.dialogues_for_judging(sorted({r["dialogue_id"] for r in rows})):
            dialogues[d["id"]] = d
            positions[d["id"]] = {turns[i]["idx"]: (turns[i], user, exp) for i, user, exp in judge.answers(d, turns)}
        for r in rows:
            at = positions.get(r["dialogue_id"], {})
            if r["idx"] not in at:  # no answer at that position any more: nothing to judge it against
                continue
            answer, user, exp = at[r["idx"]]
            task = judge.task(dialogues[r["dialogue_id"]], {**answer, "content": r["content"] or ""}, user, exp)
            yield CandidateTask(**vars(task), comparison_id=r["comparison_id"], system=r["system"])


def tagged(task: Task, row: dict[str, Any]) -> dict[str, Any]:
    """The row of ``task`` as the writers take it: a candidate's says which candidate it scores."""
    if isinstance(task, CandidateTask):
        return {**row, "comparison_id": task.comparison_id, "system": task.system}
    return row


def save_rows(store: JudgeStore, rows: Iterable[dict[str, Any]]) -> None:
    """Write judgement rows (:func:`tagged`): an answer's to ``judgements``, a candidate's to its
    candidate."""
    answers: list[dict[str, Any]] = []
    by_comparison: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in rows:
        if "comparison_id" not in row:
            answers.append(row)
            continue
        by_comparison[row["comparison_id"]][row["system"]] = {
            "judge_status": row["status"], "judge_model": row["judge_model"], "judge_call_key": row["call_key"],
            "score": row.get("score"), "compliance": row.get("compliance"), "rating": row.get("rating")}
    if answers:
        store.save_judgements(answers)
    for comparison_id, judgements in by_comparison.items():
        store.set_candidate_judgements(comparison_id, judgements)


__all__ = ["CandidateTask", "candidate_tasks", "save_rows", "tagged"]
