"""``itcollect export --hf OUT``: the kept dialogues as files a trainer loads unchanged.

Layout of OUT (files of an earlier export in OUT are replaced):

* ``parquet/{split}-NNNNN-of-MMMMM.parquet`` — written incrementally with pyarrow (bounded memory);
* ``hf/`` — a ``datasets.DatasetDict`` (``save_to_disk``) built from those Parquet shards;
* ``sharegpt.json`` (train split; ``sharegpt_validation.json`` / ``sharegpt_test.json`` for the
  others) — FastChat's ``conversations`` of ``{from: human|gpt, value}``, system prompt in ``system``;
* ``dataset_info.json`` — LLaMA-Factory entries (sharegpt formatting, from/value tags) for those files;
* ``README.md`` — a Hugging Face dataset card with front matter and the corpus statistics.

Only dialogues the latest filter run kept are exported; a workspace that was never filtered is
refused with a message saying to run ``itcollect filter`` (export never filters implicitly: the
verdicts are something to look at first). Splits are assigned per *source group* (the source id,
or the normalised source text of an imported dialogue), stratified by language pair and
instruction language, so no source sentence appears in two splits.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from .checks import normalize_for_compare  # at the top: an import statement per call cost ~6 us of every row
from .errors import InputError
from .paging import default_workers, gc_paused, map_pages, page_bounds

SPLITS = ("train", "validation", "test")
_PAGE_SIZE = 2000  # dialogues a worker renders at a time
FORMATS = ("hf", "sharegpt", "llamafactory", "all")
DATASET_NAME = "itcollect"
#: json.dumps(..., ensure_ascii=False) builds an encoder per call; this one is built once
_JSON = json.JSONEncoder(ensure_ascii=False)
_json_str = json.encoder.encode_basestring  # what _JSON uses for a str (the C version when available)


def _schema():
    import pyarrow as pa

    s, ls = pa.string(), pa.list_(pa.string())
    return pa.schema([
        ("id", s),
        ("messages", pa.list_(pa.struct([("role", s), ("content", s)]))),
        ("source", s), ("source_id", s), ("docid", s),
        ("src_lang", s), ("tgt_lang", s), ("instruction_lang", s),
        ("interaction_types", ls),
        ("origin", s), ("annotator", s),
        ("models", ls), ("template_hashes", ls),
        ("created_at", s),
        ("n_user_turns", pa.int32()),
        ("user_turn_authors", ls), ("turn_models", ls), ("turn_templates", ls), ("turn_created_at", ls),
        ("origin_file", s), ("filter_run_id", pa.int64()),
    ])


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
                f" files: {', '.join(self.files)}")


def group_key(d: dict[str, Any]) -> str:
    """The unit a split is assigned to: one source sentence (by id, else by normalised text)."""
    return _group_key(d["id"], d.get("source_id"), d.get("source_text"))


def _group_key(did: str, source_id: str | None, source_text: str | None) -> str:
    if source_id:
        return "src:" + source_id
    if source_text:
        return "txt:" + hashlib.sha1(normalize_for_compare(source_text).encode("utf-8")).hexdigest()[:20]
    return "dlg:" + did


def _stratum(src: str | None, tgt: str | None, instr: str | None) -> str:
    return f"{src or '?'}-{tgt or '?'}|{instr or '?'}"


def assign_splits(groups: dict[str, Counter | str], validation_share: float, test_share: float,
                  seed: int = 0) -> dict[str, str]:
    """group key -> split. Groups are visited in a seeded pseudo-random order; a group goes to
    validation (then test) while its main stratum is below that split's quota, else to train.

    A group's strata are counted in a ``Counter``, or given as the stratum itself when the group is
    one dialogue (nearly every group: no ``Counter`` to build and rank for each, ~1.5 s at 160K).
    """
    size: dict[str, int] = {}
    for strata in groups.values():
        if type(strata) is str:
            size[strata] = size.get(strata, 0) + 1
        else:
            for s, n in strata.items():
                size[s] = size.get(s, 0) + n
    quota = {s: {"validation": n * validation_share, "test": n * test_share} for s, n in size.items()}
    filled: dict[str, dict[str, int]] = {s: {"train": 0, "validation": 0, "test": 0} for s in size}
    prefix = f"{seed}:".encode()
    blake2b, from_bytes = hashlib.blake2b, int.from_bytes  # the loop runs once per group

    def order(key: str) -> float:  # a seeded hash of the key in [0, 1)
        return from_bytes(blake2b(prefix + key.encode(), digest_size=8).digest(), "big") / 2 ** 64

    out: dict[str, str] = {}
    for key in sorted(groups, key=order):
        strata = groups[key]
        if type(strata) is str:
            main, n = strata, 1
        else:
            main = strata.most_common(1)[0][0]
            n = sum(strata.values())
        split = "train"
        for cand in ("validation", "test"):
            if filled[main][cand] + n <= quota[main][cand] + 0.5:
                split = cand
                break
        filled[main][split] += n
        out[key] = split
    return out


#: the turn columns :func:`build_row` reads (the renderer reads no others: ~15 us a dialogue less)
ROW_TURN_FIELDS = ("role", "content", "author", "model", "interaction_type", "template_name", "template_hash",
                   "created_at")


def build_row(d: dict[str, Any], turns: list[dict[str, Any]], system_prompt: str | None,
              run_id: int | None, gkey: str | None = None) -> dict[str, Any]:
    """One dataset row: the stored active turns in order, plus provenance (one pass over the turns)."""
    messages: list[dict[str, str]] = []
    models: list[str] = []
    hashes: list[str] = []
    itypes: list[str | None] = []
    authors: list[str | None] = []
    answer_models: list[str | None] = []
    templates: list[str | None] = []
    created: list[str | None] = []
    for t in turns:
        role = t["role"]
        messages.append({"role": role, "content": t["content"]})
        model, th = t.get("model"), t.get("template_hash")
        if model and model not in models:
            models.append(model)
        if th and th not in hashes:
            hashes.append(th)
        templates.append(t.get("template_name"))
        created.append(t.get("created_at"))
        if role == "user":
            itypes.append(t.get("interaction_type"))
            authors.append(t.get("author"))
        elif role == "assistant":
            answer_models.append(model)
            if itypes and itypes[-1] is None and t.get("interaction_type"):
                itypes[-1] = t["interaction_type"]  # the type may sit on the answer turn instead
    if itypes and itypes[0] is None and d.get("origin") != "imported":
        itypes[0] = "translate"
    if system_prompt and not (messages and messages[0]["role"] == "system"):
        messages.insert(0, {"role": "system", "content": system_prompt})
    return {
        "id": d["id"],
        "messages": messages,
        "source": d.get("source_text"),
        "source_id": d.get("source_id") or gkey or group_key(d),
        "docid": d.get("docid") or (d["meta"].get("docid") if isinstance(d.get("meta"), dict) else None),
        "src_lang": d.get("src_lang"), "tgt_lang": d.get("tgt_lang"),
        "instruction_lang": d.get("instruction_lang"),
        "interaction_types": itypes,
        "origin": d.get("origin"), "annotator": d.get("annotator"),
        "models": models, "template_hashes": hashes,
        "created_at": d.get("created_at"),
        "n_user_turns": len(itypes),
        "user_turn_authors": authors,
        "turn_models": answer_models,
        "turn_templates": templates,
        "turn_created_at": created,
        "origin_file": d.get("origin_file"),
        "filter_run_id": run_id,
    }


def sharegpt_record(row: dict[str, Any]) -> dict[str, Any]:
    """FastChat / LLaMA-Factory ShareGPT form of a row (system message -> ``system`` field)."""
    conv, system = [], None
    for m in row["messages"]:
        if m["role"] == "system":
            system = m["content"]
        else:
            conv.append({"from": "human" if m["role"] == "user" else "gpt", "value": m["content"]})
    rec: dict[str, Any] = {"id": row["id"], "conversations": conv}
    if system is not None:
        rec["system"] = system
    for key in _SHAREGPT_KEYS:
        rec[key] = row[key]
    return rec


_SHAREGPT_KEYS = ("src_lang", "tgt_lang", "instruction_lang", "origin", "source_id")


def _json_value(v: Any) -> str:
    return _json_str(v) if type(v) is str else _JSON.encode(v)


def sharegpt_json(row: dict[str, Any]) -> str:
    """``json.dumps(sharegpt_record(row), ensure_ascii=False)``, written directly: the strings are
    encoded by json's own C encoder, without building the record and walking it (it runs for every
    exported dialogue: ~30 -> ~10 us)."""
    conv = []
    system = None
    for m in row["messages"]:
        role = m["role"]
        if role == "system":
            system = m["content"]
        else:
            conv.append(('{"from": "human", "value": ' if role == "user" else '{"from": "gpt", "value": ')
                        + _json_value(m["content"]) + "}")
    parts = ['{"id": ', _json_value(row["id"]), ', "conversations": [', ", ".join(conv), "]"]
    if system is not None:
        parts += [', "system": ', _json_value(system)]
    for key in _SHAREGPT_KEYS:
        parts += [', "', key, '": ', _json_value(row[key])]
    parts.append("}")
    return "".join(parts)


def llamafactory_entry(file_name: str) -> dict[str, Any]:
    return {"file_name": file_name, "formatting": "sharegpt",
            "columns": {"messages": "conversations", "system": "system"},
            "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"}}


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M"


def rows_to_table(rows: list[dict[str, Any]], schema):
    """Rows -> Arrow table, column by column. Nested columns are assembled from flat value arrays
    and offsets, several times faster than ``Table.from_pylist`` on list-of-struct data."""
    import numpy as np
    import pyarrow as pa

    def offsets(lists: list[list]) -> Any:
        out = np.zeros(len(lists) + 1, dtype=np.int32)
        np.cumsum([len(x) for x in lists], out=out[1:])
        return pa.array(out)

    arrays = []
    for f in schema:
        values = [r[f.name] for r in rows]
        if f.name == "messages":
            roles = [m["role"] for ms in values for m in ms]
            contents = [m["content"] for ms in values for m in ms]
            struct = pa.StructArray.from_arrays([pa.array(roles, pa.string()), pa.array(contents, pa.string())],
                                                fields=list(f.type.value_type))
            arrays.append(pa.ListArray.from_arrays(offsets(values), struct, type=f.type))
        elif pa.types.is_list(f.type):
            flat = pa.array([v for x in values for v in x], f.type.value_type)
            arrays.append(pa.ListArray.from_arrays(offsets(values), flat, type=f.type))
        else:
            arrays.append(pa.array(values, f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


class _SplitWriter:
    """Parquet shards of one split, written a row group at a time."""

    def __init__(self, root: Path, split: str, total: int, shard_size: int, schema) -> None:
        self.root, self.split, self.schema = root, split, schema
        self.shard_size = max(1, shard_size)
        self.n_shards = max(1, -(-total // self.shard_size))
        self.shard = -1
        self.in_shard = 0
        self.writer = None
        self.buffer: list[dict[str, Any]] = []
        self.files: list[Path] = []
        self.count = 0

    def _open(self) -> None:
        import pyarrow.parquet as pq

        if self.writer is not None:
            self.writer.close()
        self.shard += 1
        path = self.root / f"{self.split}-{self.shard:05d}-of-{self.n_shards:05d}.parquet"
        self.files.append(path)
        self.writer = pq.ParquetWriter(str(path), self.schema, compression="zstd")
        self.in_shard = 0

    def add_table(self, table) -> None:
        """Append rows (an Arrow table), cutting shards at ``shard_size`` rows."""
        self.flush()
        while table.num_rows:
            if self.writer is None or self.in_shard >= self.shard_size:
                self._open()
            part = table.slice(0, self.shard_size - self.in_shard)
            self.writer.write_table(part)
            self.in_shard += part.num_rows
            self.count += part.num_rows
            table = table.slice(part.num_rows)

    def add(self, row: dict[str, Any]) -> None:
        if self.writer is None or self.in_shard + len(self.buffer) >= self.shard_size:
            self.flush()
            if self.writer is None or self.in_shard >= self.shard_size:
                self._open()
        self.buffer.append(row)
        self.count += 1
        if len(self.buffer) >= 2000:
            self.flush()

    def flush(self) -> None:

        if not self.buffer:
            return
        if self.writer is None:
            self._open()
        self.writer.write_table(rows_to_table(self.buffer, self.schema))
        self.in_shard += len(self.buffer)
        self.buffer = []

    def close(self) -> None:
        self.flush()
        if self.writer is not None:  # an empty split has no shard (datasets refuses empty data files)
            self.writer.close()
            self.writer = None


class _ShareGPTWriter:
    """A JSON array written one record at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fh = path.open("w", encoding="utf-8")
        self.fh.write("[")
        self.n = 0

    def add(self, rec: dict[str, Any]) -> None:
        self.fh.write(("\n" if self.n == 0 else ",\n") + json.dumps(rec, ensure_ascii=False))
        self.n += 1

    def add_text(self, text: str, n: int) -> None:
        """Append ``n`` records already serialised and joined with ",\\n"."""
        if n:
            self.fh.write(("\n" if self.n == 0 else ",\n") + text)
            self.n += n

    def close(self) -> None:
        self.fh.write("\n]\n" if self.n else "]\n")
        self.fh.close()


