"""Corpus statistics for ``itcollect stats``: the realised mix against the configured target, import
and export records, and the diversity of user requests.

Diversity, per instruction language, over the user requests (their own words: the source sentence
and quoted spans removed):

* ``distinct_1`` / ``distinct_2``: unique token unigrams / bigrams over all tokens (a token is a word,
  or one Han character), over every request;
* ``rouge_l_over_0_7``: the share of requests whose ROUGE-L F1 against some *other* request exceeds
  0.7. Exact repeats count directly; otherwise candidates come from MinHash LSH over token unigrams
  (Jaccard >= 0.4) and only candidates are scored, on a deterministic sample of at most
  ``sample`` requests per language, so 160K dialogues stay fast. ``sampled`` says how many.

``diversity_by_turn`` gives the same figures for the first requests and for the later ones apart,
and who wrote the first requests (``template``, ``model``, ``human``, ``imported``): 160K dialogues opened from
the templates share a few dozen openings, which the figures over all requests hide.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import numpy as np

from itcollect.config import Config
from itcollect.kernel.errors import ItcollectError
from itcollect.settings import settings
from itcollect.store.interfaces import StatsStore

ROUGE_THRESHOLD = 0.7


def _shares(weights: Mapping[str, float]) -> dict[str, float]:
    total = sum(weights.values()) or 1.0
    return {k: round(v / total, 4) for k, v in weights.items()}


def target_mix(config: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """The configured ``[mix]`` as shares (interaction types: of the turns after the first)."""
    mix = settings(config).mix
    return {"pair": _shares(mix.pairs), "instruction_lang": _shares(mix.instruction_langs),
            "turns": _shares(mix.turns), "interaction_type": _shares(mix.interaction_types)}


def mix_section(store: StatsStore, config: Mapping[str, Any]) -> dict[str, Any]:
    """{dimension: {value: {"count", "share", "target", "kept"}}} for pair, instruction_lang, turns,
    interaction_type and origin (origin has no target)."""
    done, kept = store.mix_counts_with_kept()
    filtered = store.latest_filter_run() is not None
    target = target_mix(config)
    out: dict[str, Any] = {}
    for dim in ("pair", "instruction_lang", "turns", "interaction_type", "origin"):
        counts = done.get(dim, {})
        total = sum(counts.values()) or 1
        tgt = target.get(dim, {})
        rows: dict[str, Any] = {}
        for key in list(counts) + [k for k in tgt if k not in counts]:
            row: dict[str, Any] = {"count": int(counts.get(key, 0)), "share": round(counts.get(key, 0) / total, 4)}
            if dim in target:
                row["target"] = tgt.get(key, 0.0)
            if filtered:
                row["kept"] = int(kept.get(dim, {}).get(key, 0))
            rows[key] = row
        out[dim] = rows
    return out


def _rouge_l(a: list[str], b: list[str]) -> float:
    """ROUGE-L F1 of two token lists (LCS by dynamic programming)."""
    if not a or not b:
        return 0.0
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    p, r = lcs / len(b), lcs / len(a)
    return 2 * p * r / (p + r)


def _sample_key(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


#: ``filter.dedup.lsh_params(0.4, 64)``, written out: computing it imports datasketch and scipy
#: and integrates for ~1.3 s, a fifth of ``stats`` on a large workspace (a test keeps it equal).
DIVERSITY_LSH = (16, 4)


def diversity_section(store: StatsStore, *, sample: int = 5000) -> dict[str, Any]:
    """Diversity of every request, per instruction language."""
    return diversity_sections(store, sample=sample)["all"]


def diversity_sections(store: StatsStore, *, sample: int = 5000) -> dict[str, Any]:
    """Diversity per instruction language of every request ("all"), of the first requests and of
    the later ones, in one pass over the store, and who wrote the first requests (``[simulate]
    first_turn``: a template, the annotator LLM, a person) — so the effect of LLM-written first
    requests shows beside the template's few dozen openings."""
    from itcollect.kernel.text import request_text, tokens_of

    groups: dict[str, dict[str, _Requests]] = {"all": {}, "first": {}, "later": {}}
    first_by: dict[str, int] = defaultdict(int)
    for lang, content, source, idx, by in store.iter_requests():
        lang = lang or "?"
        toks = tokens_of(request_text(content, source))
        if idx == 0:
            first_by[by] += 1
        if not toks:
            continue
        for name in ("all", "first" if idx == 0 else "later"):
            group = groups[name]
            (group.get(lang) or group.setdefault(lang, _Requests())).add(toks)
    out: dict[str, Any] = {name: {lang: group[lang].figures(sample) for lang in sorted(group)}
                           for name, group in groups.items()}
    out["first_written_by"] = dict(sorted(first_by.items()))
    return out


