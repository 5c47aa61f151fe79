"""Readers: one streaming generator of :class:`Record` per input format.

Opening a file settles the file-level questions once (missing, empty, binary, UTF-16, gzip by
magic bytes), then a reader yields records one at a time so memory stays flat however long the
file is. File-level problems raise :class:`InputError` naming the file (and line when known);
record-level problems come out as records with ``bad`` set, which the pipeline counts as
``bad_record`` drops.
"""

from __future__ import annotations

import csv
import gzip
import html
import io
import json
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from xml.parsers import expat

from itcollect import LANGUAGES
from itcollect.kernel.errors import InputError
from itcollect.kernel.jsonarray import TRUNCATED, iter_json_array

#: A line longer than this many bytes is never read into memory whole: it is skipped in chunks
#: and counted as ``too_long`` (no news sentence is anywhere near 1 MiB).
MAX_LINE_BYTES = 1 << 20

_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(slots=True)
class Ref:
    text: str
    lang: str | None = None
    translator: str = ""


@dataclass(slots=True)
class Record:
    """One candidate sentence (or one unusable record, when ``bad`` says why)."""

    line: int | None
    text: str | None = None
    lang: str | None = None          # language the file declares for this record
    refs: list[Ref] = field(default_factory=list)
    docid: str | None = None
    origlang: str | None = None
    seg_id: str | None = None
    bad: str | None = None           # record-level defect -> bad_record
    overlong: bool = False           # longer than MAX_LINE_BYTES -> too_long


@dataclass
class ReaderOptions:
    columns: list[str] | None = None
    text_field: str | None = None
    ref_field: str | None = None
    lang_field: str | None = None
    docid_field: str | None = None
    ref_lang: str | None = None
    #: the language declared from outside the file (``--lang``, the file name), for formats whose
    #: records name languages per field (JSON translation pairs)
    declared: str | None = None


@dataclass
class ReadStats:
    """What a reader noticed besides records (shown in the per-file report)."""

    skipped_docs: int = 0            # WMT XML docs with a testsuite attribute
    bytes_read: Callable[[], int] = lambda: 0


# -- opening -------------------------------------------------------------------------------------
def strip_gz(name: str) -> str:
    return name[:-3] if name.lower().endswith(".gz") else name


def format_from_name(name: str) -> str | None:
    """Format implied by the file name (``.gz`` ignored), or None."""
    return _EXTENSIONS.get(Path(strip_gz(name)).suffix.lower())


def lang_from_name(name: str) -> tuple[str | None, str | None]:
    """``news.zh.txt.gz`` -> (zh, None); ``pairs.en-fr.tsv`` -> (en, fr); else (None, None).

    WMT-style names carry the language as a dot-separated part; only workspace-language codes
    count, so ``report.de.2021.txt`` is German but ``it.txt`` is nothing.
    """
    for part in reversed(Path(strip_gz(name)).name.split(".")[1:]):
        part = part.lower()
        if part in LANGUAGES:
            return part, None
        pair = part.split("-")
        if len(pair) == 2 and pair[0] in LANGUAGES and pair[1] in LANGUAGES and pair[0] != pair[1]:
            return pair[0], pair[1]
    return None, None


