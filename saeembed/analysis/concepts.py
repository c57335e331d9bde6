"""Choosing which concepts matter, for clustering and retrieval alike.

A choice starts from any of: a phrase ("tone", "refusal", "about sports"), matched against the
features (labels that hold the phrase as whole words, never inside a longer word, and features
close in meaning by the MiniLM cosine similarity of the phrase with their labels and evidence
embeddings, `saeembed.labels.search`); explicit feature ids; or example documents the user
marks as positive, against which every concept's separation is measured (its frequency among
the positives against the rest of the corpus; Fisher's exact test where counts are small, else the two-proportion z-test; BH q). Exclusions (ids, or a
phrase whose matches are removed) apply last. Every chosen concept keeps a weight and the
reason it was chosen, so the user sees what was picked and why."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from saeembed.analysis import stats
from saeembed.errors import InputError
from saeembed.store import Encoder, Store

CHOICE_COLUMNS = ["feature", "label", "weight", "reason", "similarity", "freq_positive",
                  "freq_rest", "q_positive"]  # fmt: skip
MIN_SIMILARITY = 0.35  # below this a label is not "about" the phrase (MiniLM cosine)


@dataclass
class ConceptChoice:
    """The chosen concepts (`CHOICE_COLUMNS`), strongest first."""

    table: pl.DataFrame

    @property
    def features(self) -> np.ndarray:
        return self.table["feature"].to_numpy()

    @property
    def weights(self) -> np.ndarray:
        return self.table["weight"].to_numpy()

    def describe(self, n: int = 8) -> str:
        """One line naming the first ``n`` concepts and why they were chosen."""
        shown = [
            f"{r['feature']} {r['label']!r} ({r['reason']}, w={r['weight']:.2f})"
            for r in self.table.head(n).iter_rows(named=True)
        ]
        more = f" and {self.table.height - n} more" if self.table.height > n else ""
        return f"{self.table.height} concepts: " + "; ".join(shown) + more


def _phrase_matches(
    store: Store, encoder: Encoder, phrase: str, top: int, min_similarity: float, match: str
) -> pl.DataFrame:
    from saeembed.labels.search import search_features

    found = search_features(store, encoder, phrase, top=top, by=match)
    keep = (pl.col("match") == "word") | (pl.col("similarity") >= min_similarity)
    return found.filter(keep).select(
        "feature",
        "label",
        pl.when(pl.col("match") == "word")
        .then(1.0)
        .otherwise(pl.col("similarity"))
        .alias("weight"),
        pl.col("match").alias("reason"),
        pl.col("similarity"),
    )


def separation(
    store: Store, encoder: Encoder, positives: Sequence[int], corpus: str | None
) -> pl.DataFrame:
    """Per concept: its frequency among the ``positives`` (document ids) and in the rest of the
    corpus, with the `stats.proportion_test` p and BH q over the concepts present in any
    positive."""
    ids = store.encoded_doc_ids(encoder, corpus)
    positive = np.unique(np.asarray(positives, dtype=np.int64))
    unknown = np.setdiff1d(positive, ids)
    if len(unknown):
        raise InputError(
            f"example document {unknown[0]} is not an encoded document"
            f"{' of corpus ' + repr(corpus) if corpus else ''}; pass doc_id values from the store"
        )
    counts = store.sql(
        """
        SELECT a.feature, count(*) FILTER (WHERE list_contains($pos, a.doc_id)) AS n_pos,
               count(*) AS n_all
        FROM activations a
        WHERE a.encoder_id = $enc AND a.value > 0
          AND ($corpus IS NULL OR a.doc_id IN (SELECT doc_id FROM documents WHERE corpus = $corpus))
        GROUP BY a.feature HAVING n_pos > 0
        """,
        {"pos": positive.tolist(), "enc": encoder.encoder_id, "corpus": corpus},
    )
    n_pos, n_rest = len(positive), len(ids) - len(positive)
    if n_rest <= 0:
        raise InputError("every document is marked positive; mark a few examples, not all")
    k_pos = counts["n_pos"].to_numpy()
    k_rest = counts["n_all"].to_numpy() - k_pos
    ones = np.ones(len(k_pos), dtype=np.int64)
    p, _ = stats.proportion_test(k_pos, n_pos * ones, k_rest, n_rest * ones)
    return counts.select(pl.col("feature").cast(pl.Int64)).with_columns(
        pl.Series("freq_positive", k_pos / n_pos),
        pl.Series("freq_rest", k_rest / n_rest),
        pl.Series("q_positive", stats.bh_qvalues(p) if len(p) else p),
    )


class NoSeparatingConcept(InputError):
    """Example documents were the only way concepts were chosen, and none sets them apart."""


def _explicit(features: Sequence[int], label_of: dict) -> pl.DataFrame:
    """The concepts chosen by id, each of weight 1."""
    ids = [int(f) for f in features]
    return pl.DataFrame(
        {"feature": ids, "label": [label_of.get(f) for f in ids], "weight": [1.0] * len(ids),
         "reason": ["explicit"] * len(ids), "similarity": [None] * len(ids)},
        schema={"feature": pl.Int64, "label": pl.String, "weight": pl.Float64,
                "reason": pl.String, "similarity": pl.Float64},
    )  # fmt: skip


def choose_concepts(
    store: Store,
    encoder: Encoder,
    *,
    phrase: str | None = None,
    features: Sequence[int] = (),
    exclude: Sequence[int] = (),
    exclude_phrase: str | None = None,
    positives: Sequence[int] = (),
    corpus: str | None = None,
    top: int = 20,
    min_similarity: float = MIN_SIMILARITY,
    alpha: float = 0.05,
    match: str = "both",
) -> ConceptChoice:
    """The concepts that matter (see the module docstring), at most ``top`` from the phrase and
    from the examples each, plus every explicit id. With both a phrase and examples, phrase
    matches that the examples do not favour (q >= ``alpha`` or rarer among them) are dropped."""
    from saeembed.labels.table import label_names

    names = label_names(store, encoder)
    label_of = dict(zip(names["feature"].to_list(), names["label"].to_list(), strict=True))
    parts = []
    if phrase:
        parts.append(_phrase_matches(store, encoder, phrase, top, min_similarity, match))
    sep = separation(store, encoder, positives, corpus) if len(positives) else None
    if sep is not None:
        favoured = sep.filter(
            (pl.col("q_positive") < alpha) & (pl.col("freq_positive") > pl.col("freq_rest"))
        )
        if phrase:
            parts[0] = parts[0].join(favoured.select("feature"), on="feature", how="semi")
        else:
            parts.append(
                favoured.sort(pl.col("freq_positive") - pl.col("freq_rest"), descending=True)
                .head(top)
                .select(
                    "feature",
                    pl.col("feature").replace_strict(label_of, default=None).alias("label"),
                    (pl.col("freq_positive") - pl.col("freq_rest")).alias("weight"),
                    pl.lit("examples").alias("reason"),
                    pl.lit(None, pl.Float64).alias("similarity"),
                )
            )
    bad = [f for f in [*features, *exclude] if not 0 <= int(f) < encoder.d_sae]
    if bad:
        raise InputError(
            f"feature {bad[0]} does not exist: encoder {encoder.name} has features "
            f"0..{encoder.d_sae - 1}"
        )
    if features:
        parts.append(_explicit(features, label_of))
    if not parts:
        raise InputError("choose concepts with a phrase, feature ids or positive example documents")
    chosen = (
        pl.concat([p.with_columns(pl.col("feature").cast(pl.Int64)) for p in parts])
        .sort("weight", descending=True)
        .unique("feature", keep="first", maintain_order=True)
    )
    dropped = set(int(f) for f in exclude)
    if exclude_phrase:
        dropped |= set(_phrase_matches(store, encoder, exclude_phrase, 10 * top, min_similarity, match)["feature"].to_list())  # fmt: skip
    chosen = chosen.filter(~pl.col("feature").is_in(sorted(dropped)))
    if sep is not None:
        chosen = chosen.join(sep, on="feature", how="left", maintain_order="left")
    else:
        chosen = chosen.with_columns(
            pl.lit(None, pl.Float64).alias(c) for c in ("freq_positive", "freq_rest", "q_positive")
        )
    if chosen.height == 0:
        if sep is not None and not phrase and not features:
            raise NoSeparatingConcept(
                f"no concept separates the {len(positives)} example documents from the rest at "
                f"q < {alpha}; give more examples, or a phrase or feature ids"
            )
        raise InputError(
            "no concept matches: try another phrase, lower the similarity floor, or give ids"
        )
    return ConceptChoice(chosen.select(CHOICE_COLUMNS))
