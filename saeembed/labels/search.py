"""Finding features by a phrase (`saeembed features search`, and the phrase of `search` and
`cluster --concepts`): labels that hold the phrase as whole words (``tone`` matches *tone* and
*tones*, never *acetone*; ``war`` never *software* or *toward*), and the features closest in
meaning to the phrase, all ranked by that closeness. Closeness is the cosine similarity of the phrase's sentence embedding
(MiniLM by default) with the label's and, where the store has it, with the feature's evidence
embedding (the mean embedding of the contexts it peaks in, `feature_evidence`): their mean, so a
phrase finds a feature by what it fires on even when the label's words differ. Label embeddings
are cached under ``$SAEEMBED_HOME`` keyed by the labels' content, so only the first search pays."""

from __future__ import annotations

import hashlib
import re

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


def word_pattern(phrase: str) -> str:
    """A regular expression (lower case) that finds ``phrase`` in a label as whole words: not
    inside a longer word on either side, with an optional plural ``s``/``es``. Word characters
    are letters, digits and ``_``; a phrase that starts or ends with another character (``c++``)
    needs no boundary there."""
    needle = re.escape(" ".join(phrase.lower().split())).replace(r"\ ", r"\s+")
    start = r"(?:^|[^\w])" if re.match(r"\w", phrase.strip()) else ""
    end = r"(?:e?s)?(?:$|[^\w])" if re.search(r"\w$", phrase.strip()) else ""
    return f"{start}{needle}{end}"


# endings that make another form of the same word (``act`` -> *acting*, *actors*), not another
# word: a label holding the phrase only with one of these is still about it
INFLECTIONS = ("s", "es", "d", "ed", "ing", "er", "ers", "or", "ors", "ion", "ions", "ly")


def inside_other_words(label: str, phrase: str) -> bool:
    """Whether ``label`` holds ``phrase`` only inside other words (*acetone* for ``tone``,
    *software* for ``war``): never as a whole word nor as a word of the same stem (`INFLECTIONS`).
    A meaning match on such a label is the embedder reading shared word pieces, not the sense."""
    lowered, needle = label.lower(), " ".join(phrase.lower().split())
    if not needle or needle not in lowered:
        return False
    stem = word_pattern(phrase).removesuffix(r"(?:e?s)?(?:$|[^\w])")
    forms = "|".join(INFLECTIONS)
    return not re.search(rf"{stem}(?:{forms})?(?:$|[^\w])", lowered)


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
    """Features matching ``phrase``, at most ``top`` rows: labels holding it as whole words
    (``match = "word"``, `word_pattern`) and, with ``semantic``, the most similar by embedding
    (``match = "semantic"``), ranked by ``similarity``; without ``semantic`` only the word
    matches, best labels first. ``similarity`` compares the phrase with the label
    (``by="label"``), with the feature's evidence embedding (``by="evidence"``; features without
    one fall back to the label), or with both (``by="both"``, their mean)."""
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
    words = pl.col("label").str.to_lowercase().str.contains(word_pattern(phrase))
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
            pl.when(words).then(pl.lit("word")).otherwise(pl.lit("semantic")).alias("match"),
            similarity.alias("similarity"),
            label_sim.alias("label_similarity"),
            evidence_sim.fill_nan(None).alias("evidence_similarity"),
        )
        .filter((pl.col("match") == "word") | pl.lit(semantic))
        .filter(
            ~pl.col("label").map_elements(
                lambda label: inside_other_words(label, phrase), return_dtype=pl.Boolean
            )
        )
        .sort(
            ["similarity", "label_score", "feature"],
            descending=[True, True, False],
            nulls_last=True,
        )  # fmt: skip
        .head(top)
    )
    return ranked.select(SEARCH_COLUMNS)
