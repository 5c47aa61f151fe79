"""Quality figures of human annotation: per annotator, and the agreement of annotators on overlap
specs. One function (:func:`quality_figures`) computes them for ``stats --json`` (``annotators``),
``stats --annotators`` and the web lead's dashboard, from the store's records and action log.

Per annotator (the keys of ``stats --json`` → ``annotators``; a figure with nothing to compute
from is null):

=============================  ===================================================================
``dialogues``                  human dialogues they finished (status done)
``turns``                      requests they wrote (active user turns)
``median_active_s``            median active seconds per finished dialogue (the action log: a gap
                               that starts at a quit or ends in a resume is not work)
``s_per_word``                 active seconds of their finished dialogues / the words of their
                               sources (a Chinese character counts as a word)
``accepted_unchanged_share``   of the model answers they decided (accepted, edited or regenerated;
                               control items aside), the share accepted unchanged
``edit_size``                  mean of 1 − chrF(their edit, the model's answer) / 100 over the
                               answers they edited (control items aside)
``skip_rate``, ``flag_rate``   skipped / (finished + skipped); dialogues they flagged / the same
``fast_accepts``               answers accepted unchanged faster than ``[session]
                               min_seconds_per_word`` × the answer's words (from the answer on
                               screen to the accept)
``control_items``              control items they decided; ``control_catch_rate``: the share
                               they caught (edited or regenerated)
``overlap_specs``              overlap specs where their dialogue was compared with another's
``agreement_chrf``             mean chrF (0-100, both directions averaged) of their final first
                               translation against the other annotators' on those specs
``review``                     their dialogues by reviewers' verdict: accepted, rejected, fixed
``returns``, ``fixes``         verdicts that returned a dialogue to them; dialogues sent back revised
``early_finishes``             dialogues they finished before the planned turns (with a reason;
                               ``dialogues.early_finish``)
=============================  ===================================================================

Agreement (``stats --json`` → ``agreement``), per pair of annotators and overall, over every pair of
finished copies of an overlap spec: ``first_turn_chrf`` (the final answers to the first request),
``revision_chrf`` (answers to later requests of the same revising type at the same position, e.g.
both a ``polish`` second request), ``decision_agreement`` (the share of pairs whose decision on the
model's first answer — accepted unchanged, edited, regenerated — is the same) and
``judge_score_diff`` (the mean absolute difference of the dialogues' judge scores — the mean MQM
score of their judged answers — where the judge scored both).

Details beyond that contract (``annotator_details``): the session counts (skipped and why, edits,
regenerations, undos, flags), decisions, controls missed and caught, and the error spans reviewers
marked in their answers by category and severity.
"""

from __future__ import annotations

import functools
import itertools
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from itcollect.config import Config
from itcollect.kernel.checks import text_length
from itcollect.kernel.taxonomy import INTERACTION_TYPES
from itcollect.settings import settings
from itcollect.store.interfaces import QualityStore

#: the keys of each annotator in ``stats --json`` → ``annotators`` (DESIGN.md)
ANNOTATOR_KEYS = ("dialogues", "turns", "median_active_s", "s_per_word", "accepted_unchanged_share", "edit_size",
                  "skip_rate", "flag_rate", "fast_accepts", "control_items", "control_catch_rate", "overlap_specs",
                  "agreement_chrf", "review", "returns", "fixes", "early_finishes")
DECISIONS = ("accepted", "edited", "regenerated")


@functools.lru_cache(maxsize=1)
def _chrf():
    from sacrebleu.metrics import CHRF  # deferred, and only when there is something to compare

    return CHRF()


def chrf(hypothesis: str, reference: str, metric: Any = None) -> float:
    """sentence chrF (sacrebleu, 0-100)."""
    return float((metric or _chrf()).sentence_score(hypothesis, [reference]).score)


def chrf_both(a: str, b: str, metric: Any = None) -> float:
    """chrF of a against b and of b against a, averaged (agreement has no reference side)."""
    metric = metric or _chrf()
    return (chrf(a, b, metric) + chrf(b, a, metric)) / 2


def words(text: str | None, lang: str | None) -> int:
    """Words of a text; a Chinese character counts as one (as a length request counts them)."""
    return text_length(text or "", "zh" if lang == "zh" else lang or "")


def _mean(values: list[float], digits: int) -> float | None:
    return round(sum(values) / len(values), digits) if values else None


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _ts(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def decision_of(actions: set[str]) -> str | None:
    """What was done with a model answer: edited, regenerated, accepted (unchanged), or None."""
    if "edit" in actions:
        return "edited"
    if "regenerate" in actions:
        return "regenerated"
    if "accept" in actions:
        return "accepted"
    return None


def _conversation(turns: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any] | None]]:
    """The active requests of a dialogue and the active answer to each (None when missing)."""
    active = [t for t in turns if t["state"] == "active" and t["role"] in ("user", "assistant")]
    requests, answers = [], []
    for k, t in enumerate(active):
        if t["role"] == "user":
            requests.append(t)
            nxt = active[k + 1] if k + 1 < len(active) else None
            answers.append(nxt if nxt is not None and nxt["role"] == "assistant" else None)
    return requests, answers


