"""``itcollect export --hf OUT``: the kept dialogues as files a trainer loads unchanged.

Layout of OUT (files of an earlier export in OUT are replaced), one writer each
(:mod:`.writers`; a new format is one class and one registry line there):

* ``parquet/{split}-NNNNN-of-MMMMM.parquet`` — written incrementally with pyarrow (bounded memory);
* ``hf/`` — a ``datasets.DatasetDict`` (``save_to_disk``) built from those Parquet shards;
* ``sharegpt.json`` (train split; ``sharegpt_validation.json`` / ``sharegpt_test.json`` for the
  others) — FastChat's ``conversations`` of ``{from: human|gpt, value}``, system prompt in ``system``;
* ``dataset_info.json`` — LLaMA-Factory entries (sharegpt formatting, from/value tags) for those files;
* ``dpo/`` — the preference rows of compared turns (``--format dpo``, and in ``all`` whenever
  comparisons exist; :mod:`.preferences`): a DatasetDict in the same splits, Parquet, LLaMA-Factory
  ShareGPT ranking files (entries ``itcollect_dpo*`` in ``dataset_info.json``), TRL KTO rows;
* ``README.md`` — a Hugging Face dataset card with front matter and the corpus statistics.

Only dialogues the latest filter run kept are exported; a workspace that was never filtered is
refused with a message saying to run ``itcollect filter`` (export never filters implicitly: the
verdicts are something to look at first). Splits are assigned per *source group* (the source id,
or the normalised source text of an imported dialogue), stratified by language pair and
instruction language, so no source sentence appears in two splits (:mod:`.splits`). Rows are
built by :mod:`.rows`.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from itcollect.config import Config
from itcollect.export.names import pseudonym, pseudonym_key
from itcollect.export.preferences import preference_rows
from itcollect.export.rows import (
    ROW_TURN_FIELDS,
    build_row,
    group_key,
    rows_to_table,
    schema,
    sharegpt_json,
    sharegpt_record,
)
from itcollect.export.writers import (
    FORMATS,
    WRITERS,
    ExportContext,
    ExportWriter,
    Page,
    ParquetShards,
    available_formats,
    page_renderings,
    selected_writers,
)
from itcollect.kernel.errors import InputError
from itcollect.kernel.paging import default_workers, gc_paused, map_pages, page_bounds
from itcollect.kernel.splits import SPLITS, assign_splits, split_pass
from itcollect.settings import settings
from itcollect.store.interfaces import ExportStore

_PAGE_SIZE = 2000  # dialogues a worker renders at a time


@dataclass
class ExportResult:
    out_dir: str
    formats: list[str]
    counts: dict[str, Any]
    files: list[str] = field(default_factory=list)
    export_id: int | None = None

    def summary(self) -> str:
        sp = self.counts["splits"]
        return (f"exported {self.counts['total']:,} dialogues to {self.out_dir} "
                f"(train {sp.get('train', 0):,}, validation {sp.get('validation', 0):,}, test {sp.get('test', 0):,});"
                f" files: {', '.join(self.files)}"
                + (f"; {self.counts['preferences']['rows']:,} preference rows" if "preferences" in self.counts else ""))


_COUNT_KEYS = ("pair", "instruction_lang", "origin", "user_turns", "interaction_type")
#: the card's LLM-judge counts: answers judged / unjudged, scores, judge models, error categories
_JUDGE_COUNT_KEYS = ("judge_answers", "judge_scores", "judge_models", "judge_errors")


def _count_row(counts: dict[str, Counter], row: dict[str, Any], k: int = 1) -> None:
    """Add (``k=-1``: take back) a row to the dataset card's counts."""
    counts["pair"][f"{row['src_lang']}-{row['tgt_lang']}"] += k
    counts["instruction_lang"][str(row["instruction_lang"])] += k
    counts["origin"][str(row["origin"])] += k
    counts["user_turns"][str(row["n_user_turns"])] += k
    for t in row["interaction_types"]:
        if t:
            counts["interaction_type"][str(t)] += k


def _count_judge(counts: dict[str, Counter], row: dict[str, Any], k: int = 1) -> None:
    """Add (``k=-1``: take back) a row's judge columns to the card's judge counts."""
    if row["judge_model"] is None:  # no answer of the dialogue is judged
        counts["judge_answers"]["unjudged"] += k * len(row["turn_judge_scores"])
        return
    for score, rating in zip(row["turn_judge_scores"], row["turn_judge_ratings"]):
        counts["judge_answers"]["judged" if score is not None or rating is not None else "unjudged"] += k
        if score is not None:
            counts["judge_scores"][repr(float(score))] += k
    for m in row["judge_model"].split(",") if row["judge_model"] else ():
        counts["judge_models"][m] += k
    for errs in row["turn_judge_errors"]:
        if errs:
            for e in json.loads(errs):
                counts["judge_errors"][e["category"]] += k


