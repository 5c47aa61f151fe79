"""``itcollect import``: bring existing dialogues into the store.

Accepted input (auto-detected from the first character of the file):

* JSONL, one record a line: ``{"messages": [{"role", "content"}, ...], ...metadata}`` or ShareGPT's
  ``{"conversations": [{"from": "human"|"gpt"|"system", "value"}, ...]}``;
* a JSON array of the same records (the usual ShareGPT dump), read as a stream.

Every file is checked (exists, not binary, UTF-8, starts like JSON) before anything is written, so an
unusable file leaves the store unchanged. A record that cannot be used is counted with a reason and
skipped; a usable one goes in whole (dialogue and turns in one transaction). The dialogue id is a
hash of the normalised messages, independent of file and line, so importing a file twice (or the
same dialogue from two files) adds it once.

Languages are detected per turn; the source sentence, the pair and the instruction language are
taken from the record's metadata when given, else inferred: the instruction language is that of the
first request without its quoted material, the source is the quoted (or after-the-colon, or last
paragraph) segment of the first request, the target is the language the first request names
("into German", "翻译成德语", "auf Deutsch", "en français": :func:`taxonomy.requested_language`),
or when it names none, the language of the first answer (``meta["tgt_lang_from"]`` records which).
"""

from __future__ import annotations

import codecs
import hashlib
import json
import re
import unicodedata
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

from itcollect.kernel.errors import InputError
from itcollect.kernel.jsonarray import iter_json_array
from itcollect.kernel.langid import detect_languages
from itcollect.kernel.normalize import normalize_whitespace_all
from itcollect.kernel.paging import default_workers, gc_paused, map_batches
from itcollect.store.imports import ImportRows, import_rows
from itcollect.store.interfaces import ImportStore

ROLE_ALIASES = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant",
                "chatgpt": "assistant", "bard": "assistant", "bing": "assistant", "model": "assistant",
                "system": "system"}
METADATA_LANG_KEYS = ("src_lang", "tgt_lang", "instruction_lang")
_QUOTED = re.compile(r"“([^”]+)”|\"([^\"]+)\"|「([^」]+)」|『([^』]+)』|«\s*([^»]+?)\s*»|„([^“”]+)[“”]")
_CHUNK = 1 << 20
#: Records per batch: the unit of work of a worker process.
BATCH = 1000
#: Dialogues per store transaction (each a whole dialogue with its turns): the ids are hashes, so
#: every insert lands at a random place of the indexes, and bigger transactions write each touched
#: page once for more rows (measured at 160K: 5,000 cost ~25% less SQLite CPU than 1,000).
WRITE_BATCH = 5000


