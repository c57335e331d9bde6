"""Dataset diffing: which concepts are more frequent in one set of documents than in another.

Per concept: documents of each side that have it, the two frequencies, their difference with a
Newcombe 95% interval, the log odds ratio (with its interval) and relative risk, a p-value
(Fisher's exact test where counts are small, the two-proportion z-test otherwise) and a
Benjamini-Hochberg q-value over every concept tested. Concepts in fewer than ``min_support``
documents of both sides together are not tested. The counting is one SQL query
(`queries/diff_counts.sql`); the statistics are vectorised over concepts.

Paired mode compares corpora whose rows correspond (the same prompts answered by two models):
McNemar's exact test on the pairs where exactly one side has the concept."""

from __future__ import annotations

import numpy as np
import polars as pl

from saeembed.analysis import stats
from saeembed.errors import InputError
from saeembed.labels.evidence import snippet
from saeembed.labels.table import label_names
from saeembed.queries import run_query
from saeembed.store import Encoder, Store

#: Columns of a diff table, in order (documented in docs/diff.md).
DIFF_COLUMNS = [
    "feature",
    "label",
    "n_a",
    "n_b",
    "size_a",
    "size_b",
    "freq_a",
    "freq_b",
    "diff",
    "ci_low",
    "ci_high",
    "log_odds",
    "log_odds_low",
    "log_odds_high",
    "relative_risk",
    "p",
    "q",
    "test",
]


def _check_sides(store: Store, corpora_a: list[str], corpora_b: list[str]) -> None:
    if not corpora_a or not corpora_b:
        raise InputError("a diff needs documents on both sides; give A and at least one B")
    for corpus in [*corpora_a, *corpora_b]:
        store.require_corpus(corpus)
    overlap = sorted(set(corpora_a) & set(corpora_b))
    if overlap:
        raise InputError(f"corpus {overlap[0]!r} is on both sides of the diff; drop it from one")


def rank(frame: pl.DataFrame, alpha: float) -> pl.DataFrame:
    """Significant concepts (q < alpha) first, by absolute difference; then the rest by p."""
    return (
        frame.with_columns((pl.col("q") < alpha).alias("_sig"), pl.col("diff").abs().alias("_abs"))
        .sort(["_sig", "_abs", "p"], descending=[True, True, False])
        .drop("_sig", "_abs")
    )


def diff_corpora(
    store: Store,
    corpora_a: list[str],
    corpora_b: list[str],
    *,
    encoder: Encoder | str | int | None = None,
    min_support: int = 10,
    threshold: float = 0.0,
    alpha: float = 0.05,
    top: int | None = None,
) -> pl.DataFrame:
    """The diff table of side A (the union of ``corpora_a``) against side B, one row per tested
    concept, ranked (see `rank`); ``top`` keeps the first rows."""
    if not isinstance(encoder, Encoder):
        encoder = store.resolve_encoder(encoder)
    _check_sides(store, corpora_a, corpora_b)
    counts = run_query(
        store,
        "diff_counts",
        encoder_id=encoder.encoder_id,
        corpora_a=list(corpora_a),
        corpora_b=list(corpora_b),
        threshold=threshold,
    )
    sizes = store.sql(
        """
        SELECT list_contains($a, d.corpus) AS is_a, count(DISTINCT d.doc_id) AS n
        FROM documents d SEMI JOIN encoded_documents e
             ON e.doc_id = d.doc_id AND e.encoder_id = $encoder
        WHERE list_contains($a, d.corpus) OR list_contains($b, d.corpus)
        GROUP BY 1
        """,
        {"a": list(corpora_a), "b": list(corpora_b), "encoder": encoder.encoder_id},
    )
    size = {row["is_a"]: row["n"] for row in sizes.iter_rows(named=True)}
    size_a, size_b = size.get(True, 0), size.get(False, 0)
    if not size_a or not size_b:
        empty = "A" if not size_a else "B"
        raise InputError(
            f"side {empty} has no documents encoded by {encoder.name}; encode it first"
        )
    counts = counts.filter((pl.col("n_a") + pl.col("n_b")) >= min_support)
    frame = compare_counts(
        counts["feature"].to_numpy(),
        counts["n_a"].to_numpy(),
        counts["n_b"].to_numpy(),
        size_a,
        size_b,
    )
    frame = frame.join(label_names(store, encoder), on="feature", how="left").select(DIFF_COLUMNS)
    frame = rank(frame, alpha)
    return frame.head(top) if top else frame


