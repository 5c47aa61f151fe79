"""What the judgements of a dialogue's answers say about the dialogue: one set of checks for the
filter's judge rules, the judge's pass/fail in ``stats`` (agreement with reviewers), and the
review order.

Each check takes the dialogue's answers as ``(turn index, judgement or None)`` pairs in dialogue
order (a judgement as :meth:`itcollect.store.Store.current_judgements` returns it) and returns the
first finding ``(turn index, details)`` or None. Thresholds are the ``[filter]`` keys:

``min_judge_score``      an answer scored below it (0 = off)
``min_judge_rating``     an explanation / follow-up rated below it (0 = off)
``max_critical_errors``  more critical errors (non_translation included) over all answers (-1 = off)
``require_compliance``   a revision judged not compliant ("no"; "partly" passes)
``require_judge``        an answer without a usable judgement (not judged, or unparsed)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard

from itcollect.settings import FilterSection

Answers = Sequence[tuple[int, Mapping[str, Any] | None]]

_RANK = {"critical": 0, "major": 1, "minor": 2}


def errors_of(j: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A judgement's error spans (decoded when the store left them as JSON text)."""
    errors = j.get("errors") or []
    return json.loads(errors) if isinstance(errors, str) else list(errors)


def worst_error(errors: Sequence[Mapping[str, Any]] | str) -> dict[str, Any] | None:
    """The most severe error span (non_translation and critical first, then major, then minor; the
    first of equals), or None. ``errors`` may be their JSON text."""
    spans: Sequence[Mapping[str, Any]] = json.loads(errors) if isinstance(errors, str) else errors
    best: tuple[tuple[int, int], dict[str, Any]] | None = None
    for e in spans:
        key = (0 if e.get("category") == "non_translation" else _RANK.get(str(e.get("severity")), 3) + 1, 0)
        if best is None or key < best[0]:
            best = (key, dict(e))
    return None if best is None else best[1]


def _judged(j: Mapping[str, Any] | None) -> TypeGuard[Mapping[str, Any]]:
    return j is not None and j.get("status") == "judged"


def low_score(answers: Answers, min_score: float, min_rating: int = 0) -> tuple[int, dict[str, Any]] | None:
    for i, j in answers:
        if not _judged(j):
            continue
        score, rating = j.get("score"), j.get("rating")
        if min_score < 0 and score is not None and score < min_score:
            return i, {"turn": i, "score": score, "worst": worst_error(j.get("errors") or [])}
        if min_rating > 0 and rating is not None and rating < min_rating:
            return i, {"turn": i, "rating": rating, "reason": j.get("reason")}
    return None


def too_many_critical(answers: Answers, max_critical: int) -> tuple[int, dict[str, Any]] | None:
    if max_critical < 0:
        return None
    total, first = 0, None
    for i, j in answers:
        if _judged(j) and j.get("n_critical"):
            total += int(j["n_critical"])
            if first is None:
                first = (i, worst_error(j.get("errors") or []), j.get("score"))
    if total > max_critical and first is not None:
        return first[0], {"turn": first[0], "critical": total, "score": first[2], "worst": first[1]}
    return None


def not_compliant(answers: Answers) -> tuple[int, dict[str, Any]] | None:
    for i, j in answers:
        if _judged(j) and j.get("compliance") == "no":
            return i, {"turn": i, "compliance": "no", "type": j.get("interaction_type"), "reason": j.get("reason")}
    return None


def not_judged(answers: Answers) -> tuple[int, dict[str, Any]] | None:
    for i, j in answers:
        if not _judged(j):
            return i, {"turn": i, "status": "unparsed" if j is not None else "unjudged"}
    return None


def thresholds_on(th: FilterSection) -> bool:
    """Whether any judge threshold of ``[filter]`` is on (require_judge aside)."""
    return th.min_judge_score < 0 or th.min_judge_rating > 0 or th.max_critical_errors >= 0 or th.require_compliance


def passes(answers: Answers, th: FilterSection, pass_score: float) -> bool | None:
    """The judge's verdict on a dialogue: True / False, or None unless every answer is judged.

    With judge thresholds on in ``[filter]``: passing them. Without: its lowest score is at least
    ``pass_score`` (``[judge] pass_score``: -5 by default, one major error or five minor ones)."""
    if not answers or any(not _judged(j) for _, j in answers):
        return None
    if thresholds_on(th):
        return not (low_score(answers, th.min_judge_score, th.min_judge_rating)
                    or too_many_critical(answers, th.max_critical_errors)
                    or (th.require_compliance and not_compliant(answers)))
    scores = [j["score"] for _, j in answers if j is not None and j.get("score") is not None]
    return not scores or min(scores) >= pass_score


def cohen_kappa(pairs: Sequence[tuple[bool, bool]]) -> tuple[int, float | None, float | None]:
    """(n, observed agreement, Cohen's kappa) of two raters' binary labels; kappa None when the
    expected agreement is 1 (both raters gave one label throughout) and there is nothing to correct."""
    n = len(pairs)
    if not n:
        return 0, None, None
    agree = sum(1 for a, b in pairs if a == b) / n
    pa = sum(1 for a, _ in pairs if a) / n
    pb = sum(1 for _, b in pairs if b) / n
    expected = pa * pb + (1 - pa) * (1 - pb)
    if expected >= 1.0:
        return n, agree, None
    return n, agree, (agree - expected) / (1 - expected)


__all__ = ["errors_of", "worst_error", "low_score", "too_many_critical", "not_compliant", "not_judged", "thresholds_on", "passes",
           "cohen_kappa"]
