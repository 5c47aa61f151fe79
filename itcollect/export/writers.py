"""Export formats: one :class:`ExportWriter` per output, one line in :data:`WRITERS` each.

A writer sees every kept dialogue once, page by page and in dialogue order: ``render`` runs in the
worker process that built the page's rows (for per-row work such as serialising JSON), ``write``
runs in the main process with the positions of the page's rows that go to one split, and ``close``
finishes the files and names them. A writer may read what another wrote (``needs``: LLaMA-Factory's
``dataset_info.json`` points at the ShareGPT files).

To add a format: a subclass with a ``name``, registered in :data:`WRITERS`; ``--format NAME``
then selects it (the CLI's choices come from this registry).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from itcollect.export.rows import rows_to_table, schema, sharegpt_json
from itcollect.kernel.splits import SPLITS

DATASET_NAME = "itcollect"


@dataclass
class Page:
    """A page of kept dialogues, rendered: every row as Arrow, the writers' own renderings."""

    table: Any
    ids: list[str]
    counts: dict[str, Counter]
    rendered: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExportContext:
    """What every writer of one export shares."""

    out: Path
    split_sizes: Counter
    shard_size: int
    license: str
    system_prompt: str | None
    formats: set[str]
    writers: dict[str, ExportWriter] = field(default_factory=dict)


class ExportWriter:
    """One output of an export (see the module docstring)."""

    #: the --format name (also the key in WRITERS)
    name: ClassVar[str]
    #: written by every export, whatever --format says
    always: ClassVar[bool] = False
    #: writers whose output this one reads when it closes
    needs: ClassVar[tuple[str, ...]] = ()

    def __init__(self, ctx: ExportContext) -> None:
        self.ctx = ctx

    @staticmethod
    def render(rows: list[dict[str, Any]]) -> Any:
        """Per-page work done in the worker process (None: nothing to render)."""
        return None

    def write(self, split: str, page: Page, positions: list[int] | None) -> None:
        """The rows of ``page`` at ``positions`` (None: all of them) belong to ``split``."""

    def close(self, counts: dict[str, Any]) -> list[str]:
        """Finish; the paths written, relative to the output folder."""
        return []