class _Requests:
    """The tokenised requests of one group and language, and their diversity figures."""

    def __init__(self) -> None:
        self.uni: set = set()
        self.bi: set = set()
        self.n_tok = self.n_bi = self.n_req = 0
        self.exact: dict[tuple, int] = {}

    def add(self, toks: list[str]) -> None:
        self.n_req += 1
        self.uni.update(toks)
        self.n_tok += len(toks)
        if len(toks) > 1:
            self.bi.update(zip(toks, toks[1:]))
            self.n_bi += len(toks) - 1
        t = tuple(toks)
        self.exact[t] = self.exact.get(t, 0) + 1

    def figures(self, sample: int) -> dict[str, Any]:
        from itcollect.kernel.minhash import MinHasher

        exact = self.exact
        # unique request texts; above `sample` of them, those with the smallest hash (deterministic)
        uniq = list(exact)
        if len(uniq) > sample:
            uniq = sorted(uniq, key=lambda t: _sample_key("\x1f".join(t)))[:sample]
        similar = np.zeros(len(uniq), dtype=bool)
        for i, t in enumerate(uniq):
            if exact[t] > 1:
                similar[i] = True
        if len(uniq) > 1:
            sigs = MinHasher(64, shingle=1).signatures_of_tokens([list(t) for t in uniq])
            bands, rows = DIVERSITY_LSH
            for b in range(bands):
                block = np.ascontiguousarray(sigs[:, b * rows:(b + 1) * rows])
                keys = block.view(np.dtype((np.void, block.dtype.itemsize * rows))).ravel()
                buckets: dict[object, list[int]] = defaultdict(list)  # keyed by the band's bytes
                for i, k in enumerate(keys.tolist()):
                    buckets[k].append(i)
                for members in buckets.values():
                    if len(members) < 2:
                        continue
                    for x, i in enumerate(members):
                        if similar[i]:
                            continue
                        for j in members[max(0, x - 10):x] + members[x + 1:x + 11]:
                            if _rouge_l(list(uniq[i]), list(uniq[j])) > ROUGE_THRESHOLD:
                                similar[i] = similar[j] = True
                                break
        # weight each unique text by how many requests it stands for (when not sampled)
        weights = np.array([exact[t] for t in uniq], dtype=np.float64)
        share = float((weights * similar).sum() / weights.sum()) if len(uniq) else 0.0
        return {
            "requests": self.n_req,
            "distinct_1": round(len(self.uni) / max(1, self.n_tok), 4),
            "distinct_2": round(len(self.bi) / max(1, self.n_bi), 4),
            "rouge_l_over_0_7": round(share, 4),
            "sampled": len(uniq),
        }


def corpus_sections(store: StatsStore, config: Config | None) -> dict[str, Any]:
    """The sections this module adds to ``stats --json``: mix, diversity, imports, exports."""
    cfg: Mapping[str, Any] = config or {}
    exports = store.list_exports()
    div = diversity_sections(store)
    return {
        "mix": mix_section(store, cfg),
        "diversity": div["all"],
        "diversity_by_turn": {"first": div["first"], "later": div["later"],
                              "first_written_by": div["first_written_by"]},
        "imports": store.import_totals(),
        "exports": {"total": len(exports),
                    "last": None if not exports else {k: exports[-1][k] for k in
                                                      ("out_dir", "formats", "filter_run_id", "created_at")}
                    | {"dialogues": exports[-1]["counts"].get("total", 0)}},
    }