def compare_counts(
    features: np.ndarray, n_a: np.ndarray, n_b: np.ndarray, size_a: int, size_b: int
) -> pl.DataFrame:
    """The statistics of a diff from counts alone (no labels, not ranked)."""
    n_a, n_b = np.asarray(n_a, np.int64), np.asarray(n_b, np.int64)
    sa = np.full(len(n_a), size_a, np.int64)
    sb = np.full(len(n_b), size_b, np.int64)
    freq_a, freq_b = n_a / size_a, n_b / size_b
    ci_low, ci_high = stats.newcombe_interval(n_a, sa, n_b, sb)
    lor, lor_low, lor_high = stats.log_odds_ratio(n_a, sa, n_b, sb)
    p, test = stats.proportion_test(n_a, sa, n_b, sb)
    # relative risk is undefined (null, not infinity: JSON has none) when B never has it
    rr = pl.Series([a / b if b > 0 else None for a, b in zip(freq_a, freq_b, strict=True)])
    return pl.DataFrame(
        {
            "feature": np.asarray(features, np.int64),
            "n_a": n_a,
            "n_b": n_b,
            "size_a": sa,
            "size_b": sb,
            "freq_a": freq_a,
            "freq_b": freq_b,
            "diff": freq_a - freq_b,
            "ci_low": ci_low,
            "ci_high": ci_high,
            "log_odds": lor,
            "log_odds_low": lor_low,
            "log_odds_high": lor_high,
            "relative_risk": rr.cast(pl.Float64),
            "p": p,
            "q": stats.bh_qvalues(p),
            "test": test,
        }
    )


PAIRED_COLUMNS = [
    "feature",
    "label",
    "n_pairs",
    "n_a",
    "n_b",
    "both",
    "only_a",
    "only_b",
    "freq_a",
    "freq_b",
    "diff",
    "ci_low",
    "ci_high",
    "p",
    "q",
    "test",
]