class _Shards:
    """Parquet shards of one split, written a row group at a time."""

    def __init__(self, root: Path, split: str, total: int, shard_size: int, schema) -> None:
        self.root, self.split, self.schema = root, split, schema
        self.shard_size = max(1, shard_size)
        self.n_shards = max(1, -(-total // self.shard_size))
        self.shard = -1
        self.in_shard = 0
        self.writer: Any = None  # a pyarrow.parquet.ParquetWriter (pyarrow has no type information)
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
        while table.num_rows:
            if self.writer is None or self.in_shard >= self.shard_size:
                self._open()
            part = table.slice(0, self.shard_size - self.in_shard)
            self.writer.write_table(part)
            self.in_shard += part.num_rows
            self.count += part.num_rows
            table = table.slice(part.num_rows)

    def close(self) -> None:
        if self.writer is not None:  # an empty split has no shard (datasets refuses empty data files)
            self.writer.close()
            self.writer = None


class ParquetShards(ExportWriter):
    """``parquet/{split}-NNNNN-of-MMMMM.parquet``: every column, ``[export].shard_size`` rows a shard."""

    name = "parquet"
    always = True

    def __init__(self, ctx: ExportContext) -> None:
        super().__init__(ctx)
        root = ctx.out / "parquet"
        root.mkdir()
        sch = schema()
        self.splits = {s: _Shards(root, s, ctx.split_sizes.get(s, 0), ctx.shard_size, sch) for s in SPLITS}

    def write(self, split: str, page: Page, positions: list[int] | None) -> None:
        self.splits[split].add_table(page.table if positions is None else page.table.take(positions))

    def close(self, counts: dict[str, Any]) -> list[str]:
        for shards in self.splits.values():
            shards.close()
        return ["parquet/"]

    def counts(self) -> dict[str, int]:
        return {s: w.count for s, w in self.splits.items()}


class _JSONArray:
    """A JSON array written a page at a time."""

    def __init__(self, path: Path) -> None:
        self.fh = path.open("w", encoding="utf-8")
        self.fh.write("[")
        self.n = 0

    def add_text(self, text: str, n: int) -> None:
        """Append ``n`` records already serialised and joined with ",\\n"."""
        if n:
            self.fh.write(("\n" if self.n == 0 else ",\n") + text)
            self.n += n

    def close(self) -> None:
        self.fh.write("\n]\n" if self.n else "]\n")
        self.fh.close()


class ShareGPTFiles(ExportWriter):
    """``sharegpt.json`` (train), ``sharegpt_validation.json``, ``sharegpt_test.json``: FastChat's
    ``conversations`` of ``{from: human|gpt, value}``, the system prompt in ``system``."""

    name = "sharegpt"
    FILES = {"train": "sharegpt.json", "validation": "sharegpt_validation.json", "test": "sharegpt_test.json"}

    def __init__(self, ctx: ExportContext) -> None:
        super().__init__(ctx)
        self.files: dict[str, _JSONArray] = {}
        #: the splits whose file has a record with a ``system`` field (a system message in the row)
        self.with_system: set[str] = set()

    @staticmethod
    def render(rows: list[dict[str, Any]]) -> list[str]:
        return [sharegpt_json(r) for r in rows]

    def write(self, split: str, page: Page, positions: list[int] | None) -> None:
        texts = page.rendered[self.name]
        if split not in self.files:
            self.files[split] = _JSONArray(self.ctx.out / self.FILES[split])
        chosen = texts if positions is None else [texts[p] for p in positions]
        self.files[split].add_text(",\n".join(chosen), len(chosen))
        if chosen and split not in self.with_system and _has_system_message(page.table, positions):
            self.with_system.add(split)

    def close(self, counts: dict[str, Any]) -> list[str]:
        if "train" not in self.files:  # always a train file, even an empty one
            self.files["train"] = _JSONArray(self.ctx.out / self.FILES["train"])
        for f in self.files.values():
            f.close()
        return sorted(self.FILES[s] for s in self.files)

    def written(self) -> list[str]:
        """The splits with a file, in split order."""
        return [s for s in SPLITS if s in self.files]


def _has_system_message(table: Any, positions: list[int] | None) -> bool:
    """Whether a row of ``table`` (at ``positions``; None: any) has a system message."""
    import pyarrow as pa
    import pyarrow.compute as pc

    messages = table.column("messages")
    if positions is not None:
        messages = messages.take(pa.array(positions, type=pa.int64()))
    roles = pc.struct_field(pc.list_flatten(messages), "role")
    return bool(pc.any(pc.equal(roles, "system")).as_py())


def llamafactory_entry(file_name: str, system: bool = True, ranking: bool = False) -> dict[str, Any]:
    """The entry for a ShareGPT file; ``system``: its records may have a ``system`` field (LLaMA-Factory
    reads a declared column from every record and fails (KeyError) on a file where none has it);
    ``ranking``: a preference file (its ``chosen`` / ``rejected`` columns)."""
    columns = {"messages": "conversations", "system": "system"} if system else {"messages": "conversations"}
    entry: dict[str, Any] = {"file_name": file_name, "formatting": "sharegpt"}
    if ranking:
        entry["ranking"] = True
        columns.update({"chosen": "chosen", "rejected": "rejected"})
    entry.update({"columns": columns,
                  "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"}})
    return entry


class PreferencePairs(ExportWriter):
    """``dpo/``: the preference rows of the compared turns (:mod:`.preferences`), in the SFT rows'
    splits — a ``datasets.DatasetDict`` in ``dpo/`` itself (``save_to_disk``'s layout, streamed),
    Parquet ``dpo/parquet/{split}-00000-of-00001.parquet``, LLaMA-Factory's ShareGPT ranking files
    ``dpo/sharegpt.json`` (+ ``_validation`` / ``_test``) and TRL's KTO rows
    ``dpo/kto_{split}.jsonl``. The rows are built with the page (``_preferences`` of each row)."""

    name = "dpo"
    FILES = {"train": "dpo/sharegpt.json", "validation": "dpo/sharegpt_validation.json",
             "test": "dpo/sharegpt_test.json"}

    def __init__(self, ctx: ExportContext) -> None:
        from itcollect.export.preferences import schema as preference_schema

        super().__init__(ctx)
        self.root = ctx.out / "dpo"
        (self.root / "parquet").mkdir(parents=True)
        self.schema = preference_schema()
        # the split sizes of the rows are unknown until the end: one shard per split
        self.shards = {s: _Shards(self.root / "parquet", s, 0, 1 << 62, self.schema) for s in SPLITS}
        self.dataset = _ArrowDatasetDict(self.root, self.schema)
        self.sharegpt: dict[str, _JSONArray] = {}
        self.kto: dict[str, Any] = {}
        self.counts: dict[str, Counter] = {k: Counter() for k in ("splits", "by_chooser", "chosen_by_system",
                                                                   "rejected_by_system")}
        #: the splits whose ranking file has a record with a ``system`` field (see llamafactory_entry)
        self.with_system: set[str] = set()

    @staticmethod
    def render(rows: list[dict[str, Any]]) -> list[tuple[list[dict[str, Any]], list[str], list[str]]] | None:
        from itcollect.export.preferences import kto_lines, sharegpt_ranking_json

        if not any(r.get("_preferences") for r in rows):
            return None
        out = []
        for r in rows:
            prefs = r.get("_preferences") or []
            out.append((prefs, [sharegpt_ranking_json(p) for p in prefs], kto_lines(prefs)))
        return out

    def write(self, split: str, page: Page, positions: list[int] | None) -> None:
        rendered = page.rendered.get(self.name)
        if not rendered:
            return
        chosen = rendered if positions is None else [rendered[p] for p in positions]
        prefs = [p for rows, _, _ in chosen for p in rows]
        if not prefs:
            return
        table = rows_to_table(prefs, self.schema)
        self.shards[split].add_table(table)
        self.dataset.add_table(split, table)
        if split not in self.sharegpt:
            self.sharegpt[split] = _JSONArray(self.ctx.out / self.FILES[split])
            self.kto[split] = (self.root / f"kto_{split}.jsonl").open("w", encoding="utf-8")
        self.sharegpt[split].add_text(",\n".join(t for _, texts, _ in chosen for t in texts), len(prefs))
        self.kto[split].write("".join(line + "\n" for _, _, lines in chosen for line in lines))
        self.counts["splits"][split] += len(prefs)
        if split not in self.with_system and any(p["prompt"][0]["role"] == "system" for p in prefs):
            self.with_system.add(split)
        for p in prefs:
            self.counts["by_chooser"][p["chooser"]] += 1
            self.counts["chosen_by_system"][p["chosen_system"]] += 1
            self.counts["rejected_by_system"][p["rejected_system"]] += 1

    def close(self, counts: dict[str, Any]) -> list[str]:
        for shards in self.shards.values():
            shards.close()
        if "train" not in self.sharegpt:  # always a train file, even an empty one
            self.sharegpt["train"] = _JSONArray(self.ctx.out / self.FILES["train"])
            self.kto["train"] = (self.root / "kto_train.jsonl").open("w", encoding="utf-8")
        for f in self.sharegpt.values():
            f.close()
        for fh in self.kto.values():
            fh.close()
        self.dataset.close()  # (no rows: no DatasetDict, which datasets could neither write nor load)
        counts["preferences"] = {"rows": sum(self.counts["splits"].values()),
                                 **{k: dict(sorted(v.items())) for k, v in self.counts.items()}}
        return ["dpo/"]

    def written(self) -> list[str]:
        """The splits with a ShareGPT ranking file, in split order."""
        return [s for s in SPLITS if s in self.sharegpt]


class LlamaFactoryInfo(ExportWriter):
    """``dataset_info.json``: LLaMA-Factory entries ``itcollect``, ``itcollect_validation``,
    ``itcollect_test`` for the ShareGPT files, and with the preference rows ``itcollect_dpo``
    (+ ``_validation`` / ``_test``, ``"ranking": true``) for their ShareGPT ranking files."""

    name = "llamafactory"
    needs = ("sharegpt",)

    def close(self, counts: dict[str, Any]) -> list[str]:
        sharegpt = self.ctx.writers["sharegpt"]
        assert isinstance(sharegpt, ShareGPTFiles)
        info = {DATASET_NAME if s == "train" else f"{DATASET_NAME}_{s}":
                llamafactory_entry(ShareGPTFiles.FILES[s], system=s in sharegpt.with_system)
                for s in sharegpt.written()}
        dpo = self.ctx.writers.get("dpo")  # the preference rows, when exported beside
        if isinstance(dpo, PreferencePairs):
            info.update({f"{DATASET_NAME}_dpo" if s == "train" else f"{DATASET_NAME}_dpo_{s}":
                         llamafactory_entry(PreferencePairs.FILES[s], system=s in dpo.with_system, ranking=True)
                         for s in dpo.written()})
        (self.ctx.out / "dataset_info.json").write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n",
                                                        encoding="utf-8")
        return ["dataset_info.json"]