class InputFile:
    """An opened input: a buffered binary stream over the (decompressed) content."""

    def __init__(self, path: Path, display: str) -> None:
        self.path = path
        self.display = display
        if not path.exists():
            raise InputError("no such file", path=display)
        if path.is_dir():
            raise InputError("is a folder (give its files, or the folder itself as an argument)", path=display)
        try:
            self._raw = open(path, "rb")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise InputError(f"cannot open: {exc.strerror}", path=display) from None
        self.size = path.stat().st_size
        magic = self._raw.read(2)
        self._raw.seek(0)
        self.gzipped = magic == _GZIP_MAGIC
        if self.gzipped:
            self.stream: io.BufferedReader = io.BufferedReader(gzip.GzipFile(fileobj=self._raw), 1 << 16)
        else:
            self.stream = io.BufferedReader(self._raw, 1 << 16)
        head = self.guard(lambda: self.stream.peek(8192)[:8192])
        if not head:
            raise InputError("file is empty" + (" (after gunzip)" if self.gzipped else ""), path=display)
        if head.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise InputError("UTF-16 text; convert it to UTF-8 (iconv -f UTF-16 -t UTF-8)", path=display)
        if b"\x00" in head:
            raise InputError("binary file (contains NUL bytes), not text", path=display)
        self.head = head

    def raw_position(self) -> int:
        """Bytes consumed from disk so far (compressed bytes for .gz): drives the progress bar."""
        try:
            return self._raw.tell()
        except (OSError, ValueError):
            return 0

    def guard(self, fn, line: int | None = None):
        """Run a read, turning decompression failures into a clear InputError."""
        try:
            return fn()
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            where = f" after line {line}" if line else ""
            raise InputError(f"truncated or corrupt gzip data{where} ({exc})", path=self.display) from None

    def lines(self) -> Iterator[tuple[int, str | None]]:
        """(line number, text without the newline) or (line number, None) for an overlong line."""
        readline = self.stream.readline
        lineno = 0
        while True:
            raw = self.guard(lambda: readline(MAX_LINE_BYTES), lineno)
            if not raw:
                return
            lineno += 1
            if len(raw) == MAX_LINE_BYTES and not raw.endswith(b"\n"):
                while raw and not raw.endswith(b"\n"):  # skip the rest of the line in chunks
                    raw = self.guard(lambda: readline(MAX_LINE_BYTES), lineno)
                yield lineno, None
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                                 f"convert the file to UTF-8", path=self.display, line=lineno) from None
            if lineno == 1 and text.startswith("\ufeff"):
                text = text[1:]
            yield lineno, text.rstrip("\r\n")

    def close(self) -> None:
        try:
            self.stream.close()
        finally:
            self._raw.close()


def _content(head: bytes) -> bytes:
    """The first bytes of content: without a UTF-8 byte order mark and leading whitespace."""
    return head.lstrip(b"\xef\xbb\xbf \t\r\n")


def sniff_format(head: bytes, display: str) -> str:
    """Format from the first bytes of content, for names that do not say."""
    text = _content(head)
    low = text[:4096].lower()
    if text.startswith((b"{", b"[")):
        return "jsonl"
    if text.startswith(b"<"):
        if b"<dataset" in low:
            return "wmt-xml"
        if low.startswith((b"<srcset", b"<refset", b"<tstset", b"<doc")) or b"<seg" in low:
            return "sgm"
        raise InputError("markup that is neither WMT XML (<dataset>) nor WMT SGML (<srcset>/<doc>/<seg>); "
                         "use --format", path=display)
    first = text.split(b"\n", 1)[0]
    if b"\t" in first:
        return "tsv"
    return "txt"


# -- readers ---------------------------------------------------------------------------------------
def read_txt(f: InputFile, opts: ReaderOptions, stats: ReadStats) -> Iterator[Record]:
    for lineno, text in f.lines():
        if text is None:
            yield Record(lineno, overlong=True)
        else:
            yield Record(lineno, text)


_HEADER_SOURCE = {"source", "src", "text", "sentence", "segment", "original", "source_text"}
_HEADER_REF = {"reference", "ref", "target", "tgt", "translation", "reference_text", "target_text"}
_HEADER_OTHER = {"docid", "doc_id", "document", "id", "seg_id", "segid", "lang", "-", ""}


def _column_roles(names: list[str]) -> tuple[int | None, int | None, int | None, str | None, str | None]:
    """(source col, reference col, docid col, source lang, reference lang) from column names."""
    src = ref = doc = None
    src_lang = ref_lang = None
    for i, raw in enumerate(names):
        name = raw.strip().lower()
        if name in _HEADER_SOURCE and src is None:
            src = i
        elif name in _HEADER_REF and ref is None:
            ref = i
        elif name in ("docid", "doc_id", "document") and doc is None:
            doc = i
        elif name in LANGUAGES:
            if src is None:
                src, src_lang = i, name
            elif ref is None:
                ref, ref_lang = i, name
    return src, ref, doc, src_lang, ref_lang


