"""The `saeembed features` commands: label an encoder's features, show one (or write its page),
write a set of feature pages, find features by what their labels say, import and export labels.
Each is a thin shell over one call of `saeembed.api.features`; defaults are those of the
store-level functions in `saeembed.labels` and `saeembed.reports`."""

from __future__ import annotations

from pathlib import Path

import click
import polars as pl

from saeembed.api import features as api
from saeembed.api.defaults import (
    MATCH_BY,
    PAGE_ORDERS,
    LocalConfig,
    feature_report,
    import_labels,
    label_features,
    render_report,
    report_json,
    search_features,
    write_feature_pages,
)
from saeembed.cli.options import default_of, domain_errors, encoder_option, format_option, note
from saeembed.cli.render import render


@click.group()
def features() -> None:
    """Label features, look at one, and find features by what their labels say."""


@features.command("label")
@click.argument("db", type=click.Path(path_type=Path))
@encoder_option()
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
    default=default_of(label_features, "max_docs"),
    show_default=True,
    help="Look at most at this many documents (a fixed sample).",
)
@click.option(
    "--api-base", help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 (vLLM, Ollama)."
)
@click.option("--llm-model", help="Model name the endpoint serves.")
@click.option(
    "--api-key-env",
    default=default_of(api.label_features, "api_key_env"),
    show_default=True,
    help="Environment variable holding the API key (unset is fine for local servers).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=default_of(label_features, "concurrency"),
    show_default=True,
)
@click.option("--redo", is_flag=True, help="Relabel features this LLM already labelled.")
@click.option(
    "--words-only",
    is_flag=True,
    help="Offline: choose label terms by words alone (no sentence embedder, no evidence "
    "embeddings, no decoder-promoted tokens).",
)
@format_option
@click.pass_context
@domain_errors
def features_label(ctx, db, encoder, corpus, method, feature_ids, max_docs, api_base, llm_model,
                   api_key_env, concurrency, redo, words_only, fmt):  # fmt: skip
    """Label the features of an encoder in DB from the documents it has encoded.

    The offline labeller names each feature by the words and patterns around its peaks (chosen
    by how well they detect the feature and by what they mean), and stores each feature's
    evidence embedding for phrase search; the LLM labeller asks any OpenAI-compatible
    endpoint. Each label gets a detection score: the balanced accuracy of
    predicting, from the label, which held-out documents have the feature (0.5 = chance).
    Labels go into the store's `features` table; a summary is printed."""
    frame = api.label_features(
        db, encoder=encoder, corpus=corpus, method=method, features=list(feature_ids) or None,
        max_docs=max_docs, api_base=api_base, llm_model=llm_model, api_key_env=api_key_env,
        concurrency=concurrency, redo=redo, semantic=not words_only,
        progress=not ctx.obj["quiet"],
    )  # fmt: skip
    scored = frame.filter(pl.col("label_score").is_not_null())
    note(
        f"labelled {frame.height:,} features ({scored.height:,} scored, median detection score "
        f"{scored['label_score'].median() or float('nan'):.3f})",
    )
    render(frame.select("feature", "label", "label_score", "density", "n_docs"), fmt)


@features.command("name")
@click.argument("db", type=click.Path(path_type=Path))
@encoder_option()
@click.option(
    "--min-docs",
    type=click.IntRange(min=1),
    default=default_of(LocalConfig, "min_docs"),
    show_default=True,
    help="Keep the shipped names on a store with fewer encoded documents.",
)
@click.option(
    "--by-words",
    is_flag=True,
    help="Name by the words under the peaks only: skip choosing among the names by meaning "
    "with the sentence embedder (seconds instead of tens of seconds; names read worse).",
)
@domain_errors
def features_name(db, encoder, min_docs, by_words):
    """Name the concepts from DB's own documents, where the names shipped with the SAE do not
    fit them: what each fires on here (its strongest peaks, read in context), the name that
    says best what the text around them shares chosen by meaning. `encode` does this itself;
    run it after changing the store by hand. Labels made by `features label` or imported are
    kept (docs/labels.md#which-name-you-see)."""
    report = api.name_concepts(db, encoder=encoder, min_docs=min_docs, by_meaning=not by_words)
    if report is None:
        note(
            f"nothing to name: fewer than {min_docs:,} encoded documents, or no shipped names",
        )
    else:
        note(report.summary())


@features.command("show")
@click.argument("db", type=click.Path(path_type=Path))
@click.argument("feature", type=int)
@encoder_option()
@click.option("--corpus", help="Only documents of this corpus.")
@click.option(
    "--top",
    type=click.IntRange(min=0),
    default=default_of(feature_report, "top"),
    show_default=True,
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
)
@click.option("--html", is_flag=False, flag_value="", default=None, metavar="[PATH]",
              help="Write the feature's page instead [default PATH: feature-F.html].")  # fmt: skip