class _ArrowShards:
    """One split of ``hf/``: Arrow stream files written by ``datasets``' own ``ArrowWriter`` as the
    pages arrive, cut at ``datasets.config.MAX_SHARD_SIZE`` as ``save_to_disk`` cuts them."""

    def __init__(self, root: Path, split: str, features: Any, max_bytes: int) -> None:
        self.root, self.split, self.features, self.max_bytes = root, split, features, max_bytes
        self.writer: Any = None
        self.in_shard = 0  # bytes of the open shard
        self.parts: list[Path] = []
        self.rows = 0
        self.bytes = 0
        self.digest = hashlib.blake2b(split.encode(), digest_size=8)

    def add_table(self, table: Any) -> None:
        from datasets.arrow_writer import ArrowWriter

        if self.writer is not None and self.in_shard + table.nbytes > self.max_bytes:
            self._finish_shard()
        if self.writer is None:
            self.root.mkdir(parents=True, exist_ok=True)
            path = self.root / f"part-{len(self.parts):05d}.arrow"
            self.parts.append(path)
            self.writer = ArrowWriter(features=self.features, path=str(path), embed_local_files=True)
        self.writer.write_table(table)
        self.in_shard += table.nbytes
        for i in table.column("id").to_pylist():
            self.digest.update(i.encode())

    def _finish_shard(self) -> None:
        rows, size = self.writer.finalize()
        self.writer.close()
        self.writer = None
        self.rows += rows
        self.bytes += size
        self.in_shard = 0

    def close(self) -> None:
        """Name the shards as ``save_to_disk`` does and write its ``state.json`` and
        ``dataset_info.json`` (tests compare them with what ``save_to_disk`` writes)."""
        import datasets

        if self.writer is not None:
            self._finish_shard()
        n = len(self.parts)
        names = [f"data-{i:05d}-of-{n:05d}.arrow" for i in range(n)]
        for part, name in zip(self.parts, names):
            part.rename(self.root / name)
        state: dict[str, Any] = {"_data_files": [{"filename": name} for name in names],
                                 "_fingerprint": self.digest.hexdigest(), "_format_columns": None,
                                 "_format_kwargs": {}, "_format_type": None, "_output_all_columns": False,
                                 "_split": self.split}
        (self.root / datasets.config.DATASET_STATE_JSON_FILENAME).write_text(
            json.dumps(state, indent=2, sort_keys=True), encoding="utf-8")
        info = datasets.utils.py_utils.asdict(datasets.DatasetInfo(features=self.features, dataset_size=self.bytes))
        (self.root / datasets.config.DATASET_INFO_FILENAME).write_text(
            json.dumps({k: info[k] for k in sorted(info)}, indent=2), encoding="utf-8")


