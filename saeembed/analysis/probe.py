"""What in the text predicts a column, and how well: a sparse concept probe against dense
probes, each scored on documents its model never saw, and the concepts it selects as named
hypotheses tested on held-out documents.

For a metadata column (or ``corpus``, the name of each document's corpus) of the documents an
encoder has encoded: the concept matrix (`saeembed.analysis.matrix`, one measure per document
and concept), the target (`probe_models.Target`: classes with fewer than two documents per fold
are set aside and counted), cross-fitting folds, then out-of-fold predictions of

- the concept probe (top-k concepts, k by inner cross-validation) and its curve over k,
- the dense probes: the reader's mean-pooled activations at the SAE's site, where the store keeps
  them (`encode --keep-dense`, table `dense_vectors`), and the sentence embedder (cached in
  `text_embeddings`),
- the union of the reader's vectors (else the embedder's) and the concepts,

scored with bootstrap intervals and paired differences to the dense probe
(`saeembed.analysis.probe_scores`), and the hypotheses (`saeembed.analysis.probe_hypotheses`)
with names and example documents."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from saeembed.analysis.correlate import detect_kind, metadata_column
from saeembed.analysis.doc_filter import filtered, where_sql
from saeembed.analysis.matrix import load_matrix
from saeembed.analysis.probe_hypotheses import (
    describe,
    discovery_split,
    held_out_test,
    mark_names,
    select,
)
from saeembed.analysis.probe_models import (
    KS,
    Concepts,
    Target,
    cross_fit_concepts,
    cross_fit_dense,
    make_folds,
)
from saeembed.analysis.probe_scores import (
    CHANCE,
    METRIC_NAMES,
    scores_with_intervals,
    share_of_gain,
)
from saeembed.analysis.probe_settings import ProbeSettings
from saeembed.errors import InputError
from saeembed.labels.evidence import snippet
from saeembed.labels.table import label_names
from saeembed.store import Encoder, Store
from saeembed.store.dense import dense_vectors

log = logging.getLogger(__name__)

MAX_CLASSES = 50
#: A hypothesis holds on the held-out half at q below this, its interval above 1 (above 0).
HOLDS_AT = 0.05
SCORE_COLUMNS = ["probe", "inputs", "score", "low", "high", "vs_dense", "vs_low", "vs_high",
                 "share_of_dense_gain"]  # fmt: skip


@dataclass
class ProbeResult:
    """What `run_probe` found: held-out scores per probe, the hypotheses, each document's
    out-of-fold predictions, and a summary (target, classes, folds, the k each fold chose)."""

    scores: pl.DataFrame
    hypotheses: pl.DataFrame
    predictions: pl.DataFrame
    summary: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"summary": self.summary, "scores": self.scores.to_dicts(),
                "hypotheses": self.hypotheses.to_dicts()}  # fmt: skip


# ---- documents and target ---------------------------------------------------------------------
def probed_documents(
    store: Store, encoder: Encoder, corpus: str | None, where: str | None, max_docs: int | None
) -> np.ndarray:
    """Sorted ids of the encoded documents probed: of ``corpus``, passing ``where``, at most
    ``max_docs`` (a sample fixed by document id)."""
    ids = store.encoded_doc_ids(encoder, corpus)
    if where:
        query = (
            "SELECT DISTINCT d.doc_id FROM documents d WHERE ($corpus IS NULL OR d.corpus = "
            f"$corpus) AND ({where_sql(where, encoder)})"
        )
        passing = filtered(store, query, {"corpus": corpus}, where)["doc_id"].to_numpy()
        ids = np.intersect1d(ids, passing)
        if len(ids) == 0:
            raise InputError(f"no encoded document passes --where {where!r}; loosen the filter")
    if max_docs and len(ids) > max_docs:
        ids = np.sort(np.random.default_rng(0).choice(ids, max_docs, replace=False))
    return ids


def corpus_column(store: Store, doc_ids: np.ndarray) -> pl.Series:
    """Each document's corpus (the first by name, for a text held by several)."""
    with store.temporary(probe_ids={"doc_id": doc_ids}):
        frame = store.sql(
            "SELECT p.doc_id, min(d.corpus) AS corpus FROM probe_ids p JOIN documents d "
            "USING (doc_id) GROUP BY p.doc_id ORDER BY p.doc_id"
        )
    return frame["corpus"]


