"""Property-based retrieval: documents that have a property, ranked.

- ``sae`` (default): for a phrase that describes a property (no label contains it), and when
  the encoder's features have evidence
  embeddings (the mean MiniLM embedding of the contexts each peaks in, centred on their mean
  over features): each document's concepts are read as a point in the sentence-embedding space,
  the sum of their evidence embeddings weighted by their activations, and documents are ranked
  by its cosine with the phrase's embedding (`meaning_scores`). Every concept counts, in
  proportion to what it fires on and how strongly; the reasons shown are the concepts that add
  most. Otherwise (a phrase that is part of a label, such as "film", names those concepts;
  feature ids, examples, or no evidence): the chosen concepts' activations,
  each divided by its 99th percentile in the corpus and capped at 1 (so one concept's scale
  cannot dominate), weighted by how well the concept matches (`saeembed.analysis.concepts`),
  summed per document.
- ``dense``: cosine similarity of the query's MiniLM embedding with each document's (the
  baseline; embeddings are stored in `text_embeddings` after the first run).
- ``hybrid``: reciprocal-rank fusion of the two rankings (1 / (60 + rank), summed).
- ``like``: documents whose concept vectors (idf-weighted, L2-normalised, restricted to the
  chosen concepts when there are any) are closest in cosine to a given document's; with
  ``dense``, the closest embeddings.

A ``where`` filter narrows the candidates (`saeembed.analysis.doc_filter`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from saeembed.analysis.concepts import ConceptChoice
from saeembed.analysis.doc_filter import filtered, where_sql
from saeembed.errors import InputError
from saeembed.labels.evidence import snippet
from saeembed.store import Encoder, Store

MODES = ("sae", "dense", "hybrid")
RRF_K = 60
SEARCH_COLUMNS = ["rank", "doc_id", "corpus", "score", "text", "concepts"]


def candidates(
    store: Store, encoder: Encoder, corpus: str | None, where: str | None
) -> pl.DataFrame:
    """``doc_id, corpus, text`` of the encoded documents (of ``corpus``) passing ``where``. A
    ``where`` restricts the store's connection to the store from then on (`Store.restrict_sql`):
    it is SQL from a user, so it runs only on a store opened read-only."""
    condition = where_sql(where, encoder) if where else "true"
    query = f"""
            SELECT d.doc_id, any_value(d.corpus) AS corpus, any_value(d.text) AS text
            FROM documents d
            WHERE ($corpus IS NULL OR d.corpus = $corpus)
              AND d.doc_id IN (SELECT doc_id FROM encoded_documents WHERE encoder_id = $enc)
              AND ({condition})
            GROUP BY d.doc_id ORDER BY d.doc_id
            """
    return filtered(store, query, {"corpus": corpus, "enc": encoder.encoder_id}, where)


def sae_scores(
    store: Store,
    encoder: Encoder,
    docs: pl.DataFrame,
    choice: ConceptChoice,
    measure: str = "max",
) -> tuple[np.ndarray, list[list[str]]]:
    """Per candidate document: the weighted sum of the chosen concepts' ``measure``, each scaled
    by its 99th percentile among the candidates and capped at 1, and the concepts that
    contributed, strongest first."""
    from saeembed.analysis.measures import prepare, rows_sql

    m = prepare(store, encoder, measure)
    weights = dict(zip(choice.features.tolist(), choice.weights.tolist(), strict=True))
    labels = dict(
        zip(choice.table["feature"].to_list(), choice.table["label"].to_list(), strict=True)
    )
    with store.temporary(search_docs=docs.select("doc_id").to_arrow()):
        acts = store.sql(
            f"""
            WITH measured AS (
                SELECT * FROM ({rows_sql(m)}) WHERE list_contains($features, feature)
                  AND doc_id IN (SELECT doc_id FROM search_docs)
            ),
            scale AS (
                SELECT feature, quantile_cont(v, 0.99) AS p99 FROM measured GROUP BY feature
            )
            SELECT x.doc_id, x.feature, least(x.v / s.p99, 1.0) AS scaled
            FROM measured x JOIN scale s USING (feature)
            """,
            {"enc": encoder.encoder_id, "features": list(weights)},
        )
    acts = acts.with_columns(
        (
            pl.col("scaled") * pl.col("feature").replace_strict(weights, return_dtype=pl.Float64)
        ).alias("contribution")
    ).sort(["contribution", "feature"], descending=[True, False])  # ties: by feature
    row = {d: i for i, d in enumerate(docs["doc_id"].to_list())}
    scores = np.zeros(docs.height)
    reasons: list[list[str]] = [[] for _ in range(docs.height)]
    for doc, feature, contribution in acts.select("doc_id", "feature", "contribution").iter_rows():
        i = row[doc]
        scores[i] += contribution
        if len(reasons[i]) < 3:
            reasons[i].append(f"{feature} {labels.get(feature)!r} ({contribution:.2f})")
    return scores, reasons


def scaled_matrix(store: Store, encoder: Encoder, docs: pl.DataFrame, measure: str = "max"):
    """The candidates' documents x concepts matrix (CSR) of ``measure``, each concept divided by
    its 99th percentile among the candidates and capped at 1."""
    from saeembed.analysis.matrix import load_matrix

    wanted = docs["doc_id"].to_numpy()
    matrix = load_matrix(store, encoder, measure=measure, doc_ids=wanted)
    rows = np.searchsorted(matrix.doc_ids, wanted)
    values = matrix.values.tocsr()[rows].tocsc()
    p99 = np.ones(encoder.d_sae)
    for feature in np.flatnonzero(np.diff(values.indptr)):
        column = values.data[values.indptr[feature] : values.indptr[feature + 1]]
        p99[feature] = np.quantile(column, 0.99) or 1.0
    scaled = values.multiply(1.0 / p99).tocsr()
    scaled.data = np.minimum(scaled.data, 1.0)
    return scaled


def meaning_scores(
    store: Store,
    encoder: Encoder,
    docs: pl.DataFrame,
    query: str,
    measure: str = "max",
    embedder=None,
    explain: int | None = None,
) -> tuple[np.ndarray, list[list[str]]] | None:
    """Per candidate: the cosine of the phrase's embedding with the document's concepts read in
    the embedding space (the sum of each concept's centred evidence embedding times its scaled
    activation), and the three concepts that add most (for the ``explain`` best documents only,
    when given; the others get none); None when the encoder's features have no evidence
    embeddings for this embedder."""
    from saeembed.labels.table import label_names, read_evidence

    if embedder is None:
        from saeembed.embedder import load_embedder

        embedder = load_embedder("default")
    have, vectors = read_evidence(store, encoder, embedder.model_id)
    if not len(have):
        return None
    meaning = np.zeros((encoder.d_sae, vectors.shape[1]), np.float32)
    meaning[have] = vectors - vectors.mean(axis=0)  # what sets each concept apart
    scaled = scaled_matrix(store, encoder, docs, measure)
    points = scaled @ meaning
    norms = np.linalg.norm(points, axis=1)
    norms[norms == 0] = 1.0
    query_vector = embedder.embed([query])[0]
    relevance = meaning @ query_vector  # each concept's pull towards the phrase
    scores = (points @ query_vector) / norms
    names = label_names(store, encoder)
    label_of = dict(zip(names["feature"].to_list(), names["label"].to_list(), strict=True))
    reasons: list[list[str]] = [[] for _ in range(scaled.shape[0])]
    shown = np.argsort(-scores, kind="stable")[:explain] if explain else range(len(scores))
    for i in shown:
        start, stop = scaled.indptr[i], scaled.indptr[i + 1]
        features = scaled.indices[start:stop]
        adds = scaled.data[start:stop] * relevance[features] / norms[i]
        top = np.argsort(-adds, kind="stable")[:3]
        reasons[i] = [
            f"{features[j]} {label_of.get(int(features[j]))!r} ({adds[j]:.3f})"
            for j in top
            if adds[j] > 0
        ]
    return scores, reasons


def dense_scores(store: Store, docs: pl.DataFrame, query: str, embedder="default") -> np.ndarray:
    """Cosine similarity of each candidate's sentence embedding with the query's."""
    from saeembed.embedder import load_embedder
    from saeembed.embedding_cache import document_embeddings

    model = load_embedder(embedder) if isinstance(embedder, str) else embedder
    vectors = document_embeddings(store, docs["doc_id"].to_numpy(), docs["text"].to_list(), model)
    return vectors @ model.embed([query])[0]


def rank_fusion(*scores: np.ndarray) -> np.ndarray:
    """Reciprocal-rank fusion: the sum over rankings of 1 / (60 + rank), rank 1 = best."""
    total = np.zeros(len(scores[0]))
    for s in scores:
        ranks = np.empty(len(s))
        ranks[np.argsort(-s, kind="stable")] = np.arange(1, len(s) + 1)
        total += 1.0 / (RRF_K + ranks)
    return total


def like_scores(
    store: Store,
    encoder: Encoder,
    docs: pl.DataFrame,
    doc_id: int | Sequence[int],
    choice: ConceptChoice | None,
    *,
    dense: bool = False,
    measure: str = "max",
) -> np.ndarray:
    """Cosine similarity of every candidate to document ``doc_id`` (or to the mean of several
    documents' normalised vectors): on idf-weighted concept vectors (the concepts present under
    ``measure``; the chosen ones only, if any), or on sentence embeddings with ``dense``."""
    targets = np.atleast_1d(np.asarray(doc_id, dtype=np.int64))
    found = store.texts(targets.tolist())
    if found.height < len(np.unique(targets)):
        missing = sorted(set(targets.tolist()) - set(found["doc_id"].to_list()))
        raise InputError(f"no document with doc_id {missing[0]} in {store.path}")
    if dense:
        from saeembed.embedding_cache import document_embeddings

        both = pl.concat([found.select("doc_id", "text"), docs.select("doc_id", "text")])
        vectors = document_embeddings(store, both["doc_id"].to_numpy(), both["text"].to_list())
        centre = vectors[: found.height].mean(axis=0)
        return vectors[found.height :] @ (centre / max(np.linalg.norm(centre), 1e-12))
    from saeembed.analysis.cluster import weight_matrix
    from saeembed.analysis.matrix import load_matrix

    matrix = load_matrix(store, encoder, measure=measure)
    if choice is not None:
        keep = np.zeros(encoder.d_sae, dtype=bool)
        keep[choice.features] = True
        values = matrix.values[:, np.flatnonzero(keep)]
    else:
        values = matrix.values
    x = weight_matrix(values.tocsr(), "idf")
    where = np.searchsorted(matrix.doc_ids, targets).clip(max=max(matrix.n_docs - 1, 0))
    absent = targets[matrix.doc_ids[where] != targets] if matrix.n_docs else targets
    if len(absent):
        raise InputError(f"document {absent[0]} is not encoded by encoder {encoder.name}")
    centre = np.asarray(x[where].mean(axis=0)).ravel()
    centre /= max(float(np.linalg.norm(centre)), 1e-12)
    rows = np.searchsorted(matrix.doc_ids, docs["doc_id"].to_numpy())
    return np.asarray(x[rows] @ centre).ravel()


def search_documents(
    store: Store,
    encoder: Encoder,
    *,
    docs: pl.DataFrame | None = None,
    query: str | None = None,
    choice: ConceptChoice | None = None,
    like: int | Sequence[int] | None = None,
    mode: str = "sae",
    corpus: str | None = None,
    where: str | None = None,
    top: int = 10,
    width: int = 100,
    measure: str = "max",
    leave_out: Sequence[int] = (),
) -> pl.DataFrame:
    """The ``top`` documents for a property (``query`` / ``choice``) or like document ``like``
    (or like several: their mean), among those passing ``where`` (`SEARCH_COLUMNS`), scoring
    concepts by ``measure``; ``docs``: the `candidates` already chosen (on a read-only store,
    when ``store`` is writable). The ``like`` documents and ``leave_out`` (the examples a search
    was given) are never among the results."""
    if mode not in MODES:
        raise InputError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    if docs is None:
        docs = candidates(store, encoder, corpus, where)
    if docs.is_empty():
        raise InputError("no encoded document passes the filters; loosen --where or --corpus")
    reasons: list[list[str]] = [[] for _ in range(docs.height)]
    if like is not None:
        scores = like_scores(
            store, encoder, docs, like, choice, dense=mode == "dense", measure=measure
        )
        reasons = [[] for _ in range(docs.height)]
    else:
        if mode in ("dense", "hybrid") and not query:
            raise InputError("dense and hybrid search need a query phrase")
        if mode in ("sae", "hybrid") and choice is None:
            raise InputError("SAE search needs concepts: a phrase, feature ids or examples")
        if mode == "dense":
            scores = dense_scores(store, docs, query)
        else:
            if reads_by_meaning(store, encoder, query, choice):
                explain = top if mode == "sae" else None
                scores, reasons = meaning_scores(
                    store, encoder, docs, query, measure, explain=explain
                )
            else:
                scores, reasons = sae_scores(store, encoder, docs, choice, measure)
            if mode == "hybrid":
                scores = rank_fusion(scores, dense_scores(store, docs, query))
    given = [*np.atleast_1d(like if like is not None else []).tolist(), *leave_out]
    keep = ~np.isin(docs["doc_id"].to_numpy(), np.asarray(given, dtype=np.int64))
    docs, scores = docs.filter(pl.Series(keep)), scores[keep]
    reasons = [r for r, k in zip(reasons, keep, strict=True) if k]
    order = np.argsort(-scores, kind="stable")[:top]
    texts = docs["text"].to_list()
    return pl.DataFrame(
        {
            "rank": np.arange(1, len(order) + 1),
            "doc_id": docs["doc_id"].to_numpy()[order],
            "corpus": docs["corpus"].to_numpy()[order],
            "score": scores[order],
            "text": [snippet(texts[i], None, None, width=width // 2) for i in order],
            "concepts": [reasons[i] for i in order],
        },
        schema_overrides={"concepts": pl.List(pl.String)},
    )


def reads_by_meaning(
    store: Store, encoder: Encoder, query: str | None, choice: ConceptChoice | None
) -> bool:
    """Whether SAE search scores ``query`` by `meaning_scores`: the phrase describes a property
    rather than names concepts (every concept was chosen by meaning: no label contains it, no
    ids, no examples) and the encoder's features have evidence embeddings made with the embedder
    search uses (the default MiniLM)."""
    from saeembed.embedder import DEFAULT_EMBEDDER_NAME

    if not query or choice is None or not set(choice.table["reason"]) <= {"semantic"}:
        return False
    found = store.sql(
        "SELECT count(*) AS n FROM feature_evidence WHERE encoder_id = ? AND model = ?",
        [encoder.encoder_id, DEFAULT_EMBEDDER_NAME],
    )
    return bool(found["n"][0])
