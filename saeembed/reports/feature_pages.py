"""Feature pages (`saeembed features show DB F --html`, `saeembed features pages DB --out DIR`):
one page per feature (its label, score and source, density, activation histogram, top and
quantile examples with token shading, the tokens its decoder direction promotes and suppresses
through the reader's unembedding, co-occurring features) and an index page linking them."""

from __future__ import annotations

import logging
import shlex
from pathlib import Path

import polars as pl
from tqdm.auto import tqdm

from saeembed.errors import InputError
from saeembed.files import check_output
from saeembed.links import relative_href
from saeembed.reports import concept_data, page
from saeembed.reports.diff_report import label_fields, report_labels, table_columns
from saeembed.store import Encoder, Store

log = logging.getLogger(__name__)
TOP_EXAMPLES = 6
PAGE_ORDERS = ("distinctive", "frequent")
# A feature active in more than this share of the documents says little about any one of them.
UBIQUITOUS = 0.5


def choose_features(
    store: Store,
    encoder: Encoder,
    counts: pl.DataFrame,
    *,
    top: int,
    order: str = "distinctive",
    corpus: str | None = None,
) -> list[int]:
    """The ``top`` features to write pages for, from ``counts`` (feature, n_docs here).

    ``frequent``: those active in the most documents. ``distinctive`` (the default): those this
    corpus has far more often than the SAE's labelling corpus (the lower end of the 95% interval
    of the log ratio of the two frequencies; the labelling corpus's frequency comes from the
    labels shipped with the SAE), among features active in at least 3 documents and in at most
    half of them, one per group of alike concepts. Without shipped frequencies (an SAE of your
    own), the most frequent of those features."""
    ranked = counts.sort(["n_docs", "feature"], descending=[True, False])
    if order == "frequent" or counts.is_empty():
        return ranked["feature"].head(top).to_list()
    n_total = len(store.encoded_doc_ids(encoder, corpus=corpus))
    alike = store.sql(
        "SELECT feature FROM features WHERE encoder_id = $enc AND alike_of IS NOT NULL",
        {"enc": encoder.encoder_id},
    )["feature"]
    kept = ranked.filter(
        (pl.col("n_docs") >= 3)
        & (pl.col("n_docs") <= UBIQUITOUS * n_total)
        & ~pl.col("feature").is_in(alike.implode())
    )
    reference = shipped_frequencies(encoder)
    if reference is None or kept.is_empty():
        return (kept if not kept.is_empty() else ranked)["feature"].head(top).to_list()
    here = pl.col("n_docs") / n_total
    scored = kept.join(reference, on="feature", how="inner").with_columns(
        (
            (here / pl.col("ref_density")).log() - 1.96 * ((1 - here) / pl.col("n_docs")).sqrt()
        ).alias("lift_low")
    )
    return (
        scored.sort(["lift_low", "feature"], descending=[True, False])["feature"]
        .head(top)
        .to_list()
    )


def shipped_frequencies(encoder: Encoder) -> pl.DataFrame | None:
    """Per feature, its frequency in the labelling corpus of the SAE's shipped labels
    (``ref_density``, floored at 1e-4), or None when the SAE shipped none."""
    from saeembed.labels.table import shipped_labels_for

    path = shipped_labels_for(encoder.sae_sha256)
    if path is None:
        return None
    frame = pl.read_parquet(path, columns=["feature", "density"])
    return frame.select(
        pl.col("feature").cast(pl.Int64),
        pl.col("density").fill_null(0.0).clip(1e-4, 1.0).alias("ref_density"),
    )


def feature_payloads(
    store: Store,
    encoder: Encoder,
    features: list[int],
    *,
    corpus: str | None = None,
    examples: int = TOP_EXAMPLES,
    scorer="auto",
    progress: bool = True,
    db: str | None = None,
) -> list[dict]:
    """The data of one page per feature of ``features``."""
    from saeembed.reports.tokens import load_scorer

    bad = [f for f in features if not 0 <= f < encoder.d_sae]
    if bad:
        raise InputError(f"feature {bad[0]} does not exist; features are 0..{encoder.d_sae - 1}")
    if corpus is not None:
        store.require_corpus(corpus)
    scope = concept_data.encoded_scope(store, encoder, corpus)
    labels, sources = report_labels(store, encoder)
    rows = concept_data.activation_rows(store, encoder, features, scope)
    cooc = concept_data.cooccurring(store, encoder, features, scope, labels)
    strong = concept_data.strong_thresholds(store, encoder, features)
    texts = concept_data.candidate_texts(store, rows, examples)
    if scorer == "auto":
        scorer = load_scorer(encoder)
    output = scorer.output_tokens(features) if scorer is not None else {}
    builder = concept_data.ExampleBuilder(store, scorer, progress=progress)
    pages = []
    for feature in features:
        mine = rows.filter(pl.col("feature") == feature)
        values = mine["value"].to_numpy()
        top, quantiles = concept_data.pick_examples(mine, 1, examples, texts)
        promoted, suppressed = output.get(feature, ((), ()))
        command = ["saeembed", "features", "show", str(db or "DB"), str(feature)]
        if corpus:
            command += ["--corpus", corpus]
        pages.append(
            {
                "kind": "feature",
                **label_fields(labels, sources, feature),
                "meta": {
                    "encoder": encoder.name,
                    "corpus": corpus,
                    "n_docs": len(values),
                    "n_encoded": scope.num_rows,
                    "density": len(values) / scope.num_rows if scope.num_rows else 0.0,
                },
                "hist": concept_data.histogram(
                    [values], [scope.num_rows], strong.get(int(feature))
                ),
                "top": [[builder.add(feature, r) for r in top[0]]],
                "quantiles": [builder.add(feature, r, q=q) for q, r in quantiles],
                "promoted": list(promoted),
                "suppressed": list(suppressed),
                "cooc": cooc.get(int(feature), []),
                "commands": [shlex.join([*command, "--html", f"feature-{feature}.html"])],
            }
        )
    shading = builder.finish()
    for payload in pages:
        payload["meta"]["shading"] = shading
    return pages