class _Renderer:
    """Turns a page of kept dialogues into an Arrow table and the writers' renderings (split by
    the main process, so the workers can start before the split pass is done)."""

    def __init__(self, db_path: str, system_prompt: str | None, run_id: int,
                 writers: list[type[ExportWriter]], judged: bool = True, preference_pairs: str | None = None,
                 pseudonym_key: bytes | None = None) -> None:
        self.db_path = db_path
        #: ``[export] annotator_names = "pseudonymise"``: the key of the annotators' pseudonyms
        self.pseudonym_key = pseudonym_key
        self.system_prompt = system_prompt
        self.run_id = run_id
        self.writers = writers
        self.judged = judged
        #: with the preference rows (``--format dpo``): which pairs a compared turn gives
        self.preference_pairs = preference_pairs
        self._store: ExportStore | None = None

    def page(self, bounds: tuple[int, int], store: ExportStore | None = None) -> Page:
        if store is None:
            if self._store is None:
                from itcollect.store import Store

                self._store = Store(self.db_path, migrate=False)
            store = self._store
        counts: dict[str, Counter] = {k: Counter() for k in (*_COUNT_KEYS, *_JUDGE_COUNT_KEYS)}
        rows = []
        # the page's judgements in one query (none on a workspace never judged)
        judgements = (store.current_judgements(after=bounds[0], upto=bounds[1], decode_errors=False)
                      if self.judged else None)
        pairs = self.preference_pairs
        compared = store.kept_comparisons(after=bounds[0], upto=bounds[1]) if pairs else {}
        fields = (*ROW_TURN_FIELDS, "idx") if pairs else ROW_TURN_FIELDS
        for d, turns in store.iter_corpus(kept_only=True, after=bounds[0], upto=bounds[1], turn_fields=fields):
            row = build_row(d, turns, self.system_prompt, self.run_id, judgements)
            if self.pseudonym_key is not None:
                row["annotator"] = pseudonym(self.pseudonym_key, row["annotator"])
            if pairs and d["id"] in compared:  # the preference rows of its compared turns, for the dpo writer
                row["_preferences"] = preference_rows(row, turns, compared[d["id"]], self.system_prompt, pairs)
            rows.append(row)
            _count_row(counts, row)
            _count_judge(counts, row)
        return Page(rows_to_table(rows, schema()), [r["id"] for r in rows], counts,
                    page_renderings(self.writers, rows))


def _formats(fmt: str) -> set[str]:
    known = available_formats()
    if fmt == "all":
        return set(known)
    if fmt not in known:
        raise InputError(f"unknown export format {fmt!r} (choose from {', '.join((*known, 'all'))})")
    return {fmt}


def export_dataset(store: ExportStore, config: Config, out_dir: str | Path, *, fmt: str = "hf",
                   system_prompt: str | None = None, validation_share: float | None = None,
                   test_share: float | None = None, push_to_hub: str | None = None,
                   workers: int | None = None) -> ExportResult:
    """Write the kept dialogues to ``out_dir`` in the requested formats; record the export.

    ``workers``: processes rendering pages of rows in parallel (default: usable cores, at most 4);
    the files are written by this process, in dialogue order, so the output does not depend on it.
    """
    with gc_paused():  # (and so in the forked workers)
        return _export_dataset(store, config, out_dir, fmt=fmt, system_prompt=system_prompt,
                               validation_share=validation_share, test_share=test_share,
                               push_to_hub=push_to_hub, workers=workers)


def _hub_token() -> str:
    """The Hugging Face token --push-to-hub needs, from the environment (never from the workspace)."""
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if not token:
        raise InputError("--push-to-hub needs a Hugging Face token in the HF_TOKEN environment variable")
    return token


def _clear_previous_export(out: Path) -> None:
    """An export replaces the files an earlier export left in the same folder (a format left out this
    time must not be mistaken for this export's)."""
    out.mkdir(parents=True, exist_ok=True)
    for old in ("hf", "parquet", "dpo"):
        if (out / old).exists():
            shutil.rmtree(out / old)
    for old in ("sharegpt.json", "sharegpt_validation.json", "sharegpt_test.json", "dataset_info.json"):
        if (out / old).exists():
            (out / old).unlink()


