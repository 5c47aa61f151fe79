"""``itcollect annotators add|list|revoke``: the people who work in the browser (``session --web``)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from itcollect.store import ROLES

if TYPE_CHECKING:
    from itcollect.cli import State


@click.group()
def annotators() -> None:
    """Accounts for `itcollect session --web`: who may log in, with which role.

    Roles: annotator (writes dialogues), reviewer (the review queue, too), lead (everyone's
    progress, too). A login link is shown once; only a hash of its token is kept.
    """


@annotators.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), default=None, show_default="annotator",
              help="What the account may do.")
@click.option("--new-token", is_flag=True,
              help="NAME exists already: issue a new login link (the old one and its browser sessions stop working).")
@click.pass_obj
def add(state: State, name: str, role: str | None, new_token: bool) -> None:
    """Add NAME and print their login link (its last line); shown once."""
    from itcollect.kernel.names import check_annotator_name
    from itcollect.session.web.auth import issue_token, link_base, login_url, running_server

    name = check_annotator_name(name)  # the rule, and its NFC form: the name as stored
    with state.workspace() as ws:
        token = issue_token(ws.store, name, role or "annotator", renew=new_token, role_given=role is not None)
        account = ws.store.get_account(name)
        assert account is not None  # issue_token has just written it
        base = link_base(ws.root, ws.config)
        server = running_server(ws.root)
    what = "new login link for" if new_token else "added"
    click.echo(f"{what} {account['name']} (role {account['role']}).")
    click.echo("The link below is shown once: itcollect keeps only a hash of its token. Send it to "
               f"{account['name']} privately (whoever has it works as {account['name']}); lost it? "
               f"`itcollect annotators add {account['name']} --new-token`.")
    if server is None:
        click.echo("No `itcollect session --web` of this workspace is running: the link works once it is "
                   "(started with the address below, or set [web] public_url).")
    click.echo(login_url(base, token))


@annotators.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object for scripts.")
@click.pass_obj
def list_(state: State, as_json: bool) -> None:
    """Who has an account: role, active or revoked, last seen, dialogues done."""
    with state.workspace() as ws:
        accounts = ws.store.accounts()
        stats = ws.store.annotator_stats()
        last = ws.store.last_actions()
    rows = []
    for a in accounts:
        st = stats.get(a["name"], {})
        seen = max([t for t in (a["last_seen_at"], last.get(a["name"])) if t], default=None)
        rows.append({"name": a["name"], "role": a["role"], "status": "revoked" if a["revoked_at"] else "active",
                     "created": a["created_at"], "last_seen": seen, "dialogues": st.get("dialogues", 0),
                     "skipped": st.get("skipped", 0), "turns": st.get("turns", 0)})
    if as_json:
        click.echo(json.dumps({"annotators": rows}, ensure_ascii=False))
        return
    if not rows:
        click.echo("No accounts yet: `itcollect annotators add NAME [--role annotator|reviewer|lead]`.")
        return
    head = ("name", "role", "status", "last seen", "dialogues", "skipped", "turns")
    table = [head] + [(r["name"], r["role"], r["status"], (r["last_seen"] or "never")[:16].replace("T", " "),
                       str(r["dialogues"]), str(r["skipped"]), str(r["turns"])) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) if i < 4 else cell.rjust(w)
                             for i, (cell, w) in enumerate(zip(row, widths))).rstrip())


@annotators.command("revoke")
@click.argument("name")
@click.pass_obj
def revoke(state: State, name: str) -> None:
    """Stop NAME's login link and open browser sessions at once, and give their leases back to the
    pool (their work stays)."""
    import unicodedata

    name = unicodedata.normalize("NFC", name.strip())
    with state.workspace() as ws:
        released = ws.store.revoke_account(name)
    specs = f"; {len(released)} leased spec(s) went back to the pool (their turns kept)" if released else ""
    click.echo(f"revoked {name.strip()}: the login link and every browser session of this account get 401 from now "
               f"on; the dialogues stay{specs}. `itcollect annotators add {name.strip()} --new-token` lets them "
               f"back in.")