def read_target(values: pl.Series, kind: str, n_folds: int) -> tuple[np.ndarray, Target, dict]:
    """The rows kept (documents with a value; for classes, in a class with at least two
    documents per fold), the `Target`, and what was set aside."""
    present = values.is_not_null().to_numpy()
    kept = values.filter(pl.Series(present))
    kind = detect_kind(kept) if kind == "auto" else kind
    notes: dict = {"missing": int((~present).sum())}
    if kind == "date":
        dates = kept.cast(pl.Utf8).str.to_datetime(strict=False)
        return np.flatnonzero(present), Target("numeric", _days(dates)), notes | {"read_as": "days"}
    if kind == "numeric":
        try:
            y = kept.cast(pl.Float64).to_numpy()
        except pl.exceptions.InvalidOperationError as exc:
            raise InputError(f"column {values.name!r} is not numeric; use --kind categorical") from exc  # fmt: skip
        if np.nanstd(y) == 0:
            raise InputError(f"column {values.name!r} has one value only: nothing to predict")
        return np.flatnonzero(present), Target("numeric", y), notes
    labels = kept.cast(pl.Utf8)
    counts = labels.value_counts().sort("count", descending=True)
    small = counts.filter(pl.col("count") < 2 * n_folds)
    classes = sorted(counts.filter(pl.col("count") >= 2 * n_folds)[labels.name].to_list())
    if len(classes) < 2:
        raise InputError(
            f"column {values.name!r} needs two classes with at least {2 * n_folds} documents "
            f"each (has {counts.height} classes: {_listed(counts, labels.name)}); "
            "use --kind numeric for numbers"
        )
    if len(classes) > MAX_CLASSES:
        raise InputError(
            f"column {values.name!r} has {len(classes)} classes; a probe takes at most "
            f"{MAX_CLASSES}: group them, or use --kind numeric"
        )
    keep = labels.is_in(classes).to_numpy()
    rows = np.flatnonzero(present)[keep]
    code = {c: i for i, c in enumerate(classes)}
    y = np.array([code[v] for v in labels.filter(pl.Series(keep)).to_list()])
    notes["small_classes"] = dict(small.iter_rows())
    kind = "binary" if len(classes) == 2 else "multiclass"
    return rows, Target(kind, y, classes), notes


def _days(dates: pl.Series) -> np.ndarray:
    return (dates.dt.epoch("s").to_numpy() / 86_400.0).astype(float)


def _listed(counts: pl.DataFrame, column: str) -> str:
    shown = [f"{v} ({n})" for v, n in counts.head(5).iter_rows()]
    return ", ".join(shown) + (" ..." if counts.height > 5 else "")


# ---- dense inputs -----------------------------------------------------------------------------
def dense_inputs(
    store: Store, encoder: Encoder, doc_ids: np.ndarray, choice: str
) -> tuple[dict[str, np.ndarray], list[str]]:
    """The dense vectors asked for by ``choice`` (`probe_settings.DENSE_CHOICES`), by probe
    name, and notes on what could not be used."""
    out, notes = {}, []
    if choice in ("auto", "reader", "both"):
        vectors, found = dense_vectors(store, encoder, doc_ids)
        if found.all():
            out[f"reader (layer {encoder.layer}, mean-pooled)"] = vectors
        else:
            message = (
                f"{int((~found).sum()):,} of {len(doc_ids):,} documents have no stored reader "
                "vector; run `saeembed encode ... --keep-dense` on this store to add them"
            )
            if choice != "auto":
                raise InputError(message)
            notes.append("no reader baseline: " + message)
    if choice in ("auto", "embedder", "both"):
        from saeembed.embedder import load_embedder
        from saeembed.embedding_cache import stored_document_embeddings

        embedder = load_embedder("default")
        vectors = stored_document_embeddings(store, doc_ids, embedder)
        out[f"sentence embedder ({embedder.model_id.split('/')[-1]})"] = vectors
    return out, notes


