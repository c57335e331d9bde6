"""The corpus commands: `encode` a corpus into a store and `diff` corpora. Each is a thin shell
over one call of `saeembed.api.corpus` or `saeembed.api.compare`."""

from __future__ import annotations

from pathlib import Path

import click

from saeembed.api import compare
from saeembed.api import corpus as api
from saeembed.api.defaults import DIFF_SORTS, TEST_NAMES
from saeembed.cli.options import (
    default_of,
    domain_errors,
    encoder_option,
    encoding_options,
    format_option,
    measure_option,
    note,
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
    "--engine",
    type=click.Choice(["local", "ray"]),
    help="With --out: encode in this process, or on Ray actors [default: local].",
)
@click.option(
    "--address", help="With --engine ray: a running cluster [default: start a local one]."
)
@click.option(
    "--workers", type=click.IntRange(min=1), help="With --engine ray: actors [default: CPUs / 2]."
)
@click.option(
    "--gpus-per-worker",
    type=click.FloatRange(min=0),
    default=0,
    help="With --engine ray: GPUs per actor (0: CPU actors).",
)
@click.option(
    "--shard-docs",
    type=click.IntRange(min=1),
    help="With --out: documents per shard [default: 8,192; multiples of 2,048 give values "
    "bit-identical to a --db encode].",
)
@click.pass_context
@domain_errors
def encode(ctx, input_path, db, out, corpus, text_col, id_col, encoding, chunk_tokens, engine,
           address, workers, gpus_per_worker, shard_docs):  # fmt: skip
    """Encode a corpus file or a named dataset into the store.

    INPUT is JSONL, JSON, CSV, TSV, Parquet or plain text (.gz/.zst/.bz2 too), or a named dataset
    such as data:rotten-tomatoes?category=fresh.

    Each document becomes its max-pooled sparse SAE vector (with --chunk-tokens N, each chunk of
    N tokens does, stored as a document with parent_id and chunk_idx). Interrupt it at any time:
    running it again finishes the job without duplicating anything; running it twice adds
    nothing.

    With --out DIR the encoding is written as Parquet shards (one process, or Ray actors with
    --engine ray), which every command reads as it reads a store (pass DIR as the store)."""
    if (db is None) == (out is None):
        raise click.UsageError("pass either --db FILE (a DuckDB store) or --out DIR (shards)")
    if out is not None:
        db = f"{out}/" if not str(out).endswith("/") else str(out)
    elif engine or address or workers or gpus_per_worker or shard_docs:
        raise click.UsageError("--engine, --address, --workers, --gpus-per-worker and "
                               "--shard-docs write shards: pass --out DIR")  # fmt: skip
    result = api.encode(
        input_path, db, corpus=corpus, text_col=text_col, id_col=id_col, **encoding.kwargs(),
        chunk_tokens=chunk_tokens, progress=not ctx.obj["quiet"],
        engine=engine, address=address, workers=workers, gpus_per_worker=gpus_per_worker,
        shard_docs=shard_docs,
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
@click.option("--top", type=click.IntRange(min=1), default=20, show_default=True)
@click.option(
    "--min-support",
    type=click.IntRange(min=1),
    default=default_of(compare.diff, "min_support"),
    show_default=True,
    help="Test only concepts in at least this many documents of A and B together.",
)
@click.option(
    "--threshold",
    type=float,
    default=default_of(compare.diff, "threshold"),
    show_default=True,
    help="A document has a concept when its pooled activation exceeds this.",
)
@click.option(
    "--alpha",
    type=float,
    default=default_of(compare.diff, "alpha"),
    show_default=True,
    help="q-value cut-off.",
)
@click.option(
    "--examples",
    type=click.IntRange(min=0),
    default=default_of(compare.diff, "examples"),
    help="Top documents per row (on a terminal, one per line under the label).",
)
@measure_option(default_of(compare.diff, "measure"))
@click.option(
    "--sort",
    type=click.Choice(DIFF_SORTS),
    default=default_of(compare.diff, "sort"),
    show_default=True,
    help="Order of the concepts that differ (q < --alpha; the rest follow by p): specific "
    "(the conservative ratio of the sides' frequencies or means: concepts particular to one "
    "side), p, effect (absolute diff) or logodds (the conservative log odds ratio; presence and "
    "strong only). See docs/diff.md#order-of-the-rows.",
)
@click.option(
    "--test",
    type=click.Choice(TEST_NAMES),
    help="Test for the measure [default: proportion for binary measures, welch for numeric].",
)
@click.option(
    "--paired", is_flag=True, help="Rows of A and B correspond (McNemar's or the paired t-test)."
)
@click.option(
    "--pair-on",
    type=click.Choice(["row", "id"]),
    default=default_of(compare.diff, "pair_on"),
    show_default=True,
    help="Pair documents by row number in their files or by their ids (--id-col at encode).",
)
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
@click.option(
    "--panels",
    type=click.IntRange(min=0),
    default=default_of(compare.diff, "panels"),
    show_default=True,
    help="Concepts shown up close in the --html report.",
)
@click.option(
    "--by",
    type=click.Choice(["concepts", "themes"]),
    default="concepts",
    show_default=True,
    help="What to compare: each concept, or themes (kinds of documents: regions of alike "
    "documents, and documents carrying several concepts found together; found on a random "
    "half of each side and tested on the other; docs/diff.md#themes).",
)
@click.option(
    "--themes",
    "n_themes",
    type=click.IntRange(min=2),
    default=default_of(compare.diff, "themes"),
    show_default=True,
    help="Most regions of alike documents (--by themes, and the report's themes section); "
    "themes of concepts found together add at most a quarter as many.",
)
@click.option(
    "--seed",
    type=int,
    default=default_of(compare.diff, "seed"),
    show_default=True,
    help="Seed of the themes' split and fit.",
)
@click.option(
    "--where",
    help="Compare only the documents of each side passing this SQL filter: feature:123 > 0, "
    "meta.KEY = 'value', AND/OR/NOT (docs/diff.md, Subsets).",
)
@format_option
@click.pass_context
@domain_errors
def diff_command(
    ctx, a, b, db, encoder, top, min_support, threshold, alpha, examples, measure, sort, test, paired,
    pair_on, encoding, html, panels, by, n_themes, seed, where, fmt,
):  # fmt: skip
    """Which concepts are more frequent in A than in B?

    A and B are files (any format `encode` reads), named datasets (data:rotten-tomatoes?category=fresh)
    or corpora already in --db. Whatever is not encoded yet is encoded first. Several B's are
    pooled: A against the rest. Per concept: document counts and frequencies, their difference
    with a 95% CI, the log odds ratio, a p-value (Fisher or two-proportion z) and a
    Benjamini-Hochberg q-value. Concepts that differ come first, those most particular to one
    side leading (--sort specific: with 95% confidence, how many times as often the richer side
    has it); the rest follow by p. On a terminal the table fits the window (a column per side,
    the difference with its interval, q); --format csv or json gives every column. --where
    compares only the documents passing a filter. A diff where nothing passes the correction, or
    a side has under 20 documents, says so on stderr."""
    summary: dict = {}
    table = compare.diff(
        a, list(b), db=db, encoder=encoder, measure=measure, test=test, sort=sort, paired=paired,
        pair_on=pair_on,
        min_support=min_support, threshold=threshold, alpha=alpha, top=top, examples=examples,
        **encoding.kwargs("model", "sae", "max_tokens", "chat"), progress=not ctx.obj["quiet"],
        summary=summary, html=html, panels=panels, by=by, themes=n_themes, seed=seed, where=where,
    )  # fmt: skip
    if html is not None:
        note(f"report: {html}")
    sides = f"{summary['a']} vs {' + '.join(summary['b'])}"
    if where is not None:
        sides += f" (only documents where {where})"
    if by == "themes":
        note(
            f"{sides} ({summary['encoder']}): "
            f"{summary['method']}; {summary['significant']:,} of {summary['tested']:,} "
            f"differ at q < {alpha}",
        )
        if summary.get("weak"):
            note(f"saeembed: {summary['weak']}")
        render(theme_view(table, fmt or default_format(), summary), fmt or default_format())
        return
    note(
        f"{sides} ({summary['encoder']}): {summary['tested']:,} concepts tested by {summary['measure']}"
        f"{'/' + summary['test'] if summary['test'] else ''} (support >= {min_support}), "
        f"{summary['significant']:,} differ at q < {alpha}",
    )
    if summary.get("weak"):
        note(f"saeembed: {summary['weak']}")
    fmt = fmt or default_format()
    render(diff_view(table, summary, fmt), fmt)


COMMANDS = [encode, diff_command]
