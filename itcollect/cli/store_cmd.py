"""``itcollect store copy --to URL|PATH.db``: move a workspace's store to PostgreSQL or back."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from itcollect.cli import State


@click.group("store")
def store_group() -> None:
    """The workspace's store as a whole."""


@store_group.command("copy")
@click.option("--to", "to", required=True, metavar="URL|PATH.db",
              help="An empty PostgreSQL database (postgresql://USER@HOST[:PORT]/DB; the password from "
                   "PGPASSWORD or ~/.pgpass), or a new SQLite file.")
@click.pass_obj
def copy(state: State, to: str) -> None:
    """Copy the whole store (every table, the ledger included) into an empty target, in one
    transaction (a killed copy leaves the target empty), check the row counts, and print the
    `[store] url` line to set."""
    from itcollect.kernel.errors import UsageError
    from itcollect.kernel.storeurl import check_store_url, describe
    from itcollect.store import Store, copy_store

    server = "://" in to
    if server:
        problem = check_store_url(to)
        if problem:
            raise UsageError(f"--to: {problem}")
    elif not to.endswith(".db"):
        raise UsageError("--to: a postgresql:// URL or a PATH.db file")
    with state.workspace() as ws:
        counts = copy_store(ws.store, to, lambda target: Store(target))
    where = describe(to) if server else to
    click.echo(f"Copied {sum(counts.values())} rows of {len(counts)} tables to {where}; row counts checked.")
    if server:
        click.echo("Set in itcollect.toml (or ITCOLLECT_STORE_URL):")
        click.echo(f"[store]\nurl = {json.dumps(to)}")
    else:
        click.echo("To use it, make it a workspace's itcollect.db with an empty [store] url:\n[store]\nurl = \"\"")
