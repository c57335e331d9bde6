"""Finding features by a phrase (`saeembed features search`, and the phrase of `search` and
`cluster --concepts`): exact substring matches on the label first, then the features closest in
meaning to the phrase. Closeness is the cosine similarity of the phrase's sentence embedding
(MiniLM by default) with the label's and, where the store has it, with the feature's evidence
embedding (the mean embedding of the contexts it peaks in, `feature_evidence`): their mean, so a
phrase finds a feature by what it fires on even when the label's words differ. Label embeddings
are cached under ``$SAEEMBED_HOME`` keyed by the labels' content, so only the first search pays."""

from __future__ import annotations

import hashlib

import numpy as np
import polars as pl

from saeembed.errors import InputError
from saeembed.files import atomic_path
from saeembed.home import cache_dir
from saeembed.labels.table import read_labels
from saeembed.store import Encoder, Store

SEARCH_COLUMNS = ["feature", "label", "label_score", "density", "match", "similarity",
                  "label_similarity", "evidence_similarity"]  # fmt: skip
MATCH_BY = ("both", "label", "evidence")


def label_embeddings(labels: list[str], embedder) -> np.ndarray:
    digest = hashlib.sha256("\n".join([embedder.model_id, *labels]).encode()).hexdigest()[:24]
    path = cache_dir("label-embeddings") / f"{digest}.npy"
    if path.is_file():
        return np.load(path)
    vectors = embedder.embed(labels).astype(np.float32)
    with atomic_path(path) as tmp, open(tmp, "wb") as out:
        np.save(out, vectors)
    return vectors


def _evidence_similarity(
    store: Store, encoder: Encoder, embedder, features: pl.Series, query: np.ndarray
) -> np.ndarray:
    """Cosine of ``query`` with each feature's evidence embedding; NaN where it has none."""
    from saeembed.labels.table import read_evidence

    have, vectors = read_evidence(store, encoder, embedder.model_id)
    out = np.full(len(features), np.nan)
    if len(have) and vectors.shape[1] == len(query):
        position = np.searchsorted(have, features.to_numpy())
        position = np.minimum(position, len(have) - 1)
        found = have[position] == features.to_numpy()
        out[found] = vectors[position[found]] @ query
    return out


def search_features(
    store: Store,
    encoder: Encoder,
    phrase: str,
    *,
    top: int = 20,
    semantic: bool = True,
    embedder=None,
    by: str = "both",
) -> pl.DataFrame:
    """Features matching ``phrase``: substring hits on the label (``match = "substring"``) first,
    then the most similar by embedding (``match = "semantic"``), at most ``top`` rows.
    ``similarity`` compares the phrase with the label (``by="label"``), with the feature's
    evidence embedding (``by="evidence"``; features without one fall back to the label), or
    with both (``by="both"``, their mean)."""
    if by not in MATCH_BY:
        raise InputError(f"unknown match {by!r}; use one of {', '.join(MATCH_BY)}")
    phrase = phrase.strip()
    if not phrase:
        raise InputError("the search phrase is empty; give a word or phrase, e.g. 'negation'")
    labels = read_labels(store, encoder).filter(pl.col("label").is_not_null())
    if labels.height == 0:
        raise InputError(
            f"encoder {encoder.name} has no feature labels yet; run `saeembed features label`"
        )
    needle = phrase.lower()
    substring = pl.col("label").str.to_lowercase().str.contains(needle, literal=True)
    label_sim = evidence_sim = similarity = pl.lit(None, dtype=pl.Float64)
    if semantic:
        if embedder is None:
            from saeembed.embedder import load_embedder

            embedder = load_embedder("default")
        texts = labels["label"].to_list()
        vectors = label_embeddings(texts, embedder)
        query = embedder.embed([phrase])[0]
        from_label = vectors @ query
        from_evidence = _evidence_similarity(store, encoder, embedder, labels["feature"], query)
        label_sim = pl.Series(from_label, dtype=pl.Float64)
        evidence_sim = pl.Series(from_evidence, dtype=pl.Float64)
        has = ~np.isnan(from_evidence)
        if by == "label":
            combined = from_label
        elif by == "evidence":
            combined = np.where(has, from_evidence, from_label)
        else:
            combined = np.where(has, (from_label + from_evidence) / 2, from_label)
        similarity = pl.Series(combined, dtype=pl.Float64)
    ranked = (
        labels.with_columns(
            pl.when(substring)
            .then(pl.lit("substring"))
            .otherwise(pl.lit("semantic"))
            .alias("match"),
            similarity.alias("similarity"),
            label_sim.alias("label_similarity"),
            evidence_sim.fill_nan(None).alias("evidence_similarity"),
        )
        .filter((pl.col("match") == "substring") | pl.lit(semantic))
        .sort(
            [pl.col("match") == "substring", "similarity", "label_score"],
            descending=[True, True, True],
            nulls_last=True,
        )
        .head(top)
    )
    return ranked.select(SEARCH_COLUMNS)
