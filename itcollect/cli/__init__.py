"""The ``itcollect`` command line: a thin shell over the library.

click was chosen over argparse for composable sub-commands, exit status 2 on usage errors for
free, and ``CliRunner``; commands load lazily so ``itcollect --help`` does not import ``datasets``.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING

import click

from itcollect import __version__
from itcollect.kernel.errors import ItcollectError

if TYPE_CHECKING:  # the workspace (and the store) load when a command opens one
    from itcollect.workspace import Workspace

#: command name -> "module:function" inside itcollect.cli
COMMANDS: dict[str, str] = {
    "init": "init_cmd:init",
    "ingest": "ingest_cmd:ingest",
    "plan": "plan_cmd:plan",
    "simulate": "simulate_cmd:simulate",
    "session": "session_cmd:session",
    "import": "import_cmd:import_",
    "filter": "filter_cmd:filter_",
    "export": "export_cmd:export",
    "stats": "stats_cmd:stats",
    "serve-local": "local_cmd:serve_local",
    "demo": "demo_cmd:demo",
    "annotators": "annotators_cmd:annotators",
    "judge": "judge_cmd:judge",
    "store": "store_cmd:store_group",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.commands:
            return self.commands[name]
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(f"{__name__}.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{module_name}":
                return None  # not built yet
            raise
        return getattr(module, attr)


class State:
    """Per-invocation options shared by all commands (``ctx.obj``)."""

    def __init__(self, directory: str | None, debug: bool) -> None:
        self.directory = directory
        self.debug = debug

    def workspace(self) -> Workspace:
        from itcollect.workspace import Workspace

        return Workspace(self.directory or os.getcwd())


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-C", "directory", metavar="DIR", type=click.Path(file_okay=False),
              help="Act on the workspace in DIR instead of the current folder.")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.version_option(__version__, prog_name="itcollect")
@click.pass_context
def cli(ctx: click.Context, directory: str | None, debug: bool) -> None:
    """Build interactive-translation instruction-tuning dialogues (BayLing-style).

    Data flow: ingest -> plan -> simulate | session -> (import) -> filter -> export; stats at any time.
    """
    ctx.obj = State(directory, debug)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: maps library errors to one line on stderr and an exit status."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        rv = cli.main(args=args, prog_name="itcollect", standalone_mode=False)
        # click returns the code of ctx.exit(n) / Exit(n) instead of raising it in this mode
        return rv if isinstance(rv, int) else 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("itcollect: interrupted", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("itcollect: interrupted; everything committed so far is kept, re-run to continue", err=True)
        return 130
    except ItcollectError as exc:
        if debug:
            raise
        click.echo(f"itcollect: error: {exc.format()}", err=True)
        return exc.exit_code
    except BrokenPipeError:
        return 0
    except OSError as exc:
        if debug:
            raise
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        click.echo(f"itcollect: error: {where}{exc.strerror or exc}", err=True)
        return 1
    except Exception as exc:  # noqa: BLE001 - the last line of defence for a clear message
        if debug:
            raise
        click.echo(f"itcollect: internal error: {type(exc).__name__}: {exc} (re-run with --debug for the "
                   f"traceback)", err=True)
        return 1


def run() -> None:
    sys.exit(main())
