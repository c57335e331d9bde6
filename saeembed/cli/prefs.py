"""The `saeembed prefs` commands: preference pairs in, the WIMHF-style preference report, and the
curation loop (flag -> reviewed queue -> apply -> export). Each command parses its options,
makes one call into `saeembed.api.preferences` and renders the result."""

from __future__ import annotations

import json
from pathlib import Path

import click
import polars as pl

from saeembed.api import preferences as api
from saeembed.cli.options import (
    default_of,
    domain_errors,
    encoder_option,
    encoding_options,
    format_option,
    measure_option,
    note,
)
from saeembed.cli.render import default_format, join_lists, render, scientific, write_json

pairs_option = click.option(
    "--pairs", "pairs_name", help="Pair set name [default: the store's only pair set]."
)
pair_encoder_option = encoder_option(
    "Encoder id or name [default: the one that encoded the pair set's responses]."
)
relabel_option = click.option(
    "--relabel", help="Use this relabelling's labels (from `prefs apply`) instead of the original."
)
TABLE_FEATURE_COLUMNS = ["feature", "label", "prevalence", "effect", "coef", "odds_ratio", "p",
                         "q", "win_rate_delta"]  # fmt: skip


@click.group()
def prefs() -> None:
    """Preference pairs: which concepts do annotators reward or punish (WIMHF), and curation."""


@prefs.command("encode")
@click.argument("input_path", metavar="INPUT")
@click.option("--db", required=True, type=click.Path(path_type=Path), help="DuckDB store.")
@click.option("--pairs", "pairs_name", help="Pair set name [default: the input's name].")
@click.option(
    "--context",
    is_flag=True,
    help="Encode each response after its prompt (the conversation so far); pool only the "
    "response's own tokens.",
)
@click.option(
    "--seed",
    type=int,
    default=default_of(api.encode_pairs, "seed"),
    show_default=True,
    help="A/B coin for chosen/rejected.",
)
@encoding_options(
    defaults={"chat": api.PAIR_ENCODING.chat},
    chat_choices=("none", "assistant"),
    help={"max_tokens": "Keep the first N tokens of each response (and the last N of its "
                        "context) [default: 512].",
          "chat": "Read responses as assistant turns of the chat template, or as plain text."},
)  # fmt: skip
@click.pass_context
@domain_errors
def prefs_encode(ctx, input_path, db, pairs_name, context, seed, encoding):
    """Store preference pairs as a pair set and encode every response.

    INPUT is a file with prompt/response_a/response_b/label (label 1 = A preferred, 0 = B,
    0.5 = tie), chosen/rejected (with or without prompt; A/B assigned by a seeded coin), or
    HH-RLHF dialogues; or a named dataset such as data:hh-rlhf-harmless. Interrupt it at any
    time: running it again finishes the job."""
    result = api.encode_pairs(
        input_path, db, pairs=pairs_name, context=context, seed=seed, encoding=encoding,
        progress=not ctx.obj["quiet"],
    )  # fmt: skip
    note(result.summary())


@prefs.command("list")
@click.argument("db", type=click.Path(path_type=Path))
@format_option
@domain_errors
def prefs_list(db, fmt):
    """The pair sets in DB."""
    render(api.list_pair_sets(db), fmt)


@prefs.command("fit")
@click.argument("db", type=click.Path(path_type=Path))
@pairs_option
@pair_encoder_option
@click.option(
    "--controls",
    type=click.Choice(["length", "none"]),
    default=",".join(api.FitSettings().controls),
    show_default=True,
    help="Control every regression for the length difference (characters), or for nothing.",
)
@measure_option(
    None, what="response", default_note="share for a document encoder, presence for a pair encoder"
)
@click.option(
    "--values",
    type=click.Choice(["presence", "value"]),
    hidden=True,
    help="Deprecated: --measure presence or --measure max.",
)
@relabel_option
@click.option("--min-prevalence", type=click.FloatRange(0, 1),
              default=api.FitSettings().min_prevalence, show_default=True,
              help="Test concepts that differ between the responses in at least this share of pairs.")  # fmt: skip
@click.option("--alpha", type=float, default=api.FitSettings().alpha, show_default=True,
              help="q-value cut-off.")  # fmt: skip
@click.option("--top", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--examples", type=click.IntRange(min=0), default=api.FitSettings().examples,
              help="Example pairs per row.")  # fmt: skip
