from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from itcollect.cli import State


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (for scripts).")
@click.option("--annotators", "annotators", is_flag=True,
              help="Per-annotator quality figures (and agreement on overlap specs, review errors); with --json "
                   "only the annotator sections.")
@click.option("--compare", "compare", is_flag=True,
              help="Win rates of the systems compared turn by turn (simulate/session --compare), with 95% "
                   "intervals, by pair / type / language, head to head, strengths, cost; with --json only that "
                   "section, with --plot the win rates alone.")
@click.option("--plot", "plot", type=click.Path(dir_okay=False), default=None, metavar="FILE.png",
              help="Also draw the realised mix against the target as bars into FILE.png.")
@click.pass_obj
def stats(state: State, as_json: bool, annotators: bool, compare: bool, plot: str | None) -> None:
    """Show what the workspace holds: sources, ingest drops, specs, dialogues, calls, filter."""
    from itcollect.stats.report import collect_stats, render_stats

    if annotators and compare:
        from itcollect.kernel.errors import UsageError

        raise UsageError("--annotators and --compare each show one section: give one of them")
    if compare:
        from itcollect.stats.compare import compare_section, render_compare
        from itcollect.stats.corpus import plot_compare, pyplot

        if plot:
            pyplot()
        with state.workspace() as ws:
            section = {"compare": compare_section(ws.store, ws.config)}
        if plot:
            plot_compare(section, plot)
        if as_json:
            click.echo(json.dumps(section["compare"], ensure_ascii=False))
        else:
            lines = render_compare(section)
            click.echo("\n".join(lines).lstrip("\n") if lines else "no compared turns yet (simulate --compare)")
        return
    if annotators:
        from itcollect.stats.quality import quality_figures, render_annotators

        if plot:
            from itcollect.kernel.errors import UsageError

            raise UsageError("--plot draws the mix: leave out --annotators")
        with state.workspace() as ws:
            figures = quality_figures(ws.store, ws.config)
        if as_json:
            click.echo(json.dumps(figures, ensure_ascii=False))
        else:
            click.echo("\n".join(render_annotators(figures)))
        return

    if plot:  # before the (possibly long) statistics: a missing matplotlib is said at once
        from itcollect.stats.corpus import pyplot

        pyplot()
    with state.workspace() as ws:
        data = collect_stats(ws.store, ws.config)
    if plot:
        from itcollect.stats.corpus import plot_mix

        plot_mix(data, plot)
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, sort_keys=False))
    else:
        click.echo(render_stats(data))
