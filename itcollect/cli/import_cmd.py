from __future__ import annotations

import click


@click.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.pass_obj
def import_(state, files: tuple[str, ...]) -> None:
    """Import existing dialogues: JSONL of {"messages": [...]} records or ShareGPT JSON/JSONL.

    Every file is checked before anything is written; bad records are counted with their reason and
    skipped; re-importing the same dialogues adds nothing.
    """
    from ..importer import import_files

    with state.workspace() as ws:
        cfg = ws.config
        reports = import_files(ws.store, files, languages=cfg["workspace"]["languages"],
                               backend=cfg["ingest"]["langid_backend"])
    for r in reports:
        click.echo(r.summary())