@dataclass
class _Page:
    table: Any  # every kept dialogue of the page, in order
    texts: list[str]  # the ShareGPT JSON of each (empty without ShareGPT output)
    ids: list[str]
    counts: dict[str, Counter]


_COUNT_KEYS = ("pair", "instruction_lang", "origin", "user_turns", "interaction_type")


def _count_row(counts: dict[str, Counter], row: dict[str, Any], k: int = 1) -> None:
    """Add (``k=-1``: take back) a row to the dataset card's counts."""
    counts["pair"][f"{row['src_lang']}-{row['tgt_lang']}"] += k
    counts["instruction_lang"][str(row["instruction_lang"])] += k
    counts["origin"][str(row["origin"])] += k
    counts["user_turns"][str(row["n_user_turns"])] += k
    for t in row["interaction_types"]:
        if t:
            counts["interaction_type"][str(t)] += k


class _Renderer:
    """Turns a page of kept dialogues into an Arrow table and ShareGPT text (split by the main
    process, so the workers can start before the split pass is done)."""

    def __init__(self, db_path: str, system_prompt: str | None, run_id: int, want_sharegpt: bool) -> None:
        self.db_path = db_path
        self.system_prompt = system_prompt
        self.run_id = run_id
        self.want_sharegpt = want_sharegpt
        self._store = None

    def page(self, bounds: tuple[int, int], store: Any = None) -> _Page:
        if store is None:
            if self._store is None:
                from .store import Store

                self._store = Store(self.db_path, migrate=False)
            store = self._store
        counts: dict[str, Counter] = {k: Counter() for k in _COUNT_KEYS}
        rows = []
        for d, turns in store.iter_corpus(kept_only=True, after=bounds[0], upto=bounds[1], turn_fields=ROW_TURN_FIELDS):
            row = build_row(d, turns, self.system_prompt, self.run_id)
            rows.append(row)
            _count_row(counts, row)
        texts = [sharegpt_json(r) for r in rows] if self.want_sharegpt else []
        return _Page(rows_to_table(rows, _schema()), texts, [r["id"] for r in rows], counts)


