from __future__ import annotations

import os
import signal
import threading
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from itcollect.cli import State


def _config_or_none(state: State):
    """The workspace config when run inside (or -C) a workspace, else None (defaults)."""
    from itcollect.config import CONFIG_FILE

    root = state.directory or os.getcwd()
    if not os.path.isfile(os.path.join(root, CONFIG_FILE)):
        return None
    ws = state.workspace()
    ws.close()
    return ws.config


@click.command("serve-local")
@click.option("--model-path", type=click.Path(dir_okay=False, exists=True),
              help="A GGUF chat model of your own (default: [local] model_path, else the bundled SmolLM2).")
@click.option("--port", type=click.IntRange(0, 65535), help="TCP port on 127.0.0.1 (default: a free one).")
@click.option("--n-ctx", type=click.IntRange(256), help="Context window in tokens.")
@click.option("--n-threads", type=click.IntRange(0), help="CPU threads (0 = auto: all cores, half on an overloaded machine).")
@click.pass_obj
def serve_local(state: State, model_path: str | None, port: int | None, n_ctx: int | None, n_threads: int | None) -> None:
    """Serve the local llama.cpp model as an OpenAI-compatible endpoint until Ctrl-C.

    Settings come from [local] in the workspace config (if run in a workspace), overridden by the
    options. Point any command at the printed URL with --base-url and --model.
    """
    from itcollect.config import with_values
    from itcollect.llm.local import server_for_config

    options = {"model_path": model_path and os.path.abspath(model_path), "port": port, "n_ctx": n_ctx,
               "n_threads": n_threads}
    merged = with_values(_config_or_none(state), "local", **{k: v for k, v in options.items() if v is not None})
    server = server_for_config(merged)
    click.echo(f"Starting llama.cpp server with {server.model_path.name} ...", err=True)
    stop = threading.Event()

    def _on_signal(signum, frame):  # Ctrl-C and SIGTERM (even where a shell ignores SIGINT) stop cleanly
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM,)}
    try:
        server.start()
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, _on_signal)
        click.echo(f"base_url: {server.base_url}")
        click.echo(f"model:    {server.model_name}")
        click.echo(f"Use it:   itcollect simulate --base-url {server.base_url} --model {server.model_name}", err=True)
        click.echo("Press Ctrl-C to stop.", err=True)
        while not stop.is_set() and server.running:
            stop.wait(0.5)
        if not stop.is_set():
            from itcollect.kernel.errors import ServiceError

            raise ServiceError(server.failure(wait_s=1.0) or "the llama.cpp server exited unexpectedly")
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo("Stopped the local server.", err=True)
