"""The ``compare`` section of ``itcollect stats`` (``stats --compare``): win rates of the systems
compared turn by turn (issue 23, part 5).

Every decided comparison counts once, by the chooser that decided it (a person: ``human``, or
``human_edit`` when their own text continued; the judge: ``judge``); what a decision means for each
system is :mod:`itcollect.kernel.outcomes` (win, tie, loss; pairwise outcomes).

* ``by_system`` — per system: the turns it took part in, its wins, ties and losses, the win rate
  (ties count half) and a 95 % interval by bootstrap over dialogues (the turns of a dialogue are
  resampled together; seeded, so the same store gives the same interval);
* ``by_pair`` / ``by_type`` / ``by_instruction_lang`` — the same per language pair, per
  interaction type of the request, per instruction language;
* ``head_to_head`` — per two systems, the turns where the decision orders them: wins of each, ties;
* ``strength`` — a Bradley-Terry fit over all pairwise outcomes (:func:`bradley_terry`; a tie is
  half a win for each), strengths summing to 1, so ``p_a / (p_a + p_b)`` is the chance a beats b;
* ``views`` — the seed's three: ``translation`` (the first request), ``instruction_following``
  (every later request: the revisions), ``multi_turn`` (the third request and later);
* ``choosers`` — ``by_system`` and ``strength`` of a person's picks and of the judge's apart;
* ``agreement`` — on a person's decided turns whose candidates the judge scored too: the chance
  that the person's best and the judge's best are the same system, each breaking their own ties at
  random (1 when both name the same one system);
* ``pick_agreement`` — on overlap specs (``[session] overlap_share``: several annotators compare
  the same spec), the agreement of their picks: over every two copies of a spec decided by two
  different people, at each request number both decided (a pick or a rank: the chance that both
  name the same best system, each breaking their own ties at random; both "all bad": 1; one of
  them: 0): ``n`` such pairs of turns, their mean ``agreement``, the ``specs`` they come from, and
  the same on the first request alone (``first_request``: the copies' only turn with the same
  conversation before it; later the picks that continued may differ);
* ``cost`` — per system: the candidate calls asked for, those that failed, their cost in the
  ledger (each paid call once) and the median latency of the answers.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from itcollect.kernel.outcomes import POINTS, judge_tiers, pairwise, tiers, turn_results
from itcollect.store.interfaces import StatsStore

#: bootstrap resamples of the dialogues for each interval, and the seed they are drawn with
RESAMPLES = 1000
SEED = 0
#: resampled dialogue weights held at once (rows x dialogues), to bound memory on big corpora
_CHUNK_CELLS = 4_000_000

_CHOOSER_KEYS = ("human", "judge", "human_edit")
_VIEWS: dict[str, Callable[[Mapping[str, Any]], bool]] = {
    "translation": lambda r: r["request_no"] == 1,
    "instruction_following": lambda r: r["request_no"] >= 2,
    "multi_turn": lambda r: r["request_no"] >= 3,
}


def bradley_terry(outcomes: Iterable[tuple[str, str, float]], *, iterations: int = 10_000,
                  tol: float = 1e-12) -> dict[str, float]:
    """Bradley-Terry strengths from pairwise outcomes ``(a, b, result)`` (1: a won, 0: b won, 0.5:
    a tie, half a win each), by Hunter's (2004) minorisation-maximisation:
    ``p_i <- W_i / sum_j n_ij / (p_i + p_j)``, normalised to sum 1. A system that never won gets 0
    (the maximum-likelihood limit), as do, relative to the others, systems only ever beaten by
    the same unbeaten ones."""
    outcomes = list(outcomes)
    names = sorted({x for a, b, _ in outcomes for x in (a, b)})
    if not names:
        return {}
    ix = {s: k for k, s in enumerate(names)}
    n = len(names)
    games = np.zeros((n, n))
    wins = np.zeros(n)
    for a, b, result in outcomes:
        i, j = ix[a], ix[b]
        games[i, j] += 1
        games[j, i] += 1
        wins[i] += result
        wins[j] += 1.0 - result
    p = np.full(n, 1.0 / n)
    for _ in range(iterations):
        with np.errstate(divide="ignore", invalid="ignore"):
            pair = p[:, None] + p[None, :]
            denom = np.where(games > 0, games / np.where(pair > 0, pair, 1.0), 0.0).sum(axis=1)
            new = np.where(denom > 0, wins / np.where(denom > 0, denom, 1.0), 0.0)
        total = new.sum()
        if total <= 0:
            return dict.fromkeys(names, round(1.0 / n, 4))
        new /= total
        if np.abs(new - p).max() < tol:
            p = new
            break
        p = new
    return {s: round(float(p[ix[s]]), 4) for s in names}


def _bootstrap_ci(dialogue_of: Sequence[int], points: np.ndarray, present: np.ndarray, n_dialogues: int,
                  seed: int, resamples: int) -> np.ndarray:
    """(systems, 2) percentile intervals of the win rate, resampling dialogues with replacement
    (NaN where a system has no turn in any resample)."""
    d = np.asarray(dialogue_of)
    per_points = np.zeros((n_dialogues, points.shape[1]))
    per_turns = np.zeros((n_dialogues, points.shape[1]))
    np.add.at(per_points, d, points)
    np.add.at(per_turns, d, present)
    rng = np.random.default_rng(seed)
    rates = np.empty((resamples, points.shape[1]))
    chunk = max(1, _CHUNK_CELLS // max(1, n_dialogues))
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        draws = rng.integers(0, n_dialogues, size=(rows, n_dialogues))
        flat = (draws + (np.arange(rows) * n_dialogues)[:, None]).ravel()
        weights = np.bincount(flat, minlength=rows * n_dialogues).reshape(rows, n_dialogues).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            rates[start:start + rows] = (weights @ per_points) / (weights @ per_turns)
    out = np.full((points.shape[1], 2), np.nan)
    for k in range(points.shape[1]):
        col = rates[:, k]
        col = col[~np.isnan(col)]
        if len(col):
            out[k] = np.percentile(col, [2.5, 97.5])
    return out


def by_system(rows: Sequence[Mapping[str, Any]], *, seed: int = SEED,
              resamples: int = RESAMPLES) -> dict[str, dict[str, Any]]:
    """``{system: {turns, wins, ties, losses, win_rate, ci95}}`` over ``rows`` (decided
    comparisons, each with its ``dialogue_id``), systems by name."""
    results = [r["_results"] if "_results" in r else turn_results(r) for r in rows]
    names = sorted({s for res in results for s in res})
    if not names:
        return {}
    col = {s: k for k, s in enumerate(names)}
    dialogues = sorted({r["dialogue_id"] for r in rows})
    dix = {d: k for k, d in enumerate(dialogues)}
    points = np.zeros((len(rows), len(names)))
    present = np.zeros((len(rows), len(names)))
    counts = {s: {"win": 0, "tie": 0, "loss": 0} for s in names}
    for t, res in enumerate(results):
        for s, outcome in res.items():
            points[t, col[s]] = POINTS[outcome]
            present[t, col[s]] = 1.0
            counts[s][outcome] += 1
    ci = _bootstrap_ci([dix[r["dialogue_id"]] for r in rows], points, present, len(dialogues), seed, resamples)
    out = {}
    for s in names:
        c = counts[s]
        turns = c["win"] + c["tie"] + c["loss"]
        lo, hi = ci[col[s]]
        out[s] = {"turns": turns, "wins": c["win"], "ties": c["tie"], "losses": c["loss"],
                  "win_rate": round((c["win"] + c["tie"] / 2) / turns, 4),
                  "ci95": None if np.isnan(lo) else [round(float(lo), 4), round(float(hi), 4)]}
    return out


def head_to_head(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """``{"a vs b": {"turns", a, b, "ties"}}`` over the pairwise outcomes of ``rows``."""
    out: dict[tuple[str, str], dict[str, int]] = {}
    for r in rows:
        for a, b, result in pairwise(r):
            h = out.setdefault((a, b), {"turns": 0, a: 0, b: 0, "ties": 0})
            h["turns"] += 1
            h[a if result == 1.0 else b if result == 0.0 else "ties"] += 1
    return {f"{a} vs {b}": out[(a, b)] for a, b in sorted(out)}


def agreement(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The person's pick against the judge's on the turns a person decided (pick or rank) whose
    every candidate taking part the judge scored (see the module docstring)."""
    chances = []
    for r in rows:
        if r["chooser"] == "judge" or r["decision"] == "none":
            continue
        taking_part = [c for c in r["candidates"] if c["status"] != "failed"]
        if any(c["status"] == "answered" and c["judge_status"] is None for c in taking_part):
            continue
        judge_best = set(judge_tiers(taking_part)[0])
        human_best = set(tiers(r)[0])
        chances.append(len(judge_best & human_best) / (len(judge_best) * len(human_best)))
    return {"n": len(chances), "agreement": round(sum(chances) / len(chances), 4) if chances else None}


