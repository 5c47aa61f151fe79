from __future__ import annotations

import click


@click.command()
@click.argument("directory", required=False, default="itcollect-demo", type=click.Path(file_okay=False))
@click.option("--base-url", metavar="URL", help="Use this OpenAI-compatible endpoint instead of the local model.")
@click.option("--model", metavar="NAME", help="Model name at --base-url.")
@click.option("--dialogues", type=click.IntRange(1), default=16, show_default=True,
              help="Dialogues to plan and simulate (about 15 s each on 2 cores with the local model).")
def demo(directory: str, base_url: str | None, model: str | None, dialogues: int) -> None:
    """Run the whole pipeline offline in DIRECTORY (default ./itcollect-demo) on the bundled model.

    init, ingest the bundled news samples, import example dialogues, plan, simulate on a local llama.cpp server
    (itcollect[local]), judge, filter, export --format all, stats. Re-running reuses the workspace and the
    request ledger. The tiny local model shows the pipeline, not translation quality; --base-url
    and --model run the same demo on a real endpoint.
    """
    from itcollect.demo import run_demo, summary
    from itcollect.kernel.errors import UsageError

    if bool(model) != bool(base_url):
        raise UsageError("--base-url and --model go together: the endpoint and the model it serves")
    if not base_url:
        from itcollect.llm.local import check_local_installed

        check_local_installed()  # fail before creating anything when the extra is missing
    result = run_demo(directory, base_url=base_url, model=model, dialogues=dialogues, echo=click.echo)
    click.echo(summary(result, local=not base_url))
    if result.kept == 0 and not result.missing:
        raise click.ClickException("the demo exported no dialogue: every one failed or was filtered out "
                                   f"(see 'itcollect -C {result.root} stats')")
