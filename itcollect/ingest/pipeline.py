"""The per-file ingest pipeline: read -> normalise -> filter -> identify language -> dedup -> store.

Each file reaches the store in one transaction: its rows are staged in a scratch database
(:meth:`Store.staged_ingest`) and merged at the end, so a file that turns out to be unusable
half-way (invalid UTF-8 on line 90,000, a truncated .gz, malformed XML) leaves the store exactly as
it was, while files ingested before it in the same command stay committed, and other writers wait
only for the merge. Records are processed in batches so language identification runs on many lines
at once and inserts use ``executemany``; nothing proportional to the file size is held in memory
(duplicates within the file are found through the store and the rows staged so far).

A record is counted once, for the first of these that applies (README "ingest" lists them):
``bad_record``, ``empty``, ``non_letters``, ``too_short`` / ``too_long``, ``wrong_language``,
``duplicate``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from itcollect.config import Config
from itcollect.ingest.readers import (
    FORMATS,
    READERS,
    InputFile,
    ReaderOptions,
    ReadStats,
    Record,
    Ref,
    format_from_name,
    lang_from_name,
    sniff_format,
)
from itcollect.kernel.errors import InputError
from itcollect.kernel.langid import detect_languages, is_chinese_script, letter_ratio
from itcollect.kernel.normalize import moses_normalize, pre_normalize
from itcollect.kernel.progress import progress
from itcollect.settings import settings
from itcollect.store import source_id_for
from itcollect.store.interfaces import IngestStagingArea, IngestStore

#: Every drop reason, in the order they are checked.
DROP_REASONS = ("bad_record", "empty", "non_letters", "too_short", "too_long", "wrong_language", "duplicate")

BATCH_SIZE = 2000
#: Line numbers of bad records kept for the report (the count is always complete).
MAX_BAD_EXAMPLES = 5

def norm_lang(code: str | None) -> str | None:
    """"zh-CN", "ZH_Hans", "zho"... -> "zh"; None stays None. Files spell languages many ways."""
    if not code:
        return None
    base = re.split(r"[-_]", code.strip().lower(), maxsplit=1)[0]
    return _ISO3.get(base, base)


_ISO3 = {"eng": "en", "zho": "zh", "chi": "zh", "cmn": "zh", "deu": "de", "ger": "de", "fra": "fr", "fre": "fr"}
#: Values of a language attribute or field that name no language: WMT's ``srclang="any"`` (a set
#: of documents in several languages), ISO 639-2's undetermined / multiple / no linguistic content.
_NOT_A_LANGUAGE = frozenset({"any", "all", "und", "mul", "zxx", "mis", "xx", "xxx", "unk", "auto", "mix"})


def declared_language(value: str | None, languages: tuple[str, ...]) -> str | None:
    """The language an in-file attribute or field declares, or None when it declares none.

    A workspace language (in any spelling :func:`norm_lang` knows) is a declaration. So is the code
    of another language (``srclang="cs"``): its lines are then all ``wrong_language``, which is
    right, since detection restricted to the workspace languages would call Czech something else.
    A value that is no language code (``any``, ``und``, ``mul``, a word) declares nothing, and the
    next source of truth decides (README "ingest", Languages)."""
    code = norm_lang(value)
    if code is None or code in languages:
        return code
    if len(code) in (2, 3) and code.isascii() and code.isalpha() and code not in _NOT_A_LANGUAGE:
        return code
    return None

_URL = re.compile(r"(?:https?://|www\.)\S+|\S+@\S+\.\w+")


@dataclass
class IngestSettings:
    """The [workspace]/[ingest] config values the pipeline needs."""

    languages: tuple[str, ...]
    backend: str
    min_chars_zh: int
    max_chars_zh: int
    min_words: int
    max_words: int
    min_letter_ratio: float
    moses: bool
    fast_langid: bool

    @classmethod
    def from_config(cls, config: Config | None = None) -> IngestSettings:
        """From the config's typed sections (the defaults without a config)."""
        s = settings(config or {})
        ing = s.ingest
        return cls(languages=s.workspace.languages, backend=ing.langid_backend, min_chars_zh=ing.min_chars_zh,
                   max_chars_zh=ing.max_chars_zh, min_words=ing.min_words, max_words=ing.max_words,
                   min_letter_ratio=ing.min_letter_ratio, moses=ing.moses_normalize,
                   fast_langid=ing.langid_fast_path)