@click.option("--k", "ks", default=",".join(map(str, api.FitSettings().ks)), show_default=True,
              help="Sizes of the sparse concept models (comma-separated).")  # fmt: skip
@click.option("--no-dense", is_flag=True, help="Skip the dense MiniLM baseline.")
@click.option("--seed", type=int, default=api.FitSettings().seed, show_default=True,
              help="Cross-validation folds.")  # fmt: skip
@click.option("--html", type=click.Path(path_type=Path), help="Also write the report page there.")
@click.option(
    "--panels",
    type=click.IntRange(min=0),
    default=api.FitSettings().panels,
    show_default=True,
    help="Concepts shown with example pairs in the --html report.",
)
@format_option
@click.pass_context
@domain_errors
def prefs_fit(ctx, db, pairs_name, encoder, controls, measure, values, relabel, min_prevalence,
              alpha, top, examples, ks, no_dense, seed, html, panels, fmt):  # fmt: skip
    """Which concepts do the annotators reward or punish?

    Per concept: prevalence (share of pairs whose responses differ in it), a logistic regression
    of the label on the standardised difference with a length control (coefficient, odds ratio,
    Wald p, Benjamini-Hochberg q, Bonferroni p, Δwin-rate), quasi-separation flagged. Then
    held-out AUCs (5 folds, pairs sharing a prompt kept together) of length only, a dense
    MiniLM probe, all concepts and k-concept L1 models. --format json gives one object with
    `features`, `metrics`, `sparse` and `summary`."""
    try:
        k_values = tuple(int(k) for k in ks.split(",") if k.strip())
    except ValueError as exc:
        raise click.BadParameter(f"--k {ks!r}: give integers like 5,10,20") from exc
    settings = api.FitSettings(
        measure={"value": "max", "presence": "presence"}[values] if values else measure,
        controls=() if controls == "none" else (controls,), relabel=relabel,
        min_prevalence=min_prevalence, alpha=alpha, ks=k_values, dense=not no_dense,
        examples=examples, top=top, seed=seed, panels=panels,
    ).check()  # fmt: skip
    report = api.fit(db, pairs_name, encoder=encoder, settings=settings, html=html,
                     progress=not ctx.obj["quiet"])  # fmt: skip
    if html is not None:
        note(f"report: {html}")
    s = report.summary
    note(
        f"pair set {s['pairs']} ({s['encoder']}): {s['n_pairs']:,} pairs ({s['n_ties']:,} ties "
        f"set aside), {s['n_concepts_tested']:,} concepts tested, {s['n_significant']:,} at "
        f"q < {alpha}",
    )
    if s.get("weak"):
        note(f"saeembed: {s['weak']}")
    fmt = fmt or default_format()
    if fmt == "json":
        write_json(report.to_json())
        return
    table = report.features
    if fmt in ("table", "csv"):
        table = join_lists(table, {"examples": " | "})
    if fmt != "table":
        render(table, fmt)
        note(f"held-out AUC: {json.dumps(report.metrics)}")
        return
    keep = TABLE_FEATURE_COLUMNS + (["examples"] if "examples" in table.columns else [])
    render(scientific(table.select(keep), "p", "q"), "table", title="Concepts (length-controlled):")
    intervals = s.get("auc_ci") or {}
    metrics = pl.DataFrame(
        {
            "model": list(report.metrics),
            "held_out_auc": list(report.metrics.values()),
            "ci_low": [intervals.get(name, [None])[0] for name in report.metrics],
            "ci_high": [intervals.get(name, [None, None])[1] for name in report.metrics],
        }
    )
    share = s.get("share_of_dense_gain") or {}
    metrics = metrics.with_columns(
        pl.col("model").replace_strict(share, default=None, return_dtype=pl.Float64)
        .alias("share_of_dense_gain")
    )  # fmt: skip
    split = "by prompt" if s.get("folds_by") == "prompt" else "by pair: fewer than 5 prompts"
    render(metrics, "table", title=f"\nHeld-out AUC (5-fold, split {split}; 95% interval):")
    largest = max((int(k[1:]) for k in report.metrics if k.startswith("k")), default=None)
    if largest is not None:
        render(
            report.sparse.filter(pl.col("k") == largest).drop("k"),
            "table",
            title=f"\nThe {largest}-concept model (fitted on all pairs):",
        )


