"""One filter run over every finished dialogue: rules, then exact and near-duplicate dedup.

Flow: the finished dialogues are cut into pages of consecutive rowids. Each page is judged on its
own (in worker processes when there is more than one page and more than one core; each worker reads
its pages from SQLite through its own connection): detect the language of turns without a cached
``detected_lang`` (written back by the main process, so the next run detects nothing), apply the
rules, and keep only what dedup needs (keep key, exact key, two MinHash signatures). Dedup then runs
in the main process among the dialogues that passed the rules, so a broken copy never displaces a
good one: first the copies of an overlap spec that no reviewer adjudicated yet (one is kept, by the
keep rule of dedup; the others are ``overlap_not_picked``: one spec, one dialogue in the corpus, as
the plan meant), then exact duplicates, then near-duplicates by user requests, then by whole
dialogue. The verdicts of the run replace the previous ones in one transaction. Nothing is deleted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import partial
from itertools import chain
from typing import Any

import numpy as np

from itcollect.config import Config
from itcollect.filter import dedup
from itcollect.filter.rules import (
    DialogueView,
    OverlapNotPicked,
    ReviewRejected,
    Thresholds,
    build_rules,
    check_dialogue,
    first_reference,
)
from itcollect.kernel.langid import detect_languages
from itcollect.kernel.minhash import MinHasher
from itcollect.kernel.paging import default_workers, gc_paused, map_pages, page_bounds
from itcollect.kernel.text import text_to_detect, tokens_of
from itcollect.settings import settings
from itcollect.store import dumps, loads
from itcollect.store.interfaces import FilterStore


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


@dataclass
class _PageResult:
    ids: list[str]
    spec_ids: list[int | None]
    reasons: list[list[str]]
    details: list[str]  # JSON, serialised in the worker (the main process only touches clustered ones)
    keep_keys: list[tuple]
    exact_keys: list[str]
    req_sigs: np.ndarray | None
    dia_sigs: np.ndarray | None
    langs: list[tuple[str, int]]


class _Judge:
    """Judges pages of dialogues; one per process."""

    def __init__(self, db_path: str | None, th: Thresholds, languages: tuple[str, ...], backend: str,
                 extras: dict[str, dict[str, dict[str, Any]]] | None = None) -> None:
        self.db_path = db_path
        # what the structure rules read from the store beyond the dialogue, by view.extra key ->
        # {dialogue id: details}: "overlap_pick" (copies a reviewer did not pick -> the pick),
        # "review_rejected" (dialogues a reviewer rejected -> who, and the note)
        self.extras = {key: by_id for key, by_id in (extras or {}).items() if by_id}
        self.th = th
        self.languages = languages
        self.backend = backend
        self.hasher = MinHasher(th.minhash_num_perm) if th.near_dup else None
        self.rules = build_rules(th)  # the rules that are on (judge rules are off by default)
        self.with_judgements = any(r.needs_judgements for r in self.rules)
        self._store: FilterStore | None = None

    def store(self) -> FilterStore:
        """This process's own connection (a page worker's), opened on first use."""
        if self._store is None:
            from itcollect.store import Store

            if self.db_path is None:
                raise ValueError("a judge without a database path judges only the pages it is given a store for")
            self._store = Store(self.db_path, migrate=False)
        return self._store

    def page(self, bounds: tuple[int, int], store: FilterStore | None = None) -> _PageResult:
        store = store if store is not None else self.store()
        items = list(store.iter_corpus(after=bounds[0], upto=bounds[1], slim=True, meta=self.th.min_chrf > 0))
        if self.with_judgements:  # one query a page, only when a judge rule is on
            judged = store.current_judgements(after=bounds[0], upto=bounds[1], decode_errors=False)
            for _, turns in items:
                for t in turns:
                    if t["role"] == "assistant":
                        t["judgement"] = judged.get(t["id"])
        return self.judge(items, store)

    def judge(self, items: list[tuple[dict[str, Any], list[dict[str, Any]]]], store: FilterStore) -> _PageResult:
        th = self.th
        todo: list[tuple[dict[str, Any], str]] = []
        for d, turns in items:
            for t in turns:
                if t.get("detected_lang") is None:
                    todo.append((t, text_to_detect(t, d.get("source_text"))))
        langs: list[tuple[str, int]] = []
        if todo:
            # normally done before the pages (detect_missing_languages); what is left (turns added
            # meanwhile) is detected in small batches, which stay off lingua's thread pool: this
            # may run in a forked worker
            texts = [x for _, x in todo]
            found = [lang for i in range(0, len(texts), 64)
                     for lang in detect_languages(texts[i:i + 64], self.languages, self.backend)]
            for (t, _), lang in zip(todo, found):
                t["detected_lang"] = lang or ""
                langs.append((lang or "", t["id"]))
        res = _PageResult([], [], [], [], [], [], None, None, langs)
        # the tokens of every non-system turn of the page, one after the other: each is hashed once
        # for both MinHash signatures (requests: the user turns; dialogue: all of them)
        body_tokens: list[list[str]] = []
        body_user: list[bool] = []
        body_counts: list[int] = []
        for d, turns in items:
            ref = None
            if th.min_chrf > 0:
                ref = d["meta"].get("reference") if isinstance(d["meta"].get("reference"), str) else None
                if ref is None and d.get("source_id"):
                    ref = first_reference(store.references_for(d["source_id"]), d.get("tgt_lang"))
            view = DialogueView(d, turns, [t["detected_lang"] or None for t in turns], reference=ref)
            for key, by_id in self.extras.items():
                if d["id"] in by_id:
                    view.extra[key] = by_id[d["id"]]
            reasons, detail = check_dialogue(view, self.rules)
            n_user = sum(1 for t in turns if t["role"] == "user")
            res.ids.append(d["id"])
            res.spec_ids.append(d.get("spec_id"))
            res.reasons.append(reasons)
            res.details.append(dumps(detail) if detail else "{}")
            res.keep_keys.append(dedup.keep_key(d.get("origin"), n_user, d.get("created_at"), d["id"]))
            if not view.tokens:  # structure rules stopped early: compute what dedup needs here
                view.tokens = [tokens_of(t["content"]) for t in turns]
            body = [k for k, t in enumerate(turns) if t["role"] != "system"]
            res.exact_keys.append(dedup.exact_key([turns[k] for k in body], [view.tokens[k] for k in body]))
            body_tokens += [view.tokens[k] for k in body]
            body_user += [turns[k]["role"] == "user" for k in body]
            body_counts.append(len(body))
        if self.hasher is not None:
            res.req_sigs, res.dia_sigs = self._signatures(body_tokens, body_user, body_counts)
        return res

    def _signatures(self, body_tokens: list[list[str]], body_user: list[bool],
                    body_counts: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """MinHash signatures of each dialogue's user requests and of its whole body (the same as
        ``signatures_of_tokens`` of the concatenated token lists; measured ~20 us a dialogue less)."""
        assert self.hasher is not None
        n = len(body_counts)
        lens = np.fromiter(map(len, body_tokens), dtype=np.int64, count=len(body_tokens))
        ids = self.hasher.token_ids(chain.from_iterable(body_tokens), int(lens.sum()))
        owner = np.repeat(np.arange(n), body_counts)  # dialogue of each turn
        user = np.array(body_user, dtype=bool)
        dia_lens = np.bincount(owner, weights=lens, minlength=n).astype(np.int64)
        req_lens = np.bincount(owner, weights=lens * user, minlength=n).astype(np.int64)
        req_ids = ids[np.repeat(user, lens)]
        return self.hasher.signatures_of_ids(req_ids, req_lens), self.hasher.signatures_of_ids(ids, dia_lens)


def detect_missing_languages(store: FilterStore, languages: tuple[str, ...], backend: str) -> int:
    """Detect and cache the language of every active turn of a finished dialogue that has none yet
    (in this process, before any worker is forked). Returns how many turns were detected."""
    n = 0
    for batch in store.iter_undetected_turns():
        texts = [text_to_detect({"role": role, "content": content}, source) for _tid, role, content, source in batch]
        found = detect_languages(texts, languages, backend)
        store.set_detected_langs([(lang or "", row[0]) for row, lang in zip(batch, found)])
        n += len(batch)
    return n


def run_filter(store: FilterStore, config: Config, *, near_dup: bool | None = None,
               page_size: int = 2000, workers: int | None = None, **overrides: Any) -> FilterResult:
    """Filter all finished dialogues with the thresholds of ``config['filter']``; store the verdicts.

    ``overrides``: ``[filter]`` keys to use instead of the config's for this run (the CLI's
    ``--near-dup-threshold``); ``near_dup`` is one of them. ``workers``: processes judging pages
    in parallel (default: the usable cores, at most 4; a corpus of one page is judged in this
    process).
    """
    if near_dup is not None:
        overrides["near_dup"] = near_dup
    with gc_paused():  # (and so in the forked workers)
        return _run_filter(store, config, overrides, page_size=page_size, workers=workers)


def _run_filter(store: FilterStore, config: Config, overrides: dict[str, Any], *,
                page_size: int, workers: int | None) -> FilterResult:
    from itcollect.kernel.progress import progress

    cfg = settings(config)
    th = cfg.filter if not overrides else cfg.filter.model_copy(update=overrides)
    languages = cfg.workspace.languages
    backend = cfg.ingest.langid_backend
    judge = _Judge(store.target, th, languages, backend,
                   {OverlapNotPicked.extra_key: store.overlap_not_picked(),
                    ReviewRejected.extra_key: store.review_rejections() if th.drop_review_rejected else {}})

    rowids = store.done_rowids()
    pages = page_bounds(rowids, page_size)
    total = len(rowids)
    del rowids
    workers = default_workers() if workers is None else max(1, workers)

    results: list[_PageResult] = []
    detected_total = detect_missing_languages(store, languages, backend)
    # the LSH band split needs datasketch's optimiser (importing it takes ~0.8 s): worked out (and
    # cached) while the workers judge pages, instead of after them
    lsh_setup = partial(dedup.lsh_params, th.near_dup_threshold, th.minhash_num_perm) if th.near_dup else None
    with progress(total=total, desc="filter", unit=" dialogues") as bar:
        for res in map_pages(judge, pages, store, workers, meanwhile=lsh_setup):
            if res.langs:
                store.set_detected_langs(res.langs)
                detected_total += len(res.langs)
                res.langs = []
            results.append(res)
            bar.update(len(res.ids))

    ids = [i for r in results for i in r.ids]
    spec_ids = [i for r in results for i in r.spec_ids]
    rule_reasons = [x for r in results for x in r.reasons]
    details = [x for r in results for x in r.details]
    keep_keys = [x for r in results for x in r.keep_keys]
    exact_keys = [x for r in results for x in r.exact_keys]
    n = len(ids)
    clusters: list[dict[str, str]] = [{} for _ in range(n)]
    dup_reasons: list[list[str]] = [[] for _ in range(n)]
    alive = [i for i in range(n) if not rule_reasons[i]]

    def apply(labels: list[int] | np.ndarray, members: list[int], code: str, tag: str) -> list[int]:
        """Mark all but the kept dialogue of each multi-member cluster; returns the survivors.

        A label is the position (in ``members``) of a cluster's first member, so cluster sizes are a
        bincount, and only the few dialogues in clusters of several are visited in Python."""
        labels = np.asarray(labels, dtype=np.int64)
        if not len(labels):
            return []
        clustered = np.flatnonzero(np.bincount(labels, minlength=len(labels))[labels] > 1).tolist()
        kept_of = dedup.pick_kept(labels[clustered], [keep_keys[members[pos]] for pos in clustered])
        dropped = set()
        for k, pos in enumerate(clustered):
            i = members[pos]
            clusters[i][tag] = ids[members[clustered[kept_of[k]]]]
            if kept_of[k] != k:
                dup_reasons[i].append(code)
                dropped.add(pos)
        return [i for pos, i in enumerate(members) if pos not in dropped] if dropped else list(members)

    # copies of one spec (overlap) not adjudicated: one kept, like a cluster of duplicates
    alive = apply(dedup.exact_groups(spec_ids[i] if spec_ids[i] is not None else f"d{i}" for i in alive), alive,
                  "overlap_not_picked", "overlap")
    alive = apply(dedup.exact_groups(exact_keys[i] for i in alive), alive, "duplicate", "exact")
    if th.near_dup and n:
        req_all = np.concatenate([r.req_sigs for r in results])
        dia_all = np.concatenate([r.dia_sigs for r in results])
        del results
        labels = dedup.near_duplicate_groups(req_all[alive], th.near_dup_threshold)
        alive = apply(labels, alive, "near_duplicate_requests", "requests")
        labels = dedup.near_duplicate_groups(dia_all[alive], th.near_dup_threshold)
        alive = apply(labels, alive, "near_duplicate_dialogue", "dialogue")

    verdicts = []
    reasons_count: Counter[str] = Counter()
    kept = 0
    for i in range(n):
        reasons = rule_reasons[i] + dup_reasons[i]
        detail = details[i]
        if clusters[i]:
            detail = dumps({**loads(detail, {}), "clusters": clusters[i]})
        cluster_id = next(iter(clusters[i].values()), None)
        ok = not reasons
        kept += ok
        if reasons:  # a Counter.update per kept dialogue cost ~0.5 s at 160K
            reasons_count.update(reasons)
        verdicts.append((ids[i], ok, reasons, cluster_id, detail))
    thresholds = th.model_dump()
    run_id = store.save_filter_run(thresholds, verdicts)
    return FilterResult(run_id, n, kept, n - kept, dict(reasons_count), detected_total, thresholds)