@dataclass
class IngestOptions:
    """What the user said on the command line about the files."""

    fmt: str = "auto"
    lang: str | None = None
    ref_lang: str | None = None
    columns: list[str] | None = None
    text_field: str | None = None
    ref_field: str | None = None
    lang_field: str | None = None
    docid_field: str | None = None


@dataclass
class FileReport:
    path: str
    fmt: str
    records: int = 0
    kept: int = 0
    refs: int = 0
    dropped: Counter = field(default_factory=Counter)
    bad_examples: list[tuple[int | None, str]] = field(default_factory=list)
    skipped_docs: int = 0
    run_id: int | None = None
    #: e.g. every record dropped for one reason, with its likely cause (the CLI prints them on stderr)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "format": self.fmt, "records": self.records, "kept": self.kept,
                "refs": self.refs, "dropped": {r: n for r, n in sorted(self.dropped.items()) if n},
                "bad_records": [{"line": ln, "reason": why} for ln, why in self.bad_examples],
                "skipped_testsuite_docs": self.skipped_docs, "warnings": list(self.warnings)}


@dataclass
class IngestSummary:
    files: list[FileReport] = field(default_factory=list)
    failures: list[InputError] = field(default_factory=list)

    @property
    def kept(self) -> int:
        return sum(f.kept for f in self.files)

    @property
    def dropped(self) -> Counter:
        total: Counter = Counter()
        for f in self.files:
            total.update(f.dropped)
        return total


# -- inputs ----------------------------------------------------------------------------------------
def _sample_like(path: Path) -> bool:
    name = path.name
    if name.startswith(".") or name == "__init__.py" or name.upper().startswith("README"):
        return False
    return format_from_name(name) is not None


def expand_inputs(args: Iterable[str], base: Path | None = None) -> list[tuple[Path, str]]:
    """(path, display name) per input file. A folder means every ingestible file in it
    (recursively, sorted, skipping hidden files, README and __init__.py). A relative path that
    does not exist here but does under ``base`` (the ``-C`` workspace) is taken from there."""
    out: list[tuple[Path, str]] = []
    for arg in args:
        path = Path(arg)
        if not path.exists() and base is not None and not path.is_absolute() and (base / path).exists():
            path = base / path
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and _sample_like(p)
                           and not any(part.startswith(".") or part == "__pycache__"
                                       for part in p.relative_to(path).parts[:-1]))
            if not found:
                raise InputError("folder holds no ingestible files (.txt .tsv .csv .jsonl .sgm .xml, "
                                 "optionally .gz)", path=arg)
            out.extend((p, str(Path(arg) / p.relative_to(path))) for p in found)
        else:
            out.append((path, arg))
    return out


# -- the pipeline -----------------------------------------------------------------------------------
def _records(f: InputFile, fmt: str, opts: IngestOptions, stats: ReadStats,
             declared: str | None) -> Iterator[Record]:
    reader = READERS.get(fmt)
    if reader is None:
        raise InputError(f"unknown format {fmt!r} (one of: auto, {', '.join(FORMATS)})", path=f.display)
    ropts = ReaderOptions(columns=opts.columns, text_field=opts.text_field, ref_field=opts.ref_field,
                          lang_field=opts.lang_field, docid_field=opts.docid_field, ref_lang=opts.ref_lang,
                          declared=declared)
    return reader.read(f, ropts, stats)


#: Where a record's declared language came from, as the warnings name it (in-file: per format).
_BY_OPTION, _BY_NAME, _BY_ORIGLANG = "--lang", "the file name", "the documents' origlang"