@dataclass
class _Actions:
    """The action log as the figures read it (review actions aside)."""

    #: per (annotator, dialogue), for the clock
    events: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    #: per (annotator, turn id), the decisions taken on a model answer
    acted: dict[tuple[str, int], set[str]] = field(default_factory=lambda: defaultdict(set))
    #: who decided on each turn
    by_turn: dict[int, set[str]] = field(default_factory=lambda: defaultdict(set))
    #: when each (annotator, turn id) first accepted
    accepted_at: dict[tuple[str, int], str] = field(default_factory=dict)
    #: the dialogues each annotator flagged
    flagged: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    names: set[str] = field(default_factory=set)


@dataclass
class _TurnFigures:
    """Per annotator, what one pass over the turns counts: requests written, decisions on model
    answers, the size of their edits, fast accepts, control items missed and caught."""

    requests: Counter[str] = field(default_factory=Counter)
    decided: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    edit_sizes: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    fast: Counter[str] = field(default_factory=Counter)
    controls: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))


def quality_figures(store: QualityStore, config: Config | None = None) -> dict[str, Any]:
    """``{"annotators": {name: {ANNOTATOR_KEYS}}, "agreement": {...}, "annotator_details": {...}}``."""
    min_spw = settings(config or {}).session.min_seconds_per_word
    dialogues = store.human_dialogue_rows()
    turns: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for t in store.human_turn_rows():
        turns[t["dialogue_id"]].append(t)
    actions = _read_actions(store)
    actions.names |= {d["annotator"] for d in dialogues if d["annotator"]}
    metric = None  # sacrebleu's CHRF, made at the first comparison
    figures = _turn_figures(turns, actions, min_spw, metric)
    agreement, compared = _agreement(store, dialogues, turns, actions.acted, metric)
    review_errors = store.review_error_counts()
    returned = store.return_counts()
    activity = store.annotator_stats()
    by_annotator: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for d in dialogues:
        by_annotator[d["annotator"] or ""].append(d)
    out: dict[str, dict[str, Any]] = {}
    details: dict[str, dict[str, Any]] = {}
    for name in sorted(actions.names):
        mine = by_annotator.get(name, [])
        out[name] = _annotator_figures(store, name, mine, actions, figures, compared.get(name, []))
        # dialogues returned to them by a reviewer (rejected, or decided with marks) and sent back revised
        out[name] |= returned.get(name, {"returns": 0, "fixes": 0})
        out[name]["early_finishes"] = out[name].pop("early_finishes")  # in ANNOTATOR_KEYS' order
        dec, ctl = figures.decided[name], figures.controls[name]
        details[name] = {**activity.get(name, {}), "decisions": {k: dec[k] for k in DECISIONS},
                         "controls": {"missed": ctl["miss"], "caught": ctl["catch"]},
                         "review_errors": review_errors.get(name, {})}
    return {"annotators": out, "agreement": agreement, "annotator_details": details}


def _read_actions(store: QualityStore) -> _Actions:
    a = _Actions()
    for e in store.action_log():
        name, did, action = e["annotator"], e["dialogue_id"], e["action"]
        if action.startswith("review_"):
            continue
        a.names.add(name)
        if did is not None:
            a.events[(name, did)].append(e)
        if e["turn_id"] is not None and action in ("accept", "edit", "regenerate"):
            a.acted[(name, e["turn_id"])].add(action)
            a.by_turn[e["turn_id"]].add(name)
            if action == "accept":
                a.accepted_at.setdefault((name, e["turn_id"]), e["created_at"])
        if action == "flag" and did is not None:
            a.flagged[name].add(did)
    return a


def _turn_figures(turns: dict[str, list[dict[str, Any]]], actions: _Actions, min_spw: float,
                  metric: Any) -> _TurnFigures:
    f = _TurnFigures()
    for ts in turns.values():
        for t in ts:
            if t["role"] == "user":
                if t["state"] == "active" and t["author"] == "human" and t["annotator"]:
                    f.requests[t["annotator"]] += 1
                continue
            params = t["params"] or {}
            if t["role"] != "assistant" or params.get("review_fix"):
                continue
            ctl = params.get("control")
            if ctl:
                if ctl.get("outcome") in ("miss", "catch") and ctl.get("decided_by"):
                    f.controls[ctl["decided_by"]][ctl["outcome"]] += 1
                continue
            for name in actions.by_turn.get(t["id"], ()):
                decision = decision_of(actions.acted[(name, t["id"])])
                if decision is None:
                    continue
                f.decided[name][decision] += 1
                if decision == "edited" and t["original_content"] is not None:
                    f.edit_sizes[name].append(1 - chrf(t["content"], t["original_content"], metric) / 100)
                elif decision == "accepted":
                    took = _ts(actions.accepted_at[(name, t["id"])]) - _ts(t["created_at"])
                    if took < min_spw * words(t["content"], t["lang"]):
                        f.fast[name] += 1
    return f