@prefs.command("flag")
@click.argument("db", type=click.Path(path_type=Path))
@pairs_option
@pair_encoder_option
@click.option(
    "--concept",
    "concepts",
    multiple=True,
    help="FEATURE:- (punished: flag pairs whose preferred response has more of it), FEATURE:+ "
    "(rewarded), or FEATURE (the direction the data shows); repeatable.",
)
@click.option("--no-model", is_flag=True, help="Only the --concept rules, no model check.")
@click.option("--k", type=click.IntRange(min=1), default=default_of(api.flag, "k"),
              show_default=True, help="Concepts in the out-of-fold model.")  # fmt: skip
@click.option("--confidence", type=click.FloatRange(0.5, 1, min_open=True),
              default=default_of(api.flag, "confidence"), show_default=True,
              help="Flag pairs the model gives the label less than 1 - this probability.")  # fmt: skip
@click.option("--min-prevalence", type=click.FloatRange(0, 1),
              default=default_of(api.flag, "min_prevalence"), show_default=True)  # fmt: skip
@relabel_option
@click.option("--queue", type=click.Path(path_type=Path), help="Write a JSONL relabel queue here.")
@click.option("--top", type=click.IntRange(min=1), default=20, show_default=True,
              help="Rows to print (the queue gets all).")  # fmt: skip
@format_option
@domain_errors
def prefs_flag(db, pairs_name, encoder, concepts, no_model, k, confidence, min_prevalence,
               relabel, queue, top, fmt):  # fmt: skip
    """Pairs worth relabelling, each with its reasons: labels that go against a concept's
    direction, and labels an out-of-fold concept model confidently disagrees with."""
    flagged = api.flag(
        db, pairs_name, encoder=encoder, concepts=concepts, model=not no_model, k=k,
        confidence=confidence, min_prevalence=min_prevalence, relabel=relabel, queue=queue,
    )  # fmt: skip
    counts = flagged["flag"].str.split(",").explode().value_counts().sort("flag")
    summary = ", ".join(f"{r['count']:,} {r['flag']}" for r in counts.iter_rows(named=True))
    note(f"{flagged.height:,} pairs flagged ({summary or 'none'})")
    if queue is not None:
        note(
            f"wrote the relabel queue to {queue}: fill in `decision` (keep, flip, a, b, tie, "
            "drop), then run `saeembed prefs apply`"
        )
    fmt = fmt or default_format()
    shown = flagged.head(top)
    if fmt in ("table", "csv"):
        shown = shown.with_columns(
            pl.col("reasons").list.join("; "),
            *(
                pl.col(c).str.replace_all(r"\s+", " ").str.strip_chars().str.slice(0, 60)
                for c in ("prompt", "text_a", "text_b")
            ),
        )
    render(shown, fmt)


@prefs.command("apply")
@click.argument("db", type=click.Path(path_type=Path))
@click.argument("decisions", type=click.Path(path_type=Path))
@click.option("--as", "relabel", required=True, help="Name of the new label column.")
@pairs_option
@domain_errors
def prefs_apply(db, decisions, relabel, pairs_name):
    """Record reviewed decisions (a filled-in relabel queue: pair_id and decision keep, flip, a,
    b, tie, drop, or new_label) as a new label column; the original label is never changed."""
    counts = api.apply(db, decisions, relabel=relabel, pairs=pairs_name)
    if not counts:
        raise click.ClickException(
            f"no decisions in {decisions}: fill in `decision` (keep, flip, a, b, tie, drop) for "
            "the pairs you reviewed, then apply again"
        )
    note(f"relabelling {relabel!r}: {', '.join(f'{n:,} {d}' for d, n in counts.items())}")


@prefs.command("export")
@click.argument("db", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="A .jsonl (or .jsonl.gz), .parquet or .csv file.")  # fmt: skip
@pairs_option
@relabel_option
@domain_errors
def prefs_export(db, output, pairs_name, relabel):
    """Write the pair set, with a relabelling's labels when given (dropped pairs left out), as
    prompt, response_a, response_b, label, [new_label, decision], chosen, rejected."""
    frame = api.export(db, output, pairs=pairs_name, relabel=relabel)
    note(f"wrote {frame.height:,} pairs to {output}")