class _Batcher:
    """Turns records into store rows for one file, batch by batch."""

    def __init__(self, staging: IngestStagingArea, settings: IngestSettings, report: FileReport,
                 forced: str | None, name_lang: str | None, name_ref_lang: str | None) -> None:
        self.staging = staging
        self.s = settings
        self.report = report
        self.forced = forced              # --lang: wins over everything
        self.name_lang = name_lang        # from the file name: loses to in-file declarations
        self.name_ref_lang = name_ref_lang
        self._declarations: dict[str | None, str | None] = {}
        #: (declared language, where from, detected language) of the wrong_language drops
        self.wrong: Counter = Counter()

    def _declared(self, value: str | None) -> str | None:
        """:func:`declared_language` of an attribute value, cached (a file repeats a few values)."""
        try:
            return self._declarations[value]
        except KeyError:
            lang = self._declarations[value] = declared_language(value, self.s.languages)
            return lang

    def declaration(self, rec: Record) -> tuple[str | None, str]:
        """(declared language or None, where it came from): ``--lang``; the file's own declaration
        (``srclang``, ``<src lang>``, a header, a ``lang`` field); the file name; the document's
        ``origlang``. A value that names no language (``srclang="any"``) is skipped."""
        if self.forced:
            return self.forced, _BY_OPTION
        lang = self._declared(rec.lang) if rec.lang else None
        if lang:
            return lang, (READERS[self.report.fmt].declares if self.report.fmt in READERS else "the file")
        if self.name_lang:
            return self.name_lang, _BY_NAME
        lang = self._declared(rec.origlang) if rec.origlang else None
        if lang:
            return lang, _BY_ORIGLANG
        return None, ""

    def drop(self, reason: str) -> None:
        self.report.dropped[reason] += 1

    def _length_reason(self, text: str, chinese: bool) -> str | None:
        s = self.s
        if chinese:
            n = len(text) - text.count(" ")  # pre-normalised: the only whitespace left is " "
            lo, hi = s.min_chars_zh, s.max_chars_zh
        else:
            n = text.count(" ") + 1
            lo, hi = s.min_words, s.max_words
        if n < lo:
            return "too_short"
        if n > hi:
            return "too_long"
        return None

    def process(self, batch: list[Record]) -> None:
        s = self.s
        report = self.report
        survivors: list[tuple[Record, str, bool]] = []
        for rec in batch:
            report.records += 1
            if rec.bad is not None:
                self.drop("bad_record")
                if len(report.bad_examples) < MAX_BAD_EXAMPLES:
                    report.bad_examples.append((rec.line, rec.bad))
                continue
            if rec.overlong:
                self.drop("too_long")
                continue
            text = pre_normalize(rec.text or "")
            if not text:
                self.drop("empty")
                continue
            masked = _URL.sub(lambda m: "#" * len(m.group()), text) if ("://" in text or "www." in text
                                                                      or "@" in text) else text
            # letters / non-space characters; combining marks only ever add letters, so the exact
            # letter_ratio is needed only when the quick count falls short
            nonspace = len(masked) - masked.count(" ")
            if sum(map(str.isalpha, masked)) < s.min_letter_ratio * nonspace and \
                    letter_ratio(masked) < s.min_letter_ratio:
                self.drop("non_letters")
                continue
            chinese = is_chinese_script(text)
            reason = self._length_reason(text, chinese)
            if reason:
                self.drop(reason)
                continue
            survivors.append((rec, text, chinese))
        if not survivors:
            return
        # detect_languages answers "zh" for Chinese-script text without asking a model (the same
        # is_chinese_script rule), so only the other lines are sent to it
        zh = "zh" if "zh" in s.languages else None
        others = [t for _, t, chinese in survivors if not chinese]
        found = iter(detect_languages(others, s.languages, s.backend, s.fast_langid) if others else ())
        detected = [zh if chinese else next(found) for _, _, chinese in survivors]
        rows: dict[str, tuple] = {}
        refs: list[tuple[str, Ref, str | None]] = []
        for (rec, text, _), lang in zip(survivors, detected):
            declared, by = self.declaration(rec)
            if lang is None or (declared is not None and lang != declared):
                self.drop("wrong_language")
                self.wrong[(declared, by, lang)] += 1
                continue
            final = moses_normalize(text, lang) if s.moses else text
            sid = source_id_for(final)
            if sid in rows:
                self.drop("duplicate")
            else:
                rows[sid] = (sid, final, lang, rec.docid, rec.origlang, rec.seg_id, report.path, rec.line)
            for ref in rec.refs:
                refs.append((sid, ref, lang))
        if rows:
            existing = self.staging.existing_source_ids(list(rows))
            new = [row for sid, row in rows.items() if sid not in existing]
            report.dropped["duplicate"] += len(rows) - len(new)
            self.staging.add_sources_batch(new)
            report.kept += len(new)
        if refs:
            self._store_refs(refs)

    def _store_refs(self, refs: list[tuple[str, Ref, str | None]]) -> None:
        """References of kept sources and of duplicates (a second test set may add one)."""
        s = self.s
        texts = [pre_normalize(ref.text) for _, ref, _ in refs]
        unknown = [i for i, (_, ref, _) in enumerate(refs) if not (ref.lang or self.name_ref_lang)]
        guessed = dict(zip(unknown, detect_languages([texts[i] for i in unknown], s.languages, s.backend,
                                                     s.fast_langid))) if unknown else {}
        rows = []
        for i, ((sid, ref, _src_lang), text) in enumerate(zip(refs, texts)):
            if not text:
                continue
            lang = norm_lang(ref.lang) or self.name_ref_lang or guessed.get(i) or "und"
            if s.moses:
                text = moses_normalize(text, lang)
            rows.append((sid, lang, text, ref.translator or ""))
        self.report.refs += self.staging.add_references_batch(rows)


