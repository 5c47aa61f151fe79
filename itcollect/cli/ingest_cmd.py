from __future__ import annotations

from typing import TYPE_CHECKING

import click

from itcollect import LANGUAGES
from itcollect.ingest.readers import FORMATS  # the reader registry

if TYPE_CHECKING:
    from itcollect.cli import State

_FORMAT_CHOICES = ["auto", *FORMATS]


@click.command()
@click.argument("files", nargs=-1, required=True, metavar="FILE_OR_FOLDER...")
@click.option("--lang", type=click.Choice(LANGUAGES), help="Declared source language: checked line by line "
              "(a line detected as another language is dropped as wrong_language), not trusted.")
@click.option("--ref-lang", type=click.Choice(LANGUAGES), help="Language of the reference translations "
              "(when the file does not say; otherwise detected).")
@click.option("--format", "fmt", type=click.Choice(_FORMAT_CHOICES), default="auto", show_default=True,
              help="Input format; auto = by extension (.gz ignored), else by content.")
@click.option("--columns", metavar="NAMES", help="TSV/CSV column names in order, comma-separated: source, "
              "reference, docid, a language code (first = source, second = reference), '-' to skip. "
              "Overrides header detection.")
@click.option("--text-field", metavar="NAME", help="JSONL field holding the sentence [text|source|src|sentence].")
@click.option("--ref-field", metavar="NAME", help="JSONL field holding the reference(s) "
              "[reference|ref|target|tgt]: a string, a list, or {lang: text}.")
@click.option("--lang-field", metavar="NAME", help="JSONL field declaring a record's language [lang].")
@click.option("--docid-field", metavar="NAME", help="JSONL field holding the document id [docid].")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.pass_obj
def ingest(state: State, files: tuple[str, ...], lang: str | None, ref_lang: str | None, fmt: str, columns: str | None,
           text_field: str | None, ref_field: str | None, lang_field: str | None, docid_field: str | None,
           as_json: bool) -> None:
    """Read news sentences into the workspace, counting every dropped line by reason.

    Formats: plain text (one sentence a line), TSV/CSV, JSONL, WMT .sgm, WMT 2021+ XML, each
    optionally gzipped. A FOLDER means every such file in it, recursively. Each file is one
    transaction: a file that cannot be used (missing, binary, not UTF-8, truncated .gz, malformed
    XML) is reported and leaves the store unchanged, the other files are still ingested, and the
    exit status is 1.
    """
    import json
    from pathlib import Path

    from itcollect.ingest import IngestOptions, IngestSettings, format_report, ingest_paths

    opts = IngestOptions(fmt=fmt, lang=lang, ref_lang=ref_lang,
                         columns=[c.strip() for c in columns.split(",")] if columns else None,
                         text_field=text_field, ref_field=ref_field, lang_field=lang_field, docid_field=docid_field)
    with state.workspace() as ws:
        settings = IngestSettings.from_config(ws.config)
        if lang is not None and lang not in settings.languages:
            raise click.BadParameter(f"{lang} is not one of the workspace languages "
                                     f"({', '.join(settings.languages)})", param_hint="--lang")
        base = Path(state.directory) if state.directory else None
        summary = ingest_paths(ws.store, files, settings, opts, base=base)
    if as_json:
        click.echo(json.dumps({"files": [f.as_dict() for f in summary.files], "kept": summary.kept,
                               "dropped": dict(sorted(summary.dropped.items())),
                               "failed": [e.format() for e in summary.failures]}, ensure_ascii=False))
    elif summary.files:
        click.echo(format_report(summary))
    # stderr, so --json output stays one JSON document (the warnings are in it too)
    for f in summary.files:
        for warning in f.warnings:
            click.echo(f"itcollect: warning: {f.path}: {warning}", err=True)
    # One line per failed file; the last one leaves through the CLI's error path (exit status 1).
    for exc in summary.failures[:-1]:
        click.echo(f"itcollect: error: {exc.format()}", err=True)
    if summary.failures:
        raise summary.failures[-1]
