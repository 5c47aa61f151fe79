from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from itcollect.cli import State


@click.command()
@click.option("--annotator", metavar="NAME",
              help="Your name (no spaces, e.g. li.wei): leases, turns and statistics carry it. Not with --web.")
@click.option("--review", is_flag=True, help="Walk flagged and edited dialogues: mark errors, fix, accept or reject.")
@click.option("--order", type=click.Choice(["default", "judge", "overlap"]), default="default", show_default=True,
              help="With --review: 'judge' also serves every judged dialogue, the lowest judge score first; "
                   "'overlap' shows the copies of each overlap spec side by side to pick the one to keep.")
@click.option("--web", is_flag=True,
              help="Serve the sessions in a browser, for a team (accounts: `itcollect annotators add NAME`).")
@click.option("--host", metavar="H", help="With --web: address to listen on (default [web] host, 127.0.0.1).")
@click.option("--port", metavar="P", type=click.IntRange(0, 65535),
              help="With --web: port (default [web] port, 8765; 0 = any free port).")
@click.option("--base-url", metavar="URL", help="OpenAI-compatible endpoint of the assistant.")
@click.option("--model", metavar="NAME", help="Model name of the assistant.")
@click.option("--local", "use_local", is_flag=True, help="Answer with the bundled local model (itcollect[local]).")
@click.option("--compare", "compare", metavar="A,B[,..]",
              help="Every system named answers each request, side by side, labelled A, B, ... in a fresh order; "
                   "you pick the best, blind (a [llm.systems.NAME] table, else NAME as a model on the assistant's "
                   "endpoint).")
@click.option("--protocol", "force_protocol", is_flag=True,
              help="Use the line protocol even on a terminal (it is used anyway when stdin is not one).")
@click.pass_obj
def session(state: State, annotator: str | None, review: bool, order: str, web: bool, host: str | None,
            port: int | None, base_url: str | None, model: str | None, use_local: bool, force_protocol: bool,
            compare: str | None) -> None:
    """Annotate dialogues at the terminal: pick up where NAME stopped, or lease the next spec.

    Type a request, watch the answer stream in, then a = accept, e = edit, r = regenerate, u = undo,
    f = finish, s = skip, ! = flag, g = guidelines, q = quit. Without a terminal, commands are read
    line by line from stdin (see the README, "session", for the protocol).

    With --web, the same sessions are served in a browser: the first line printed is
    `listening on http://HOST:PORT`; annotators open the login links `itcollect annotators add`
    prints; Ctrl-C stops the server.
    """
    from itcollect.kernel.errors import UsageError

    if use_local and base_url:
        raise UsageError("--local and --base-url both name the endpoint: give one")
    if order != "default" and not review:
        raise UsageError("--order goes with --review")
    if compare is not None and review:
        raise UsageError("--compare goes with a session (terminal, --protocol or --web), not --review")
    systems = None
    if compare is not None:
        from itcollect.llm.endpoints import parse_system_names

        systems = parse_system_names(compare)
    if web:
        if annotator or review or force_protocol or order != "default":
            raise UsageError("--web serves every annotator (and the review queue) in the browser: "
                             "leave out --annotator, --review, --order and --protocol")
    else:
        if not annotator:
            raise UsageError("give --annotator NAME (or --web to serve the sessions in a browser)")
        if host is not None or port is not None:
            raise UsageError("--host and --port go with --web")
    with state.workspace() as ws:
        with contextlib.ExitStack() as stack:
            if use_local and not review:
                from itcollect.llm.local import local_server

                base_url, local_model = stack.enter_context(local_server(ws.config))
                model = model or local_model
            if web:
                from itcollect.session.web.server import serve

                code = serve(ws.config, ws.store, ws.root, host=host, port=port, base_url=base_url, model=model,
                             compare=systems)
            else:
                from itcollect.session import run_session

                assert annotator  # checked above: without --web, --annotator is required
                code = run_session(ws.config, ws.store, annotator, base_url=base_url, model=model, review=review,
                                   interactive=False if force_protocol else None,
                                   history_dir=ws.root / ".itcollect" / "history", order=order, compare=systems)
    if code:
        raise click.exceptions.Exit(code)