def _split_pass(store: Any, validation_share: float, test_share: float, seed: int) -> tuple[dict[str, int],
                                                                                          Counter]:
    """Pass 1: the split index of every kept dialogue (by its source group), and the split sizes."""
    groups: dict[str, Counter | str] = {}  # a group of one dialogue holds its stratum, see assign_splits
    ids: list[str] = []
    keys: list[str] = []
    for _rowid, did, sid, stext, src, tgt, instr in store.iter_kept_keys():
        key = _group_key(did, sid, stext)
        stratum = _stratum(src, tgt, instr)
        have = groups.get(key)
        if have is None:
            groups[key] = stratum
        else:  # a second dialogue of the group
            if type(have) is str:
                have = groups[key] = Counter({have: 1})
            have[stratum] += 1
        ids.append(did)
        keys.append(key)
    split_of = assign_splits(groups, validation_share, test_share, seed)
    del groups
    index = {s: i for i, s in enumerate(SPLITS)}
    split_by_id = {did: index[split_of[key]] for did, key in zip(ids, keys)}
    return split_by_id, Counter(SPLITS[i] for i in split_by_id.values())


def _formats(fmt: str) -> set[str]:
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r} (choose from {', '.join(FORMATS)})")
    return {"hf", "sharegpt", "llamafactory"} if fmt == "all" else {fmt}


