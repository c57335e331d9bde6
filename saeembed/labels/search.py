"""Finding features by what their labels say (`saeembed features search`): exact substring
matches on label or description first, then the labels closest in meaning to the phrase by the
cosine similarity of their sentence embeddings (MiniLM by default). Label embeddings are cached
under ``$SAEEMBED_HOME`` keyed by the labels' content, so only the first search pays for them."""

from __future__ import annotations

import hashlib

import numpy as np
import polars as pl

from saeembed.errors import InputError
from saeembed.home import cache_dir
from saeembed.labels.table import read_labels
from saeembed.store import Encoder, Store

SEARCH_COLUMNS = ["feature", "label", "label_score", "density", "match", "similarity"]


def label_embeddings(labels: list[str], embedder) -> np.ndarray:
    digest = hashlib.sha256("\n".join([embedder.model_id, *labels]).encode()).hexdigest()[:24]
    path = cache_dir("label-embeddings") / f"{digest}.npy"
    if path.is_file():
        return np.load(path)
    vectors = embedder.embed(labels).astype(np.float32)
    tmp = path.with_name(f"{path.stem}.tmp.npy")
    np.save(tmp, vectors)
    tmp.replace(path)
    return vectors


def search_features(
    store: Store,
    encoder: Encoder,
    phrase: str,
    *,
    top: int = 20,
    semantic: bool = True,
    embedder=None,
) -> pl.DataFrame:
    """Features whose label matches ``phrase``: substring hits (``match = "substring"``) first,
    then the most similar labels by embedding (``match = "semantic"``), at most ``top`` rows."""
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
    similarity = pl.lit(None, dtype=pl.Float64)
    if semantic:
        if embedder is None:
            from saeembed.embedder import load_embedder

            embedder = load_embedder("default")
        texts = labels["label"].to_list()
        vectors = label_embeddings(texts, embedder)
        query = embedder.embed([phrase])[0]
        similarity = pl.Series("similarity", vectors @ query, dtype=pl.Float64)
    ranked = (
        labels.with_columns(
            pl.when(substring)
            .then(pl.lit("substring"))
            .otherwise(pl.lit("semantic"))
            .alias("match"),
            similarity.alias("similarity"),
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