class _ArrowDatasetDict:
    """A ``datasets.DatasetDict`` folder as ``save_to_disk`` writes it, streamed a table at a time;
    a split without rows is left out (datasets can neither load nor reload an empty one)."""

    def __init__(self, root: Path, arrow_schema: Any) -> None:
        import datasets

        from itcollect.kernel.progress import progress_enabled

        if not progress_enabled():
            datasets.disable_progress_bars()
        features = datasets.Features.from_arrow_schema(arrow_schema)
        max_bytes = datasets.utils.py_utils.convert_file_size_to_int(datasets.config.MAX_SHARD_SIZE)
        self.root = root
        self.splits = {s: _ArrowShards(root / s, s, features, max_bytes) for s in SPLITS}

    def add_table(self, split: str, table: Any) -> None:
        self.splits[split].add_table(table)

    def close(self) -> list[str]:
        """Finish every split; the splits written (none: no folder at all)."""
        written = [s for s in SPLITS if self.splits[s].parts]
        for s in written:
            self.splits[s].close()
        if written:
            (self.root / "dataset_dict.json").write_text(json.dumps({"splits": written}), encoding="utf-8")
        return written


class HFDataset(ExportWriter):
    """``hf/``: a ``datasets.DatasetDict``, streamed page by page in ``save_to_disk``'s layout.

    Built from the Parquet shards by ``load_dataset`` + ``save_to_disk`` it re-read an Arrow copy of
    the whole corpus through a memory map: ~690 MB of the export's peak RSS at 480K dialogues."""

    name = "hf"

    def __init__(self, ctx: ExportContext) -> None:
        super().__init__(ctx)
        self.dataset = _ArrowDatasetDict(ctx.out / "hf", schema())

    def write(self, split: str, page: Page, positions: list[int] | None) -> None:
        self.dataset.add_table(split, page.table if positions is None else page.table.take(positions))

    def close(self, counts: dict[str, Any]) -> list[str]:
        self.dataset.close()
        return ["hf/"]


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M"