def _export_dataset(store: ExportStore, config: Config, out_dir: str | Path, *, fmt: str = "hf",
                    system_prompt: str | None = None, validation_share: float | None = None,
                    test_share: float | None = None, push_to_hub: str | None = None,
                    workers: int | None = None) -> ExportResult:
    from itcollect.kernel.progress import progress

    formats = _formats(fmt)
    if "dpo" in formats and not store.has_comparisons():
        if fmt != "all":
            raise InputError("no compared turns to export as preference rows: compare systems first "
                             "(simulate --compare A,B or session --compare A,B)")
        formats.discard("dpo")  # 'all' includes the preference rows whenever comparisons exist
    ecfg = settings(config).export
    vs = ecfg.validation_share if validation_share is None else validation_share
    ts = ecfg.test_share if test_share is None else test_share
    if vs < 0 or ts < 0 or vs + ts >= 1:
        raise InputError("--validation-share and --test-share must be >= 0 and add up to less than 1")
    token = _hub_token() if push_to_hub else None
    run = store.latest_filter_run()
    if run is None:
        raise InputError("no filter verdicts yet: run 'itcollect filter' before exporting "
                         "(only dialogues the filter kept are exported)")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError("exists and is not a folder", path=str(out))

    # pages of _PAGE_SIZE kept dialogues (the row groups of the files follow them)
    rowids = store.kept_rowids()
    if not rowids:
        raise InputError(f"the latest filter run ({run['id']}) kept no dialogues: nothing to export")

    _clear_previous_export(out)
    writer_classes = selected_writers(formats | ({"hf"} if push_to_hub else set()))

    counts: dict[str, Counter] = {k: Counter() for k in (*_COUNT_KEYS, *_JUDGE_COUNT_KEYS)}
    # rows, rendered a page at a time (in worker processes when there are several pages); the
    # workers start first, the split pass runs here meanwhile
    pages = page_bounds(rowids, _PAGE_SIZE)
    key = None
    if ecfg.annotator_names == "pseudonymise":
        path = getattr(config, "path", None)
        key = pseudonym_key(Path(path).parent if path else Path.cwd())
    renderer = _Renderer(store.target, system_prompt, run["id"], writer_classes, store.has_judgements(),
                         ecfg.preference_pairs if "dpo" in formats else None, key)
    workers = default_workers() if workers is None else max(1, workers)
    # importing datasets takes ~1.3 s: done while the workers render pages, not after them
    hf_import = partial(importlib.import_module, "datasets") if any(w.name == "hf" for w in writer_classes) else None
    rendered = map_pages(renderer, pages, store, workers, meanwhile=hf_import)
    try:
        first = next(rendered, None)  # the workers render while the split pass runs here
        split_by_id, split_sizes = split_pass(store.iter_kept_keys(), vs, ts, ecfg.split_seed)
        ctx = ExportContext(out, split_sizes, ecfg.shard_size, ecfg.license, system_prompt, formats)
        for cls in writer_classes:
            ctx.writers[cls.name] = cls(ctx)
        with progress(total=len(split_by_id), desc="export", unit=" dialogues") as bar:
            def take(page: Page) -> None:
                where = [split_by_id.get(i) for i in page.ids]
                by_split: dict[int, list[int]] = {}
                gone = []
                for pos, split_idx in enumerate(where):
                    if split_idx is None:  # kept after the split pass read (a concurrent filter run)
                        gone.append(pos)
                    else:
                        by_split.setdefault(split_idx, []).append(pos)
                for k, c in page.counts.items():
                    counts[k].update(c)
                for row in page.table.take(gone).to_pylist() if gone else ():
                    _count_row(counts, row, -1)
                    _count_judge(counts, row, -1)
                for split_idx, idx in by_split.items():
                    positions = None if len(idx) == len(where) else idx
                    for w in ctx.writers.values():
                        w.write(SPLITS[split_idx], page, positions)
                bar.update(len(where) - len(gone))

            if first is not None:
                take(first)
            for page in rendered:
                take(page)
    finally:
        rendered.close()
    parquet = ctx.writers["parquet"]
    assert isinstance(parquet, ParquetShards)
    result_counts: dict[str, Any] = {
        "total": len(split_by_id), "splits": parquet.counts(),
        **{k: dict(sorted((+v).items())) for k, v in counts.items()},
        "filter": {"run_id": run["id"], "kept": run["kept"], "dropped": run["dropped"],
                   "reasons": store.filter_totals()["reasons"]},
    }
    files: list[str] = []
    for w in ctx.writers.values():
        files += w.close(result_counts)
    if push_to_hub:  # pragma: no cover - needs the network and a token; never run in tests
        import datasets

        datasets.load_from_disk(str(out / "hf")).push_to_hub(push_to_hub, token=token)
    export_id = store.record_export(out_dir=str(out.resolve()), formats=sorted(formats), filter_run_id=run["id"],
                                    counts=result_counts)
    return ExportResult(str(out), sorted(formats), result_counts, files, export_id)


__all__ = ["export_dataset", "ExportResult", "FORMATS", "WRITERS", "SPLITS", "ExportWriter", "build_row",
           "sharegpt_record", "sharegpt_json", "assign_splits", "group_key", "ROW_TURN_FIELDS"]