def _resolve_format(f: InputFile, opts: IngestOptions) -> str:
    if opts.fmt != "auto":
        if opts.fmt == "tsv" and format_from_name(f.display) == "csv":
            return "csv"
        return opts.fmt
    return format_from_name(f.display) or format_from_name(f.path.name) or sniff_format(f.head, f.display)


def ingest_file(store: IngestStore, path: Path, display: str, settings: IngestSettings,
                opts: IngestOptions) -> FileReport:
    """Ingest one file (staged, then merged in one transaction); raises InputError (store unchanged)
    when unusable."""
    if opts.lang is not None and opts.lang not in settings.languages:
        raise InputError(f"--lang {opts.lang} is not a workspace language ({', '.join(settings.languages)})")
    f = InputFile(path, display)
    try:
        fmt = _resolve_format(f, opts)
        name_lang, name_ref = lang_from_name(path.name)
        if name_lang not in settings.languages:
            name_lang = None
        declared = opts.lang or name_lang
        report = FileReport(display, fmt)
        stats = ReadStats()
        records = _records(f, fmt, opts, stats, opts.lang)
        with store.staged_ingest() as staging, progress(total=f.size, unit="B", unit_scale=True,
                                                        desc=display[-30:], leave=False) as bar:
            store.tune_for_bulk_insert()
            # In-file declarations (<src lang>, srclang, a header's language, a JSON lang field) win
            # over the file name; --lang wins over everything.
            batcher = _Batcher(staging, settings, report, opts.lang, name_lang, opts.ref_lang or name_ref)
            while True:
                batch = list(islice(records, BATCH_SIZE))
                if not batch:
                    break
                batcher.process(batch)
                bar.update(f.raw_position() - bar.n)
            report.skipped_docs = stats.skipped_docs
            if report.records == 0:
                raise InputError("no sentences found" + (f" ({stats.skipped_docs} testsuite docs skipped)"
                                                         if stats.skipped_docs else ""), path=display)
            if report.dropped["bad_record"] and \
                    report.dropped["bad_record"] + report.dropped["empty"] == report.records:
                line, why = report.bad_examples[0]
                raise InputError(f"no usable records: all {report.records} are malformed (first: {why}); "
                                 f"wrong --format?", path=display, line=line)
            dropped = {r: n for r, n in report.dropped.items() if n}
            run_id, kept, refs = staging.merge(display, fmt, declared, opts.ref_lang or name_ref,
                                               lines=report.records, dropped=dropped)
            # another writer may have stored some of the same sentences meanwhile: duplicates now
            report.dropped["duplicate"] += report.kept - kept
            report.kept, report.refs, report.run_id = kept, refs, run_id
        warning = _one_reason_warning(report, batcher.wrong, settings)
        if warning:
            report.warnings.append(warning)
        return report
    finally:
        f.close()


