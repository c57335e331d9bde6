"""The exploration commands: `correlate` concepts with each other or with a metadata column,
choose concepts and `cluster` a corpus on them (with an optional 2-D map), `search` for
documents with a property, or `probe` what predicts a column. Each parses its options, makes one call into `saeembed.api.explore`
and renders the result."""

from __future__ import annotations

from pathlib import Path

import click
import polars as pl

from saeembed.api import explore as api
from saeembed.api.defaults import ClusterSettings, ConceptQuery, ProbeSettings, is_binary
from saeembed.cli.options import (
    default_of,
    domain_errors,
    encoder_option,
    feature_ids,
    format_option,
    measure_option,
    note,
    settings_options,
)
from saeembed.cli.render import default_format, join_lists, render, scientific, write_json


def concept_options(only: tuple[str, ...]):
    """The options of `saeembed.api.ConceptQuery` (``only`` these); the command receives
    ``concepts``, a checked `ConceptQuery`."""
    return settings_options(ConceptQuery, argument="concepts", only=only)


@click.command("cluster")
@click.argument("db", type=click.Path(path_type=Path))
@click.option("--corpus", help="Cluster this corpus [default: every encoded document].")
@encoder_option()
@concept_options(only=None)
@settings_options(ClusterSettings)
@click.option("--name", help="Store the clustering under this name [default: corpus-method-N].")
@click.option("--map", "map_path", type=click.Path(path_type=Path),
              help="Write a 2-D UMAP map: .html (interactive, plus .parquet beside it) or .parquet.")  # fmt: skip
@click.option("--map-pages", is_flag=True,
              help="With an .html --map: also write each cluster's concepts' feature pages beside "
              "it (MAP-features/), listed when a cluster is clicked.")  # fmt: skip
