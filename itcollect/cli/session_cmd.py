from __future__ import annotations

import contextlib

import click


@click.command()
@click.option("--annotator", required=True, metavar="NAME",
              help="Your name (no spaces, e.g. li.wei): leases, turns and statistics carry it.")
@click.option("--review", is_flag=True, help="Walk flagged and edited dialogues and accept or reject them.")
@click.option("--order", type=click.Choice(["default", "judge"]), default="default", show_default=True,
              help="With --review: 'judge' also serves every judged dialogue, the lowest judge score first.")
@click.option("--base-url", metavar="URL", help="OpenAI-compatible endpoint of the assistant.")
@click.option("--model", metavar="NAME", help="Model name of the assistant.")
@click.option("--local", "use_local", is_flag=True, help="Answer with the bundled local model (itcollect[local]).")
@click.option("--protocol", "force_protocol", is_flag=True,
              help="Use the line protocol even on a terminal (it is used anyway when stdin is not one).")
@click.pass_obj
def session(state, annotator: str, review: bool, order: str, base_url: str | None, model: str | None,
            use_local: bool, force_protocol: bool) -> None:
    """Annotate dialogues at the terminal: pick up where NAME stopped, or lease the next spec.

    Type a request, watch the answer stream in, then a = accept, e = edit, r = regenerate, u = undo,
    f = finish, s = skip, ! = flag, g = guidelines, q = quit. Without a terminal, commands are read
    line by line from stdin (see the README, "session", for the protocol).
    """
    from ..errors import UsageError
    from ..session import run_session

    if use_local and base_url:
        raise UsageError("--local and --base-url both name the endpoint: give one")
    if order != "default" and not review:
        raise UsageError("--order goes with --review")
    with state.workspace() as ws:
        with contextlib.ExitStack() as stack:
            if use_local and not review:
                from ..local import local_server

                base_url, local_model = stack.enter_context(local_server(ws.config))
                model = model or local_model
            code = run_session(ws.config, ws.store, annotator, base_url=base_url, model=model, review=review,
                               interactive=False if force_protocol else None,
                               history_dir=ws.root / ".itcollect" / "history", order=order)
    if code:
        raise click.exceptions.Exit(code)