# ---- the probe --------------------------------------------------------------------------------
def run_probe(
    store: Store,
    column: str,
    encoder: Encoder,
    *,
    corpus: str | None = None,
    where: str | None = None,
    settings: ProbeSettings | None = None,
) -> ProbeResult:
    """The whole probe of ``column`` under ``encoder`` (see the module doc)."""
    settings = (settings or ProbeSettings()).check()
    clock = {"start": time.perf_counter()}
    ids = probed_documents(store, encoder, corpus, where, settings.max_docs)
    matrix = load_matrix(store, encoder, doc_ids=ids, measure=settings.measure)
    if column == "corpus":
        values = corpus_column(store, matrix.doc_ids).alias("corpus")
    else:
        values = metadata_column(store, matrix, column, corpus)
    rows, target, notes = read_target(values, settings.kind, settings.folds)
    doc_ids = matrix.doc_ids[rows]
    x = Concepts(matrix.values.tocsr()[rows])
    folds = make_folds(target, settings.folds, settings.seed)
    clock["read"] = time.perf_counter()
    dense, dense_notes = dense_inputs(store, encoder, doc_ids, settings.dense)
    predictions, dense_c = {}, {}
    for name, vectors in dense.items():
        predictions[name], dense_c[name] = cross_fit_dense(vectors, target, folds,
                                                           seed=settings.seed)  # fmt: skip
    clock["dense"] = time.perf_counter()
    reference = next(iter(dense), None)
    concept = cross_fit_concepts(
        x, target, folds, seed=settings.seed,
        dense=dense[reference] if reference else None, dense_c=dense_c.get(reference),
    )  # fmt: skip
    clock["concepts"] = time.perf_counter()
    chosen = f"concepts (k by inner CV: {_k_range(concept.k_of_fold)})"
    predictions = {chosen: concept.chosen, **predictions}
    for k, pred in concept.by_k.items():
        predictions[f"concepts, k={k}"] = pred
    if concept.union is not None:
        predictions[f"union ({reference.split(' (')[0]} + concepts)"] = concept.union
    scored = scores_with_intervals(target, predictions, reference=reference, seed=settings.seed)
    scores = _score_table(
        scored, target, concept, reference, {n: v.shape[1] for n, v in dense.items()}
    )
    hypotheses = _hypotheses(store, encoder, x, doc_ids, target, concept, settings)
    clock["hypotheses"] = time.perf_counter()
    summary = _summary(column, corpus, where, target, encoder, settings, notes, dense_notes,
                       concept, doc_ids, reference, scored, chosen, clock, x.shape[1])  # fmt: skip
    frame = _prediction_frame(doc_ids, folds, target, predictions, chosen, reference)
    return ProbeResult(scores, hypotheses, frame, summary)


def _k_range(k_of_fold: dict[int, int]) -> str:
    ks = sorted(k_of_fold.values())
    return str(ks[0]) if ks[0] == ks[-1] else f"{ks[0]}-{ks[-1]}, median {int(np.median(ks))}"


def _score_table(scored, target, concept, reference, widths) -> pl.DataFrame:
    rows = []
    dense_score = scored[reference]["score"] if reference else None
    for name, s in scored.items():
        if name.startswith("concepts, k="):
            inputs = int(name.split("=")[1])
        elif name.startswith("concepts"):
            inputs = int(np.median(list(concept.k_of_fold.values())))
        elif name.startswith("union"):
            inputs = widths[reference] + int(np.median(list(concept.k_of_fold.values())))
        else:
            inputs = widths.get(name)
        share = share_of_gain(s["score"], dense_score, target.kind) if reference else None
        rows.append((name, inputs, s["score"], s["low"], s["high"], s.get("diff"),
                     s.get("diff_low"), s.get("diff_high"), share))  # fmt: skip
    schema = dict(zip(SCORE_COLUMNS, [pl.Utf8, pl.Int64] + [pl.Float64] * 7, strict=True))
    return pl.DataFrame(rows, schema=schema, orient="row")


def _hypotheses(store, encoder, x, doc_ids, target, concept, settings) -> pl.DataFrame:
    if settings.hypotheses == 0:
        return pl.DataFrame()
    discovery = discovery_split(target, settings.seed)
    chosen = select(x[discovery], target.subset(np.flatnonzero(discovery)), ks=KS,
                    seed=settings.seed, limit=settings.hypotheses)  # fmt: skip
    if len(chosen.concepts) == 0:
        return pl.DataFrame()
    validation = np.flatnonzero(~discovery)
    tested = held_out_test(x[validation], target.subset(validation), chosen)
    names = label_names(store, encoder)
    label = dict(zip(names["feature"].to_list(), names["label"].to_list(), strict=True))
    in_folds = [sum(int(f) in set(c.tolist()) for c in concept.concepts_of_fold.values())
                for f in chosen.concepts]  # fmt: skip
    frame = pl.concat(
        [
            pl.DataFrame(
                {
                    "feature": chosen.concepts.astype(np.int64),
                    "name": [label.get(int(f)) for f in chosen.concepts],
                    "marks": mark_names(target, chosen.marks),
                }
            ),  # fmt: skip
            tested.drop("feature"),
            describe(x, target, chosen),
            pl.DataFrame({"folds_selected": in_folds}),
        ],
        how="horizontal",
    )
    if target.categorical:
        frame = frame.rename({"coef": "log_odds"}).with_columns(
            pl.col("log_odds").exp().alias("odds_ratio")
        )
    floor = 1.0 if target.categorical else 0.0  # of the interval: an odds ratio, a coefficient
    frame = frame.with_columns(
        ((pl.col("q") < HOLDS_AT) & (pl.col("low") > floor)).fill_null(False).alias("holds")
    ).sort("p", "feature", nulls_last=True)  # the held-out evidence first
    return _add_examples(store, encoder, frame, doc_ids, target, settings.examples)