def paired_diff(
    store: Store,
    corpus_a: str,
    corpus_b: str,
    *,
    encoder: Encoder | str | int | None = None,
    pair_on: str = "row",
    min_support: int = 10,
    threshold: float = 0.0,
    alpha: float = 0.05,
    top: int | None = None,
) -> pl.DataFrame:
    """Diff of two corpora whose documents correspond one to one: by row number in their files
    (``pair_on="row"``) or by their ids (``pair_on="id"``). McNemar's exact test per concept;
    the difference's 95% interval is the Wald interval for paired proportions."""
    if not isinstance(encoder, Encoder):
        encoder = store.resolve_encoder(encoder)
    _check_sides(store, [corpus_a], [corpus_b])
    if pair_on not in ("row", "id"):
        raise InputError(f"unknown pairing {pair_on!r}; use row or id")
    key = "d.row_idx::VARCHAR" if pair_on == "row" else "d.ext_id"
    params = {"a": corpus_a, "b": corpus_b, "enc": encoder.encoder_id, "t": threshold}
    side = f"""
        SELECT {key} AS k, d.doc_id FROM documents d
        SEMI JOIN encoded_documents e ON e.doc_id = d.doc_id AND e.encoder_id = $enc
        WHERE d.corpus = ${{}} AND {key} IS NOT NULL"""
    counts = store.sql(
        f"""
        WITH pa AS ({side.format("a")}), pb AS ({side.format("b")}),
        pairs AS (SELECT pa.doc_id AS doc_a, pb.doc_id AS doc_b FROM pa JOIN pb USING (k)),
        fa AS (SELECT p.doc_a, p.doc_b, x.feature FROM pairs p JOIN activations x
               ON x.doc_id = p.doc_a AND x.encoder_id = $enc AND x.value > $t),
        fb AS (SELECT p.doc_a, p.doc_b, x.feature FROM pairs p JOIN activations x
               ON x.doc_id = p.doc_b AND x.encoder_id = $enc AND x.value > $t)
        SELECT coalesce(fa.feature, fb.feature) AS feature,
               count(fa.feature) AS n_a, count(fb.feature) AS n_b,
               count(fa.feature) FILTER (WHERE fb.feature IS NOT NULL) AS both
        FROM fa FULL OUTER JOIN fb USING (doc_a, doc_b, feature)
        GROUP BY 1 ORDER BY 1
        """,
        params,
    )
    n_pairs = store.sql(
        f"WITH pa AS ({side.format('a')}), pb AS ({side.format('b')}) "
        "SELECT count(*) AS n FROM pa JOIN pb USING (k)",
        {k: v for k, v in params.items() if k != "t"},
    )["n"][0]
    if not n_pairs:
        raise InputError(
            f"no {'row numbers' if pair_on == 'row' else 'ids'} shared by {corpus_a!r} and "
            f"{corpus_b!r}; paired mode needs corresponding documents"
        )
    counts = counts.filter((pl.col("n_a") + pl.col("n_b")) >= min_support)
    n_a, n_b, both = (counts[c].to_numpy().astype(np.int64) for c in ("n_a", "n_b", "both"))
    only_a, only_b = n_a - both, n_b - both
    d = (only_a - only_b) / n_pairs
    se = np.sqrt(np.maximum(only_a + only_b - (only_a - only_b) ** 2 / n_pairs, 0)) / n_pairs
    p = stats.mcnemar_p(only_a, only_b)
    frame = pl.DataFrame(
        {
            "feature": counts["feature"].cast(pl.Int64),
            "n_pairs": np.full(len(n_a), n_pairs, np.int64),
            "n_a": n_a,
            "n_b": n_b,
            "both": both,
            "only_a": only_a,
            "only_b": only_b,
            "freq_a": n_a / n_pairs,
            "freq_b": n_b / n_pairs,
            "diff": d,
            "ci_low": d - stats.Z95 * se,
            "ci_high": d + stats.Z95 * se,
            "p": p,
            "q": stats.bh_qvalues(p),
            "test": ["mcnemar"] * len(n_a),
        }
    )
    frame = frame.join(label_names(store, encoder), on="feature", how="left").select(PAIRED_COLUMNS)
    frame = rank(frame, alpha)
    return frame.head(top) if top else frame


def add_examples(
    store: Store,
    encoder: Encoder,
    frame: pl.DataFrame,
    corpora_a: list[str],
    corpora_b: list[str],
    k: int,
) -> pl.DataFrame:
    """Add ``examples``: the top ``k`` documents of the richer side for each row's concept, peak
    token marked «like this»."""
    if k <= 0 or frame.height == 0:
        return frame
    rows = store.sql(
        """
        WITH wanted AS (
            SELECT unnest($features) AS feature, unnest($richer_a) AS richer_a
        ),
        ranked AS (
            SELECT w.feature, d.text, x.peak_start, x.peak_end, x.value,
                   row_number() OVER (PARTITION BY w.feature ORDER BY x.value DESC, d.doc_id) AS r
            FROM wanted w
            JOIN activations x ON x.feature = w.feature AND x.encoder_id = $enc
            JOIN documents d ON d.doc_id = x.doc_id
            WHERE CASE WHEN w.richer_a THEN list_contains($a, d.corpus)
                       ELSE list_contains($b, d.corpus) END
        )
        SELECT feature, text, peak_start, peak_end FROM ranked WHERE r <= $k
        ORDER BY feature, r
        """,
        {
            "features": frame["feature"].to_list(),
            "richer_a": (frame["diff"] >= 0).to_list(),
            "enc": encoder.encoder_id,
            "a": list(corpora_a),
            "b": list(corpora_b),
            "k": k,
        },
    )
    snippets = rows.with_columns(
        pl.struct("text", "peak_start", "peak_end")
        .map_elements(
            lambda r: snippet(r["text"], r["peak_start"], r["peak_end"], width=50),
            return_dtype=pl.Utf8,
        )
        .alias("example")
    )
    grouped = snippets.group_by("feature", maintain_order=True).agg(
        pl.col("example").alias("examples")
    )
    return frame.join(
        grouped.with_columns(pl.col("feature").cast(pl.Int64)), on="feature", how="left"
    )
