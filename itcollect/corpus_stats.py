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
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Any

import numpy as np

from .errors import ItcollectError
from .settings import settings
from .store.interfaces import StatsStore

ROUGE_THRESHOLD = 0.7


def _shares(weights: dict[str, float]) -> dict[str, float]:
    total = sum(weights.values()) or 1.0
    return {k: round(v / total, 4) for k, v in weights.items()}


def target_mix(config: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The configured ``[mix]`` as shares (interaction types: of the turns after the first)."""
    mix = settings(config).mix
    return {"pair": _shares(mix.pairs), "instruction_lang": _shares(mix.instruction_langs),
            "turns": _shares(mix.turns), "interaction_type": _shares(mix.interaction_types)}


def mix_section(store: StatsStore, config: dict[str, Any]) -> dict[str, Any]:
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
    from .filter.dedup import MinHasher
    from .filter.rules import request_text, tokens_of

    uni: dict[str, set] = defaultdict(set)
    bi: dict[str, set] = defaultdict(set)
    n_tok: dict[str, int] = defaultdict(int)
    n_bi: dict[str, int] = defaultdict(int)
    n_req: dict[str, int] = defaultdict(int)
    exact: dict[str, dict[tuple, int]] = defaultdict(dict)
    for lang, content, source in store.iter_requests():
        lang = lang or "?"
        toks = tokens_of(request_text(content, source))
        if not toks:
            continue
        n_req[lang] += 1
        uni[lang].update(toks)
        n_tok[lang] += len(toks)
        if len(toks) > 1:
            bi[lang].update(zip(toks, toks[1:]))
            n_bi[lang] += len(toks) - 1
        t = tuple(toks)
        exact[lang][t] = exact[lang].get(t, 0) + 1
    out: dict[str, Any] = {}
    hasher = MinHasher(64, shingle=1)
    for lang in sorted(n_req):
        # unique request texts; above `sample` of them, those with the smallest hash (deterministic)
        uniq = list(exact[lang])
        if len(uniq) > sample:
            uniq = sorted(uniq, key=lambda t: _sample_key("\x1f".join(t)))[:sample]
        similar = np.zeros(len(uniq), dtype=bool)
        for i, t in enumerate(uniq):
            if exact[lang][t] > 1:
                similar[i] = True
        if len(uniq) > 1:
            sigs = hasher.signatures_of_tokens([list(t) for t in uniq])
            bands, rows = DIVERSITY_LSH
            for b in range(bands):
                block = np.ascontiguousarray(sigs[:, b * rows:(b + 1) * rows])
                keys = block.view(np.dtype((np.void, block.dtype.itemsize * rows))).ravel()
                buckets: dict[bytes, list[int]] = defaultdict(list)
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
        weights = np.array([exact[lang][t] for t in uniq], dtype=np.float64)
        share = float((weights * similar).sum() / weights.sum()) if len(uniq) else 0.0
        out[lang] = {
            "requests": n_req[lang],
            "distinct_1": round(len(uni[lang]) / max(1, n_tok[lang]), 4),
            "distinct_2": round(len(bi[lang]) / max(1, n_bi[lang]), 4),
            "rouge_l_over_0_7": round(share, 4),
            "sampled": len(uniq),
        }
    return out


def corpus_sections(store: StatsStore, config: dict[str, Any] | None) -> dict[str, Any]:
    """The sections this module adds to ``stats --json``: mix, diversity, imports, exports."""
    config = config or {}
    exports = store.list_exports()
    return {
        "mix": mix_section(store, config),
        "diversity": diversity_section(store),
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
        for lang, d in div.items():
            lines.append(f"  {lang:<6} {d['requests']:>9,} {d['distinct_1']:>11.3f} {d['distinct_2']:>11.3f}"
                         f" {d['rouge_l_over_0_7']:>12.1%}")
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
    judged, the judge's score distribution in a panel beside them (PNG via Agg)."""
    plt = pyplot()

    mix = stats.get("mix") or {}
    dims = [d for d in ("pair", "instruction_lang", "turns", "interaction_type", "origin") if mix.get(d)]
    scores = bool((stats.get("judge") or {}).get("histogram"))
    rows = max(1, len(dims))
    fig = plt.figure(figsize=(15 if scores else 9, 2.6 * rows))
    grid = fig.add_gridspec(rows, 2 if scores else 1, width_ratios=[9, 6] if scores else [1])
    axes = np.array([[fig.add_subplot(grid[i, 0])] for i in range(rows)])
    if scores:
        from .judge.stats import plot_scores

        plot_scores(fig.add_subplot(grid[:, 1]), stats)
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
