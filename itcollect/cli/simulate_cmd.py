from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from itcollect.cli import State


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
@click.option("--compare", "compare", default=None, metavar="A,B[,...]",
              help="Every answer by each of these systems ([llm.systems.NAME], else a model on the assistant's "
                   "endpoint); the judge picks the best, which continues.")
@click.option("--judge-model", default=None, metavar="NAME", help="With --compare: the judge's model (default [llm.judge]).")
@click.option("--judge-base-url", default=None, metavar="URL",
              help="With --compare: the judge's endpoint (default [llm.judge]).")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as one JSON object.")
@click.pass_obj
def simulate(state: State, limit, concurrency, base_url, model, annotator_base_url, annotator_model, batch_api, local,
             max_cost, dry_run, show_status, cancel_batches, compare, judge_model, judge_base_url, as_json) -> None:
    """Play every pending spec as a dialogue: an LLM annotator writes the requests, the assistant answers.

    Interrupt (Ctrl-C) or kill it at any time: every committed turn is kept and the same command
    continues where it stopped, answering repeated calls from the request ledger.
    """
    # deferred: the command's stage loads when the command runs (the CLI's lazy registry)
    from itcollect.llm.endpoints import parse_system_names, resolve_systems
    from itcollect.settings import settings
    from itcollect.simulate import SimulateOptions, SimulateSummary, run_batch_simulation, run_simulation

    if compare is None and (judge_model or judge_base_url):
        raise click.UsageError("--judge-model and --judge-base-url go with --compare")
    opts = SimulateOptions(limit=limit, concurrency=concurrency, base_url=base_url, model=model,
                           annotator_base_url=annotator_base_url, annotator_model=annotator_model,
                           max_cost=max_cost, dry_run=dry_run,
                           compare=tuple(parse_system_names(compare)) if compare is not None else (),
                           judge_model=judge_model, judge_base_url=judge_base_url)
    summary: SimulateSummary  # a BatchSummary with --batch-api
    with state.workspace() as ws:
        if compare is not None:  # fewer than two systems or one twice: exit 2 naming the configured ones
            resolve_systems(settings(ws.config), opts.compare, base_url=base_url)
        if batch_api:
            if local:
                raise click.UsageError("--batch-api needs a provider with the OpenAI Batch API; the local "
                                       "llama.cpp server has none (drop --local)")
            if cancel_batches and (show_status or dry_run):
                raise click.UsageError("--cancel does not go with --status or --dry-run")
            summary = run_batch_simulation(ws, opts, echo=_echo, status=show_status, cancel=cancel_batches)
        elif show_status or cancel_batches:
            raise click.UsageError(f"{'--status' if show_status else '--cancel'} goes with --batch-api")
        elif local:
            from itcollect.llm.local import (
                local_server,  # deferred: only --local needs the llama.cpp launcher
            )

            with local_server(ws.config) as (url, name):
                opts.base_url, opts.model = url, name
                opts.annotator_base_url = opts.annotator_base_url or url
                opts.annotator_model = opts.annotator_model or name
                summary = run_simulation(ws, opts)
        else:
            summary = run_simulation(ws, opts)
    click.echo(json.dumps(summary.to_json()) if as_json else
               render_batch(summary) if batch_api else render_online(summary))
    if summary.stopped:
        click.echo(f"itcollect: stopped: {summary.stopped}", err=True)


def _echo(message: str) -> None:
    click.echo(f"itcollect: {message}", err=True)


# -- rendering ------------------------------------------------------------------------------------------
def render_online(summary: Any) -> str:
    """The one-line summary of an online run (or its dry run)."""
    if summary.estimate is not None:
        e = summary.estimate
        return (f"dry run: {e['dialogues']:,} dialogues -> about {e['calls']:,} calls, "
                f"{e['prompt_tokens']:,} prompt + {e['completion_tokens']:,} completion tokens, "
                f"${e['cost_usd']:.2f} (assistant {e['assistant_model']}, annotator {e['annotator_model']}; "
                f"estimated from {e['sampled']} dialogues)")
    calls = summary.calls
    line = (f"simulate: {summary.done} done, {summary.failed} failed; {calls.get('sent', 0)} calls sent, "
            f"{calls.get('from_ledger', 0)} from the ledger; {calls.get('tokens', 0):,} tokens, "
            f"${calls.get('cost_usd', 0.0):.4f}")
    if summary.failures:
        line += " (failures: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.failures.items())) + ")"
    if summary.call_errors:
        line += (f"; {summary.call_errors} dialogues hit an LLM call that failed after all retries "
                 f"(left pending: re-run to retry)")
    if summary.parked:
        line += f"; {summary.parked} waiting for a submitted batch"
    if summary.taken_over:
        line += (f"; {summary.taken_over} taken over by another process while this one stalled past "
                 f"their lease (left to it)")
    return line + render_compare(summary)


