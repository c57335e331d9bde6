"""The `saeembed` command line: each command parses its options, makes one library call, and
renders the result (tables on a terminal, JSON lines when piped). Logs and progress go to stderr."""

from __future__ import annotations

import functools
import json
import logging
import sys
from pathlib import Path

import click
import polars as pl

from saeembed import __version__
from saeembed.analysis.measures import (
    DEFAULT_DIFF_MEASURE,
    DIFF_SORTS,
    MEASURE_NAMES,
    TEST_NAMES,
)
from saeembed.errors import SaeembedError
from saeembed.render import FORMATS, render

log = logging.getLogger("saeembed")


def _setup_logging(verbose: int, quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("saeembed: %(message)s"))
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(
        logging.ERROR if quiet else [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    )


def _domain_errors(fn):
    """Turn saeembed's domain errors into one-line click errors (exit code 1)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SaeembedError as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper


def measure_option(default: str | None, what: str = "concept", default_note: str = ""):
    """``--measure``: what each (document, concept) contributes (saeembed.analysis.measures);
    ``default`` None leaves the choice to the library, described by ``default_note``."""
    return click.option(
        "--measure",
        type=click.Choice(MEASURE_NAMES),
        default=default,
        show_default=default is not None,
        help=f"Per-document {what} measure: presence, strong presence (above half the concept's "
        "p99), token count, share of tokens, mean or max activation (docs/diff.md#measures)."
        + (f" [default: {default_note}]" if default_note else ""),
    )


format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="Output format [default: table on a terminal, jsonl when piped].",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="saeembed")
@click.option("-v", "--verbose", count=True, help="More logging on stderr (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr, no progress bar.")
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """SAE embeddings of text corpora, stored in DuckDB: encode documents into sparse vectors of
    interpretable concepts, then query and analyse them."""
    _setup_logging(verbose, quiet)
    ctx.obj = {"quiet": quiet}


# ---- encode -----------------------------------------------------------------------------------
@main.command()
@click.argument("input_path", metavar="INPUT")
@click.option(
    "--db",
    required=True,
    type=click.Path(path_type=Path),
    help="DuckDB store to write (created if missing).",
)
@click.option("--corpus", help="Corpus name [default: the file name without extensions].")
@click.option(
    "--text-col", help="Column holding the text [default: `text`, or the only string column]."
)
@click.option("--id-col", help="Column with your own document ids (must be unique).")
@click.option(
    "--model",
    default="default",
    show_default=True,
    help="Reader LLM: Hub id (owner/name[@revision]), local path, or `default` (SmolLM2-135M-Instruct).",
)
@click.option(
    "--sae",
    help="SAE: directory, checkpoint file or Hub id (saeembed, SAELens, sparsify, Goodfire) [default: the one shipped for the model].",
)
@click.option(
    "--layer",
    type=int,
    help="Residual stream after this decoder block (0-based) [default: the SAE's].",
)
@click.option(
    "--max-tokens",
    type=click.IntRange(1),
    default=512,
    show_default=True,
    help="Keep the first N tokens of each document (longer ones are truncated and counted).",
)
@click.option(
    "--batch-tokens",
    type=click.IntRange(1),
    help="Token budget per batch [default: 1024 on CPU, 65536 on CUDA].",
)
@click.option("--device", default="auto", show_default=True, help="auto, cuda, mps or cpu.")
@click.option(
    "--dtype",
    default="auto",
    show_default=True,
    help="auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16.",
)
@click.option(
    "--as-chat",
    "chat",
    type=click.Choice(["none", "user", "assistant"]),
    default="none",
    show_default=True,
    help="Wrap each document in the model's chat template as this turn (scaffolding is not pooled).",
)
@click.option(
    "--chunk-tokens",
    type=int,
    help="Store each document as consecutive chunks of N tokens, each a document with parent_id "
    "and chunk_idx [default: whole documents].",
)
@click.pass_context
@_domain_errors
def encode(
    ctx,
    input_path,
    db,
    corpus,
    text_col,
    id_col,
    model,
    sae,
    layer,
    max_tokens,
    batch_tokens,
    device,
    dtype,
    chat,
    chunk_tokens,
):
    """Encode a corpus file or a named dataset into the store.

    INPUT is JSONL, JSON, CSV, TSV, Parquet or plain text (.gz/.zst/.bz2 too), or a named dataset
    such as data:rotten-tomatoes?category=fresh.

    Each document becomes its max-pooled sparse SAE vector (with --chunk-tokens N, each chunk of
    N tokens does, stored as a document with parent_id and chunk_idx). Interrupt it at any time:
    running it again finishes the job without duplicating anything; running it twice adds
    nothing."""
    from saeembed.api import encode as encode_documents

    result = encode_documents(
        input_path,
        db,
        corpus=corpus,
        text_col=text_col,
        id_col=id_col,
        model=model,
        sae=sae,
        layer=layer,
        max_tokens=max_tokens,
        batch_tokens=batch_tokens,
        device=device,
        dtype=dtype,
        chat=chat,
        chunk_tokens=chunk_tokens,
        progress=not ctx.obj["quiet"],
    )
    click.echo(result.summary(), err=True)


# ---- diff --------------------------------------------------------------------------------------
TABLE_DIFF_COLUMNS = ["feature", "label", "n_a", "n_b", "freq_a", "freq_b", "mean_a", "mean_b",
                      "diff", "ci_low", "ci_high", "log_odds", "ratio", "p", "q"]  # fmt: skip


@main.command("diff")
@click.argument("a")
@click.argument("b", nargs=-1, required=True)
@click.option(
    "--db",
    type=click.Path(path_type=Path),
    help="Store holding (or receiving) the corpora [default: a cache store under $SAEEMBED_HOME].",
)
@click.option("--encoder", help="Encoder id or name, when the store has several.")
@click.option("--top", type=click.IntRange(min=1), default=20, show_default=True)
@click.option(
    "--min-support",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Test only concepts in at least this many documents of A and B together.",
)
@click.option(
    "--threshold",
    type=float,
    default=0.0,
    show_default=True,
    help="A document has a concept when its pooled activation exceeds this.",
)
@click.option("--alpha", type=float, default=0.05, show_default=True, help="q-value cut-off.")
@click.option("--examples", type=click.IntRange(min=0), default=0, help="Top documents per row.")
@measure_option(DEFAULT_DIFF_MEASURE)
@click.option(
    "--sort",
    type=click.Choice(DIFF_SORTS),
    default=DIFF_SORTS[0],
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
    default="row",
    show_default=True,
    help="Pair documents by row number in their files or by their ids (--id-col at encode).",
)
@click.option("--model", default="default", show_default=True, help="Reader for inputs to encode.")
@click.option("--sae", help="SAE for inputs to encode [default: the one shipped for the model].")
@click.option("--max-tokens", type=click.IntRange(min=1), help="Truncate inputs to encode.")
@click.option(
    "--as-chat",
    "chat",
    type=click.Choice(["none", "user", "assistant"]),
    default="none",
    show_default=True,
)
@format_option
@click.pass_context
@_domain_errors
def diff_command(
    ctx, a, b, db, encoder, top, min_support, threshold, alpha, examples, measure, sort, test, paired,
    pair_on, model, sae, max_tokens, chat, fmt,
):  # fmt: skip
    """Which concepts are more frequent in A than in B?

    A and B are files (any format `encode` reads), named datasets (data:rotten-tomatoes?category=fresh)
    or corpora already in --db. Whatever is not encoded yet is encoded first. Several B's are
    pooled: A against the rest. Per concept: document counts and frequencies, their difference
    with a 95% CI, the log odds ratio, a p-value (Fisher or two-proportion z) and a
    Benjamini-Hochberg q-value. Concepts that differ come first, those most particular to one
    side leading (--sort specific: with 95% confidence, how many times as often the richer side
    has it); the rest follow by p."""
    from saeembed.api import diff
    from saeembed.render import default_format

    summary: dict = {}
    table = diff(
        a, list(b), db=db, encoder=encoder, measure=measure, test=test, sort=sort, paired=paired,
        pair_on=pair_on,
        min_support=min_support, threshold=threshold, alpha=alpha, top=top, examples=examples,
        model=model, sae=sae, max_tokens=max_tokens, chat=chat, progress=not ctx.obj["quiet"],
        summary=summary,
    )  # fmt: skip
    if not ctx.obj["quiet"]:
        click.echo(
            f"{summary['a']} vs {' + '.join(summary['b'])} ({summary['encoder']}): "
            f"{summary['tested']:,} concepts tested by {summary['measure']}"
            f"{'/' + summary['test'] if summary['test'] else ''} (support >= {min_support}), "
            f"{summary['significant']:,} differ at q < {alpha}",
            err=True,
        )
    fmt = fmt or default_format()
    if "examples" in table.columns and fmt in ("table", "csv"):
        table = table.with_columns(pl.col("examples").list.join(" | "))
    if fmt == "table":
        keep = [c for c in TABLE_DIFF_COLUMNS if c in table.columns]
        table = table.select(keep + (["examples"] if "examples" in table.columns else []))
        table = table.with_columns(  # p-values span many orders of magnitude
            pl.col("p", "q").map_elements(lambda v: f"{v:.1e}", return_dtype=pl.Utf8)
        )
    render(table, fmt)


@main.command("correlate")
@click.argument("db", type=click.Path(path_type=Path))
@click.option("--corpus", help="Only documents of this corpus [default: all encoded ones].")
@click.option("--encoder", help="Encoder id or name, when the store has several.")
@click.option(
    "--with",
    "column",
    help="A metadata column: correlate concepts with it instead of with each other.",
)
@click.option(
    "--kind",
    type=click.Choice(["auto", "numeric", "categorical", "date"]),
    default="auto",
    show_default=True,
    help="How to read the --with column.",
)
@click.option("--top", type=click.IntRange(min=1), default=30, show_default=True)
@click.option("--min-support", type=click.IntRange(min=1), default=10, show_default=True)
@click.option(
    "--max-cosine",
    type=float,
    default=0.5,
    show_default=True,
    help="Pairs whose decoder directions are closer than this are near-duplicates (trivial).",
)
@click.option("--show-trivial", is_flag=True, help="Keep trivial pairs (marked) in the output.")
@measure_option("presence")
@click.option(
    "--max-docs",
    type=click.IntRange(min=100),
    default=50_000,
    show_default=True,
    help="Concept pairs: use at most this many documents (a fixed sample).",
)
@format_option
@_domain_errors
def correlate_command(
    db, corpus, encoder, column, kind, top, min_support, max_cosine, show_trivial, measure,
    max_docs, fmt,
):  # fmt: skip
    """Concepts that co-occur more than chance (NPMI, phi; trivial pairs dropped), or, with
    --with COLUMN, concepts that track a metadata column: rank correlation for numbers,
    per-category enrichment for categories, a trend over time buckets for dates."""
    from saeembed.analysis.correlate import correlate_concepts, correlate_metadata
    from saeembed.store import Store

    with Store(db, read_only=True) as store:
        if column:
            frame = correlate_metadata(
                store, column, encoder, corpus=corpus, kind=kind, min_support=min_support,
                top=top, measure=measure,
            )  # fmt: skip
        else:
            frame = correlate_concepts(
                store, encoder, corpus=corpus, min_support=min_support, top=top,
                max_cosine=max_cosine, show_trivial=show_trivial, max_docs=max_docs,
                measure=measure,
            )  # fmt: skip
    render(frame, fmt)


# ---- querying ---------------------------------------------------------------------------------
@main.command()
@click.argument("db", type=click.Path(path_type=Path))
@click.argument("query")
@click.option(
    "-p",
    "--param",
    "params",
    nargs=2,
    multiple=True,
    metavar="NAME VALUE",
    help="Bind a parameter ($NAME in the SQL); repeatable.",
)
@format_option
@_domain_errors
def sql(db, query, params, fmt):
    """Run QUERY against the store DB and print the rows.

    QUERY is SQL text, `@file.sql`, or the name of a named query (see `saeembed queries`).
    Parameters are bound, never pasted into the SQL: `-p feature 12` binds $feature."""
    from saeembed.queries import coerce_value, named_queries, run_query
    from saeembed.store import Store

    given = {name: value for name, value in params}
    with Store(db, read_only=True) as store:
        if query in named_queries():
            frame = run_query(store, query, **given)
        else:
            text = Path(query[1:]).read_text() if query.startswith("@") else query
            frame = store.sql(text, {k: coerce_value(v) for k, v in given.items()} or None)
    render(frame, fmt)


@main.command("queries")
@format_option
@_domain_errors
def list_queries(fmt):
    """List the named queries and their parameters."""
    from saeembed.queries import named_queries

    rows = [
        {
            "name": q.name,
            "params": ", ".join(p.name + ("?" if p.optional else "") for p in q.params),
            "description": q.description,
        }
        for q in named_queries().values()
    ]
    render(pl.DataFrame(rows), fmt)


@main.command()
@click.argument("db", type=click.Path(path_type=Path))
@format_option
@_domain_errors
def info(db, fmt):
    """List the corpora and encoders in DB, with document, token and activation counts."""
    from saeembed.api import store_info
    from saeembed.store import Store

    with Store(db, read_only=True) as store:
        tables = store_info(store)
    for title, frame in tables.items():
        render(frame, fmt, title=title)


# ---- named datasets ---------------------------------------------------------------------------
@main.group()
def data() -> None:
    """Named real datasets (fetched once into the cache)."""


@data.command("list")
@format_option
def data_list(fmt):
    """List the named datasets."""
    from dataclasses import asdict

    from saeembed.data import list_datasets

    rows = [{k: v for k, v in asdict(card).items() if k != "columns"} for card in list_datasets()]
    render(pl.DataFrame(rows), fmt)


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
    type=click.Choice(["paragraph", "window"]),
    help="Split documents into passages.",
)
@click.option(
    "--max-tokens",
    type=click.IntRange(1),
    default=256,
    show_default=True,
    help="Passage size for --split window (words).",
)
@format_option
@_domain_errors
def data_get(ref, output, split, max_tokens, fmt):
    """Fetch a named dataset: REF is NAME or NAME?column=value,value (e.g. rotten-tomatoes?category=fresh)."""
    from saeembed.data import load_dataset, parse_dataset_ref, write_dataset

    name, filters = parse_dataset_ref(ref if ref.startswith("data:") else f"data:{ref}")
    frame = load_dataset(name, split_passages=split, max_tokens=max_tokens, filter=filters or None)
    if output:
        click.echo(f"wrote {frame.height:,} rows to {write_dataset(frame, output)}", err=True)
    else:
        render(frame, fmt)


# ---- models and SAEs --------------------------------------------------------------------------
@main.group()
def models() -> None:
    """The reader LLMs."""


@models.command("pull")
@click.argument("model", default="default")
@_domain_errors
def models_pull(model):
    """Fetch a reader model now (the embedded default unless MODEL is given)."""
    from saeembed.reader import load_reader

    reader = load_reader(model, device="cpu")
    click.echo(
        f"{reader.model_id} ({reader.revision}): {reader.n_layers} layers, d_model {reader.d_model}",
        err=True,
    )


@models.command("list")
@format_option
def models_list(fmt):
    """Show the embedded default reader and whether it has been fetched."""
    from saeembed.reader import describe_default_model

    render(pl.DataFrame([describe_default_model()]), fmt)


@main.group()
def sae() -> None:
    """Sparse autoencoders."""


@sae.command("info")
@click.argument("spec")
@format_option
@_domain_errors
def sae_info(spec, fmt):
    """Describe the SAE at SPEC (any supported format or Hub id)."""
    from saeembed.api import describe_sae

    render(pl.DataFrame([describe_sae(spec)]), fmt)


@sae.command("convert")
@click.argument("spec")
@click.argument("dest", type=click.Path(path_type=Path))
@click.option(
    "--dtype",
    type=click.Choice(["float32", "float16", "bfloat16"]),
    default="float32",
    show_default=True,
)
@_domain_errors
def sae_convert(spec, dest, dtype):
    """Convert the SAE at SPEC into saeembed's own directory format at DEST."""
    import torch

    from saeembed.sae import load_sae

    load_sae(spec).save(dest, dtype=getattr(torch, dtype))
    click.echo(f"wrote {dest}", err=True)


@sae.command("train")
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option(
    "--source",
    "sources",
    multiple=True,
    required=True,
    metavar="[assistant:|user:]REF[#N]",
    help="Training texts: a file or data:NAME[?filters]; `assistant:` wraps them as chat turns; #N caps the documents. Repeatable.",
)
@click.option(
    "--model", default="default", show_default=True, help="Reader LLM (Hub id, path, or `default`)."
)
@click.option(
    "--layer",
    type=int,
    default=15,
    show_default=True,
    help="Residual stream after this decoder block.",
)
@click.option(
    "--d-sae", type=click.IntRange(2), default=8192, show_default=True, help="Number of latents."
)
@click.option(
    "-k",
    "k",
    type=click.IntRange(1),
    default=32,
    show_default=True,
    help="Active latents per token.",
)
@click.option(
    "--architecture", type=click.Choice(["topk", "batchtopk"]), default="topk", show_default=True
)
@click.option("--steps", type=click.IntRange(1), default=1000, show_default=True)
@click.option(
    "--batch-size", type=click.IntRange(1), default=4096, show_default=True, help="Tokens per step."
)
@click.option("--lr", type=float, help="Adam learning rate [default: 2e-4 / sqrt(d_sae / 16384)].")
@click.option(
    "--max-tokens",
    type=click.IntRange(1),
    default=256,
    show_default=True,
    help="Tokens kept per document.",
)
@click.option(
    "--passages",
    type=click.Choice(["paragraph", "window", "none"]),
    default="paragraph",
    show_default=True,
    help="Split long documents of named datasets into passages first.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option(
    "--activations",
    type=click.Path(path_type=Path),
    help="Where to keep collected activations [default: OUT_DIR/activations].",
)
@_domain_errors
def sae_train(
    out_dir,
    sources,
    model,
    layer,
    d_sae,
    k,
    architecture,
    steps,
    batch_size,
    lr,
    max_tokens,
    passages,
    seed,
    device,
    activations,
):
    """Train a TopK or BatchTopK SAE on a reader's activations and write it to OUT_DIR.

    Collects the residual stream (fp16 shards, resumable), trains with checkpoints (rerun the same
    command to resume), and evaluates on held-out documents: FVU, L0, dead latents, loss recovered."""
    from saeembed.train import TrainConfig
    from saeembed.train.recipe import SourceSpec, train_from_sources

    config = TrainConfig(
        d_sae=d_sae,
        k=k,
        architecture=architecture,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        device=device,
    )
    figures = train_from_sources(
        out_dir,
        [SourceSpec.parse(s) for s in sources],
        config=config,
        model=model,
        layer=layer,
        max_tokens=max_tokens,
        passages=None if passages == "none" else passages,
        device=device,
        activations_dir=activations,
    )
    keys = ("fvu", "l0", "dead_fraction", "loss_recovered")
    click.echo(json.dumps({k: figures.get(k) for k in keys}))


@sae.command("list")
@format_option
def sae_list(fmt):
    """List the SAEs shipped with saeembed."""
    from saeembed.api import describe_sae
    from saeembed.pretrained import shipped_saes

    rows = [
        {"name": name, "path": str(path), **describe_sae(str(path))}
        for name, path in shipped_saes().items()
    ]
    render(pl.DataFrame(rows) if rows else pl.DataFrame({"name": []}), fmt)


if __name__ == "__main__":
    main()


# ---- feature labels ---------------------------------------------------------------------------
encoder_option = click.option(
    "--encoder", help="Encoder id or name [default: the store's only encoder]."
)


@main.group()
def features() -> None:
    """Label features, look at one, and find features by what their labels say."""


@features.command("label")
@click.argument("db", type=click.Path(path_type=Path))
@encoder_option
@click.option("--corpus", help="Label from this corpus only [default: every encoded document].")
@click.option(
    "--method",
    type=click.Choice(["offline", "llm"]),
    default=None,
    help="offline (no LLM) or llm [default: llm when --api-base is given, else offline].",
)
@click.option(
    "--feature",
    "feature_ids",
    type=int,
    multiple=True,
    help="Label only this feature; repeatable [default: every active feature].",
)
@click.option(
    "--max-docs",
    type=click.IntRange(min=10),
    default=100_000,
    show_default=True,
    help="Look at most at this many documents (a fixed sample).",
)
@click.option(
    "--api-base", help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 (vLLM, Ollama)."
)
@click.option("--llm-model", help="Model name the endpoint serves.")
@click.option(
    "--api-key-env",
    default="OPENAI_API_KEY",
    show_default=True,
    help="Environment variable holding the API key (unset is fine for local servers).",
)
@click.option("--concurrency", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--redo", is_flag=True, help="Relabel features this LLM already labelled.")
@click.option(
    "--words-only",
    is_flag=True,
    help="Offline: choose label terms by words alone (no sentence embedder, no evidence "
    "embeddings, no decoder-promoted tokens).",
)
@format_option
@click.pass_context
@_domain_errors
def features_label(
    ctx,
    db,
    encoder,
    corpus,
    method,
    feature_ids,
    max_docs,
    api_base,
    llm_model,
    api_key_env,
    concurrency,
    redo,
    words_only,
    fmt,
):
    """Label the features of an encoder in DB from the documents it has encoded.

    The offline labeller names each feature by the words and patterns around its peaks (chosen
    by how well they detect the feature and by what they mean), and stores each feature's
    evidence embedding for phrase search; the LLM labeller asks any OpenAI-compatible
    endpoint. Each label gets a detection score: the balanced accuracy of
    predicting, from the label, which held-out documents have the feature (0.5 = chance).
    Labels go into the store's `features` table; a summary is printed."""
    import os

    from saeembed.labels import label_features
    from saeembed.store import Store

    method = method or ("llm" if api_base else "offline")
    with Store(db) as store:
        frame = label_features(
            store,
            encoder,
            corpus=corpus,
            method=method,
            features=list(feature_ids) or None,
            max_docs=max_docs,
            api_base=api_base,
            llm_model=llm_model,
            api_key=os.environ.get(api_key_env),
            concurrency=concurrency,
            redo=redo,
            semantic=not words_only,
            progress=not ctx.obj["quiet"],
        )
    scored = frame.filter(pl.col("label_score").is_not_null())
    click.echo(
        f"labelled {frame.height:,} features ({scored.height:,} scored, median detection score "
        f"{scored['label_score'].median() or float('nan'):.3f})",
        err=True,
    )
    render(frame.select("feature", "label", "label_score", "density", "n_docs"), fmt)


@features.command("show")
@click.argument("db", type=click.Path(path_type=Path))
@click.argument("feature", type=int)
@encoder_option
@click.option("--corpus", help="Only documents of this corpus.")
@click.option("--top", type=click.IntRange(min=0), default=8, show_default=True)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
)
@_domain_errors
def features_show(db, feature, encoder, corpus, top, fmt):
    """Show one FEATURE: label, score, density, activation histogram, top documents."""
    from saeembed.labels.inspect import feature_report, render_report, report_json
    from saeembed.store import Store

    with Store(db, read_only=True) as store:
        report = feature_report(
            store, store.resolve_encoder(encoder), feature, corpus=corpus, top=top
        )
    click.echo(render_report(report) if fmt == "text" else report_json(report))


@features.command("search")
@click.argument("db", type=click.Path(path_type=Path))
@click.argument("phrase")
@encoder_option
@click.option("--top", type=click.IntRange(min=1), default=20, show_default=True)
@click.option(
    "--substring-only", is_flag=True, help="Only exact substring matches (no embedding model)."
)
@click.option(
    "--match",
    "match_by",
    type=click.Choice(["both", "label", "evidence"]),
    default="both",
    show_default=True,
    help="Compare the phrase with the label, with what the feature fires on (its evidence "
    "embedding), or both.",
)
@format_option
@_domain_errors
def features_search(db, phrase, encoder, top, substring_only, match_by, fmt):
    """Find features matching PHRASE: substring matches on the label first, then the features
    closest in meaning (MiniLM sentence embeddings of the label and of the contexts the
    feature fires in)."""
    from saeembed.labels.search import search_features
    from saeembed.store import Store

    with Store(db, read_only=True) as store:
        frame = search_features(
            store,
            store.resolve_encoder(encoder),
            phrase,
            top=top,
            semantic=not substring_only,
            by=match_by,
        )
    render(frame, fmt)


@features.command("import")
@click.argument("db", type=click.Path(path_type=Path))
@click.argument("label_file", type=click.Path(path_type=Path))
@encoder_option
@click.option(
    "--format",
    "label_format",
    type=click.Choice(["auto", "neuronpedia", "goodfire", "table"]),
    default="auto",
    show_default=True,
)
@click.option("--sae-id", help="Neuronpedia exports mixing SAEs: keep rows whose layer is this.")
@_domain_errors
def features_import(db, label_file, encoder, label_format, sae_id):
    """Import published labels (Neuronpedia export, Goodfire labels, or a table with feature and
    label columns) as the labels of an encoder in DB."""
    from saeembed.labels import import_labels
    from saeembed.store import Store

    with Store(db) as store:
        frame = import_labels(store, label_file, encoder, format=label_format, sae_id=sae_id)
    click.echo(f"imported {frame.height:,} labels from {label_file}", err=True)


@features.command("export")
@click.argument("db", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True)
@encoder_option
@_domain_errors
def features_export(db, output, encoder):
    """Write an encoder's labels to a Parquet file (it records the SAE's hash, so saeembed can
    apply it to any store encoded with that SAE)."""
    from saeembed.labels import export_labels, read_labels
    from saeembed.store import Store

    with Store(db, read_only=True) as store:
        chosen = store.resolve_encoder(encoder)
        frame = read_labels(store, chosen)
    export_labels(frame, output, sae_sha256=chosen.sae_sha256)
    click.echo(f"wrote {frame.height:,} labels to {output}", err=True)


# ---- commands defined in their own modules register themselves on `main` -------------------------
from saeembed import cli_explore, cli_prefs  # noqa: E402, F401, I001
