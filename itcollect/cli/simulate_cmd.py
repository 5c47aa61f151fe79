from __future__ import annotations

import json

import click


@click.command()
@click.option("--limit", type=click.IntRange(min=0), default=None, help="Simulate at most N dialogues in this run.")
@click.option("--concurrency", type=click.IntRange(min=1), default=None, help="LLM calls in flight (default [llm].concurrency).")
@click.option("--base-url", default=None, metavar="URL", help="OpenAI-compatible endpoint for both roles.")
@click.option("--model", default=None, metavar="NAME", help="Model for both roles.")
@click.option("--annotator-base-url", default=None, metavar="URL", help="Endpoint of the simulated annotator.")
@click.option("--annotator-model", default=None, metavar="NAME", help="Model of the simulated annotator.")
@click.option("--batch-api", is_flag=True, help="Use the OpenAI Batch API (about half the price; hours, not minutes).")
@click.option("--local", is_flag=True, help="Run against the bundled local model (llama.cpp server, itcollect[local]).")
@click.option("--max-cost", type=click.FloatRange(min=0), default=None, metavar="USD",
              help="Stop sending once this run has spent this much (default [simulate].max_cost_usd).")
@click.option("--dry-run", is_flag=True, help="Estimate calls, tokens and cost; send and write nothing.")
@click.option("--status", "show_status", is_flag=True,
              help="With --batch-api: batches in flight, their counts and what each waits for (no network).")
@click.option("--cancel", "cancel_batches", is_flag=True,
              help="With --batch-api: cancel every batch still out, keep what they answered, free the rest.")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as one JSON object.")
@click.pass_obj
def simulate(state, limit, concurrency, base_url, model, annotator_base_url, annotator_model, batch_api, local,
             max_cost, dry_run, show_status, cancel_batches, as_json) -> None:
    """Play every pending spec as a dialogue: an LLM annotator writes the requests, the assistant answers.

    Interrupt (Ctrl-C) or kill it at any time: every committed turn is kept and the same command
    continues where it stopped, answering repeated calls from the request ledger.
    """
    from ..simulate import SimulateOptions, run_simulation

    opts = SimulateOptions(limit=limit, concurrency=concurrency, base_url=base_url, model=model,
                           annotator_base_url=annotator_base_url, annotator_model=annotator_model,
                           max_cost=max_cost, dry_run=dry_run)
    with state.workspace() as ws:
        if batch_api:
            if local:
                raise click.UsageError("--batch-api needs a provider with the OpenAI Batch API; the local "
                                       "llama.cpp server has none (drop --local)")
            try:
                from ..batch import run_batch_simulation
            except ImportError as exc:
                raise click.ClickException(f"--batch-api is not available in this installation ({exc})") from None
            if cancel_batches and (show_status or dry_run):
                raise click.UsageError("--cancel does not go with --status or --dry-run")
            batch = run_batch_simulation(ws, opts, status=show_status, cancel=cancel_batches)
            click.echo(json.dumps(batch.to_json()) if as_json else batch.render())
            if batch.stopped:
                click.echo(f"itcollect: stopped: {batch.stopped}", err=True)
            return
        if show_status or cancel_batches:
            raise click.UsageError(f"{'--status' if show_status else '--cancel'} goes with --batch-api")
        if local:
            from ..local import local_server

            with local_server(ws.config) as (url, name):
                opts.base_url, opts.model = url, name
                opts.annotator_base_url = opts.annotator_base_url or url
                opts.annotator_model = opts.annotator_model or name
                summary = run_simulation(ws, opts)
        else:
            summary = run_simulation(ws, opts)
    if summary.estimate is not None:
        e = summary.estimate
        if as_json:
            click.echo(json.dumps({"dry_run": e}))
            return
        click.echo(f"dry run: {e['dialogues']:,} dialogues -> about {e['calls']:,} calls, "
                   f"{e['prompt_tokens']:,} prompt + {e['completion_tokens']:,} completion tokens, "
                   f"${e['cost_usd']:.2f} (assistant {e['assistant_model']}, annotator {e['annotator_model']}; "
                   f"estimated from {e['sampled']} dialogues)")
        return
    calls = summary.calls
    if as_json:
        click.echo(json.dumps({"done": summary.done, "failed": summary.failed, "parked": summary.skipped_batched,
                               "call_errors": summary.call_errors, "taken_over": summary.taken_over,
                               "failures": summary.failures, "stopped": summary.stopped, "calls": calls}))
    else:
        line = (f"simulate: {summary.done} done, {summary.failed} failed; {calls.get('sent', 0)} calls sent, "
                f"{calls.get('from_ledger', 0)} from the ledger; {calls.get('tokens', 0):,} tokens, "
                f"${calls.get('cost_usd', 0.0):.4f}")
        if summary.failures:
            line += " (failures: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.failures.items())) + ")"
        if summary.call_errors:
            line += (f"; {summary.call_errors} dialogues hit an LLM call that failed after all retries "
                     f"(left pending: re-run to retry)")
        if summary.skipped_batched:
            line += f"; {summary.skipped_batched} waiting for a submitted batch"
        if summary.taken_over:
            line += (f"; {summary.taken_over} taken over by another process while this one stalled past "
                     f"their lease (left to it)")
        click.echo(line)
    if summary.stopped:
        click.echo(f"itcollect: stopped: {summary.stopped}", err=True)