def _pick_chance(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    """The chance two people's decisions of the same turn name the same best system."""
    if a["decision"] == "none" or b["decision"] == "none":
        return float(a["decision"] == b["decision"])
    best_a, best_b = set(tiers(a)[0]), set(tiers(b)[0])
    return len(best_a & best_b) / (len(best_a) * len(best_b))


def pick_agreement(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The people's picks against each other on overlap specs (see the module docstring)."""
    turns: dict[tuple[int, int], list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["chooser"] != "judge" and r.get("spec_id") is not None:
            turns[(r["spec_id"], r["request_no"])].append(r)
    chances: list[tuple[int, int, float]] = []
    for (spec, request_no), decided in sorted(turns.items()):
        for i, a in enumerate(decided):
            for b in decided[i + 1:]:
                if a["dialogue_id"] != b["dialogue_id"] and a["annotator"] != b["annotator"]:
                    chances.append((spec, request_no, _pick_chance(a, b)))

    def mean(xs: list[float]) -> float | None:
        return round(sum(xs) / len(xs), 4) if xs else None

    first = [x for _, k, x in chances if k == 1]
    return {"n": len(chances), "agreement": mean([x for _, _, x in chances]), "specs": len({s for s, _, _ in chances}),
            "first_request": {"n": len(first), "agreement": mean(first)}}


def cost(call_rows: Iterable[tuple[str, str, float | None, str | None, float | None]]) -> dict[str, dict[str, Any]]:
    """``{system: {calls, failed, cost_usd, median_latency_s}}`` from the store's candidate calls."""
    calls: dict[str, int] = defaultdict(int)
    failed: dict[str, int] = defaultdict(int)
    paid: dict[str, dict[str, float]] = defaultdict(dict)
    latencies: dict[str, list[float]] = defaultdict(list)
    for system, status, latency_ms, key, cost_usd in call_rows:
        calls[system] += 1
        if status == "failed":
            failed[system] += 1
        elif latency_ms is not None:
            latencies[system].append(latency_ms / 1000.0)
        if key is not None and cost_usd is not None:
            paid[system][key] = cost_usd
    return {s: {"calls": calls[s], "failed": failed[s], "cost_usd": round(sum(paid[s].values()), 6),
                "median_latency_s": round(statistics.median(latencies[s]), 3) if latencies[s] else None}
            for s in sorted(calls)}


def _grouped(rows: Sequence[Mapping[str, Any]], key: Callable[[Mapping[str, Any]], str], **kw: Any) -> dict[str, Any]:
    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[key(r)].append(r)
    return {k: by_system(groups[k], **kw) for k in sorted(groups)}


def _strength(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    return bradley_terry([o for r in rows for o in pairwise(r)])


def compare_section(store: StatsStore, config: dict[str, Any] | None = None, *, seed: int = SEED,
                    resamples: int = RESAMPLES) -> dict[str, Any]:
    """The ``compare`` key of ``stats --json`` (see the module docstring)."""
    rows = store.compare_rows()
    for r in rows:  # each turn's results once, for every grouping below
        r["_results"] = turn_results(r)
    kw = {"seed": seed, "resamples": resamples}
    by_chooser = dict.fromkeys(_CHOOSER_KEYS, 0)
    for r in rows:
        by_chooser[r["chooser"]] += 1
    human = [r for r in rows if r["chooser"] != "judge"]
    judge = [r for r in rows if r["chooser"] == "judge"]
    return {
        "turns": len(rows),
        "by_chooser": by_chooser,
        "by_system": by_system(rows, **kw),
        "by_pair": _grouped(rows, lambda r: f"{r['src_lang']}-{r['tgt_lang']}", **kw),
        "by_type": _grouped(rows, lambda r: r["interaction_type"] or "untyped", **kw),
        "by_instruction_lang": _grouped(rows, lambda r: str(r["instruction_lang"]), **kw),
        "head_to_head": head_to_head(rows),
        "strength": _strength(rows),
        "views": {name: {"turns": sum(1 for r in rows if keep(r)),
                         "by_system": by_system([r for r in rows if keep(r)], **kw)}
                  for name, keep in _VIEWS.items()},
        "choosers": {name: {"turns": len(part), "by_system": by_system(part, **kw), "strength": _strength(part)}
                     for name, part in (("human", human), ("judge", judge))},
        "agreement": agreement(rows),
        "pick_agreement": pick_agreement(rows),
        "cost": cost(store.compare_call_rows()),
    }


def render_compare(stats: dict[str, Any]) -> list[str]:
    """Text lines of the compare section (nothing before the first decided comparison)."""
    c = stats.get("compare") or {}
    if not c.get("turns") and not c.get("cost"):
        return []

    def num(x: Any) -> str:
        return "-" if x is None else f"{x:g}"

    def table(systems: Mapping[str, Mapping[str, Any]], strength: Mapping[str, float], indent: str = "  ") -> list[str]:
        lines = [f"{indent}{'system':<22} {'turns':>6} {'wins':>6} {'ties':>6} {'losses':>6} {'win rate':>9}"
                 f" {'95% interval':>16} {'strength':>9}"]
        for name, s in sorted(systems.items(), key=lambda kv: (-kv[1]["win_rate"], kv[0])):
            ci = "-" if s["ci95"] is None else f"{s['ci95'][0]:.3f}-{s['ci95'][1]:.3f}"
            lines.append(f"{indent}  {name:<20} {s['turns']:>6,} {s['wins']:>6,} {s['ties']:>6,} {s['losses']:>6,}"
                         f" {s['win_rate']:>9.3f} {ci:>16} {num(strength.get(name)):>9}")
        return lines

    ch = c["by_chooser"]
    lines = ["", "Comparisons", "-----------",
             f"  decided turns {c['turns']:,}: by a person {ch['human']:,} (edited {ch['human_edit']:,}),"
             f" by the judge {ch['judge']:,}"]
    if c["turns"]:
        lines += table(c["by_system"], c["strength"])
        for name in ("human", "judge"):
            part = c["choosers"][name]
            if part["turns"] and part["turns"] != c["turns"]:
                lines.append(f"  picked by {'a person' if name == 'human' else 'the judge'} ({part['turns']:,} turns)")
                lines += table(part["by_system"], part["strength"], "    ")
        for view, v in c["views"].items():
            if v["turns"]:
                rates = ", ".join(f"{k} {s['win_rate']:.3f}" for k, s in v["by_system"].items())
                lines.append(f"  {view.replace('_', ' '):<22} {v['turns']:>6,} turns: {rates}")
        if c["head_to_head"]:
            lines.append("  head to head (turns: wins each, ties)")
            for pair, h in c["head_to_head"].items():
                a, b = pair.split(" vs ")
                lines.append(f"    {pair:<40} {h['turns']:>6,}: {h[a]:,} / {h[b]:,}, ties {h['ties']:,}")
        ag = c["agreement"]
        if ag["n"]:
            lines.append(f"  a person's pick and the judge's: {ag['n']:,} turns, agreement {num(ag['agreement'])}")
        pa = c.get("pick_agreement") or {"n": 0}
        if pa["n"]:
            lines.append(f"  people's picks on overlap specs: {pa['n']:,} pairs of turns ({pa['specs']:,} specs),"
                         f" agreement {num(pa['agreement'])}; first request {pa['first_request']['n']:,} pairs,"
                         f" {num(pa['first_request']['agreement'])}")
    if c["cost"]:
        lines.append(f"  {'calls per system':<22} {'calls':>6} {'failed':>6} {'cost $':>10} {'median s':>9}")
        for name, k in c["cost"].items():
            lines.append(f"    {name:<20} {k['calls']:>6,} {k['failed']:>6,} {k['cost_usd']:>10.4f}"
                         f" {num(k['median_latency_s']):>9}")
    return lines


def plot_win_rates(ax: Any, stats: dict[str, Any]) -> None:
    """Win rates with their 95 % intervals, a bar per system, on a matplotlib axis."""
    systems = (stats.get("compare") or {}).get("by_system") or {}
    names = sorted(systems, key=lambda s: -systems[s]["win_rate"])
    rates = [systems[s]["win_rate"] for s in names]
    lo = [r - (systems[s]["ci95"] or [r, r])[0] for s, r in zip(names, rates)]
    hi = [(systems[s]["ci95"] or [r, r])[1] - r for s, r in zip(names, rates)]
    ax.bar(np.arange(len(names)), rates, 0.6, yerr=[lo, hi], capsize=4, color="tab:green")
    ax.set_xticks(np.arange(len(names)), names, rotation=30 if len(names) > 4 else 0, fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("win rate (ties count half)")
    ax.set_title("systems compared: win rate, 95% interval")


__all__ = ["compare_section", "render_compare", "plot_win_rates", "bradley_terry", "by_system",
           "head_to_head", "agreement", "pick_agreement", "cost"]