def _is_header(cells: list[str]) -> bool:
    names = [c.strip().lower() for c in cells]
    known = _HEADER_SOURCE | _HEADER_REF | _HEADER_OTHER | set(LANGUAGES)
    return all(n in known for n in names) and any(n in _HEADER_SOURCE or n in LANGUAGES for n in names)


_OVERLONG = "\ue000itcollect-overlong\ue000"


def _rows(f: InputFile, fmt: str) -> Iterator[tuple[int, list[str] | None]]:
    """(line number, cells) per row; cells None for an overlong line."""
    if fmt == "tsv":
        for lineno, text in f.lines():
            yield lineno, None if text is None else text.split("\t")
        return
    state = {"line": 0}

    def feed() -> Iterator[str]:
        for lineno, text in f.lines():
            state["line"] = lineno
            yield (_OVERLONG if text is None else text) + "\n"

    reader = csv.reader(feed(), strict=False)
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InputError(f"CSV cannot be parsed: {exc}", path=f.display, line=state["line"]) from None
        yield state["line"], None if cells == [_OVERLONG] else cells


def read_table(f: InputFile, opts: ReaderOptions, stats: ReadStats, fmt: str = "tsv") -> Iterator[Record]:
    """TSV/CSV: a source column and an optional reference column.

    The first row is a header when every cell is a known column name (source/src/text,
    reference/ref/target/translation, docid, id, or a language code such as ``en``). ``--columns``
    names the columns in order instead (``-`` skips one). Every row must have as many cells as the
    first row; a row that does not is a ``bad_record``.
    """
    rows = _rows(f, fmt)
    expected: int | None = None
    # the columns' roles, set by the first row: source, reference, docid columns and their languages
    src, ref, doc = 0, None, None
    src_lang: str | None = None
    ref_lang: str | None = None
    for lineno, cells in rows:
        if cells is None:
            yield Record(lineno, overlong=True)
            continue
        if expected is None:
            if len(cells) == 1 and not cells[0].strip():
                yield Record(lineno, "")  # leading blank line: an empty record
                continue
            expected = len(cells)
            header = _is_header(cells)
            names = opts.columns or (cells if header else None)
            if names is not None:
                named_src, ref, doc, src_lang, ref_lang = _column_roles(names)
                if named_src is None:
                    raise InputError(f"no source column among {', '.join(names)} "
                                     f"(name one 'source', or use --columns)", path=f.display, line=lineno)
                src = named_src
                used = max(i for i in (src, ref, doc) if i is not None)
                if used >= expected:
                    raise InputError(f"--columns names {used + 1} columns but the file has {expected}",
                                     path=f.display, line=lineno)
            elif expected > 1:
                ref = 1
            if header:
                continue
        if len(cells) != expected:
            if len(cells) == 1 and not cells[0].strip():
                yield Record(lineno, "")
                continue
            yield Record(lineno, bad=f"expected {expected} columns, found {len(cells)}")
            continue
        refs = []
        if ref is not None and cells[ref].strip():
            refs.append(Ref(cells[ref], ref_lang or opts.ref_lang))
        yield Record(lineno, cells[src], lang=src_lang, refs=refs,
                     docid=cells[doc] if doc is not None and cells[doc] else None)


_JSON_TEXT = ("text", "source", "src", "sentence")
_JSON_REF = ("reference", "ref", "target", "tgt")