def render_compare(summary: Any) -> str:
    """The compared turns of a ``--compare`` run, as lines under the summary line ("" otherwise)."""
    c = summary.compare
    if c is None or summary.estimate is not None:
        return ""
    out = (f"\ncompare {', '.join(c.systems)}: {c.compared} turns compared ({c.ties} ties broken by the seed), "
           f"{c.void} void (fewer than two answers, or none that passed the checks: not a comparison)")
    if c.no_answer:
        out += f", {c.no_answer} no system answered (left pending: re-run to retry)"
    if c.own_systems:
        out += (f"\n{c.own_systems} dialogues continued with the systems they started with, not this run's "
                f"(a dialogue keeps its systems)")
    return out


def render_batch(summary: Any) -> str:
    """What a ``simulate --batch-api`` invocation prints: its status, dry run, cancel or run."""
    if summary.status is not None:
        return render_batch_status(summary.status)
    if summary.estimate is not None:
        return render_batch_estimate(summary.estimate)
    if summary.cancelled is not None:
        return (f"simulate --batch-api --cancel: {summary.cancelled} batch(es) stopped; {summary.answered:,} answers "
                f"they had collected (${summary.cost_usd:.4f}), {summary.failed_calls:,} calls without an answer "
                f"are free again (re-run simulate, with or without --batch-api, to continue)")
    line = (f"simulate --batch-api: {summary.rounds} round(s), {summary.submitted:,} calls submitted, "
            f"{summary.answered:,} answered, {summary.failed_calls:,} came back without an answer; dialogues "
            f"{summary.done:,} done, {summary.failed:,} failed; ${summary.cost_usd:.4f} at batch prices")
    if summary.waiting:
        line += f"; {summary.waiting:,} calls still out (re-run to collect)"
    if summary.stragglers:
        line += (f"; {summary.stragglers:,} dialogues left to online `itcollect simulate` (their call failed in "
                 f"every batch)")
    if summary.parked:
        line += f"; {summary.parked} waiting for a batch submitted elsewhere"
    return line + render_compare(summary)


def render_batch_estimate(e: dict[str, Any]) -> str:
    """``simulate --batch-api --dry-run``: the whole remaining run, then the next round."""
    roles = e["by_role"]
    nxt = e["next_round"]
    head = (f"dry run (batch): {e['dialogues']:,} dialogues -> about {e['calls']:,} calls (assistant "
            f"{roles.get('assistant', 0):,}, annotator {roles.get('annotator', 0):,}), "
            f"{e['prompt_tokens']:,} prompt + {e['completion_tokens']:,} completion tokens, "
            f"${e['cost_usd']:.4f} at batch prices (${e['cost_usd_online']:.4f} online; at most "
            f"${e['cost_usd_max']:.4f}) (assistant {e['assistant_model']}, annotator {e['annotator_model']}; "
            f"estimated from {e['sampled']} dialogues)")
    nroles = nxt["by_role"]
    tail = [f"next round: {nxt['calls']:,} calls (assistant {nroles.get('assistant', 0):,}, annotator "
            f"{nroles.get('annotator', 0):,}), ${nxt['cost_usd']:.4f} at batch prices (at most "
            f"${nxt['cost_usd_max']:.4f}) in {nxt['batches']} batch file(s)"]
    if e["ready"]:
        tail.append(f"{e['ready']:,} dialogues have answers in the ledger to apply first")
    if e["in_flight"]:
        tail.append(f"{e['in_flight']:,} calls are in batches still out (collected before the next round)")
    if e["stragglers"]:
        tail.append(f"{e['stragglers']:,} calls failed in {e['max_attempts']} batches and are left to "
                    f"online simulate")
    return head + "\n" + "; ".join(tail)


def render_batch_status(status: dict[str, Any]) -> str:
    """``simulate --batch-api --status``: the batches in flight and what each waits for."""
    lines = []
    flight = status["in_flight"]
    if not flight:
        lines.append("No batch in flight.")
    else:
        lines.append(f"{len(flight)} batch(es) in flight, {status['calls_batched']:,} calls waiting:")
        for b in flight:
            remote = f" {b['remote_id']} [{b['remote_status']}]" if b["remote_id"] else ""
            lines.append(f"  round {b['round']}  batch {b['id']}{remote}  {b['model'] or ''}  "
                         f"{b['completed']:,}/{b['requests']:,} done, {b['failed']:,} failed  "
                         f"(last update {b['updated_at']})")
            lines.append(f"      waiting for {b['waiting_for']}")
    last = status["last_round"]
    if last:
        lines.append(f"Last collected round {last['round']}: {last['batches']} batch(es), {last['answered']:,} "
                     f"answered, {last['failed']:,} without answer, ${last['cost_usd']:.4f}")
    specs = status["specs"]
    lines.append(f"Specs: {specs['pending']:,} pending, {specs['in_progress']:,} in progress, {specs['done']:,} "
                 f"done, {specs['failed']:,} failed.")
    return "\n".join(lines)
