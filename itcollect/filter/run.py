"""One filter run over every finished dialogue: rules, then exact and near-duplicate dedup.

Flow: stream the corpus page by page; detect the language of turns that have no cached
``detected_lang`` yet (one batch per page, written back so the next run detects nothing); apply the
rules; keep per dialogue only what dedup needs (keep key, exact key, two MinHash signatures). Dedup
runs among the dialogues that passed the rules, so a broken copy never displaces a good one:
exact duplicates first, then near-duplicates by user requests, then by whole dialogue. The verdicts
of the run replace the previous ones in one transaction. Nothing is deleted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..langid import detect_languages
from . import dedup
from .rules import DialogueView, Thresholds, check_dialogue, first_reference, norm, text_to_detect, tokens_of


@dataclass
class FilterResult:
    run_id: int
    total: int
    kept: int
    dropped: int
    reasons: dict[str, int]
    detected: int
    thresholds: dict[str, Any]

    def summary(self) -> str:
        lines = [f"filter run {self.run_id}: {self.total:,} dialogues, kept {self.kept:,}, dropped {self.dropped:,}"
                 f" (languages detected for {self.detected:,} turns)"]
        for reason, n in sorted(self.reasons.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  {reason:<26} {n:>9,}")
        return "\n".join(lines)


def run_filter(store: Any, config: dict[str, Any], *, near_dup: bool | None = None,
               page_size: int = 1000) -> FilterResult:
    """Filter all finished dialogues with the thresholds of ``config['filter']``; store the verdicts."""
    from ..progress import progress

    th = Thresholds.from_config(config.get("filter", {}))
    if near_dup is not None:
        th.near_dup = near_dup
    languages = tuple(config.get("workspace", {}).get("languages", ("en", "zh", "de", "fr")))
    backend = config.get("ingest", {}).get("langid_backend", "lingua")
    hasher = dedup.MinHasher(th.minhash_num_perm)

    ids: list[str] = []
    rule_reasons: list[list[str]] = []
    details: list[dict[str, Any]] = []
    keep_keys: list[tuple] = []
    exact_keys: list[str] = []
    req_sigs: list[np.ndarray] = []
    dia_sigs: list[np.ndarray] = []
    detected_total = 0

    total = store.dialogue_counts().get("by_status", {}).get("done", 0)
    bar = progress(total=total, desc="filter", unit=" dialogues")
    page: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []

    def process(page: list[tuple[dict[str, Any], list[dict[str, Any]]]]) -> int:
        # 1. languages not yet cached
        todo: list[tuple[dict[str, Any], str]] = []
        for d, turns in page:
            for t in turns:
                if t.get("detected_lang") is None:
                    todo.append((t, text_to_detect(t, d.get("source_text"))))
        if todo:
            found = detect_languages([x for _, x in todo], languages, backend)
            store.set_detected_langs([(lang, t["id"]) for (t, _), lang in zip(todo, found)])
            for (t, _), lang in zip(todo, found):
                t["detected_lang"] = lang or ""
        # 2. rules and dedup features
        req_tokens: list[list[str]] = []
        dia_tokens: list[list[str]] = []
        for d, turns in page:
            ref = None
            if th.min_chrf > 0:
                ref = d["meta"].get("reference") if isinstance(d["meta"].get("reference"), str) else None
                if ref is None and d.get("source_id"):
                    ref = first_reference(store.references_for(d["source_id"]), d.get("tgt_lang"))
            view = DialogueView(d, turns, [t["detected_lang"] or None for t in turns], reference=ref)
            reasons, detail = check_dialogue(view, th)
            n_user = sum(1 for t in turns if t["role"] == "user")
            ids.append(d["id"])
            rule_reasons.append(reasons)
            details.append(detail)
            keep_keys.append(dedup.keep_key(d.get("origin"), n_user, d.get("created_at"), d["id"]))
            body = [k for k, t in enumerate(turns) if t["role"] != "system"]
            if not view.norms:  # structure rules stopped early: compute what dedup needs here
                view.norms = [norm(t["content"]) for t in turns]
                view.tokens = [tokens_of(t["content"]) for t in turns]
            exact_keys.append(dedup.exact_key([turns[k] for k in body], [view.norms[k] for k in body]))
            if th.near_dup:
                req_tokens.append([w for k in body if turns[k]["role"] == "user" for w in view.tokens[k]])
                dia_tokens.append([w for k in body for w in view.tokens[k]])
        if th.near_dup:
            req_sigs.append(hasher.signatures_of_tokens(req_tokens))
            dia_sigs.append(hasher.signatures_of_tokens(dia_tokens))
        return len(todo)

    for item in store.iter_corpus(batch_size=page_size):
        page.append(item)
        if len(page) >= page_size:
            detected_total += process(page)
            bar.update(len(page))
            page = []
    if page:
        detected_total += process(page)
        bar.update(len(page))
    bar.close()

    n = len(ids)
    clusters: list[dict[str, str]] = [{} for _ in range(n)]
    dup_reasons: list[list[str]] = [[] for _ in range(n)]
    alive = [i for i in range(n) if not rule_reasons[i]]

    def apply(labels: list[int] | np.ndarray, members: list[int], code: str, tag: str) -> list[int]:
        """Mark all but the kept dialogue of each multi-member cluster; returns the survivors."""
        local_keys = [keep_keys[i] for i in members]
        kept_of = dedup.pick_kept(labels, local_keys)
        sizes = Counter(int(x) for x in labels)
        survivors = []
        for pos, i in enumerate(members):
            if sizes[int(labels[pos])] > 1:
                clusters[i][tag] = ids[members[kept_of[pos]]]
            if kept_of[pos] == pos:
                survivors.append(i)
            else:
                dup_reasons[i].append(code)
        return survivors

    alive = apply(dedup.exact_groups(exact_keys[i] for i in alive), alive, "duplicate", "exact")
    if th.near_dup and n:
        req_all = np.concatenate(req_sigs) if req_sigs else np.zeros((0, th.minhash_num_perm), np.uint32)
        dia_all = np.concatenate(dia_sigs) if dia_sigs else np.zeros((0, th.minhash_num_perm), np.uint32)
        labels = dedup.near_duplicate_groups(req_all[alive], th.near_dup_threshold)
        alive = apply(labels, alive, "near_duplicate_requests", "requests")
        labels = dedup.near_duplicate_groups(dia_all[alive], th.near_dup_threshold)
        alive = apply(labels, alive, "near_duplicate_dialogue", "dialogue")

    verdicts = []
    reasons_count: Counter[str] = Counter()
    kept = 0
    for i in range(n):
        reasons = rule_reasons[i] + dup_reasons[i]
        detail = dict(details[i])
        if clusters[i]:
            detail["clusters"] = clusters[i]
        cluster_id = next(iter(clusters[i].values()), None)
        ok = not reasons
        kept += ok
        reasons_count.update(reasons)
        verdicts.append((ids[i], ok, reasons, cluster_id, detail))
    thresholds = th.as_dict()
    run_id = store.save_filter_run(thresholds, verdicts)
    return FilterResult(run_id, n, kept, n - kept, dict(reasons_count), detected_total, thresholds)
