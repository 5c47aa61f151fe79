from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from itcollect.cli import State


@click.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Processes preparing records (parsing, language detection) in parallel "
                   "(default: the usable cores, at most 4).")
@click.pass_obj
def import_(state: State, files: tuple[str, ...], workers: int | None) -> None:
    """Import existing dialogues: JSONL of {"messages": [...]} records or ShareGPT JSON/JSONL.

    Every file is checked before anything is written; bad records are counted with their reason and
    skipped; re-importing the same dialogues adds nothing.
    """
    from itcollect.config import settings
    from itcollect.importer import import_files

    with state.workspace() as ws:
        typed = settings(ws.config)
        reports = import_files(ws.store, files, languages=list(typed.workspace.languages),
                               backend=typed.ingest.langid_backend, workers=workers)
    for r in reports:
        click.echo(r.summary())
