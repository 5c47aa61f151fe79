from __future__ import annotations

import click


@click.command()
@click.option("--dialogues", "n_dialogues", type=click.IntRange(min=0), required=True,
              help="Make the workspace hold N specs for this seed (re-run with a larger N to top up).")
@click.option("--seed", type=int, default=0, show_default=True, help="Plan seed (same seed, same specs).")
@click.pass_obj
def plan(state, n_dialogues: int, seed: int) -> None:
    """Turn the [mix] config into dialogue specs (pair, instruction language, turns, interaction types)."""
    from itcollect.kernel.progress import progress
    from itcollect.plan import plan_specs

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
