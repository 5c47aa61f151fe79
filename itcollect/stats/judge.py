"""The ``judge`` section of ``itcollect stats``: how the corpus scores, where the errors are, and
how the judge agrees with the reviewers and with the deterministic filter.

Counts cover every active answer of every finished dialogue: ``judged`` + ``unparsed`` +
``unjudged`` = that total (an answer whose judgement is stale — its dialogue changed after it —
counts as unjudged). Score figures are over the MQM scores of judged translation answers.
``review_agreement`` compares, on the dialogues reviewers accepted or rejected (``session
--review``) whose every answer is judged, the judge's pass/fail (:func:`.verdict.passes`) with
accept/reject: the share of agreement and Cohen's kappa. ``filter`` puts the judge beside the
deterministic checks: for the dialogues the latest filter run kept, and for those it dropped by
each reason (judge rules aside), how many are judged and their mean lowest score.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np

from itcollect.config import Config
from itcollect.llm.judgement.schema import CATEGORIES, COMPLIANCE, OTHER, SEVERITIES
from itcollect.llm.judgement.verdict import cohen_kappa, passes
from itcollect.settings import settings
from itcollect.store.interfaces import JudgeStatsStore

_JUDGE_RULES = ("low_judge_score", "critical_error", "not_compliant", "not_judged")


def _mean(values: list[float]) -> float | None:
    return round(float(np.mean(values)), 3) if values else None


def _group(rows: list[tuple], key: Any) -> dict[str, Any]:
    judged: dict[str, int] = defaultdict(int)
    scores: dict[str, list[float]] = defaultdict(list)
    ratings: dict[str, list[int]] = defaultdict(list)
    for r in rows:
        if r[6] != "judged":
            continue
        k = key(r)
        judged[k] += 1
        if r[9] is not None:
            scores[k].append(float(r[9]))
        if r[12] is not None:
            ratings[k].append(int(r[12]))
    out = {}
    for k in sorted(judged, key=lambda k: (-judged[k], k)):
        out[k] = {"judged": judged[k], "mean": _mean(scores[k])}
        if ratings[k]:
            out[k]["rating_mean"] = _mean([float(x) for x in ratings[k]])
    return out


def judge_section(store: JudgeStatsStore, config: Config | None = None) -> dict[str, Any]:
    cfg = settings(config or {})
    filter_cfg, pass_score = cfg.filter, cfg.judge.pass_score
    if not store.has_judgements():  # nothing judged yet: one count, not a pass over every answer
        return {"judged": 0, "unjudged": store.answer_count(), "unparsed": 0,
                "score": {"mean": None, "p10": None, "median": None}, "by_pair": {}, "by_type": {}, "by_origin": {},
                "errors": {}, "compliance": {}, "review_agreement": {"n": 0, "agreement": None, "kappa": None},
                "models": [], "histogram": {}, "filter": {}, "suggestions": {}}
    rows = store.judge_rows()
    judged = sum(1 for r in rows if r[6] == "judged")
    unparsed = sum(1 for r in rows if r[6] == "unparsed")
    scores = [float(r[9]) for r in rows if r[6] == "judged" and r[9] is not None]
    arr = np.array(scores, dtype=np.float64)
    score = {"mean": round(float(arr.mean()), 3) if len(arr) else None,
             "p10": round(float(np.percentile(arr, 10)), 3) if len(arr) else None,
             "median": round(float(np.median(arr)), 3) if len(arr) else None}
    errors: dict[str, dict[str, int]] = {}
    for cat, sevs in store.judge_error_counts().items():
        counts = {s: int(sevs.get(s, 0)) for s in SEVERITIES}
        if any(counts.values()):
            errors[cat] = counts
    order = {c: i for i, c in enumerate((*CATEGORIES, OTHER))}
    errors = dict(sorted(errors.items(), key=lambda kv: (-sum(kv[1].values()), order.get(kv[0], 99), kv[0])))
    compliance: dict[str, dict[str, int]] = {}
    for r in rows:
        if r[6] == "judged" and r[11] is not None:
            c = compliance.setdefault(r[8] or "untyped", dict.fromkeys(COMPLIANCE, 0))
            c[r[11]] += 1
    # per dialogue: its answers' judgements (for the review agreement and the filter comparison)
    by_dialogue: dict[str, list[tuple[int, dict[str, Any] | None]]] = defaultdict(list)
    review: dict[str, str | None] = {}
    for k, r in enumerate(rows):
        j = None if r[6] is None else {"status": r[6], "score": r[9], "n_critical": r[10], "compliance": r[11],
                                        "rating": r[12], "interaction_type": r[8]}
        by_dialogue[r[0]].append((k, j))
        review[r[0]] = r[5]
    pairs = []
    for did, status in review.items():
        if status in ("accepted", "rejected"):
            verdict = passes(by_dialogue[did], filter_cfg, pass_score)
            if verdict is not None:
                pairs.append((verdict, status == "accepted"))
    n, agreement, kappa = cohen_kappa(pairs)
    histogram: dict[str, int] = defaultdict(int)
    for s in scores:
        histogram[str(int(math.floor(s)))] += 1
    return {
        "judged": judged, "unjudged": len(rows) - judged - unparsed, "unparsed": unparsed,
        "score": score,
        "by_pair": _group(rows, lambda r: f"{r[2]}-{r[3]}"),
        "by_type": _group(rows, lambda r: r[8] or "untyped"),
        "by_origin": _group(rows, lambda r: r[4]),
        "errors": errors,
        "compliance": dict(sorted(compliance.items())),
        "review_agreement": {"n": n, "agreement": None if agreement is None else round(agreement, 4),
                             "kappa": None if kappa is None else round(kappa, 4)},
        "models": sorted({r[13] for r in rows if r[6] is not None and r[13]}),
        "histogram": dict(sorted(histogram.items(), key=lambda kv: -int(kv[0]))),
        "filter": _beside_filter(store, by_dialogue) if judged else {},
        "suggestions": suggestion_section(store),
    }


def suggestion_section(store: JudgeStatsStore) -> dict[str, dict[str, Any]]:
    """The judge against reviewers, per error category, from the suggested marks of the review page
    (``session --review``): of the judge's suggestions a reviewer decided, ``confirmed``,
    ``changed`` (another category or severity) and ``dismissed``; ``missed``, the reviewers' marks
    on judged answers that are no confirmed suggestion; ``precision`` confirmed / decided and
    ``recall`` confirmed / (confirmed + missed), None where there is nothing to divide by."""
    out: dict[str, dict[str, Any]] = {}
    for cat, f in store.suggestion_figures().items():
        decided = f["confirmed"] + f["changed"] + f["dismissed"]
        found = f["confirmed"] + f["missed"]
        out[cat] = {"suggested": decided, **f,
                    "precision": round(f["confirmed"] / decided, 4) if decided else None,
                    "recall": round(f["confirmed"] / found, 4) if found else None}
    return out


def _beside_filter(store: JudgeStatsStore, by_dialogue: dict[str, list[tuple[int, dict[str, Any] | None]]]) -> dict[str, Any]:
    """Judged dialogues by the latest filter verdict (kept, or each deterministic drop reason):
    how many, and the mean of their lowest scores."""
    verdicts = store.verdict_reasons()
    if not verdicts:
        return {}
    groups: dict[str, list[float]] = defaultdict(list)
    counts: dict[str, int] = defaultdict(int)
    for did, answers in by_dialogue.items():
        v = verdicts.get(did)
        scores = [j["score"] for _, j in answers if j is not None and j["status"] == "judged" and j["score"] is not None]
        if v is None or not scores:
            continue
        kept, reasons = v
        keys = ["kept"] if kept else [r for r in reasons if r not in _JUDGE_RULES] or ["judge rules only"]
        for key in keys:
            counts[key] += 1
            groups[key].append(min(scores))
    return {k: {"dialogues": counts[k], "mean_lowest_score": _mean(groups[k])}
            for k in sorted(counts, key=lambda k: (k != "kept", -counts[k], k))}


def render_judge(stats: dict[str, Any]) -> list[str]:
    """Text lines of the judge section for ``itcollect stats`` (nothing before the first judgement)."""
    j = stats.get("judge") or {}
    if not (j.get("judged") or j.get("unparsed")):
        return []
    total = j["judged"] + j["unparsed"] + j["unjudged"]

    def num(x: Any) -> str:
        return "-" if x is None else f"{x:g}"

    lines = ["", "LLM judge", "---------",
             f"  answers {total:,}: judged {j['judged']:,}  unparsed {j['unparsed']:,}  unjudged {j['unjudged']:,}"
             f"  (judge: {', '.join(j.get('models') or []) or '-'})",
             f"  MQM score: mean {num(j['score']['mean'])}  p10 {num(j['score']['p10'])}"
             f"  median {num(j['score']['median'])}  (0 = no error)"]
    for title, key in (("language pair", "by_pair"), ("interaction type", "by_type"), ("origin", "by_origin")):
        groups = j.get(key) or {}
        if groups:
            lines.append(f"  {title:<18} {'judged':>8} {'mean score':>11} {'mean rating':>12}")
            for k, g in groups.items():
                lines.append(f"    {k:<16} {g['judged']:>8,} {num(g['mean']):>11} {num(g.get('rating_mean')):>12}")
    if j.get("errors"):
        lines.append(f"  {'errors':<26} {'critical':>8} {'major':>8} {'minor':>8}")
        for cat, c in j["errors"].items():
            lines.append(f"    {cat:<24} {c['critical']:>8,} {c['major']:>8,} {c['minor']:>8,}")
    if j.get("compliance"):
        lines.append(f"  {'compliance':<26} {'yes':>8} {'partly':>8} {'no':>8}")
        for t, c in j["compliance"].items():
            lines.append(f"    {t:<24} {c['yes']:>8,} {c['partly']:>8,} {c['no']:>8,}")
    ra = j.get("review_agreement") or {}
    if ra.get("n"):
        lines.append(f"  agreement with reviewers: {ra['n']} dialogues, agreement {num(ra['agreement'])}, "
                     f"Cohen's kappa {num(ra['kappa'])}")
    if j.get("suggestions"):
        lines.append(f"  {'suggested marks (review)':<26} {'decided':>8} {'confirmed':>9} {'changed':>8} "
                     f"{'dismissed':>9} {'missed':>7} {'precision':>9} {'recall':>7}")
        for cat, f in j["suggestions"].items():
            lines.append(f"    {cat:<24} {f['suggested']:>8,} {f['confirmed']:>9,} {f['changed']:>8,} "
                         f"{f['dismissed']:>9,} {f['missed']:>7,} {num(f['precision']):>9} {num(f['recall']):>7}")
    if j.get("filter"):
        lines.append("  beside the filter (judged dialogues; mean of their lowest scores)")
        for k, f in j["filter"].items():
            lines.append(f"    {k:<24} {f['dialogues']:>8,} {num(f['mean_lowest_score']):>11}")
    return lines


def plot_scores(ax: Any, stats: dict[str, Any]) -> None:
    """The score distribution (a bar per score) on a matplotlib axis."""
    hist = (stats.get("judge") or {}).get("histogram") or {}
    keys = sorted(hist, key=int)
    ax.bar([int(k) for k in keys], [hist[k] for k in keys], 0.8, color="tab:red")
    ax.set_xlabel("MQM score of an answer (0 = no error)")
    ax.set_ylabel("answers")
    ax.set_title("judge scores")


__all__ = ["judge_section", "render_judge", "plot_scores"]
