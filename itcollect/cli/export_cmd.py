from __future__ import annotations

from typing import TYPE_CHECKING

import click

from itcollect.export.writers import FORMATS as EXPORT_FORMATS  # the registry (no pyarrow/datasets import)

if TYPE_CHECKING:
    from itcollect.cli import State


@click.command()
@click.option("--hf", "out", required=True, type=click.Path(file_okay=False),
              help="Output folder: OUT/hf (DatasetDict), OUT/parquet, OUT/sharegpt.json, OUT/README.md ...")
@click.option("--format", "fmt", type=click.Choice([*EXPORT_FORMATS, "all"]), default="hf",
              show_default=True, help="What to write besides the Parquet shards and the dataset card (dpo: the "
                                      "preference rows of compared turns, OUT/dpo; 'all' includes them whenever "
                                      "turns were compared).")
@click.option("--system-prompt", default=None, help="Add this system message to every dialogue.")
@click.option("--validation-share", type=click.FloatRange(0, 1), default=None,
              help="Share of dialogues in the validation split (default: [export].validation_share).")
@click.option("--test-share", type=click.FloatRange(0, 1), default=None,
              help="Share of dialogues in the test split (default: [export].test_share).")
@click.option("--push-to-hub", "push_to_hub", metavar="REPO", default=None,
              help="Also push the DatasetDict to the Hugging Face Hub (token from HF_TOKEN).")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Processes rendering rows in parallel (default: the usable cores, at most 4).")
@click.pass_obj
def export(state: State, out: str, fmt: str, system_prompt: str | None, validation_share: float | None,
           test_share: float | None, push_to_hub: str | None, workers: int | None) -> None:
    """Export the dialogues the latest filter run kept (run 'itcollect filter' first).

    Splits train/validation/test never share a source sentence.
    """
    from itcollect.export import export_dataset

    with state.workspace() as ws:
        new = ws.store.unfiltered_done_count()
        result = export_dataset(ws.store, ws.config, out, fmt=fmt, system_prompt=system_prompt,
                                validation_share=validation_share, test_share=test_share,
                                push_to_hub=push_to_hub, workers=workers)
    if new:
        click.echo(f"note: {new:,} finished dialogues have no verdict yet and were not exported; "
                   "run 'itcollect filter' to include them", err=True)
    click.echo(result.summary())