def export_dataset(store: Any, config: dict[str, Any], out_dir: str | Path, *, fmt: str = "hf",
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


def _export_dataset(store: Any, config: dict[str, Any], out_dir: str | Path, *, fmt: str = "hf",
                    system_prompt: str | None = None, validation_share: float | None = None,
                    test_share: float | None = None, push_to_hub: str | None = None,
                    workers: int | None = None) -> ExportResult:
    from .progress import progress

    formats = _formats(fmt)
    ecfg = config.get("export", {})
    vs = ecfg.get("validation_share", 0.02) if validation_share is None else validation_share
    ts = ecfg.get("test_share", 0.02) if test_share is None else test_share
    if vs < 0 or ts < 0 or vs + ts >= 1:
        raise InputError("--validation-share and --test-share must be >= 0 and add up to less than 1")
    token = None
    if push_to_hub:
        token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
        if not token:
            raise InputError("--push-to-hub needs a Hugging Face token in the HF_TOKEN environment variable")
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

    out.mkdir(parents=True, exist_ok=True)
    for old in ("hf", "parquet"):
        if (out / old).exists():
            shutil.rmtree(out / old)
    for old in ("sharegpt.json", "sharegpt_validation.json", "sharegpt_test.json", "dataset_info.json"):
        if (out / old).exists():
            (out / old).unlink()
    pq_dir = out / "parquet"
    pq_dir.mkdir()
    schema = _schema()
    shard_size = int(ecfg.get("shard_size", 50000))
    sharegpt_names = {"train": "sharegpt.json", "validation": "sharegpt_validation.json",
                      "test": "sharegpt_test.json"}
    sg_writers: dict[str, _ShareGPTWriter] = {}
    want_sharegpt = bool(formats & {"sharegpt", "llamafactory"})

    counts: dict[str, Counter] = {k: Counter() for k in _COUNT_KEYS}
    # pass 2: rows, rendered a page at a time (in worker processes when there are several pages);
    # the workers start first, the split pass (pass 1) runs here meanwhile
    pages = page_bounds(rowids, _PAGE_SIZE)
    renderer = _Renderer(str(store.path), system_prompt, run["id"], want_sharegpt)
    workers = default_workers() if workers is None else max(1, workers)
    # importing datasets takes ~1.3 s: done while the workers render pages, not after them
    hf_import = partial(importlib.import_module, "datasets") if "hf" in formats or push_to_hub else None
    rendered = map_pages(renderer, pages, store, workers, meanwhile=hf_import)
    try:
        first = next(rendered, None)  # the workers render while the split pass runs here
        split_by_id, split_sizes = _split_pass(store, vs, ts, int(ecfg.get("split_seed", 0)))
        total = len(split_by_id)
        writers = {s: _SplitWriter(pq_dir, s, split_sizes.get(s, 0), shard_size, schema) for s in SPLITS}
        with progress(total=total, desc="export", unit=" dialogues") as bar:
            def take(page: _Page) -> None:
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
                for split_idx, idx in by_split.items():
                    split = SPLITS[split_idx]
                    writers[split].add_table(page.table if len(idx) == len(where) else page.table.take(idx))
                    if want_sharegpt:
                        if split not in sg_writers:
                            sg_writers[split] = _ShareGPTWriter(out / sharegpt_names[split])
                        sg_writers[split].add_text(",\n".join([page.texts[p] for p in idx]), len(idx))
                bar.update(len(where) - len(gone))

            if first is not None:
                take(first)
            for page in rendered:
                take(page)
    finally:
        rendered.close()
    for w in writers.values():
        w.close()
    files = ["parquet/"]
    if want_sharegpt:
        if "train" not in sg_writers:
            sg_writers["train"] = _ShareGPTWriter(out / sharegpt_names["train"])
        for w in sg_writers.values():
            w.close()
        files += sorted(sharegpt_names[s] for s in sg_writers)
    if "llamafactory" in formats:
        info = {DATASET_NAME if s == "train" else f"{DATASET_NAME}_{s}": llamafactory_entry(sharegpt_names[s])
                for s in SPLITS if s in sg_writers}
        (out / "dataset_info.json").write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n",
                                               encoding="utf-8")
        files.append("dataset_info.json")

    result_counts: dict[str, Any] = {
        "total": total, "splits": {s: writers[s].count for s in SPLITS},
        **{k: dict(sorted((+v).items())) for k, v in counts.items()},
        "filter": {"run_id": run["id"], "kept": run["kept"], "dropped": run["dropped"],
                   "reasons": store.filter_totals()["reasons"]},
    }
    if "hf" in formats or push_to_hub:
        _write_hf(out, writers)
        files.append("hf/")
    (out / "README.md").write_text(dataset_card(result_counts, config, formats, system_prompt, writers),
                                   encoding="utf-8")
    files.append("README.md")
    if push_to_hub:  # pragma: no cover - needs the network and a token; never run in tests
        import datasets

        datasets.load_from_disk(str(out / "hf")).push_to_hub(push_to_hub, token=token)
    export_id = store.record_export(out_dir=str(out.resolve()), formats=sorted(formats), filter_run_id=run["id"],
                                    counts=result_counts)
    return ExportResult(str(out), sorted(formats), result_counts, files, export_id)