@click.option("--color-by", multiple=True, help="Feature ids the map can colour by (besides cluster).")  # fmt: skip
@format_option
@domain_errors
def cluster_command(db, corpus, encoder, concepts, settings, name, map_path, map_pages, color_by,
                    fmt):  # fmt: skip
    """Cluster documents on the concepts that matter.

    Choose concepts with a phrase (--concepts "tone": labels that contain it or mean it), ids
    (--features), example documents (--positive), and exclusions; with none, all concepts are
    used. Each cluster is described by its most distinctive concepts (a diff against the rest,
    with q-values) and example documents. The clustering is stored in DB (tables clusterings,
    clusters, cluster_members) for SQL."""
    result = api.cluster(
        db, corpus, encoder=encoder, concepts=concepts, settings=settings, name=name,
        map_path=map_path, color_by=feature_ids(color_by, "--color-by"), map_pages=map_pages,
    )  # fmt: skip
    if result.choice is not None:
        note(f"using {result.choice.describe()}")
    n_out = result.summary.filter(pl.col("cluster") == -1)["size"].sum()
    note(
        f"clustering {result.name!r} (id {result.clustering_id}): "
        f"{result.summary.filter(pl.col('cluster') >= 0).height} clusters of "
        f"{result.members.height:,} documents, {n_out:,} outliers"
        + (f"; map written to {map_path}" if map_path else ""),
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
        write_json(out)
        return
    summary = result.summary.with_columns(pl.col("top_features").list.eval(pl.element().cast(pl.String)).list.join(","))  # fmt: skip
    render(summary, fmt, title="Clusters:")
    if fmt == "table":
        shown = scientific(
            result.concepts.select(
                "cluster", "rank", "feature", "label", "freq_in", "freq_out", "q"
            ),
            "q",
        )
        render(shown, fmt, title="\nDistinctive concepts (cluster against the rest):")
        if result.examples is not None:
            render(result.examples, fmt, title="\nExamples:")


@click.command("search")
@click.argument("db", type=click.Path(path_type=Path))
@click.argument("query", required=False)
@click.option("--corpus", help="Search this corpus [default: every encoded document].")
@encoder_option()
@concept_options(only=("features", "exclude", "positives", "n_concepts"))
@click.option("--like", help="Find documents similar to this one (fresh:12, or a doc_id).")
@click.option("--where", help="SQL filter: feature:123 > 0, meta.KEY = 'value', AND/OR/NOT.")
@click.option(
    "--dense", "mode", flag_value="dense", help="The MiniLM baseline instead of concepts."
)
@click.option("--hybrid", "mode", flag_value="hybrid", help="Concepts and MiniLM, rank-fused.")
@click.option("--top", type=click.IntRange(min=1), default=default_of(api.search, "top"),
              show_default=True)  # fmt: skip
@measure_option(default_of(api.search, "measure"))
@format_option
@domain_errors
def search_command(db, query, corpus, encoder, concepts, like, where, mode, top, measure,
                   fmt):  # fmt: skip
    """Find documents that have a property.

    QUERY is a phrase ("refuses the request"): each document's concepts are read through what
    they fire on (every concept's evidence, weighted by its activation) and ranked by closeness
    in meaning to it; a phrase that is a word of labels ("film") ranks by those concepts'
    activations. --features and --positive choose concepts instead (the --positive examples are
    left out of the results; too few to set concepts apart rank by similarity to them); --like
    DOC_ID ranks by concept similarity to a document; --where filters; --dense runs the MiniLM
    baseline through the same interface."""
    result = api.search(
        db, query, encoder=encoder, corpus=corpus, concepts=concepts, like=like, where=where,
        mode=mode or "sae", top=top, measure=measure,
    )  # fmt: skip
    if result.note:
        note(result.note)
    if result.choice is not None:
        if result.by_meaning:
            note("reading every concept through its evidence; closest in meaning: "
                       + result.choice.describe())  # fmt: skip
        else:
            note(f"using {result.choice.describe()}")
    fmt = fmt or default_format()
    hits = result.hits
    if fmt in ("table", "csv"):
        hits = join_lists(hits, {"concepts": "; "})
    if fmt == "table":  # the short reference names the document; doc_id and corpus in the others
        hits = hits.drop("doc_id", "corpus")
    render(hits, fmt)


@click.command("correlate")
@click.argument("db", type=click.Path(path_type=Path))
@click.option("--corpus", help="Only documents of this corpus [default: all encoded ones].")
@encoder_option("Encoder id or name, when the store has several.")
@click.option(
    "--with",
    "column",
    help="A metadata column: correlate concepts with it instead of with each other.",
)
@click.option(
    "--kind",
    type=click.Choice(["auto", "numeric", "categorical", "date"]),
    default=default_of(api.correlate, "kind"),
    show_default=True,
    help="How to read the --with column.",
)
@click.option(
    "--top", type=click.IntRange(min=1), default=default_of(api.correlate, "top"), show_default=True
)
@click.option(
    "--min-support",
    type=click.IntRange(min=1),
    default=default_of(api.correlate, "min_support"),
    show_default=True,
)
@click.option(
    "--max-cosine",
    type=float,
    default=default_of(api.correlate, "max_cosine"),
    show_default=True,
    help="Pairs whose decoder directions are closer than this are near-duplicates (trivial).",
)
@click.option("--show-trivial", is_flag=True, help="Keep trivial pairs (marked) in the output.")
@measure_option(default_of(api.correlate, "measure"))
@click.option(
    "--max-docs",
    type=click.IntRange(min=100),
    default=default_of(api.correlate, "max_docs"),
    show_default=True,
    help="Concept pairs: use at most this many documents (a fixed sample).",
)
@format_option
@domain_errors
def correlate_command(
    db, corpus, encoder, column, kind, top, min_support, max_cosine, show_trivial, measure,
    max_docs, fmt,
):  # fmt: skip
    """Concepts that co-occur more than chance (NPMI, phi; trivial pairs dropped), or, with
    --with COLUMN, concepts that track a metadata column: rank correlation for numbers,
    per-category enrichment for categories, a trend over time buckets for dates."""
    frame = api.correlate(
        db, column, encoder=encoder, corpus=corpus, kind=kind, top=top, min_support=min_support,
        max_cosine=max_cosine, show_trivial=show_trivial, measure=measure, max_docs=max_docs,
    )  # fmt: skip
    fmt = fmt or default_format()
    if fmt == "table" and is_binary(measure) and "r" in frame.columns:
        frame = frame.drop("r")  # a binary measure's Pearson r is phi: one column is enough
    render(frame, fmt)


@click.command("probe")
@click.argument("db", type=click.Path(path_type=Path))
@click.option("--target", required=True,
              help="Metadata column to predict (classes or a number), or `corpus`.")  # fmt: skip
@click.option("--corpus", help="Only documents of this corpus [default: all encoded ones].")
@click.option("--where", help="Only documents passing this SQL condition (meta.KEY, feature:N).")
@encoder_option("Encoder id or name, when the store has several.")
@settings_options(ProbeSettings)
@click.option("--html", type=click.Path(path_type=Path), help="Also write the report page there.")
@click.option("--predictions", type=click.Path(path_type=Path),
              help="Also write each document's out-of-fold predictions (Parquet or CSV).")  # fmt: skip
@format_option
@click.pass_context
@domain_errors
def probe_command(ctx, db, target, corpus, where, encoder, settings, html, predictions, fmt):
    """What in the text predicts a column, and how well?

    A sparse probe on the concepts (the k concepts that best separate the target on the
    training documents, k chosen by inner cross-validation) against dense probes (the reader's
    stored mean-pooled activations, from `encode --keep-dense`, and the sentence embedder),
    every document scored by a model that never saw it (AUC, macro-AUC over classes, or R²,
    with 95% intervals and the difference to the dense probe). Then the concepts chosen on half
    the documents, as hypotheses tested on the other half: odds ratio per standard deviation
    (coefficient for a number), q, how often each is active in the class it marks, examples.
    --format json gives one object with `summary`, `scores` and `hypotheses`."""
    result = api.probe(db, target, encoder=encoder, corpus=corpus, where=where,
                       settings=settings, html=html, progress=not ctx.obj["quiet"])  # fmt: skip
    if html is not None:
        note(f"report: {html}")
    if predictions is not None:
        api.write_predictions(result, predictions)
        note(f"predictions: {predictions}")
    s = result.summary
    for line in s["notes"]:
        note(f"saeembed: {line}")
    fmt = fmt or default_format()
    if fmt == "json":
        write_json(result.to_json())
        return
    hypotheses = result.hypotheses
    if "examples" in hypotheses.columns:
        hypotheses = join_lists(hypotheses, {"examples": " | "})
    if fmt != "table":
        render(hypotheses, fmt)
        return
    render(_score_view(result.scores), "table", title=_probe_title(s))
    if hypotheses.height:
        render(scientific(_hypothesis_view(hypotheses, s), "p", "q"), "table",
               title="\nHypotheses: chosen on half the documents, tested on the other half "
               "(per standard deviation, given the others):")  # fmt: skip


def _probe_title(s: dict) -> str:
    what = (
        ", ".join(f"{name} {n:,}" for name, n in s["classes"].items())
        if s["classes"] else "a number"
    )  # fmt: skip
    aside = s["set_aside"].get("missing", 0) + sum(
        (s["set_aside"].get("small_classes") or {}).values()
    )
    extra = f"; {aside:,} set aside (no value or a class too small)" if aside else ""
    return (
        f"{s['target']} ({s['kind']}: {what}) on {s['n_docs']:,} documents{extra}; held-out "
        f"{s['metric']} from {s['folds']}-fold cross-fitting, 95% bootstrap intervals:"
    )


def _score_view(scores: pl.DataFrame) -> pl.DataFrame:
    def interval(v, low, high, sign=""):
        return f"{v:{sign}.3f} [{low:{sign}.3f}, {high:{sign}.3f}]" if v is not None else None

    rows = []
    for r in scores.iter_rows(named=True):
        versus = interval(r["vs_dense"], r["vs_low"], r["vs_high"], "+")
        share = r["share_of_dense_gain"]
        rows.append({
            "probe": r["probe"], "inputs": r["inputs"],
            "held_out": interval(r["score"], r["low"], r["high"]),
            "vs_dense": versus if versus or share is None else "(the dense probe)",
            "dense_gain": None if share is None else f"{share:.0%}",
        })  # fmt: skip
    return pl.DataFrame(rows, schema={"probe": pl.Utf8, "inputs": pl.Int64, "held_out": pl.Utf8,
                                      "vs_dense": pl.Utf8, "dense_gain": pl.Utf8})  # fmt: skip


def _hypothesis_view(frame: pl.DataFrame, s: dict) -> pl.DataFrame:
    if s["classes"]:
        effect = pl.format(
            "{} [{}, {}]", *(pl.col(c).round(2) for c in ("odds_ratio", "low", "high"))
        )
        shares = pl.format("{}% / {}%", *((pl.col(c) * 100).round(0).cast(pl.Int64)
                                         for c in ("share_in", "share_rest")))  # fmt: skip
        names = ("odds_ratio", "active_in_marked/rest")
    else:
        effect = pl.format("{} [{}, {}]", *(pl.col(c).round(3) for c in ("coef", "low", "high")))
        shares = pl.format("{} / {}", *(pl.col(c).round(2) for c in ("mean_with", "mean_without")))
        names = ("coef", "mean_with/without")
    extra = ["examples"] if "examples" in frame.columns else []
    return frame.select(
        "feature", "name", "marks", effect.alias(names[0]), "q", shares.alias(names[1]),
        pl.format("{}/{}", "folds_selected", pl.lit(s["folds"])).alias("folds"),
        pl.when("holds").then(pl.lit("holds")).otherwise(pl.lit("")).alias("held_out"), *extra,
    )  # fmt: skip


COMMANDS = [correlate_command, cluster_command, search_command, probe_command]
