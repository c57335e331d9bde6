"""The `saeembed cluster` and `saeembed search` commands: choose concepts, then cluster a corpus
on them (with an optional 2-D map) or find documents with a property. Each parses its options,
makes one call into `saeembed.explore` and renders the result."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import polars as pl

from saeembed.cli import _domain_errors, format_option, main, measure_option
from saeembed.render import default_format, render


def _ids(values: tuple[str, ...]) -> list[int]:
    out = []
    for value in values:
        for part in value.split(","):
            if part.strip():
                try:
                    out.append(int(part))
                except ValueError as exc:
                    raise click.BadParameter(f"{part!r} is not a feature id") from exc
    return out


concept_options = [
    click.option(
        "--features",
        "features",
        multiple=True,
        help="Feature ids to use (comma-separated or repeated).",
    ),  # fmt: skip
    click.option("--exclude", multiple=True, help="Feature ids to leave out."),
    click.option(
        "--positive",
        "positives",
        multiple=True,
        help="doc_id of an example document that has the property (repeatable).",
    ),  # fmt: skip
    click.option(
        "--n-concepts",
        type=click.IntRange(min=1),
        default=20,
        show_default=True,
        help="At most this many concepts from the phrase (and from the examples).",
    ),  # fmt: skip
]


def with_concept_options(fn):
    for option in reversed(concept_options):
        fn = option(fn)
    return fn


@main.command("cluster")
@click.argument("db", type=click.Path(path_type=Path))
@click.option("--corpus", help="Cluster this corpus [default: every encoded document].")
@click.option("--encoder", help="Encoder id or name [default: the store's only encoder].")
@click.option("--concepts", help='Cluster on concepts matching this phrase, e.g. "tone".')
@click.option("--exclude-concepts", help="Leave out concepts matching this phrase.")
@with_concept_options
@click.option("--method", type=click.Choice(["kmeans", "hdbscan", "agglomerative"]),
              default="kmeans", show_default=True)  # fmt: skip
@click.option("--k", type=click.IntRange(min=2), help="Number of clusters (kmeans, agglomerative).")
@click.option("--weighting", type=click.Choice(["binary", "log", "idf"]), default="binary",
              show_default=True, help="How the measure counts before clustering.")  # fmt: skip
@measure_option("max")
@click.option("--min-cluster-size", type=click.IntRange(min=2), help="hdbscan's smallest cluster.")
@click.option("--assign-outliers", is_flag=True, help="Give hdbscan's outliers their nearest cluster.")  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--name", help="Store the clustering under this name [default: corpus-method-N].")
@click.option("--top", type=click.IntRange(min=1), default=5, show_default=True,
              help="Distinctive concepts per cluster.")  # fmt: skip
@click.option("--examples", type=click.IntRange(min=0), default=2, show_default=True,
              help="Example documents per cluster.")  # fmt: skip
@click.option("--map", "map_path", type=click.Path(path_type=Path),
              help="Write a 2-D UMAP map: .html (interactive, plus .parquet beside it) or .parquet.")  # fmt: skip
@click.option("--color-by", multiple=True, help="Feature ids the map can colour by (besides cluster).")  # fmt: skip
@click.option("--max-docs", type=click.IntRange(min=10), help="Cluster a fixed sample of this many documents.")  # fmt: skip
@format_option
@_domain_errors
def cluster_command(db, corpus, encoder, concepts, exclude_concepts, features, exclude, positives,
                    n_concepts, method, k, weighting, min_cluster_size, assign_outliers, seed,
                    measure, name, top, examples, map_path, color_by, max_docs, fmt):  # fmt: skip
    """Cluster documents on the concepts that matter.

    Choose concepts with a phrase (--concepts "tone": labels that contain it or mean it), ids
    (--features), example documents (--positive), and exclusions; with none, all concepts are
    used. Each cluster is described by its most distinctive concepts (a diff against the rest,
    with q-values) and example documents. The clustering is stored in DB (tables clusterings,
    clusters, cluster_members) for SQL."""
    from saeembed.explore import cluster

    result = cluster(
        db, corpus, encoder=encoder, concepts=concepts, features=_ids(features),
        exclude=_ids(exclude), exclude_concepts=exclude_concepts, positives=_ids(positives),
        n_concepts=n_concepts, method=method, k=k, weighting=weighting, measure=measure,
        min_cluster_size=min_cluster_size, assign_outliers=assign_outliers, seed=seed, name=name,
        top=top, examples=examples, map_path=map_path, color_by=_ids(color_by), max_docs=max_docs,
    )  # fmt: skip
    if result.choice is not None:
        click.echo(f"using {result.choice.describe()}", err=True)
    n_out = result.summary.filter(pl.col("cluster") == -1)["size"].sum()
    click.echo(
        f"clustering {result.name!r} (id {result.clustering_id}): "
        f"{result.summary.filter(pl.col('cluster') >= 0).height} clusters of "
        f"{result.members.height:,} documents, {n_out:,} outliers"
        + (f"; map written to {map_path}" if map_path else ""),
        err=True,
    )
    fmt = fmt or default_format()
    if fmt == "json":
        out = {
            "clustering": {"id": result.clustering_id, "name": result.name, **result.params},
            "concepts_used": [] if result.choice is None else result.choice.table.to_dicts(),
            "clusters": result.summary.to_dicts(),
            "distinctive": result.concepts.to_dicts(),
            "examples": [] if result.examples is None else result.examples.to_dicts(),
        }
        sys.stdout.write(json.dumps(out, default=str) + "\n")
        return
    summary = result.summary.with_columns(pl.col("top_features").list.eval(pl.element().cast(pl.String)).list.join(","))  # fmt: skip
    render(summary, fmt, title="Clusters:")
    if fmt == "table":
        shown = result.concepts.select(
            "cluster", "rank", "feature", "label", "freq_in", "freq_out",
            pl.col("q").map_elements(lambda v: f"{v:.1e}", return_dtype=pl.String),
        )  # fmt: skip
        render(shown, fmt, title="\nDistinctive concepts (cluster against the rest):")
        if result.examples is not None:
            render(result.examples, fmt, title="\nExamples:")


@main.command("search")
@click.argument("db", type=click.Path(path_type=Path))
@click.argument("query", required=False)
@click.option("--corpus", help="Search this corpus [default: every encoded document].")
@click.option("--encoder", help="Encoder id or name [default: the store's only encoder].")
@with_concept_options
@click.option("--like", type=int, help="Find documents similar to this doc_id.")
@click.option("--where", help="SQL filter: feature:123 > 0, meta.KEY = 'value', AND/OR/NOT.")
@click.option(
    "--dense", "mode", flag_value="dense", help="The MiniLM baseline instead of concepts."
)
@click.option("--hybrid", "mode", flag_value="hybrid", help="Concepts and MiniLM, rank-fused.")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True)
@measure_option("max")
@format_option
@_domain_errors
def search_command(db, query, corpus, encoder, features, exclude, positives, n_concepts, like,
                   where, mode, top, measure, fmt):  # fmt: skip
    """Find documents that have a property.

    QUERY is a phrase ("refuses the request"); the concepts whose labels match it, weighted by how
    well they match, score every document by their activations. --features and --positive add
    or choose concepts; --like DOC_ID ranks by concept similarity to a document; --where filters;
    --dense runs the MiniLM baseline through the same interface."""
    from saeembed.explore import search

    result = search(
        db, query, encoder=encoder, corpus=corpus, features=_ids(features), exclude=_ids(exclude),
        positives=_ids(positives), like=like, where=where, mode=mode or "sae",
        n_concepts=n_concepts, top=top, measure=measure,
    )  # fmt: skip
    if result.choice is not None:
        click.echo(f"using {result.choice.describe()}", err=True)
    fmt = fmt or default_format()
    hits = result.hits
    if fmt in ("table", "csv"):
        hits = hits.with_columns(pl.col("concepts").list.join("; "))
    render(hits, fmt)
