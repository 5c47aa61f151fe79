from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from itcollect.cli import State


@click.command()
@click.option("--dialogues", "n_dialogues", type=click.IntRange(min=0), default=None,
              help="Make the workspace hold N specs for this seed (re-run with a larger N to top up).")
@click.option("--seed", type=int, default=0, show_default=True, help="Plan seed (same seed, same specs).")
@click.option("--from-split", "from_split", type=click.Choice(["train", "validation", "test"]), default=None,
              help="Instead of planning: replay the dialogues an export puts in this split as new specs, to compare "
                   "systems on them (simulate --compare); not counted toward max_uses_per_source, never exported.")
@click.pass_obj
def plan(state: State, n_dialogues: int | None, seed: int, from_split: str | None) -> None:
    """Turn the [mix] config into dialogue specs (pair, instruction language, turns, interaction types)."""
    from itcollect.kernel.errors import UsageError
    from itcollect.kernel.progress import progress
    from itcollect.plan import plan_specs, replay_split

    if (n_dialogues is None) == (from_split is None):
        raise UsageError("give --dialogues N (plan the mix) or --from-split SPLIT (replay an export's split)")
    if from_split is not None:
        with state.workspace() as ws:
            r = replay_split(ws.store, ws.config, from_split, seed)
        click.echo(f"{r.split} split: {r.dialogues} dialogues; added {r.added} replay specs for seed {r.seed}"
                   f" ({r.existing} already there" + (f", {r.without_spec} without a spec to replay" if r.without_spec
                                                     else "") + ")")
        return
    assert n_dialogues is not None
    with state.workspace() as ws:
        bar = progress(total=None, desc="plan", unit="spec")
        try:
            result = plan_specs(ws.store, ws.config, n_dialogues, seed, progress=bar)
        finally:
            bar.close()
    if result.added == 0:
        click.echo(f"seed {seed}: already {result.existing} specs (>= {n_dialogues}); nothing added")
        return
    click.echo(f"seed {seed}: added {result.added} specs ({result.existing} existed, {result.total} now); "
               f"{result.constrained} constrained first turns")
    for dim, counts in result.counts.items():
        total = max(1, sum(counts.values()))
        shares = "  ".join(f"{k} {v / total:.1%}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
        click.echo(f"  {dim}: {shares}")