@prefs.command("annotators")
@click.argument("db", type=click.Path(path_type=Path))
@pairs_option
@pair_encoder_option
@click.option("--min-pairs", type=click.IntRange(min=2), default=default_of(api.annotators, "min_pairs"),
              show_default=True, help="Leave out annotators with fewer pairs.")  # fmt: skip
@click.option("--min-prevalence", type=click.FloatRange(0, 1),
              default=default_of(api.annotators, "min_prevalence"), show_default=True)  # fmt: skip
@relabel_option
@click.option("--top", type=click.IntRange(min=1), default=20, show_default=True)
@format_option
@domain_errors
def prefs_annotators(db, pairs_name, encoder, min_pairs, min_prevalence, relabel, top, fmt):
    """Per-annotator concept weights pooled with a random-effects model: the concepts whose
    weights vary most across annotators, then the annotators who deviate from the rest."""
    report = api.annotators(db, pairs_name, encoder=encoder, min_pairs=min_pairs,
                        min_prevalence=min_prevalence, relabel=relabel)  # fmt: skip
    note(
        f"{report.annotators.height} annotators ({report.n_excluded_annotators} with fewer than "
        f"{min_pairs} pairs left out, {report.n_excluded_pairs:,} pairs not analysed)",
    )
    fmt = fmt or default_format()
    if fmt == "json":
        out = {"concepts": report.concepts.head(top).to_dicts(),
               "annotators": report.annotators.to_dicts()}  # fmt: skip
        write_json(out)
        return
    concepts = report.concepts.head(top)
    annotator_rows = report.annotators
    if fmt == "table":
        concepts = scientific(concepts, "p", "q", "p_heterogeneity", "q_heterogeneity")
        annotator_rows = scientific(annotator_rows, "p", "q")
    render(concepts, fmt, title="Concepts whose weights vary most across annotators:")
    render(annotator_rows, fmt, title="\nAnnotators, most deviating first:")


@prefs.command("train-sae")
@click.argument("db", type=click.Path(path_type=Path))
@pairs_option
@click.option("--latents", type=click.IntRange(min=2), default=default_of(api.train_sae, "latents"),
              show_default=True)  # fmt: skip
@click.option("--k", type=click.FloatRange(min=0, min_open=True),
              default=default_of(api.train_sae, "k"), show_default=True,
              help="Mean active latents per pair.")  # fmt: skip
@click.option("--prefixes", default=",".join(map(str, default_of(api.train_sae, "prefixes"))),
              show_default=True, help="Matryoshka dictionary sizes, ending at --latents.")  # fmt: skip
@click.option("--epochs", type=click.IntRange(min=1), default=default_of(api.train_sae, "epochs"),
              show_default=True)  # fmt: skip
@click.option("--seed", type=int, default=default_of(api.train_sae, "seed"), show_default=True)
@click.option("--embedder", default=default_of(api.train_sae, "embedder"), show_default=True,
              help="Sentence embedder (Hub id, path, or the embedded all-MiniLM-L6-v2).")  # fmt: skip
@click.pass_context
@domain_errors
def prefs_train_sae(ctx, db, pairs_name, latents, k, prefixes, epochs, seed, embedder):
    """The WIMHF recipe: train a signed BatchTopK Matryoshka SAE on the embedding differences of
    a pair set's responses, label its latents, and store it as an encoder of its own, so that
    `prefs fit --encoder NAME` compares it with the document encoder on the same pairs."""
    try:
        sizes = tuple(int(m) for m in prefixes.split(",") if m.strip())
    except ValueError as exc:
        raise click.BadParameter(f"--prefixes {prefixes!r}: give integers like 8,16,32") from exc
    encoder, created, stats = api.train_sae(
        db, pairs_name, latents=latents, k=k, prefixes=sizes, epochs=epochs, seed=seed,
        embedder=embedder, progress=not ctx.obj["quiet"],
    )  # fmt: skip
    state = "trained" if created else "already there"
    note(
        f"pair SAE {encoder.name} (encoder {encoder.encoder_id}) {state}: FVU {stats['fvu']:.3f}, "
        f"{stats['l0']:.2f} active latents per pair, {stats['dead']} dead; analyse it with "
        f"`saeembed prefs fit {db} --encoder {encoder.name}`",
    )


COMMANDS = [prefs]