def write_feature_page(
    store: Store, encoder: Encoder, feature: int, path: str | Path, **options
) -> Path:
    """Write the page of one feature to ``path``."""
    path = check_output(path)
    (payload,) = feature_payloads(store, encoder, [feature], **options)
    return page.write_text(path, page.render(_title(payload), payload))


def _title(payload: dict) -> str:
    label = payload["label"] or "unlabelled"
    return f"feature {payload['feature']}: {label}"


def page_name(feature: int) -> str:
    return f"feature-{feature}.html"


def write_feature_pages(
    store: Store,
    encoder: Encoder,
    out: str | Path,
    *,
    features: list[int] | None = None,
    top: int = 100,
    order: str = "distinctive",
    corpus: str | None = None,
    progress: bool = True,
    **options,
) -> Path:
    """Write ``index.html`` and a page per feature into directory ``out`` (made if missing).
    Without ``features``: the ``top`` features by ``order`` (`PAGE_ORDERS`; `choose_features`).
    Returns the index."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a directory; choose a directory")
    if order not in PAGE_ORDERS:
        raise InputError(f"unknown order {order!r}; use one of: {', '.join(PAGE_ORDERS)}")
    out.mkdir(parents=True, exist_ok=True)
    counts = store.sql(
        """
        SELECT a.feature, count(*) AS n_docs FROM activations a
        WHERE a.encoder_id = $enc AND ($corpus IS NULL OR a.doc_id IN
              (SELECT doc_id FROM documents WHERE corpus = $corpus))
        GROUP BY a.feature
        """,
        {"enc": encoder.encoder_id, "corpus": corpus},
    )
    if features is None:
        features = choose_features(store, encoder, counts, top=top, order=order, corpus=corpus)
    if not features:
        raise InputError("no active features to write pages for; encode documents first")
    payloads = feature_payloads(
        store, encoder, list(features), corpus=corpus, progress=progress, **options
    )
    for payload in tqdm(payloads, desc="writing pages", unit="page", disable=not progress):
        payload["linked"] = [int(f) for f in features]
        page.write_text(out / page_name(payload["feature"]), page.render(_title(payload), payload))
    labels, sources = report_labels(store, encoder)
    n_docs = dict(zip(counts["feature"].to_list(), counts["n_docs"].to_list(), strict=True))
    scope_size = payloads[0]["meta"]["n_encoded"]
    index = pl.DataFrame(
        {
            "feature": [int(f) for f in features],
            "label": [labels.get(f) for f in features],
            "label_score": [sources.get(f, (None, None))[1] for f in features],
            "label_source": [sources.get(f, (None, None))[0] for f in features],
            "n_docs": [int(n_docs.get(f, 0)) for f in features],
            "density": [n_docs.get(f, 0) / scope_size if scope_size else 0.0 for f in features],
        },
        schema_overrides={"label_score": pl.Float64, "label": pl.String, "label_source": pl.String},
    )
    payload = {
        "kind": "index",
        "meta": {"encoder": encoder.name, "corpus": corpus, "n_encoded": scope_size},
        "table": table_columns(index),
    }
    return page.write_text(out / "index.html", page.render(f"features of {encoder.name}", payload))


def cluster_feature_pages(
    store: Store, encoder: Encoder, summary: pl.DataFrame, map_path: str | Path, top: int = 5
) -> dict[int, list[dict]]:
    """Feature pages of each cluster's ``top`` concepts (``summary``'s ``top_features``) in the
    directory ``MAP-features`` beside map ``map_path``; returns per cluster its concepts with the
    relative link to their page, percent-encoded (`saeembed.links.relative_href`; for
    `saeembed.maps.write_map_html`)."""
    map_path = Path(map_path)
    folder = map_path.with_name(f"{map_path.stem}-features")
    per_cluster = {
        int(c): [int(f) for f in (features or [])[:top]]
        for c, features in zip(
            summary["cluster"].to_list(), summary["top_features"].to_list(), strict=True
        )
    }
    wanted = sorted({f for features in per_cluster.values() for f in features})
    if not wanted:
        return {}
    folder.mkdir(parents=True, exist_ok=True)
    write_feature_pages(store, encoder, folder, features=wanted, progress=False)
    labels, _ = report_labels(store, encoder)
    # the link is the page's path relative to the map's folder, each segment percent-encoded:
    # the folder is named after the map's file, whose name may hold ':', '#', '?' or quotes
    hrefs = {f: relative_href(folder / page_name(f), map_path.parent) for f in wanted}
    return {
        c: [
            {"feature": f, "label": labels.get(f)} | ({"href": hrefs[f]} if hrefs[f] else {})
            for f in features
        ]
        for c, features in per_cluster.items()
    }