class BadRecord(Exception):
    """A record that cannot be imported; ``reason`` is a stable code."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class ImportReport:
    path: str
    format: str
    records: int = 0
    imported: int = 0
    duplicates: int = 0
    bad: Counter = field(default_factory=Counter)
    bad_examples: list[tuple[int, str]] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{self.path}: {self.records:,} records, {self.imported:,} imported, "
                 f"{self.duplicates:,} already present"]
        if self.bad:
            parts.append(", bad: " + ", ".join(f"{r} {n:,}" for r, n in sorted(self.bad.items())))
            if self.bad_examples:
                parts.append(" (first: " + "; ".join(f"line {ln} {r}" for ln, r in self.bad_examples[:3]) + ")")
        return "".join(parts)


# -- file checks ---------------------------------------------------------------------------------
def check_file(path: Path) -> str:
    """Fail early and clearly on a file that cannot be read at all; returns the format.

    Reads the whole file once as bytes (bounded memory) so a bad byte deep in a big file is found
    before the store is touched.
    """
    if not path.exists():
        raise InputError("no such file", path=str(path))
    if not path.is_file():
        raise InputError("not a file", path=str(path))
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    first: str | None = None
    first_line = 1
    try:
        with path.open("rb") as fh:
            while True:
                chunk = fh.read(_CHUNK)
                if not chunk:
                    break
                if b"\x00" in chunk:
                    nl = chunk[:chunk.index(b"\x00")].count(b"\n")
                    raise InputError("binary file (NUL byte), expected JSON or JSONL", path=str(path),
                                     line=line + nl)
                try:
                    text = decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    nl = chunk[:exc.start].count(b"\n")
                    raise InputError(f"not UTF-8 (byte 0x{chunk[exc.start]:02x})", path=str(path),
                                     line=line + nl) from None
                if first is None:
                    stripped = text.lstrip("\ufeff \t\r\n")
                    if stripped:
                        first = stripped[0]
                        first_line = line + text[:len(text) - len(stripped)].count("\n")
                line += chunk.count(b"\n")
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                raise InputError("not UTF-8 (truncated character at the end)", path=str(path), line=line) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", path=str(path)) from None
    if first is None:
        return "empty"
    if first == "[":
        return "json"
    if first == "{":
        return "jsonl"
    raise InputError(f"not JSON or JSONL (starts with {first!r}); expected {{\"messages\": [...]}} records "
                     "or a ShareGPT JSON array", path=str(path), line=first_line)


def _iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open("r", encoding="utf-8-sig") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError:
                yield lineno, BadRecord("not_json")


def _iter_json_array(path: Path) -> Iterator[tuple[int, Any]]:
    """Stream the elements of a top-level JSON array without loading the file."""
    with path.open("r", encoding="utf-8-sig") as fh:
        yield from iter_json_array(fh.read, BadRecord, chunk=_CHUNK)


def iter_records(path: Path, fmt: str) -> Iterator[tuple[int, Any]]:
    if fmt == "json":
        return _iter_json_array(path)
    if fmt == "jsonl":
        return _iter_jsonl(path)
    return iter(())


# -- record parsing ------------------------------------------------------------------------------
def parse_record(rec: Any) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """(messages as [{role, content}], metadata) of one record, or BadRecord with the reason."""
    if isinstance(rec, BadRecord):
        raise rec
    if not isinstance(rec, dict):
        raise BadRecord("not_an_object")
    if "messages" in rec:
        raw, rkey, ckey = rec["messages"], "role", "content"
    elif "conversations" in rec:
        raw, rkey, ckey = rec["conversations"], "from", "value"
    else:
        raise BadRecord("no_messages")
    if not isinstance(raw, list) or not raw:
        raise BadRecord("no_messages")
    messages: list[dict[str, str]] = []
    for m in raw:
        if not isinstance(m, dict):
            raise BadRecord("bad_message")
        r = m[rkey] if rkey in m else m.get("role", "")
        role = ROLE_ALIASES.get(r if isinstance(r, str) and r in ROLE_ALIASES else str(r).strip().lower())
        if role is None:
            raise BadRecord("bad_role")
        content = m[ckey] if ckey in m else m.get("content")
        if not isinstance(content, str):
            raise BadRecord("bad_content")
        if not content.isascii():  # ASCII is NFC already
            content = unicodedata.normalize("NFC", content)
        content = content.strip()
        if not content:
            raise BadRecord("empty_content")
        messages.append({"role": role, "content": content})
    system = [m for m in messages if m["role"] == "system"]
    if system and (messages[0]["role"] != "system" or len(system) > 1):
        raise BadRecord("misplaced_system")
    body = messages[1:] if system else messages
    if not body:
        raise BadRecord("no_messages")
    for i, m in enumerate(body):
        if m["role"] != ("user" if i % 2 == 0 else "assistant"):
            raise BadRecord("roles_not_alternating")
    if len(body) < 2:
        raise BadRecord("no_answer")
    if body[-1]["role"] != "assistant":
        raise BadRecord("unanswered_last_turn")
    meta = {k: v for k, v in rec.items() if k not in ("messages", "conversations")}
    if "system" in rec and isinstance(rec["system"], str) and rec["system"].strip() and not system:
        messages.insert(0, {"role": "system", "content": rec["system"].strip()})
        meta.pop("system", None)
    return messages, meta


def dialogue_id_for(messages: Sequence[dict[str, str]]) -> str:
    """Stable id from the normalised content (role + whitespace-normalised text of each turn)."""
    # one update of the whole text hashes the same bytes as an update per piece, with fewer calls
    contents = normalize_whitespace_all([m["content"] for m in messages])
    text = "".join([f"{m['role']}\x1f{c}\x1e" for m, c in zip(messages, contents)])
    return "imp-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def split_source(request: str) -> tuple[str, str]:
    """(source sentence, instruction text) of a first request.

    The source is the longest quoted span when there is one, else what follows the last colon or
    line break, else the whole request (and the instruction text is then empty).
    """
    spans = [(next(g for g in m.groups() if g).strip(), m) for m in _QUOTED.finditer(request)]
    spans = [(q, m) for q, m in spans if len(q) >= 8]
    if spans:
        src, m = max(spans, key=lambda qm: len(qm[0]))
        return src, (request[:m.start()] + " " + request[m.end():]).strip()
    for sep in ("\n", "：", ":"):
        if sep in request:
            head, _, tail = request.rpartition(sep) if sep != "\n" else request.partition(sep)
            if tail.strip() and head.strip():
                return tail.strip(), head.strip()
    return request.strip(), ""


def given_source(meta: dict[str, Any], first_request: str) -> str | None:
    """The source sentence named by the metadata: ``source_text``, or ``source`` when it occurs in
    the first request (elsewhere ``source`` often names the corpus a record came from)."""
    text = meta.get("source_text")
    if isinstance(text, str) and text.strip():
        return text.strip()
    text = meta.get("source")
    if isinstance(text, str) and text.strip() and text.strip() in first_request:
        return text.strip()
    return None


def _as_lang(value: Any, languages: Sequence[str]) -> str | None:
    if isinstance(value, str):
        v = value.strip().lower().replace("_", "-").split("-")[0]
        if v in languages:
            return v
    return None


def build_dialogue(messages: list[dict[str, str]], meta: dict[str, Any], langs: list[str | None],
                   src_lang_guess: str | None, instr_lang_guess: str | None, source: str,
                   languages: Sequence[str], requested_tgt: str | None = None) -> dict[str, Any]:
    """The dialogue record for the store (languages from metadata first, else inferred).

    The target: the metadata's ``tgt_lang``; else the language the first request names
    (``requested_tgt``, "Translate into German"), so that an answer in another language is judged
    against it instead of defining it; else the first answer's language. ``meta["tgt_lang_from"]``
    says which ("metadata", "request", "answer")."""
    first_answer = next((i for i, m in enumerate(messages) if m["role"] == "assistant"), None)
    tgt = _as_lang(meta.get("tgt_lang"), languages)
    if tgt is not None:
        way = "metadata"
    elif requested_tgt is not None:
        tgt, way = requested_tgt, "request"
    else:
        tgt, way = (langs[first_answer] if first_answer is not None else None), "answer"
    return {
        "src_lang": _as_lang(meta.get("src_lang"), languages) or src_lang_guess,
        "tgt_lang": tgt,
        "instruction_lang": _as_lang(meta.get("instruction_lang"), languages) or instr_lang_guess,
        "source_text": source.strip(),
        "annotator": meta.get("annotator") if isinstance(meta.get("annotator"), str) else None,
        "meta": {**meta, "tgt_lang_from": way},
    }


# -- the run -------------------------------------------------------------------------------------
def import_files(store: ImportStore, paths: Sequence[str | Path], *, languages: Sequence[str] = ("en", "zh", "de", "fr"),
                 backend: str = "lingua", workers: int | None = None, fast: bool = True) -> list[ImportReport]:
    """Import every file; all files are checked before the first write. Returns one report per file.

    ``workers``: processes preparing batches of records (parsing, language detection) while this
    one writes them, in file order (default: the usable cores, at most 4; a file of one batch is
    prepared in this process). ``fast=False`` is the reference the fast path is tested against:
    one process, every text detected as it comes (no cache of repeated texts); same results.
    """
    checked = [(Path(p), check_file(Path(p))) for p in paths]
    if not fast:
        workers = 1
    workers = default_workers() if workers is None else max(1, workers)
    return [_import_one(store, path, fmt, tuple(languages), backend, workers, fast) for path, fmt in checked]


@dataclass
class _Prepared:
    """A batch of records made ready for the store (in a worker process or this one)."""

    records: int
    rows: list[ImportRows]  # store.import_rows of each dialogue
    bad: list[tuple[int, str]]  # (line, reason), in file order


def _batches(path: Path, fmt: str) -> Iterator[list[tuple[int, Any]]]:
    """Records in batches of ``BATCH``; a JSONL record is still its line (decoded by whoever
    prepares the batch, so a worker process does that work)."""
    if fmt == "jsonl":
        records: Iterator[tuple[int, Any]] = _iter_jsonl_lines(path)
    else:
        records = iter_records(path, fmt)
    while True:
        batch = list(islice(records, BATCH))
        if not batch:
            return
        yield batch


def _iter_jsonl_lines(path: Path) -> Iterator[tuple[int, str]]:
    with path.open("r", encoding="utf-8-sig") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                yield lineno, line


#: Results of language detection in this process, per (languages, backend): texts repeat across
#: dialogues (requests above all). Emptied when it grows past _CACHE_MAX entries.
_LANG_CACHES: dict[tuple[tuple[str, ...], str], dict[str, str | None]] = {}
_CACHE_MAX = 200_000


def _prepare(batch: list[tuple[int, Any]], *, origin_file: str, languages: tuple[str, ...], backend: str,
             fast: bool, in_worker: bool) -> _Prepared:
    """Parse, detect and build the dialogues of one batch (nothing is written here)."""
    parsed: list[tuple[int, list[dict[str, str]], dict[str, Any]]] = []
    bad: list[tuple[int, str]] = []
    for lineno, rec in batch:
        if isinstance(rec, str):  # a JSONL line
            try:
                rec = json.loads(rec)
            except json.JSONDecodeError:
                rec = BadRecord("not_json")
        try:
            messages, meta = parse_record(rec)
        except BadRecord as exc:
            bad.append((lineno, exc.reason))
            continue
        parsed.append((lineno, messages, meta))
    cache = None
    if fast:
        cache = _LANG_CACHES.setdefault((languages, backend), {})
        if len(cache) > _CACHE_MAX:
            cache.clear()
    items = _build_items(parsed, origin_file, languages, backend, cache, not in_worker)
    return _Prepared(len(batch), [import_rows(d, turns) for d, turns in items], bad)


def _import_one(store: ImportStore, path: Path, fmt: str, languages: tuple[str, ...], backend: str, workers: int,
                fast: bool) -> ImportReport:
    from itcollect.kernel.langid import warm_up
    from itcollect.kernel.progress import progress

    report = ImportReport(str(path), fmt)
    origin = str(path.resolve())
    run_id = store.start_import_run(origin, fmt)
    prepare = partial(_prepare, origin_file=origin, languages=languages, backend=backend, fast=fast,
                      in_worker=workers > 1)
    # the detector is built before the workers are forked, so they share its models
    results = map_batches(prepare, _batches(path, fmt), workers, before_fork=partial(warm_up, languages, backend))
    store.tune_for_bulk_insert()
    pending: list[ImportRows] = []
    # The store is written from one thread of its own (SQLite works with the GIL released), so this
    # one keeps reading records and feeding the workers meanwhile; one write waits at most.
    writes: deque[Future] = deque()

    def written(future: Future) -> None:
        imp, dup = future.result()  # a failed write raises here, in this thread
        report.imported += imp
        report.duplicates += dup

    def write() -> None:
        writes.append(writer.submit(store.import_dialogue_rows, pending.copy()))
        pending.clear()
        while len(writes) > 1:
            written(writes.popleft())

    # WAL checkpoints (copying the log into the database file, and its fsync) on a thread of their
    # own: in the writing thread they held up every ~1000 pages' commit (~2-3 s of 160K dialogues)
    with ThreadPoolExecutor(1, thread_name_prefix="itcollect-import-write") as writer, \
            progress(desc=f"import {path.name}", unit=" records") as bar, gc_paused(), \
            store.background_checkpoints():
        try:
            for res in results:
                report.records += res.records
                for lineno, reason in res.bad:
                    report.bad[reason] += 1
                    if len(report.bad_examples) < 5:
                        report.bad_examples.append((lineno, reason))
                pending += res.rows
                if len(pending) >= WRITE_BATCH:
                    write()
                bar.update(res.records)
            if pending:
                write()
            while writes:
                written(writes.popleft())
        except BaseException:
            for future in writes:  # a write already running completes (whole dialogues); no more
                future.cancel()
            raise
    store.finish_import_run(run_id, records=report.records, imported=report.imported,
                            duplicates=report.duplicates, bad=dict(report.bad))
    return report


def _build_items(batch: list[tuple[int, list[dict[str, str]], dict[str, Any]]], origin_file: str,
                 languages: tuple[str, ...], backend: str, cache: dict[str, str | None] | None,
                 parallel: bool) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    from itcollect.kernel.taxonomy import requested_language
    from itcollect.kernel.text import text_to_detect

    # the source of each dialogue first: a request's language is that of its own words. The source
    # sentence itself is detected only when the metadata does not give its language (the detected
    # one would not be used: metadata wins)
    sources: list[str] = []
    given_src: list[str | None] = []
    texts: list[str] = []
    for _, messages, meta in batch:
        first_user = next(m["content"] for m in messages if m["role"] == "user")
        src = given_source(meta, first_user) or split_source(first_user)[0]
        sources.append(src)
        lang = _as_lang(meta.get("src_lang"), languages)
        given_src.append(lang)
        if lang is None:
            texts.append(src)
        texts.extend(text_to_detect(m, src) for m in messages)
    detected = detect_languages(texts, languages, backend, cache=cache, parallel=parallel)
    items = []
    k = 0
    for j, (lineno, messages, meta) in enumerate(batch):
        src_lang = given_src[j]
        if src_lang is None:
            src_lang = detected[k]
            k += 1
        langs = detected[k:k + len(messages)]
        own_words = texts[k:k + len(messages)]
        k += len(messages)
        first_user_idx = next(i for i, m in enumerate(messages) if m["role"] == "user")
        requested = requested_language(own_words[first_user_idx], languages, source_lang=src_lang)
        d = build_dialogue(messages, meta, langs, src_lang, langs[first_user_idx] or src_lang, sources[j], languages,
                           requested)
        d["id"] = dialogue_id_for(messages)
        d["origin_file"] = origin_file
        d["origin_line"] = lineno
        model = meta.get("model") if isinstance(meta.get("model"), str) else None
        turns = [{"role": m["role"], "content": m["content"], "lang": langs[i],
                  "model": model if m["role"] == "assistant" else None}
                 for i, m in enumerate(messages)]
        items.append((d, turns))
    return items