def _annotator_figures(store: QualityStore, name: str, mine: list[dict[str, Any]], actions: _Actions,
                       figures: _TurnFigures, compared: list[tuple[int, float]]) -> dict[str, Any]:
    """One annotator's ``ANNOTATOR_KEYS`` from their dialogues (``mine``) and what was counted."""
    finished = [d for d in mine if d["status"] == "done"]
    skipped = [d for d in mine if d["status"] == "skipped"]
    closed = len(finished) + len(skipped)
    times = [store.active_seconds(actions.events[(name, d["id"])]) for d in finished]
    source_words = sum(words(d["source_text"], d["src_lang"]) for d in finished)
    ctl = figures.controls[name]
    n_controls = ctl["miss"] + ctl["catch"]
    dec = figures.decided[name]
    flagged = actions.flagged[name]
    return {
        "dialogues": len(finished),
        "turns": figures.requests[name],
        "median_active_s": round(statistics.median(times), 1) if times else None,
        "s_per_word": round(sum(times) / source_words, 3) if source_words else None,
        "accepted_unchanged_share": _share(dec["accepted"], sum(dec.values())),
        "edit_size": _mean(figures.edit_sizes[name], 4),
        "skip_rate": _share(len(skipped), closed),
        "flag_rate": _share(sum(1 for d in finished + skipped if d["id"] in flagged), closed),
        "fast_accepts": figures.fast[name],
        "control_items": n_controls,
        "control_catch_rate": _share(ctl["catch"], n_controls),
        "overlap_specs": len({spec for spec, _ in compared}),
        "agreement_chrf": _mean([x for _, x in compared], 2),
        "review": {v: sum(1 for d in mine if d["review_status"] == v) for v in ("accepted", "rejected", "fixed")},
        "early_finishes": sum(1 for d in finished if d.get("early_finish")),
    }


def _agreement(store: QualityStore, dialogues: list[dict[str, Any]], turns: dict[str, list[dict[str, Any]]],
               acted: dict[tuple[str, int], set[str]], metric: Any
               ) -> tuple[dict[str, Any], dict[str, list[tuple[int, float]]]]:
    """The agreement section, and per annotator the (spec, first-turn chrF) of each comparison."""
    by_spec: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for d in dialogues:
        if d["status"] == "done" and d["copies"] > 1 and d["spec_id"] is not None and d["annotator"]:
            by_spec[d["spec_id"]].append(d)
    groups = {s: ds for s, ds in by_spec.items() if len({d["annotator"] for d in ds}) > 1}
    scores = store.dialogue_judge_scores([d["id"] for ds in groups.values() for d in ds])

    def first_decision(d: dict[str, Any]) -> str | None:
        requests, answers = _conversation(turns[d["id"]])
        if not answers or answers[0] is None:
            return None
        shown = [t for t in turns[d["id"]] if t["role"] == "assistant" and t["state"] != "undone"
                 and t["idx"] == answers[0]["idx"]]
        first = min(shown, key=lambda t: t["id"])
        if (first["params"] or {}).get("control"):
            return None
        return decision_of(acted.get((d["annotator"], first["id"]), set()))

    rows: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    compared: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for spec_id in sorted(groups):
        for a, b in itertools.combinations(sorted(groups[spec_id], key=lambda d: (d["annotator"], d["copy"])), 2):
            if a["annotator"] == b["annotator"]:
                continue
            ra, aa = _conversation(turns[a["id"]])
            rb, ab = _conversation(turns[b["id"]])
            if not aa or not ab or aa[0] is None or ab[0] is None:
                continue
            first = chrf_both(aa[0]["content"], ab[0]["content"], metric)
            # the later requests at the same position, of the same revising type, both answered
            revisions = [chrf_both(xa["content"], xb["content"], metric)
                         for qa, qb, xa, xb in zip(ra[1:], rb[1:], aa[1:], ab[1:])
                         if qa["interaction_type"] == qb["interaction_type"]
                         and qa["interaction_type"] in INTERACTION_TYPES
                         and INTERACTION_TYPES[qa["interaction_type"]].revises
                         and xa is not None and xb is not None]
            da, db = first_decision(a), first_decision(b)
            row = {"spec": spec_id, "first": first,
                   "revision": sum(revisions) / len(revisions) if revisions else None,
                   "decision": None if da is None or db is None else float(da == db),
                   "judge": abs(scores[a["id"]] - scores[b["id"]]) if a["id"] in scores and b["id"] in scores
                   else None}
            rows[(a["annotator"], b["annotator"])].append(row)
            compared[a["annotator"]].append((spec_id, first))
            compared[b["annotator"]].append((spec_id, first))

    def summary(rs: list[dict[str, Any]]) -> dict[str, Any]:
        def vals(key: str) -> list[float]:
            return [r[key] for r in rs if r[key] is not None]

        return {"specs": len({r["spec"] for r in rs}), "pairs": len(rs),
                "first_turn_chrf": _mean(vals("first"), 2), "revision_chrf": _mean(vals("revision"), 2),
                "decision_agreement": _mean(vals("decision"), 4), "judge_score_diff": _mean(vals("judge"), 3)}

    everything = [r for rs in rows.values() for r in rs]
    section = {**summary(everything),
               "by_pair": [{"annotators": list(pair), **summary(rs)} for pair, rs in sorted(rows.items())]}
    return section, compared


