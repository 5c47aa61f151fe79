"""What a decided comparison says about the systems it compared: one definition for ``stats``
(win rates, head-to-head, Bradley-Terry strengths), ``export`` (preference pairs) and the judge's
pick (:func:`judge_tiers`, :func:`break_tie`).

A candidate takes part in a comparison unless its call failed (``status`` ``failed``: an endpoint
down says nothing of the system's answers); a candidate that failed a check (``rejected``) takes
part and loses. A decision orders the candidates that take part in *tiers*, best first:

* ``pick X`` — X alone above all the others (the others are not ordered among themselves);
* ``rank`` — the stored tiers (ties within a tier), then every candidate the rank leaves out;
* ``none`` (all bad, a person's decision) — nobody above anybody.

From the tiers: per system and turn a **win** (alone in the best tier), a **tie** (in the best tier
with others) or a **loss** (everything else, every candidate of a ``none`` turn included); per
pair of systems a **pairwise outcome** where the order says something (a pick: the winner against
each other candidate; a rank: every two candidates in different tiers win/lose, in one tier tie;
``none``: none).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

#: a turn's result for one system, and what it counts in a win rate (ties count half)
POINTS = {"win": 1.0, "tie": 0.5, "loss": 0.0}
_COMPLIANCE_ORDER = {"yes": 2, "partly": 1, "no": 0}


def participants(comparison: Mapping[str, Any]) -> list[str]:
    """The systems that take part (every candidate whose call did not fail), in stored order."""
    return [c["system"] for c in comparison["candidates"] if c["status"] != "failed"]


def tiers(comparison: Mapping[str, Any]) -> list[list[str]]:
    """The decision's order of the systems taking part, best first (see the module docstring);
    a ``none`` decision is one tier below nothing: ``[[], everyone]``."""
    systems = participants(comparison)
    decision = comparison["decision"]
    if decision == "pick":
        winner = comparison["winner"]
        return [[winner], [s for s in systems if s != winner]]
    if decision == "rank":
        ranked = [list(t) for t in comparison["ranking"] or []]
        seen = {s for t in ranked for s in t}
        rest = [s for s in systems if s not in seen]
        return [t for t in ranked if t] + ([rest] if rest else [])
    return [[], systems]


def turn_results(comparison: Mapping[str, Any]) -> dict[str, str]:
    """``{system: "win" | "tie" | "loss"}`` for every system taking part."""
    order = tiers(comparison)
    best = order[0]
    out = {}
    for tier in order:
        for s in tier:
            out[s] = ("win" if len(best) == 1 else "tie") if tier is best else "loss"
    return out


def pairwise(comparison: Mapping[str, Any]) -> list[tuple[str, str, float]]:
    """``(a, b, result)`` for every pair the decision orders: ``result`` 1 (a better), 0.5 (tie)
    or 0 (b better); each unordered pair once, ``a < b`` by name."""
    order = tiers(comparison)
    if comparison["decision"] == "none":
        return []
    rank = {s: k for k, tier in enumerate(order) for s in tier}
    pick = comparison["decision"] == "pick"
    out = []
    names = sorted(rank)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if pick and rank[a] and rank[b]:  # two of the rest: a pick does not order them
                continue
            out.append((a, b, 0.5 if rank[a] == rank[b] else 1.0 if rank[a] < rank[b] else 0.0))
    return out


def judge_key(candidate: Mapping[str, Any]) -> tuple[float, float, float]:
    """How the judge orders two candidates: the better score (MQM, higher is better), then the
    better compliance (yes > partly > no), then the better rating; what a judgement lacks (a
    rating kind has no MQM score, a first turn no compliance, an unparsed judgement nothing) is
    below every value."""
    score = candidate.get("score")
    compliance = _COMPLIANCE_ORDER.get(candidate.get("compliance") or "", -1)
    rating = candidate.get("rating")
    return (-math.inf if score is None else float(score), float(compliance),
            -math.inf if rating is None else float(rating))


def judge_tiers(candidates: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """The judge's rank of the candidates taking part: the judged ones by :func:`judge_key`
    (equal keys share a tier), then those that failed a check (``rejected``: one last tier,
    never judged). Failed calls take no part."""
    judged = [c for c in candidates if c["status"] == "answered"]
    rejected = [c["system"] for c in candidates if c["status"] == "rejected"]
    out: list[list[str]] = []
    last: tuple[float, float, float] | None = None
    for c in sorted(judged, key=lambda c: (tuple(-x for x in judge_key(c)), c["system"])):
        key = judge_key(c)
        if key != last:
            out.append([])
            last = key
        out[-1].append(c["system"])
    if rejected:
        out.append(sorted(rejected))
    return out


def break_tie(systems: Sequence[str], seed: int, *where: object) -> str:
    """One of ``systems`` chosen by ``seed`` and the turn (``where``: e.g. the dialogue id and the
    position), the same on every run and independent of the order given."""
    prefix = ":".join(str(x) for x in (seed, *where)).encode()
    return min(systems, key=lambda s: hashlib.blake2b(prefix + b"|" + s.encode(), digest_size=8).digest())


__all__ = ["POINTS", "participants", "tiers", "turn_results", "pairwise", "judge_key", "judge_tiers", "break_tie"]