def _json_refs(value, ref_lang: str | None) -> list[Ref] | str:
    """References from a JSON value: a string, a list, or {lang: text|[texts]}; str = error."""
    if value is None:
        return []
    if isinstance(value, str):
        return [Ref(value, ref_lang)] if value.strip() else []
    if isinstance(value, list):
        refs = []
        for i, item in enumerate(value):
            if isinstance(item, str):
                refs.append(Ref(item, ref_lang, f"#{i + 1}" if len(value) > 1 else ""))
            elif isinstance(item, dict) and isinstance(item.get("text"), str):
                refs.append(Ref(item["text"], item.get("lang") or ref_lang, str(item.get("translator") or "")))
            else:
                return f"reference #{i + 1} is neither a string nor an object with 'text'"
        return refs
    if isinstance(value, dict):
        refs = []
        for lang, texts in value.items():
            for i, t in enumerate(texts if isinstance(texts, list) else [texts]):
                if not isinstance(t, str):
                    return f"reference for {lang!r} is not a string"
                refs.append(Ref(t, lang, f"#{i + 1}" if isinstance(texts, list) and len(texts) > 1 else ""))
        return refs
    return "reference is not a string, list or object"


def read_jsonl(f: InputFile, opts: ReaderOptions, stats: ReadStats) -> Iterator[Record]:
    declared = opts.declared
    """JSON Lines: one object a line. Field names default to text/source/src/sentence for the
    sentence, reference/ref/target/tgt for the translation, lang, docid; ``{"translation": {"en":
    ..., "zh": ...}}`` (Hugging Face WMT style) works when the source language is known.
    A file whose content is one JSON array (``json.dump`` of a list, often a single huge line)
    is read element by element: the same objects, or plain strings (one sentence each)."""
    if _content(f.head).startswith(b"["):
        yield from _read_json_array(f, opts, declared)
        return
    for lineno, line in f.lines():
        if line is None:
            yield Record(lineno, overlong=True)
            continue
        if not line.strip():
            yield Record(lineno, "")
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            yield Record(lineno, bad=f"invalid JSON ({exc.msg} at column {exc.colno})")
            continue
        yield _json_record(lineno, obj, opts, declared)


class _ArrayBroken:
    def __init__(self, reason: str) -> None:
        self.reason = reason


def _read_json_array(f: InputFile, opts: ReaderOptions, declared: str | None) -> Iterator[Record]:
    text = io.TextIOWrapper(f.stream, encoding="utf-8-sig", newline="")

    def read(n: int) -> str:
        try:
            return f.guard(lambda: text.read(n))
        except UnicodeDecodeError as exc:
            raise InputError(f"not valid UTF-8 (byte 0x{exc.object[exc.start]:02x}); convert the file "
                             f"to UTF-8", path=f.display) from None

    for lineno, obj in iter_json_array(read, _ArrayBroken):
        if isinstance(obj, _ArrayBroken):
            yield Record(lineno, bad="the JSON array ends early (truncated file?)" if obj.reason == TRUNCATED
                         else "invalid JSON inside the array (the rest of the file is skipped)")
        elif isinstance(obj, str):
            yield Record(lineno, obj)
        else:
            yield _json_record(lineno, obj, opts, declared)