def render_annotators(figures: dict[str, Any]) -> list[str]:
    """``stats --annotators``: the per-annotator table, the agreement on overlap, review errors."""

    def f(v: Any, spec: str = "") -> str:
        if v is None:
            return "-"
        return format(v, spec) if spec else str(v)

    lines = ["Annotators (quality)", "--------------------"]
    people = figures["annotators"]
    if not people:
        return lines + ["  no human annotation yet"]
    head = (f"  {'name':<16} {'dlg':>4} {'turns':>5} {'med s':>6} {'s/word':>6} {'unchg':>6} {'edit':>5}"
            f" {'skip':>5} {'flag':>5} {'fast':>4} {'ctrl':>4} {'catch':>6} {'ovl':>4} {'agr':>6} {'early':>5}  review a/r/f  ret/sent")
    lines.append(head)
    for name, a in people.items():
        r = a["review"]
        lines.append(
            f"  {name:<16} {a['dialogues']:>4} {a['turns']:>5} {f(a['median_active_s'], '.0f'):>6}"
            f" {f(a['s_per_word'], '.2f'):>6} {f(a['accepted_unchanged_share'], '.0%'):>6} {f(a['edit_size'], '.2f'):>5}"
            f" {f(a['skip_rate'], '.0%'):>5} {f(a['flag_rate'], '.0%'):>5} {a['fast_accepts']:>4}"
            f" {a['control_items']:>4} {f(a['control_catch_rate'], '.0%'):>6} {a['overlap_specs']:>4}"
            f" {f(a['agreement_chrf'], '.1f'):>6} {a['early_finishes']:>5}  {r['accepted']}/{r['rejected']}/{r['fixed']}"
            f"  {a['returns']}/{a['fixes']}")
    lines.append("  unchg: answers accepted unchanged · edit: mean 1-chrF of edits · fast: accepted faster than "
                 "min_seconds_per_word · ctrl/catch: control items, share caught · ovl/agr: overlap specs, chrF "
                 "with the others · ret/sent: returned by a reviewer / sent back revised · early: finished before "
                 "the planned turns")
    ag = figures["agreement"]
    if ag["pairs"]:
        lines += ["", "Agreement on overlap specs", "--------------------------"]
        lines.append(f"  {'pair':<30} {'specs':>5} {'1st chrF':>8} {'rev chrF':>8} {'same decision':>13}"
                     f" {'judge diff':>10}")
        for p in [*ag["by_pair"], {"annotators": ["all"], **ag}]:
            label = " & ".join(p["annotators"])
            lines.append(f"  {label:<30} {p['specs']:>5} {f(p['first_turn_chrf'], '.1f'):>8}"
                         f" {f(p['revision_chrf'], '.1f'):>8} {f(p['decision_agreement'], '.0%'):>13}"
                         f" {f(p['judge_score_diff'], '.2f'):>10}")
    errors = {n: d["review_errors"] for n, d in figures["annotator_details"].items() if d["review_errors"]}
    if errors:
        lines += ["", "Errors reviewers marked (category: critical/major/minor)", "-" * 56]
        for name, cats in errors.items():
            parts = [f"{c} {s.get('critical', 0)}/{s.get('major', 0)}/{s.get('minor', 0)}" for c, s in sorted(cats.items())]
            lines.append(f"  {name:<16} " + ", ".join(parts))
    return lines


__all__ = ["ANNOTATOR_KEYS", "quality_figures", "render_annotators", "chrf", "chrf_both", "words", "decision_of"]
