from __future__ import annotations

import click


@click.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Rewrite the config of an existing workspace (the store is kept).")
@click.option("--store", "store", default="", metavar="URL",
              help="A PostgreSQL database for the store (postgresql://USER@HOST[:PORT]/DB; the password from "
                   "PGPASSWORD or ~/.pgpass); written as [store] url. Default: the workspace's itcollect.db.")
def init(directory: str, force: bool, store: str) -> None:
    """Create a workspace in DIRECTORY with a commented default config and an empty store."""
    from itcollect.workspace import init_workspace

    ws = init_workspace(directory, force=force, store=store)
    click.echo(f"Created workspace {ws.root}")
    click.echo(f"  config: {ws.config_path}")
    click.echo(f"  store:  {ws.store_url or ws.db_path}")
    ws.close()
