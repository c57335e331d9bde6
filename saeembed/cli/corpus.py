"""The corpus commands: `encode` a corpus into a store and `diff` corpora. Each is a thin shell
over one call of `saeembed.api.corpus` or `saeembed.api.compare`."""

from __future__ import annotations

from pathlib import Path

import click

from saeembed.api import compare
from saeembed.api import corpus as api
from saeembed.api.defaults import DiffSettings, ShardOptions
from saeembed.cli.options import (
    domain_errors,
    encoder_option,
    encoding_options,
    format_option,
    note,
    settings_options,
)
from saeembed.cli.render import default_format, render
from saeembed.cli.views import diff_view, theme_view


@click.command()
@click.argument("input_path", metavar="INPUT")
@click.option(
    "--db",
    type=click.Path(path_type=Path),
    help="DuckDB store to write (created if missing).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Write Parquet shards into this directory instead of a DuckDB file (docs/scale.md).",
)
@click.option("--corpus", help="Corpus name [default: the file name without extensions].")
@click.option(
    "--text-col", help="Column holding the text [default: `text`, or the only string column]."
)
@click.option("--id-col", help="Column with your own document ids (must be unique).")
@encoding_options()
@click.option(
    "--chunk-tokens",
    type=int,
    help="Store each document as consecutive chunks of N tokens, each a document with parent_id "
    "and chunk_idx [default: whole documents].",
)
@click.option(
    "--keep-dense",
    is_flag=True,
    help="Also store each document's reader activations at the SAE's site, mean-pooled over the "
    "tokens the SAE pools (float32, 4 x d_model bytes a document; table dense_vectors), and fill "
    "them in for documents encoded before. --db only.",
)
@settings_options(ShardOptions, argument="shards")
@click.pass_context
@domain_errors
def encode(
    ctx, input_path, db, out, corpus, text_col, id_col, encoding, chunk_tokens, keep_dense, shards
):
    """Encode a corpus file or a named dataset into the store.

    INPUT is JSONL, JSON, CSV, TSV, Parquet or plain text (.gz/.zst/.bz2 too), or a named dataset
    such as data:rotten-tomatoes?category=fresh.

    Each document becomes its max-pooled sparse SAE vector (with --chunk-tokens N, each chunk of
    N tokens does, stored as a document with parent_id and chunk_idx). Interrupt it at any time:
    running it again finishes the job without duplicating anything; running it twice adds
    nothing.

    With --out DIR the encoding is written as Parquet shards (one process, or Ray actors with
    --engine ray), which every command reads as it reads a store (pass DIR as the store).

    With --keep-dense each document also keeps its dense vector: the reader's activations at the
    SAE's site, mean-pooled over the same tokens (docs/schema.md, `dense_vectors`)."""
    if (db is None) == (out is None):
        raise click.UsageError("pass either --db FILE (a DuckDB store) or --out DIR (shards)")
    if out is not None:
        db = f"{out}/" if not str(out).endswith("/") else str(out)
    elif shards.given:
        raise click.UsageError("--engine, --address, --workers, --gpus-per-worker and "
                               "--shard-docs write shards: pass --out DIR")  # fmt: skip
    result = api.encode(
        input_path, db, corpus=corpus, text_col=text_col, id_col=id_col, encoding=encoding,
        chunk_tokens=chunk_tokens, shards=shards, keep_dense=keep_dense,
        progress=not ctx.obj["quiet"],
    )  # fmt: skip
    note(result.summary())


@click.command("diff")
@click.argument("a")
@click.argument("b", nargs=-1, required=True)
@click.option(
    "--db",
    type=click.Path(path_type=Path),
    help="Store holding (or receiving) the corpora [default: a cache store under $SAEEMBED_HOME].",
)
@encoder_option("Encoder id or name, when the store has several.")
@settings_options(DiffSettings, defaults={"top": 20})
@encoding_options(
    only=("model", "sae", "max_tokens", "chat"),
    help={"model": "Reader for inputs to encode.",
          "sae": "SAE for inputs to encode [default: the one shipped for the model].",
          "max_tokens": "Truncate inputs to encode [default: 512 tokens]."},
)  # fmt: skip
@click.option(
    "--html",
    "html",
    type=click.Path(path_type=Path),
    help="Also write the report page there (every tested concept; docs/reports.md).",
)
@format_option
@click.pass_context
@domain_errors
def diff_command(ctx, a, b, db, encoder, settings, encoding, html, fmt):
    """Which concepts are more frequent in A than in B?

    A and B are files (any format `encode` reads), named datasets (data:rotten-tomatoes?category=fresh)
    or corpora already in --db. Whatever is not encoded yet is encoded first. Several B's are
    pooled: A against the rest. Per concept: document counts and frequencies, their difference
    with a 95% CI, the log odds ratio, a p-value (Fisher or two-proportion z) and a
    Benjamini-Hochberg q-value. Concepts that differ come first, those most particular to one
    side leading (--sort specific: with 95% confidence, how many times as often the richer side
    has it); the rest follow by p. On a terminal the table fits the window (a column per side,
    the difference with its interval, q); --format csv or json gives every column. --where
    compares only the documents passing a filter; --by themes compares kinds of documents. A
    diff where nothing passes the correction, or a side has under 20 documents, says so on
    stderr."""
    result = compare.diff(a, list(b), db=db, encoder=encoder, settings=settings,
                          encoding=encoding, html=html, progress=not ctx.obj["quiet"])  # fmt: skip
    if html is not None:
        note(f"report: {html}")
    sides = f"{result.a} vs {' + '.join(result.b)}"
    if settings.where is not None:
        sides += f" (only documents where {settings.where})"
    alpha = settings.alpha
    if settings.by == "themes":
        note(f"{sides} ({result.encoder}): {result.method}; {result.significant:,} of "
             f"{result.tested:,} differ at q < {alpha}")  # fmt: skip
    else:
        note(
            f"{sides} ({result.encoder}): {result.tested:,} concepts tested by {settings.measure}"
            f"{'/' + result.test if result.test else ''} (support >= {settings.min_support}), "
            f"{result.significant:,} differ at q < {alpha}",
        )
    if result.weak:
        note(f"saeembed: {result.weak}")
    fmt = fmt or default_format()
    if settings.by == "themes":
        render(theme_view(result, fmt), fmt)
    else:
        render(diff_view(result, fmt), fmt)


COMMANDS = [encode, diff_command]