def _write_hf(out: Path, writers: dict[str, _SplitWriter]) -> None:
    """``OUT/hf`` from the Parquet shards: converted to memory-mapped Arrow in a private cache (so
    parallel exports never share the user's HF cache), then ``save_to_disk``."""
    import tempfile

    import datasets

    from .progress import progress_enabled

    if not progress_enabled():
        datasets.disable_progress_bars()
    data_files = {s: [str(p) for p in w.files] for s, w in writers.items() if w.files}
    # a split without dialogues is left out: datasets can neither load nor reload an empty one
    with tempfile.TemporaryDirectory(prefix=".hf-cache-", dir=out) as cache:
        dd = datasets.load_dataset("parquet", data_files=data_files, cache_dir=cache)
        dd.save_to_disk(str(out / "hf"))
        del dd


def dataset_card(counts: dict[str, Any], config: dict[str, Any], formats: set[str], system_prompt: str | None,
                 writers: dict[str, _SplitWriter]) -> str:
    langs = sorted({x for p in counts["pair"] for x in p.split("-") if x not in ("None", "?")}
                   | {x for x in counts["instruction_lang"] if x not in ("None", "?")})
    license_ = config.get("export", {}).get("license", "cc-by-4.0")
    front = ["---", "language:"] + [f"- {x}" for x in langs] + [
        f"license: {license_}",
        "size_categories:", f"- {_size_category(counts['total'])}",
        "task_categories:", "- translation", "- text-generation",
        "tags:", "- interactive-translation", "- instruction-tuning", "- multi-turn", "- itcollect",
        "configs:", "- config_name: default", "  data_files:"]
    for s in SPLITS:
        if counts["splits"].get(s):
            front += [f"  - split: {s}", f"    path: parquet/{s}-*.parquet"]
    front.append("---")

    def table(title: str, data: dict[str, int], key: str, unit: str = "dialogues") -> list[str]:
        rows = [f"### {title}", "", f"| {key} | {unit} |", "|---|---:|"]
        rows += [f"| {k} | {v:,} |" for k, v in sorted(data.items(), key=lambda kv: (-kv[1], kv[0]))]
        return rows + [""]

    f = counts["filter"]
    body = [
        "", "# Interactive translation dialogues", "",
        "Multi-turn instruction-tuning dialogues in the style of BayLing: a user asks for the translation",
        "of a news sentence, then for revisions (terminology, style, length, corrections, other target",
        "languages) and follow-up questions. Built with itcollect.", "",
        "## Files", "",
        "- `parquet/{split}-*.parquet`: columns `id`, `messages` (list of `{role, content}`), `source`, "
        "`source_id`, `docid`, `src_lang`, `tgt_lang`, `instruction_lang`, `interaction_types`, `origin`, "
        "`annotator`, `models`, `template_hashes`, `created_at` and per-turn provenance.",
        "- `hf/`: the same as a `datasets.DatasetDict` (`datasets.load_from_disk`).",
    ]
    if formats & {"sharegpt", "llamafactory"}:
        body.append("- `sharegpt.json` (+ `_validation`/`_test`): FastChat ShareGPT conversations.")
    if "llamafactory" in formats:
        body.append("- `dataset_info.json`: LLaMA-Factory entries (sharegpt formatting).")
    if system_prompt:
        body.append(f"- Every dialogue starts with the system prompt: `{system_prompt}`")
    body += ["", "No source sentence appears in two splits (splits are assigned per source, stratified by",
             "language pair and instruction language).", "", "## Statistics", "",
             f"Dialogues: {counts['total']:,} (" + ", ".join(f"{s} {counts['splits'][s]:,}" for s in SPLITS) + ")",
             ""]
    body += table("Language pair", counts["pair"], "pair")
    body += table("Instruction language", counts["instruction_lang"], "language")
    body += table("Origin", counts["origin"], "origin")
    body += table("User turns", counts["user_turns"], "turns")
    body += table("Interaction types", counts["interaction_type"], "type", "user turns")
    body += ["## Filtering", "", f"Filter run {f['run_id']}: kept {f['kept']:,}, dropped {f['dropped']:,}.", ""]
    if f["reasons"]:
        body += table("Drop reasons", f["reasons"], "reason")
    return "\n".join(front + body) + "\n"
