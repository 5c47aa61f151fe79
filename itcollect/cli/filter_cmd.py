from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from itcollect.cli import State


@click.command("filter")
@click.option("--near-dup/--no-near-dup", default=None,
              help="Run near-duplicate detection (default: [filter].near_dup in the config).")
@click.option("--near-dup-threshold", type=click.FloatRange(0.0, 1.0, min_open=True), default=None,
              help="Jaccard threshold for near-duplicates (default: [filter].near_dup_threshold).")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Processes judging dialogues in parallel (default: the usable cores, at most 4).")
@click.pass_obj
def filter_(state: State, near_dup: bool | None, near_dup_threshold: float | None, workers: int | None) -> None:
    """Give every finished dialogue a verdict (kept, or dropped with reasons); nothing is deleted.

    Thresholds come from [filter] in itcollect.toml; re-running replaces the verdicts and re-uses the
    cached turn languages, so trying other thresholds is cheap.
    """
    from itcollect.filter import run_filter

    overrides: dict[str, Any] = {k: v for k, v in (("near_dup", near_dup), ("near_dup_threshold", near_dup_threshold))
                 if v is not None}
    with state.workspace() as ws:
        result = run_filter(ws.store, ws.config, workers=workers, **overrides)
    click.echo(result.summary())
