"""The `saeembed data` commands: list the named datasets, fetch one. Each is a thin shell over
one call of `saeembed.api.resources`."""

from __future__ import annotations

from pathlib import Path

import click

from saeembed.api import resources as api
from saeembed.api.defaults import PASSAGE_MODES
from saeembed.cli.options import default_of, domain_errors, format_option, note
from saeembed.cli.render import render


@click.group()
def data() -> None:
    """Named real datasets (fetched once into the cache)."""


@data.command("list")
@format_option
def data_list(fmt):
    """List the named datasets."""
    render(api.dataset_table(), fmt)


@data.command("get")
@click.argument("ref")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="Write to this file (.jsonl, .jsonl.gz, .parquet, .csv) instead of stdout.",
)
@click.option(
    "--split",
    "split",
    type=click.Choice(list(PASSAGE_MODES)),
    help="Split documents into passages.",
)
@click.option(
    "--max-tokens",
    type=click.IntRange(1),
    default=default_of(api.get_dataset, "max_tokens"),
    show_default=True,
    help="Passage size for --split window (words).",
)
@format_option
@domain_errors
def data_get(ref, output, split, max_tokens, fmt):
    """Fetch a named dataset: REF is NAME or NAME?column=value,value (e.g. rotten-tomatoes?category=fresh)."""
    frame, written = api.get_dataset(
        ref, split_passages=split, max_tokens=max_tokens, output=output
    )
    if written:
        note(f"wrote {frame.height:,} rows to {written}")
    else:
        render(frame, fmt)


COMMANDS = [data]
