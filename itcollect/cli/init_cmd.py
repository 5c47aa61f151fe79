from __future__ import annotations

import click


@click.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Rewrite the config of an existing workspace (the store is kept).")
def init(directory: str, force: bool) -> None:
    """Create a workspace in DIRECTORY with a commented default config and an empty store."""
    from itcollect.workspace import init_workspace

    ws = init_workspace(directory, force=force)
    click.echo(f"Created workspace {ws.root}")
    click.echo(f"  config: {ws.config_path}")
    click.echo(f"  store:  {ws.db_path}")
    ws.close()