@click.pass_context
@domain_errors
def features_show(ctx, db, feature, encoder, corpus, top, fmt, html):
    """Show one FEATURE: label, score, density, activation histogram, top documents."""
    if html is not None:
        written = api.feature_page(
            db, feature, html or f"feature-{feature}.html", encoder=encoder, corpus=corpus,
            examples=top, progress=not ctx.obj["quiet"],
        )  # fmt: skip
        note(f"wrote {written}")
        return
    report = api.show_feature(db, feature, encoder=encoder, corpus=corpus, top=top)
    click.echo(render_report(report) if fmt == "text" else report_json(report))


def _feature_ids(values: str | None) -> list[int] | None:
    if not values:
        return None
    try:
        return [int(v) for v in values.replace(",", " ").split()]
    except ValueError as exc:
        raise click.BadParameter(f"{values!r}: give feature numbers like 12,345") from exc


@features.command("pages")
@click.argument("db", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Directory for index.html and one page per feature (made if missing).",
)
@click.option(
    "--features", "feature_ids", help="Comma-separated features [default: the --top by --order]."
)
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=default_of(write_feature_pages, "top"),
    show_default=True,
    help="Without --features: this many features.",
)
@click.option(
    "--order",
    type=click.Choice(PAGE_ORDERS),
    default=default_of(write_feature_pages, "order"),
    show_default=True,
    help="Without --features: distinctive = far more frequent here than in the SAE's labelling "
    "corpus (not in most documents, one per alike group); frequent = active in the most documents.",
)
@encoder_option()
@click.option("--corpus", help="Only documents of this corpus.")
@click.pass_context
@domain_errors
def features_pages(ctx, db, out, feature_ids, top, order, encoder, corpus):
    """Write a browsable set of feature pages: an index and, per feature, its label, density,
    histogram, top and quantile examples with token shading, the tokens it promotes and
    suppresses, and the features it co-occurs with."""
    index = api.feature_pages(
        db, out, encoder=encoder, features=_feature_ids(feature_ids), top=top, order=order,
        corpus=corpus, progress=not ctx.obj["quiet"],
    )  # fmt: skip
    note(f"wrote {index}")


@features.command("search")
@click.argument("db", type=click.Path(path_type=Path))
@click.argument("phrase")
@encoder_option()
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=default_of(search_features, "top"),
    show_default=True,
)
@click.option(
    "--words-only",
    "--substring-only",  # its name before whole-word matching
    "words_only",
    is_flag=True,
    help="Only labels that hold PHRASE as whole words (no embedding model).",
)
@click.option(
    "--match",
    "match_by",
    type=click.Choice(list(MATCH_BY)),
    default=default_of(search_features, "by"),
    show_default=True,
    help="Compare the phrase with the label, with what the feature fires on (its evidence "
    "embedding), or both.",
)
@format_option
@domain_errors
def features_search(db, phrase, encoder, top, words_only, match_by, fmt):
    """Find features matching PHRASE: labels that hold it as whole words ("tone" never matches
    "acetone") and the features closest in meaning (MiniLM sentence embeddings of the label and
    of the contexts the feature fires in), ranked by that closeness."""
    frame = api.search_features(
        db, phrase, encoder=encoder, top=top, semantic=not words_only, by=match_by
    )
    render(frame, fmt)


@features.command("import")
@click.argument("db", type=click.Path(path_type=Path))
@click.argument("label_file", type=click.Path(path_type=Path))
@encoder_option()
@click.option(
    "--format",
    "label_format",
    type=click.Choice(["auto", "neuronpedia", "goodfire", "table"]),
    default=default_of(import_labels, "format"),
    show_default=True,
)
@click.option("--sae-id", help="Neuronpedia exports mixing SAEs: keep rows whose layer is this.")
@domain_errors
def features_import(db, label_file, encoder, label_format, sae_id):
    """Import published labels (Neuronpedia export, Goodfire labels, or a table with feature and
    label columns) as the labels of an encoder in DB."""
    frame = api.import_labels(db, label_file, encoder=encoder, format=label_format, sae_id=sae_id)
    note(f"imported {frame.height:,} labels from {label_file}")


@features.command("export")
@click.argument("db", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True)
@encoder_option()
@click.option(
    "--for-sae",
    metavar="SPEC",
    help="Record the hash of this copy of the encoder's SAE at another precision (e.g. the "
    "output of `sae convert --dtype float16`), checked tensor by tensor.",
)
@domain_errors
def features_export(db, output, encoder, for_sae):
    """Write an encoder's labels to a Parquet file (it records the SAE's hash, so saeembed can
    apply it to any store encoded with that SAE)."""
    frame = api.export_labels(db, output, encoder=encoder, for_sae=for_sae)
    note(f"wrote {frame.height:,} labels to {output}")


COMMANDS = [features]