def _add_examples(store, encoder, frame, doc_ids, target, k) -> pl.DataFrame:
    """``examples``: each concept's strongest documents among those of the class it marks (any
    document for a number), peak marked, the target value first for a number."""
    if k <= 0 or frame.height == 0:
        return frame
    code = target.y if target.categorical else np.zeros(len(doc_ids), dtype=np.int64)
    code_of = {name: i for i, name in enumerate(target.classes)}
    wanted = np.asarray([code_of.get(m, 0) for m in frame["marks"]], np.int64)
    with store.temporary(probe_docs={"doc_id": doc_ids, "code": code, "y": target.y.astype(float)}):
        rows = store.sql(
            """
            WITH wanted AS (SELECT unnest($features) AS feature, unnest($marks) AS mark),
            texts AS (SELECT doc_id, any_value(text) AS text FROM documents
                      WHERE doc_id IN (SELECT doc_id FROM probe_docs) GROUP BY doc_id),
            ranked AS (
                SELECT w.feature, t.text, x.peak_start, x.peak_end, p.y,
                       row_number() OVER (PARTITION BY w.feature ORDER BY x.value DESC, x.doc_id)
                           AS r
                FROM wanted w
                JOIN activations x ON x.feature = w.feature AND x.encoder_id = $enc
                JOIN probe_docs p ON p.doc_id = x.doc_id AND p.code = w.mark
                JOIN texts t ON t.doc_id = x.doc_id
            )
            SELECT feature, text, peak_start, peak_end, y FROM ranked WHERE r <= $k
            ORDER BY feature, r
            """,
            {"features": frame["feature"].to_list(), "marks": wanted.tolist(),
             "enc": encoder.encoder_id, "k": k},
        )  # fmt: skip
    examples: dict[int, list[str]] = {}
    for feature, text, start, end, y in rows.iter_rows():
        shown = snippet(text, start, end, width=50)
        if not target.categorical:
            shown = f"[{y:g}] {shown}"
        examples.setdefault(int(feature), []).append(shown)
    return frame.with_columns(
        pl.Series(
            "examples", [examples.get(int(f), []) for f in frame["feature"]], dtype=pl.List(pl.Utf8)
        )  # fmt: skip
    )


def _summary(column, corpus, where, target, encoder, settings, notes, dense_notes, concept,
             doc_ids, reference, scored, chosen, clock, n_concepts) -> dict:  # fmt: skip
    counts = np.bincount(target.y, minlength=len(target.classes)) if target.categorical else None
    return {
        "target": column,
        "corpus": corpus,
        "where": where,
        "kind": target.kind,
        "metric": METRIC_NAMES[target.kind],
        "chance": CHANCE[target.kind],
        "classes": dict(zip(target.classes, counts.tolist(), strict=True)) if counts is not None else None,
        "n_docs": len(doc_ids),
        "set_aside": notes,
        "encoder": encoder.name,
        "n_concepts": n_concepts,
        "measure": settings.measure,
        "folds": settings.folds,
        "k_of_fold": concept.k_of_fold,
        "concept_probe": chosen,
        "concept_score": scored[chosen]["score"],
        "dense_probe": reference,
        "dense_score": scored[reference]["score"] if reference else None,
        "notes": dense_notes,
        "seconds": {stage: round(clock[stage] - clock["start"], 2)
                    for stage in ("read", "dense", "concepts", "hypotheses")},
        "seed": settings.seed,
    }  # fmt: skip


def _prediction_frame(doc_ids, folds, target, predictions, chosen, reference) -> pl.DataFrame:
    truth = [target.classes[int(c)] for c in target.y] if target.categorical else target.y
    columns = {"doc_id": doc_ids, "fold": folds, "target": truth}
    for name, key in (("concepts", chosen), ("dense", reference)):
        if key is None:
            continue
        pred = predictions[key]
        if target.kind == "multiclass":
            columns[name] = [target.classes[int(c)] for c in pred.argmax(axis=1)]
        else:
            columns[name] = pred
    return pl.DataFrame(columns)