def dataset_card(counts: dict[str, Any], license_: str, formats: set[str], system_prompt: str | None) -> str:
    """A Hugging Face dataset card: front matter (languages, license, size, task, the Parquet
    configs) and the corpus statistics."""
    langs = sorted({x for p in counts["pair"] for x in p.split("-") if x not in ("None", "?")}
                   | {x for x in counts["instruction_lang"] if x not in ("None", "?")})
    front = ["---", "language:"] + [f"- {x}" for x in langs] + [
        f"license: {license_}",
        "size_categories:", f"- {_size_category(counts['total'])}",
        "task_categories:", "- translation", "- text-generation",
        "tags:", "- interactive-translation", "- instruction-tuning", "- multi-turn", "- itcollect",
        "configs:", "- config_name: default", "  data_files:"]
    for s in SPLITS:
        if counts["splits"].get(s):
            front += [f"  - split: {s}", f"    path: parquet/{s}-*.parquet"]
    prefs = counts.get("preferences") or {}
    if prefs.get("rows"):
        front += ["- config_name: preferences", "  data_files:"]
        for s in SPLITS:
            if prefs["splits"].get(s):
                front += [f"  - split: {s}", f"    path: dpo/parquet/{s}-*.parquet"]
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
    if "preferences" in counts:
        body.append("- `dpo/`: preference rows of the turns where several systems answered and a person or the "
                    "judge chose (`datasets.load_from_disk`, and `dpo/parquet/`): `prompt` (the messages up to the "
                    "request), `chosen` / `rejected` (one assistant message each), `chosen_system`, "
                    "`rejected_system`, `chooser`, judge scores and `margin`; `dpo/sharegpt*.json` for "
                    "LLaMA-Factory (`\"ranking\": true`), `dpo/kto_*.jsonl` (`prompt`, `completion`, `label`).")
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
    body += _judge_summary(counts)
    if "preferences" in counts:
        body += _preference_summary(counts["preferences"], table)
    return "\n".join(front + body) + "\n"


def _preference_summary(prefs: dict[str, Any], table: Any) -> list[str]:
    """The card's preference section: rows per split, per chooser, per chosen and rejected system."""
    lines = ["## Preference rows", "",
             f"Rows: {prefs['rows']:,} (" + ", ".join(f"{s} {prefs['splits'].get(s, 0):,}" for s in SPLITS) + "),"
             " one per compared turn with a strict winner and answer it beat (a person's pick overrides the"
             " judge's; a person's edit is chosen against every answer it replaced).", ""]
    lines += table("Chooser", prefs["by_chooser"], "chooser", "rows")
    lines += table("Chosen system", prefs["chosen_by_system"], "system", "rows")
    lines += table("Rejected system", prefs["rejected_by_system"], "system", "rows")
    return lines