def _json_record(lineno: int, obj: object, opts: ReaderOptions, declared: str | None) -> Record:
    """One JSON object (a JSONL line or an array element) as a Record."""
    if not isinstance(obj, dict):
        return Record(lineno, bad=f"a JSON {type(obj).__name__}, not an object")
    lang_field = opts.lang_field or "lang"
    docid_field = opts.docid_field or "docid"
    lang = obj.get(lang_field) if isinstance(obj.get(lang_field), str) else None
    text_key = opts.text_field or next((k for k in _JSON_TEXT if k in obj), None)
    ref_value = obj.get(opts.ref_field) if opts.ref_field else \
        next((obj[k] for k in _JSON_REF if k in obj), None)
    if text_key is None and isinstance(obj.get("translation"), dict):
        pair = obj["translation"]
        src_lang = declared or lang
        if src_lang not in pair:
            return Record(lineno, bad="a 'translation' object, but the source language is unknown (give --lang)")
        text = pair[src_lang]
        lang = src_lang
        ref_value = {k: v for k, v in pair.items() if k != src_lang}
    elif text_key is None or text_key not in obj:
        wanted = opts.text_field or "/".join(_JSON_TEXT)
        return Record(lineno, bad=f"no '{wanted}' field")
    else:
        text = obj[text_key]
    if not isinstance(text, str):
        return Record(lineno, bad=f"the sentence field is a {type(text).__name__}, not a string")
    refs = _json_refs(ref_value, opts.ref_lang or (obj.get("ref_lang") if isinstance(obj.get("ref_lang"), str)
                                                   else None))
    if isinstance(refs, str):
        return Record(lineno, bad=refs)
    docid = obj.get(docid_field, obj.get("doc_id"))
    seg = obj.get("seg_id")
    return Record(lineno, text, lang=lang, refs=refs, docid=None if docid is None else str(docid),
                  origlang=obj.get("origlang") if isinstance(obj.get("origlang"), str) else None,
                  seg_id=None if seg is None else str(seg))


_ATTR = re.compile(r"""([\w:-]+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""")
_SGM_SEG = re.compile(r"<seg\b([^>]*)>(.*?)</seg>", re.IGNORECASE)
_SGM_TAG = re.compile(r"^\s*</?([A-Za-z]+)\b([^>]*)>\s*$")


def _attrs(text: str) -> dict[str, str]:
    return {m.group(1).lower(): html.unescape(m.group(2) or m.group(3) or m.group(4) or "")
            for m in _ATTR.finditer(text)}


def read_sgm(f: InputFile, opts: ReaderOptions, stats: ReadStats) -> Iterator[Record]:
    """WMT "fake SGML": one ``<seg id=..>`` per line inside ``<doc docid=.. origlang=..>``;
    the declared language is ``<srcset srclang=..>`` (or ``<refset trglang=..>``), passed on as
    written (it may be ``any``)."""
    set_lang = docid = origlang = None
    for lineno, line in f.lines():
        if line is None:
            yield Record(lineno, overlong=True)
            continue
        if "<seg" in line[:200].lower():
            found = False
            for seg in _SGM_SEG.finditer(line):  # normally one a line; a few corpora put several
                found = True
                attrs = _attrs(seg.group(1))
                yield Record(lineno, html.unescape(seg.group(2)), lang=set_lang, docid=docid, origlang=origlang,
                             seg_id=attrs.get("id"))
            if not found:
                yield Record(lineno, bad="<seg> without </seg> on the same line")
            continue
        stripped = line.strip()
        if not stripped:
            continue
        m = _SGM_TAG.match(stripped)
        if m is None:
            yield Record(lineno, bad="text outside <seg>...</seg>")
            continue
        tag = m.group(1).lower()
        closing = stripped.startswith("</")
        if tag in ("srcset", "refset", "tstset") and not closing:
            attrs = _attrs(m.group(2))
            # as written: the pipeline normalises codes ("zh-CN", "eng") and decides whether a
            # value ("any") declares anything at all
            set_lang = (attrs.get("srclang") if tag == "srcset" else attrs.get("trglang")) or None
        elif tag == "doc":
            if closing:
                docid = origlang = None
            else:
                attrs = _attrs(m.group(2))
                docid = attrs.get("docid") or attrs.get("id")
                origlang = attrs.get("origlang")


