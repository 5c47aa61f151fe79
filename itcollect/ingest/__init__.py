"""Ingest: news sentences from txt / TSV / CSV / JSONL / WMT sgm / WMT XML (any of them .gz) into
the store's ``sources``, normalised, language-checked, deduplicated, every drop counted by reason.

Public API::

    summary = ingest_paths(store, ["data/samples"], IngestSettings.from_config(cfg), IngestOptions())
    summary.files[0].kept, summary.files[0].dropped, summary.failures
"""

from __future__ import annotations

from itcollect.ingest.pipeline import (
    DROP_REASONS,
    FileReport,
    IngestOptions,
    IngestSettings,
    IngestSummary,
    expand_inputs,
    ingest_file,
    ingest_paths,
)
from itcollect.ingest.readers import FORMATS, MAX_LINE_BYTES, format_from_name, lang_from_name

__all__ = ["DROP_REASONS", "FORMATS", "MAX_LINE_BYTES", "FileReport", "IngestOptions", "IngestSettings",
           "IngestSummary", "expand_inputs", "format_from_name", "ingest_file", "ingest_paths", "lang_from_name"]


def format_report(summary: IngestSummary) -> str:
    """Per-file and total kept / dropped-per-reason table, as the CLI prints it."""
    files = summary.files
    reasons = [r for r in DROP_REASONS if any(f.dropped.get(r) for f in files)]
    width = max([len(f.path) for f in files] + [5])
    width = min(width, 48)
    head = f"{'file':<{width}}  {'format':<7} {'records':>8} {'kept':>8}" + "".join(f" {r:>14}" for r in reasons)
    lines = [head]
    for f in files:
        name = f.path if len(f.path) <= width else "…" + f.path[-(width - 1):]
        lines.append(f"{name:<{width}}  {f.fmt:<7} {f.records:>8,} {f.kept:>8,}"
                     + "".join(f" {f.dropped.get(r, 0):>14,}" for r in reasons))
    total = summary.dropped
    lines.append(f"{'total':<{width}}  {'':<7} {sum(f.records for f in files):>8,} {summary.kept:>8,}"
                 + "".join(f" {total.get(r, 0):>14,}" for r in reasons))
    for f in files:
        notes = []
        if f.refs:
            notes.append(f"{f.refs:,} reference translations stored")
        if f.skipped_docs:
            notes.append(f"{f.skipped_docs} testsuite docs skipped")
        if f.bad_examples:
            shown = "; ".join(f"line {ln}: {why}" for ln, why in f.bad_examples)
            more = f.dropped["bad_record"] - len(f.bad_examples)
            notes.append(f"bad records: {shown}" + (f" (+{more} more)" if more > 0 else ""))
        if notes:
            lines.append(f"  {f.path}: " + "; ".join(notes))
    return "\n".join(lines)


__all__.append("format_report")