def _judge_summary(counts: dict[str, Any]) -> list[str]:
    """The card's LLM-judge section (nothing when no exported answer is judged)."""
    answers = counts.get("judge_answers") or {}
    if not answers.get("judged"):
        return []
    scores = sorted(float(s) for s, n in (counts.get("judge_scores") or {}).items() for _ in range(int(n)))
    total = sum(answers.values())
    lines = ["## LLM judge", "",
             f"{answers['judged']:,} of {total:,} assistant answers are judged by "
             f"{', '.join(sorted(counts.get('judge_models') or {}))} (`itcollect judge`): translations get MQM error "
             f"spans and a score (0 = no error; minor -1, major -5, critical -25 by default), revisions their "
             f"compliance with the request, explanations and follow-ups a 1-5 rating. Per answer in the columns "
             f"`turn_judge_scores`, `turn_judge_errors` (JSON), `turn_compliance`, `turn_judge_ratings`, "
             f"`judge_model`.", ""]
    if scores:
        p10 = scores[max(0, math.ceil(0.1 * len(scores)) - 1)]
        lines += [f"Scores of {len(scores):,} translations: mean {sum(scores) / len(scores):.2f}, median "
                  f"{scores[len(scores) // 2]:g}, 10th percentile {p10:g}; "
                  f"{sum(1 for x in scores if x == 0) / len(scores):.0%} without any error.", ""]
    if counts.get("judge_errors"):
        rows = ["| category | errors |", "|---|---:|"]
        rows += [f"| {k} | {v:,} |" for k, v in sorted(counts["judge_errors"].items(), key=lambda kv: (-kv[1], kv[0]))]
        lines += ["### Error categories", "", *rows, ""]
    return lines


class DatasetCard(ExportWriter):
    """``README.md``: the Hugging Face dataset card."""

    name = "card"
    always = True

    def close(self, counts: dict[str, Any]) -> list[str]:
        text = dataset_card(counts, self.ctx.license, self.ctx.formats, self.ctx.system_prompt)
        (self.ctx.out / "README.md").write_text(text, encoding="utf-8")
        return ["README.md"]


#: Every writer, in the order they are written and closed (a writer after those it ``needs``).
WRITERS: dict[str, type[ExportWriter]] = {w.name: w for w in (
    ParquetShards, ShareGPTFiles, PreferencePairs, LlamaFactoryInfo, HFDataset, DatasetCard)}


def available_formats() -> tuple[str, ...]:
    """The ``--format`` choices (besides ``all``): the registered writers an export may leave out."""
    return tuple(name for name, w in WRITERS.items() if not w.always)


FORMATS: tuple[str, ...] = available_formats()


def selected_writers(formats: set[str]) -> list[type[ExportWriter]]:
    """The writers an export with ``formats`` runs: those always run, the chosen ones and what
    they need, in registry order."""
    names = set(formats) | {n for n, w in WRITERS.items() if w.always}
    todo = list(names)
    while todo:
        for need in WRITERS[todo.pop()].needs:
            if need not in names:
                names.add(need)
                todo.append(need)
    return [w for n, w in WRITERS.items() if n in names]


def page_renderings(writers: list[type[ExportWriter]], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Each writer's per-page rendering (in the worker process)."""
    out = {}
    for w in writers:
        if w.render is not ExportWriter.render:
            out[w.name] = w.render(rows)
    return out


__all__ = ["ExportWriter", "ExportContext", "Page", "WRITERS", "FORMATS", "available_formats", "selected_writers", "page_renderings",
           "ParquetShards", "ShareGPTFiles", "PreferencePairs", "LlamaFactoryInfo", "HFDataset", "DatasetCard", "dataset_card",
           "llamafactory_entry", "DATASET_NAME", "rows_to_table"]