def read_wmt_xml(f: InputFile, opts: ReaderOptions, stats: ReadStats) -> Iterator[Record]:
    """WMT 2021+ XML: ``<doc id origlang [testsuite]><src lang><p><seg id>`` with ``<ref lang
    translator>`` aligned by seg id. expat is driven directly (a streaming parser like iterparse,
    but with line numbers for origin_line and error messages); one document is held at a time."""
    parser = expat.ParserCreate()
    out: list[Record] = []
    state: dict = {"doc": None, "side": None, "seg": None, "skip": False}

    def start(name: str, attrs: dict[str, str]) -> None:
        if name == "doc":
            if "testsuite" in attrs:
                state["skip"] = True
                stats.skipped_docs += 1
                return
            state["doc"] = {"id": attrs.get("id"), "origlang": attrs.get("origlang"), "src": {}, "order": [],
                            "refs": []}
        elif state["skip"] or state["doc"] is None:
            return
        elif name == "src":
            state["side"] = ("src", attrs.get("lang"), "")
        elif name == "ref":
            state["side"] = ("ref", attrs.get("lang"), attrs.get("translator", ""))
            state["doc"]["refs"].append((attrs.get("lang"), attrs.get("translator", ""), {}))
        elif name in ("hyp", "hypothesis"):
            state["side"] = None
        elif name == "seg" and state["side"] is not None:
            state["seg"] = (attrs.get("id"), parser.CurrentLineNumber, [])

    def end(name: str) -> None:
        if name == "doc":
            if state["skip"]:
                state["skip"] = False
                return
            doc = state["doc"]
            state["doc"] = None
            if doc is None:
                return
            for seg_id in doc["order"]:
                text, line, lang = doc["src"][seg_id]
                refs = [Ref(segs[seg_id], rlang or opts.ref_lang, translator)
                        for rlang, translator, segs in doc["refs"] if seg_id in segs]
                out.append(Record(line, text, lang=lang, refs=refs, docid=doc["id"], origlang=doc["origlang"],
                                  seg_id=seg_id))
        elif name in ("src", "ref", "hyp", "hypothesis"):
            state["side"] = None
        elif name == "seg" and state["seg"] is not None and state["side"] is not None:
            seg_id, line, parts = state["seg"]
            state["seg"] = None
            side, lang, _translator = state["side"]
            doc = state["doc"]
            key = seg_id if seg_id is not None else str(len(doc["order"]) + 1)
            if side == "src":
                if key not in doc["src"]:
                    doc["order"].append(key)
                doc["src"][key] = ("".join(parts), line, lang)
            else:
                doc["refs"][-1][2][key] = "".join(parts)

    def chars(data: str) -> None:
        if state["seg"] is not None:
            state["seg"][2].append(data)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    parser.buffer_text = True
    read = f.stream.read
    while True:
        chunk = f.guard(lambda: read(1 << 16))
        try:
            parser.Parse(chunk, not chunk)
        except expat.ExpatError as exc:
            raise InputError(f"malformed XML: {expat.ErrorString(exc.code)} (column {exc.offset + 1})",
                             path=f.display, line=exc.lineno) from None
        if out:
            yield from out
            out.clear()
        if not chunk:
            return


# -- the registry ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reader:
    """A source format: how to read it (one signature for all), the file endings that imply it,
    and where a file of it declares its language (as the ingest warnings name it)."""

    read: Callable[[InputFile, ReaderOptions, ReadStats], Iterator[Record]]
    extensions: tuple[str, ...]
    declares: str = "the file"


#: format name -> reader. A new format is one reader function and one line here; ``--format``'s
#: choices and the extension look-up come from it (content sniffing: :func:`sniff_format`).
READERS: dict[str, Reader] = {
    "txt": Reader(read_txt, (".txt", ".text")),
    "tsv": Reader(partial(read_table, fmt="tsv"), (".tsv", ".tab"), "the header"),
    "csv": Reader(partial(read_table, fmt="csv"), (".csv",), "the header"),
    "jsonl": Reader(read_jsonl, (".jsonl", ".ndjson", ".json"), "the records' lang field"),
    "sgm": Reader(read_sgm, (".sgm", ".sgml"), "<srcset srclang>"),
    "wmt-xml": Reader(read_wmt_xml, (".xml",), "<src lang>"),
}
#: Formats `--format` accepts (csv is TSV's comma-separated sibling).
FORMATS = tuple(READERS)
_EXTENSIONS = {ext: name for name, r in READERS.items() for ext in r.extensions}