def _one_reason_warning(report: FileReport, wrong: Counter, s: IngestSettings) -> str | None:
    """A warning when nothing was kept and every record (blank ones aside) was dropped for one
    reason: that is rarely the data, mostly a wrong declaration or option, so say which."""
    if report.kept or not report.records:
        return None
    reasons = [r for r, n in report.dropped.items() if n and r != "empty"]
    if len(reasons) > 1:
        return None
    reason = reasons[0] if reasons else "empty"
    n = report.dropped[reason]
    if n == 1:
        head = f"its only {'' if n == report.records else 'non-blank '}record was dropped as {reason}"
    else:
        head = f"all {n:,} {'' if n == report.records else 'non-blank '}records dropped as {reason}"
    if reason == "wrong_language":
        (declared, by, _), _ = wrong.most_common(1)[0]
        found: Counter = Counter()
        for (_, _, lang), k in wrong.items():
            found[lang or "none"] += k
        seen = ", ".join(f"{lang} ({k:,})" for lang, k in found.most_common())
        if declared is None:
            cause = (f"no workspace language ({', '.join(s.languages)}) fits them (detected: {seen}); "
                     f"are they in one of these languages at all?")
        elif declared not in s.languages:
            cause = (f"{by} declares {declared!r}, which is not a workspace language "
                     f"({', '.join(s.languages)}), so no line can be kept; if the lines are in one of "
                     f"them, give it with --lang")
        else:
            fix = "give the right one with --lang" if by == _BY_OPTION else \
                f"give the right one with --lang (it overrides {by})"
            cause = (f"they were held to {declared!r}, declared by {by}, and detected as {seen}: the "
                     f"declaration is probably wrong; {fix}")
    else:
        cause = {
            "duplicate": "every sentence is already in the store: the file (or one with the same "
                         "sentences) was ingested before",
            "too_short": f"under [ingest] min_words = {s.min_words} words (min_chars_zh = {s.min_chars_zh} "
                         f"for Chinese): not sentences, or the wrong column / field (--columns, --text-field)?",
            "too_long": f"over [ingest] max_words = {s.max_words} words (max_chars_zh = {s.max_chars_zh} "
                        f"for Chinese): text not split into one sentence a line, or the wrong --format?",
            "non_letters": "mostly digits, symbols or links: the wrong column / field (--columns, "
                           "--text-field) or --format?",
            "empty": "the sentence column / field is probably the wrong one (--columns, --text-field)",
        }.get(reason, "check the file and the options")
    return f"{head}: {cause}"


def ingest_paths(store: IngestStore, args: Iterable[str], settings: IngestSettings, opts: IngestOptions,
                 base: Path | None = None, on_file=None) -> IngestSummary:
    """Ingest every file (folders expanded); a failed file is recorded and the rest continue."""
    summary = IngestSummary()
    if opts.lang is not None and opts.lang not in settings.languages:
        raise InputError(f"--lang {opts.lang} is not a workspace language ({', '.join(settings.languages)})")
    for path, display in expand_inputs(args, base):
        try:
            report = ingest_file(store, path, display, settings, opts)
        except InputError as exc:
            if exc.path is None:
                exc = InputError(exc.message, path=display, line=exc.line)
            summary.failures.append(exc)
            if on_file:
                on_file(None, exc)
            continue
        summary.files.append(report)
        if on_file:
            on_file(report, None)
    return summary