def render_corpus(stats: dict[str, Any]) -> list[str]:
    """Text tables of the sections above (appended to ``stats`` output)."""
    lines: list[str] = []
    mix = stats.get("mix") or {}
    if any(r["count"] for dim in mix.values() for r in dim.values()):
        lines += ["", "Mix (finished dialogues) vs target", "----------------------------------"]
        for dim, rows in mix.items():
            lines.append(f"  {dim}")
            for key, r in rows.items():
                tgt = f"{r['target']:>7.1%}" if "target" in r else "      -"
                kept = f"  kept {r['kept']:>8,}" if "kept" in r else ""
                lines.append(f"    {key:<16} {r['count']:>9,}  {r['share']:>7.1%}  target {tgt}{kept}")
    div = stats.get("diversity") or {}
    if div:
        lines += ["", "Diversity of user requests", "--------------------------"]
        lines.append(f"  {'lang':<6} {'requests':>9} {'distinct-1':>11} {'distinct-2':>11} {'ROUGE-L>0.7':>12}")
        by_turn = stats.get("diversity_by_turn") or {}
        for groups, title in ((div, ""), (by_turn.get("first") or {}, "  first requests"),
                              (by_turn.get("later") or {}, "  later requests")):
            for lang, d in groups.items():
                lines.append(f"  {lang:<6} {d['requests']:>9,} {d['distinct_1']:>11.3f} {d['distinct_2']:>11.3f}"
                             f" {d['rouge_l_over_0_7']:>12.1%}{title}")
        written = by_turn.get("first_written_by") or {}
        if written:
            lines.append("  first requests written by: " + ", ".join(f"{k} {n:,}" for k, n in written.items()))
    imp = stats.get("imports") or {}
    if imp.get("runs"):
        lines += ["", "Imports", "-------",
                  f"  records {imp['records']:,}  imported {imp['imported']:,}  already present {imp['duplicates']:,}"]
        for reason, n in imp["bad"].items():
            lines.append(f"    {reason:<28} {n:>8,}")
    return lines


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend; only ``stats --plot`` needs it (the [plot] extra),
    so a missing matplotlib is a one-line error saying how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise ItcollectError("stats --plot needs matplotlib, which is not installed: "
                             "pip install 'itcollect[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_mix(stats: dict[str, Any], path: str) -> None:
    """Bars of the realised mix against the target, one panel per dimension, and, once answers are
    judged, the judge's score distribution in a panel beside them, and once systems were compared,
    their win rates with intervals (PNG via Agg)."""
    plt = pyplot()

    mix = stats.get("mix") or {}
    dims = [d for d in ("pair", "instruction_lang", "turns", "interaction_type", "origin") if mix.get(d)]
    scores = bool((stats.get("judge") or {}).get("histogram"))
    compared = bool((stats.get("compare") or {}).get("by_system"))
    side = scores or compared
    rows = max(1 + (scores and compared), len(dims))
    fig = plt.figure(figsize=(15 if side else 9, 2.6 * rows))
    grid = fig.add_gridspec(rows, 2 if side else 1, width_ratios=[9, 6] if side else [1])
    axes = np.array([[fig.add_subplot(grid[i, 0])] for i in range(rows)])
    half = rows // 2 if scores and compared else rows
    if scores:
        from itcollect.stats.judge import plot_scores

        plot_scores(fig.add_subplot(grid[:half, 1]), stats)
    if compared:  # systems compared turn by turn: their win rates with intervals
        from itcollect.stats.compare import plot_win_rates

        plot_win_rates(fig.add_subplot(grid[half if scores else 0:, 1]), stats)
    for ax in axes[len(dims):, 0]:  # rows the side panels need beyond the mix's
        ax.axis("off")
    for ax, dim in zip(axes[:, 0], dims):
        rows = mix[dim]
        keys = list(rows)
        x = np.arange(len(keys))
        has_target = any("target" in rows[k] for k in keys)
        ax.bar(x - 0.2 if has_target else x, [rows[k]["share"] for k in keys], 0.4, label="realised")
        if has_target:
            ax.bar(x + 0.2, [rows[k].get("target", 0.0) for k in keys], 0.4, label="target")
        ax.set_xticks(x, keys, rotation=30 if len(keys) > 6 else 0, fontsize=8)
        ax.set_ylabel("share")
        ax.set_title(dim.replace("_", " "))
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_compare(stats: dict[str, Any], path: str) -> None:
    """``stats --compare --plot``: the win rates of the compared systems alone (PNG via Agg)."""
    from itcollect.stats.compare import plot_win_rates

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    plot_win_rates(ax, stats)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
