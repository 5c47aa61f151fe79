from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from itcollect.cli import State


@click.command()
@click.option("--limit", type=click.IntRange(min=0), default=None, help="Judge at most N answers in this run.")
@click.option("--concurrency", type=click.IntRange(min=1), default=None,
              help="LLM calls in flight (default [llm].concurrency).")
@click.option("--base-url", default=None, metavar="URL", help="OpenAI-compatible endpoint of the judge.")
@click.option("--model", default=None, metavar="NAME", help="The judge model (default [llm.judge] model).")
@click.option("--batch-api", is_flag=True, help="Use the OpenAI Batch API (about half the price; hours, not minutes).")
@click.option("--rejudge", is_flag=True, help="Judge every answer again (new samples), replacing the judgements.")
@click.option("--dry-run", is_flag=True, help="Estimate answers, calls, tokens and cost; send and write nothing.")
@click.option("--max-cost", type=click.FloatRange(min=0), default=None, metavar="USD",
              help="Stop sending once this run has spent this much (default [judge].max_cost_usd).")
@click.option("--local", is_flag=True, help="Judge with the bundled local model (llama.cpp server, itcollect[local]).")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as one JSON object.")
@click.pass_obj
def judge(state: State, limit, concurrency, base_url, model, batch_api, rejudge, dry_run, max_cost, local, as_json) -> None:
    """Score every answer of every finished dialogue with an LLM judge: MQM error spans for
    translations, compliance for revisions, a 1-5 rating for explanations and follow-ups.

    Idempotent: answers already judged by this judge (model, templates) for the dialogue as it is
    now are skipped; interrupt it at any time and run it again. Answered calls come from the ledger.
    """
    from itcollect.judge import JudgeOptions, run_judge

    if batch_api and local:
        raise click.UsageError("--batch-api needs a provider with the OpenAI Batch API; the local llama.cpp "
                               "server has no Batch API (drop --local)")
    if local and base_url:
        raise click.UsageError("--local and --base-url both name the endpoint: give one")
    opts = JudgeOptions(limit=limit, concurrency=concurrency, base_url=base_url, model=model, rejudge=rejudge,
                        dry_run=dry_run, max_cost=max_cost)

    def warn(message: str) -> None:
        click.echo(f"itcollect: warning: {message}", err=True)

    with state.workspace() as ws:
        if local:
            from itcollect.llm.local import local_server

            with local_server(ws.config) as (url, name):
                opts.base_url, opts.model = url, opts.model or name
                summary = run_judge(ws, opts, warn=warn)
        else:
            summary = run_judge(ws, opts, warn=warn, batch_api=batch_api,
                                echo=lambda msg: click.echo(f"itcollect: {msg}", err=True))
    if summary.estimate is not None:
        e = summary.estimate
        if as_json:
            click.echo(json.dumps({"dry_run": e}))
            return
        of = f" ({e['candidates']:,} of them candidates of compared turns)" if e["candidates"] else ""
        click.echo(f"dry run: {e['answers']:,} answers to judge{of} -> about {e['calls']:,} calls "
                   f"({e['from_ledger']:,} more answered from the ledger), {e['prompt_tokens']:,} prompt + "
                   f"{e['completion_tokens']:,} completion tokens, ${e['cost_usd']:.2f} (judge {e['model']}, "
                   f"response_format {e['response_format']}; estimated from {e['sampled']} answers; completion "
                   f"tokens are estimated on the high side)")
        return
    calls = summary.calls
    if as_json:
        click.echo(json.dumps(summary.to_json()))
    else:
        line = (f"judge: {summary.judged} judged, {summary.unparsed} unparsed of {summary.todo} answers "
                f"({summary.model}); {calls.get('sent', 0)} calls sent, {calls.get('from_ledger', 0)} from the "
                f"ledger; {calls.get('tokens', 0):,} tokens, ${calls.get('cost_usd', 0.0):.4f}")
        if summary.scores:
            s = sorted(summary.scores)
            line += f"; score mean {sum(s) / len(s):.2f}, median {s[len(s) // 2]:g}"
        if summary.candidates:
            line += f"; {summary.candidates} of them candidates of compared turns"
        if summary.reasked:
            line += f"; {summary.reasked} asked twice (the first reply was not readable)"
        if summary.call_errors:
            line += f"; {summary.call_errors} calls failed after all retries (left unjudged: re-run to retry)"
        if summary.in_batch:
            line += f"; {summary.in_batch} waiting in a Batch API batch"
        click.echo(line)
    if summary.stopped:
        click.echo(f"itcollect: stopped: {summary.stopped}", err=True)
