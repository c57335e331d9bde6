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

import logging
import math

import numpy as np
import polars as pl

from saeembed.analysis import stats
from saeembed.analysis.measures import (
    DEFAULT_DIFF_MEASURE,
    DIFF_SORTS,
    Measure,
    check_test,
    get_measure,
    prepare,
    rows_sql,
)
from saeembed.analysis.sides import Sides, check_sides, read_sides
from saeembed.errors import InputError
from saeembed.labels.alike import fold_alike, stored_groups, top_groups
from saeembed.labels.table import label_names
from saeembed.store import Encoder, Store
from saeembed.store.counts import kept_moments

log = logging.getLogger(__name__)

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


#: The orderings that need the counts of the proportion test (a binary measure, unpaired).
COUNT_SORTS = ("logodds",)


def check_sort(sort: str, measure: Measure, test: str, paired: bool = False) -> None:
    """Refuse an unknown ordering, or one that needs document counts under a test without them."""
    if sort not in DIFF_SORTS:
        raise InputError(f"unknown sort {sort!r}; use one of {', '.join(DIFF_SORTS)}")
    if sort in COUNT_SORTS and (paired or not measure.binary):
        under = "paired mode" if paired else f"measure {measure.name!r} ({test} test)"
        valid = [s for s in DIFF_SORTS if s not in COUNT_SORTS]
        raise InputError(
            f"sort {sort!r} needs document counts (measure presence or strong, not paired); "
            f"under {under} use {', '.join(valid[:-1])} or {valid[-1]}"
        )


def sort_score(frame: pl.DataFrame, sort: str) -> np.ndarray:
    """The number a diff orders its rows by under ``sort`` (larger first), except ``p``.

    - ``effect``: ``|diff|``.
    - ``logodds``: the absolute conservative log odds ratio, the bound of its 95% interval
      (``log_odds_low``, ``log_odds_high``: Woolf, 0.5 added to every cell) nearest zero.
    - ``specific``: the absolute conservative log ratio of the sides' means, the bound nearest
      zero of the 95% interval of ``log(mean_a / mean_b)`` (`stats.log_ratio_of_means`; for a
      binary measure the share of documents, so the Katz interval of the log relative risk
      ``log(freq_a / freq_b)`` with 0.5 added to every cell): with 95% confidence the richer
      side has at least ``exp(score)`` times as much of the concept as the other. Tables of
      numeric measures and paired tables carry the bounds in the private columns
      ``_specific_low`` and ``_specific_high``; binary ones are computed from the counts."""
    if sort == "effect":
        return frame["diff"].abs().to_numpy()
    columns = set(frame.columns)
    if {f"_{sort}_low", f"_{sort}_high"} <= columns:
        low, high = frame[f"_{sort}_low"].to_numpy(), frame[f"_{sort}_high"].to_numpy()
    elif sort == "logodds" and {"log_odds_low", "log_odds_high"} <= columns:
        low, high = frame["log_odds_low"].to_numpy(), frame["log_odds_high"].to_numpy()
    elif sort == "specific" and {"n_a", "size_a", "n_b", "size_b", "freq_a"} <= columns:
        _, low, high = stats.log_relative_risk(
            *(frame[c].to_numpy() for c in ("n_a", "size_a", "n_b", "size_b"))
        )
    elif sort == "logodds":
        raise InputError("sort 'logodds' needs document counts (a binary measure); use p or effect")
    else:
        raise InputError(
            "sort 'specific' needs document counts or the bounds a diff computes; diff again "
            "with sort='specific'"
        )
    return np.abs(stats.nearest_zero(low, high))


def check_diff_options(alpha: float, threshold: float, min_support: int) -> None:
    """One-line errors for options no diff can use (before any work)."""
    if not (0.0 < alpha < 1.0):
        raise InputError(f"--alpha must be between 0 and 1 (got {alpha}); e.g. 0.05")
    if not math.isfinite(threshold) or threshold < 0:
        raise InputError(
            f"--threshold must be a number >= 0 (got {threshold}); 0 counts any activation"
        )
    if min_support < 0:
        raise InputError(f"--min-support must be >= 0 (got {min_support})")


def rank(frame: pl.DataFrame, alpha: float, sort: str = DIFF_SORTS[0]) -> pl.DataFrame:
    """Concepts that differ (q < alpha) first, ordered by ``sort``: ``p`` (ascending; ties by
    absolute effect) or a score of `sort_score` (descending; ties by p); then the rest by p
    (ties by absolute effect), whatever ``sort``: below the significance line p is the better
    guide to what may be real (docs/benchmarks.md#diff-orderings). Private columns (named
    ``_...``) are dropped."""
    if sort not in DIFF_SORTS:
        raise InputError(f"unknown sort {sort!r}; use one of {', '.join(DIFF_SORTS)}")
    significant = (frame["q"] < alpha).to_numpy()
    score = np.zeros(frame.height) if sort == "p" else sort_score(frame, sort)
    keyed = frame.with_columns(
        pl.Series("_sig", significant),
        pl.Series("_key", np.where(significant, -score, 0.0)),
        (-pl.col("diff").abs()).alias("_abs"),
    ).sort(["_sig", "_key", "p", "_abs", "feature"], descending=[True, False, False, False, False])
    return keyed.drop([c for c in keyed.columns if c.startswith("_")])


def _fold(store: Store, encoder: Encoder, frame: pl.DataFrame, top: int | None) -> pl.DataFrame:
    """A ranked diff table with ``same_as`` (the concept listed earlier on the same side that
    this one is alike to, `saeembed.labels.alike`), cut to its first ``top`` groups."""
    frame = fold_alike(frame, stored_groups(store, encoder))
    return top_groups(frame, top) if top else frame


def _with_private(frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """``columns`` of ``frame`` and its private ones (for `rank`)."""
    return frame.select([*columns, *(c for c in frame.columns if c.startswith("_"))])


NUMERIC_COLUMNS = [
    *DIFF_COLUMNS[:6],  # feature, label, n_a, n_b, size_a, size_b
    "mean_a",
    "mean_b",
    "ratio",
    "diff",
    "ci_low",
    "ci_high",
    "p",
    "q",
    "test",
]


def columns_for(measure: str | Measure, paired: bool = False) -> list[str]:
    """The columns of a diff table under ``measure``."""
    if paired:
        return PAIRED_COLUMNS if get_measure(measure).binary else PAIRED_NUMERIC_COLUMNS
    return DIFF_COLUMNS if get_measure(measure).binary else NUMERIC_COLUMNS


def diff_corpora(
    store: Store,
    corpora_a: list[str],
    corpora_b: list[str],
    *,
    encoder: Encoder | str | int | None = None,
    measure: str | Measure = DEFAULT_DIFF_MEASURE,
    test: str | None = None,
    min_support: int = 10,
    threshold: float = 0.0,
    alpha: float = 0.05,
    sort: str = DIFF_SORTS[0],
    top: int | None = None,
    sides: Sides | None = None,
) -> pl.DataFrame:
    """The diff table of side A (the union of ``corpora_a``) against side B under ``measure``
    (`saeembed.analysis.measures`), one row per tested concept, ranked (see `rank`); ``top``
    keeps the first rows. Binary measures compare the shares of documents (`compare_counts`);
    numeric ones compare means by Welch's t-test (``test="welch"``) or distributions by the
    Mann-Whitney U test (``test="mannwhitney"``, effect: rank-biserial correlation). Concepts
    active in fewer than ``min_support`` documents of both sides together are not tested.
    ``sides``: the `Sides` when the caller has read them already (filtered: only their documents)."""
    if not isinstance(encoder, Encoder):
        encoder = store.resolve_encoder(encoder)
    check_diff_options(alpha, threshold, min_support)
    check_sides(store, corpora_a, corpora_b)
    test = check_test(get_measure(measure), test)
    check_sort(sort, get_measure(measure), test)
    m = prepare(store, encoder, measure)
    kept = None
    whole = sides is None or sides.where is None
    if threshold == 0 and whole and len(corpora_a) == len(corpora_b) == 1:
        kept = kept_moments(store.con, encoder.encoder_id, corpora_a[0], corpora_b[0], m.name)
    if kept is not None:  # two whole corpora under a kept measure: the counts, not the rows
        moments, size_a, size_b = kept
        return _finish(store, encoder, m, moments, size_a, size_b, min_support, alpha, sort, top)
    if sides is None:
        sides = read_sides(store, encoder, corpora_a, corpora_b)
    size_a, size_b = sides.size_a, sides.size_b
    # `threshold` additionally requires the maximum to exceed it (0: every active concept)
    rows = f"{rows_sql(m)} AND a.value > $t"
    params = {"enc": encoder.encoder_id, "t": threshold}
    # binary measures need only the counts; numeric ones the per-side sums and sums of squares
    sums = (
        ""
        if m.binary
        else """,
                   coalesce(sum(m.v) FILTER (WHERE s.is_a), 0) AS sum_a,
                   coalesce(sum(m.v) FILTER (WHERE NOT s.is_a), 0) AS sum_b,
                   coalesce(sum(m.v * m.v) FILTER (WHERE s.is_a), 0) AS sumsq_a,
                   coalesce(sum(m.v * m.v) FILTER (WHERE NOT s.is_a), 0) AS sumsq_b"""
    )
    with store.temporary(diff_sides=sides.table()):
        moments = store.sql(
            f"""
            SELECT m.feature,
                   count(*) FILTER (WHERE s.is_a) AS n_a, count(*) FILTER (WHERE NOT s.is_a) AS n_b
                   {sums}
            FROM ({rows}) m JOIN diff_sides s USING (doc_id)
            GROUP BY m.feature ORDER BY m.feature
            """,
            params,
        ).filter((pl.col("n_a") + pl.col("n_b")) >= min_support)
        groups = None
        if test == "mannwhitney":
            groups = store.sql(
                f"""
                SELECT m.feature, m.v, count(*) FILTER (WHERE s.is_a) AS k_a,
                       count(*) FILTER (WHERE NOT s.is_a) AS k_b
                FROM ({rows}) m JOIN diff_sides s USING (doc_id)
                WHERE list_contains($tested, m.feature)
                GROUP BY ALL
                """,
                {**params, "tested": moments["feature"].to_list()},
            )
    return _finish(
        store, encoder, m, moments, size_a, size_b, min_support, alpha, sort, top, test, groups
    )


def _finish(store, encoder, m, moments, size_a, size_b, min_support, alpha, sort, top,
            test=None, groups=None) -> pl.DataFrame:  # fmt: skip
    """The diff table from the per-concept moments: tested, labelled, ranked, cut to ``top``."""
    moments = moments.filter((pl.col("n_a") + pl.col("n_b")) >= min_support)
    features = moments["feature"].to_numpy()
    if m.binary:
        frame = compare_counts(
            features, moments["n_a"].to_numpy(), moments["n_b"].to_numpy(), size_a, size_b
        )
    else:
        frame = compare_numeric(moments, size_a, size_b, test=test, groups=groups)
    frame = frame.join(label_names(store, encoder), on="feature", how="left")
    frame = rank(_with_private(frame, columns_for(m)), alpha, sort)
    return _fold(store, encoder, frame, top)


def compare_numeric(
    moments: pl.DataFrame,
    size_a: int,
    size_b: int,
    *,
    test: str = "welch",
    groups: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """The statistics of a diff under a numeric measure, from per-concept moments (``feature``,
    ``n_a``, ``n_b``, ``sum_a``, ``sum_b``, ``sumsq_a``, ``sumsq_b`` over the documents having
    the concept) and, for the Mann-Whitney test, the tie groups (``feature``, ``v``, ``k_a``,
    ``k_b``). ``diff`` is the difference of means (Welch) or the rank-biserial correlation
    (Mann-Whitney), with its 95% interval."""
    features = moments["feature"].to_numpy().astype(np.int64)
    n = len(features)
    mean_a, mean_b, diff, low, high, p = stats.welch_from_moments(
        moments["sum_a"].to_numpy(), moments["sumsq_a"].to_numpy(), np.full(n, size_a),
        moments["sum_b"].to_numpy(), moments["sumsq_b"].to_numpy(), np.full(n, size_b),
    )  # fmt: skip
    if test == "mannwhitney":
        diff, low, high, p = stats.mann_whitney_sparse(
            groups["feature"].to_numpy(), groups["v"].to_numpy(), groups["k_a"].to_numpy(),
            groups["k_b"].to_numpy(), features, size_a, size_b,
        )  # fmt: skip
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(mean_b > 0, mean_a / mean_b, np.nan)
    _, spec_low, spec_high = stats.log_ratio_of_means(
        moments["sum_a"].to_numpy(), moments["sumsq_a"].to_numpy(), np.full(n, size_a),
        moments["sum_b"].to_numpy(), moments["sumsq_b"].to_numpy(), np.full(n, size_b),
        _typical(moments),
    )  # fmt: skip
    return pl.DataFrame(
        {
            "feature": features,
            "n_a": moments["n_a"].to_numpy().astype(np.int64),
            "n_b": moments["n_b"].to_numpy().astype(np.int64),
            "size_a": np.full(n, size_a, np.int64),
            "size_b": np.full(n, size_b, np.int64),
            "mean_a": mean_a,
            "mean_b": mean_b,
            "ratio": ratio,
            "diff": diff,
            "ci_low": low,
            "ci_high": high,
            "p": p,
            "q": stats.bh_qvalues(p),
            "test": [test] * n,
            "_specific_low": spec_low,
            "_specific_high": spec_high,
        }
    ).with_columns(pl.col("ratio").fill_nan(None))


def _typical(moments: pl.DataFrame) -> np.ndarray:
    """A concept's mean value over the documents that have it, both sides together."""
    return (moments["sum_a"] + moments["sum_b"]).to_numpy() / np.maximum(
        (moments["n_a"] + moments["n_b"]).to_numpy(), 1
    )


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


PAIRED_NUMERIC_COLUMNS = [
    *PAIRED_COLUMNS[:6],  # feature, label, n_pairs, n_a, n_b, both
    "mean_a",
    "mean_b",
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
    measure: str | Measure = DEFAULT_DIFF_MEASURE,
    pair_on: str = "row",
    min_support: int = 10,
    threshold: float = 0.0,
    alpha: float = 0.05,
    sort: str = DIFF_SORTS[0],
    top: int | None = None,
) -> pl.DataFrame:
    """Diff of two corpora whose documents correspond one to one: by row number in their files
    (``pair_on="row"``) or by their ids (``pair_on="id"``). Binary measures: McNemar's exact
    test per concept, the difference's 95% interval the Wald interval for paired proportions.
    Numeric measures: the paired t-test on the per-pair differences, with its interval."""
    if not isinstance(encoder, Encoder):
        encoder = store.resolve_encoder(encoder)
    check_diff_options(alpha, threshold, min_support)
    check_sides(store, [corpus_a], [corpus_b])
    if pair_on not in ("row", "id"):
        raise InputError(f"unknown pairing {pair_on!r}; use row or id")
    check_sort(sort, get_measure(measure), "paired", paired=True)
    m = prepare(store, encoder, measure)
    side = _paired_side_sql(store, encoder, corpus_a, corpus_b, pair_on)
    counts, n_pairs = _paired_counts(store, encoder, m, side, corpus_a, corpus_b, pair_on,
                                     threshold)  # fmt: skip
    counts = counts.filter((pl.col("n_a") + pl.col("n_b")) >= min_support)
    frame = _paired_tests(counts, n_pairs, m.binary)
    frame = frame.join(label_names(store, encoder), on="feature", how="left")
    frame = rank(_with_private(frame, columns_for(m, paired=True)), alpha, sort)
    return _fold(store, encoder, frame, top)


def _paired_side_sql(store, encoder, corpus_a, corpus_b, pair_on) -> str:
    """The SQL of one side's (pairing key, doc_id) rows (``{}`` for the side's letter), refused
    when two documents of a side share a key. Chunks of one document share its row and id:
    they are paired chunk by chunk."""
    key = ("d.row_idx::VARCHAR" if pair_on == "row" else "d.ext_id") + (
        " || coalesce('#' || d.chunk_idx, '')"
    )
    side = f"""
        SELECT {key} AS k, d.doc_id FROM documents d
        SEMI JOIN encoded_documents e ON e.doc_id = d.doc_id AND e.encoder_id = $enc
        WHERE d.corpus = ${{}} AND {key} IS NOT NULL"""
    for letter, name in (("a", corpus_a), ("b", corpus_b)):
        repeated = store.sql(
            f"SELECT k, count(*) AS n FROM ({side.format(letter)}) GROUP BY k HAVING n > 1 "
            "ORDER BY n DESC, k LIMIT 1",
            {"enc": encoder.encoder_id, letter: name},
        )
        if repeated.height:
            what = "row number" if pair_on == "row" else "id"
            raise InputError(
                f"{repeated['n'][0]} documents of corpus {name!r} share the {what} "
                f"{repeated['k'][0]!r}; pairing needs one document per {what} on each side: "
                "give each document its own id (--id-col) and pair on it"
            )
    return side


def _paired_counts(store, encoder, m, side, corpus_a, corpus_b, pair_on, threshold):
    """Per concept over the pairs: documents with it on each side and on both, and the sums
    and sums of squares of the measure (and of the per-pair difference); and the number of
    pairs. Documents without a partner are left out, and said so."""
    params = {"a": corpus_a, "b": corpus_b, "enc": encoder.encoder_id, "t": threshold}
    rows = f"{rows_sql(m)} AND a.value > $t"
    counts = store.sql(
        f"""
        WITH pa AS ({side.format("a")}), pb AS ({side.format("b")}),
        pairs AS (SELECT pa.doc_id AS doc_a, pb.doc_id AS doc_b FROM pa JOIN pb USING (k)),
        measured AS ({rows}),
        fa AS (SELECT p.doc_a, p.doc_b, x.feature, x.v FROM pairs p JOIN measured x
               ON x.doc_id = p.doc_a),
        fb AS (SELECT p.doc_a, p.doc_b, x.feature, x.v FROM pairs p JOIN measured x
               ON x.doc_id = p.doc_b)
        SELECT coalesce(fa.feature, fb.feature) AS feature,
               count(fa.feature) AS n_a, count(fb.feature) AS n_b,
               count(fa.feature) FILTER (WHERE fb.feature IS NOT NULL) AS both,
               sum(coalesce(fa.v, 0)) AS sum_a, sum(coalesce(fb.v, 0)) AS sum_b,
               sum(pow(coalesce(fa.v, 0), 2)) AS sumsq_a, sum(pow(coalesce(fb.v, 0), 2)) AS sumsq_b,
               sum(pow(coalesce(fa.v, 0) - coalesce(fb.v, 0), 2)) AS sumsq_d
        FROM fa FULL OUTER JOIN fb USING (doc_a, doc_b, feature)
        GROUP BY 1 ORDER BY 1
        """,
        params,
    )
    sizes = store.sql(
        f"WITH pa AS ({side.format('a')}), pb AS ({side.format('b')}) "
        "SELECT (SELECT count(*) FROM pa JOIN pb USING (k)) AS n, "
        "(SELECT count(*) FROM pa) AS n_a, (SELECT count(*) FROM pb) AS n_b",
        {k: v for k, v in params.items() if k != "t"},
    ).row(0, named=True)
    n_pairs = sizes["n"]
    if n_pairs and (sizes["n_a"] > n_pairs or sizes["n_b"] > n_pairs):
        log.warning(
            "paired %s of %s documents of %r with %s of %s of %r (by %s); the others have no "
            "partner and are left out",
            f"{n_pairs:,}", f"{sizes['n_a']:,}", corpus_a, f"{n_pairs:,}", f"{sizes['n_b']:,}",
            corpus_b, "row number" if pair_on == "row" else "id",
        )  # fmt: skip
    if not n_pairs:
        raise InputError(
            f"no {'row numbers' if pair_on == 'row' else 'ids'} shared by {corpus_a!r} and "
            f"{corpus_b!r}; paired mode needs corresponding documents"
        )
    return counts, n_pairs


def _paired_tests(counts: pl.DataFrame, n_pairs: int, binary: bool) -> pl.DataFrame:
    """The paired tests of each concept of ``counts``: McNemar's (binary measures, with the
    Wald interval for paired proportions) or the paired t-test, and the bounds of `specific`
    (the log ratio of the means over the pairs, paired interval)."""
    n_a, n_b, both = (counts[c].to_numpy().astype(np.int64) for c in ("n_a", "n_b", "both"))
    common = {
        "feature": counts["feature"].cast(pl.Int64),
        "n_pairs": np.full(len(n_a), n_pairs, np.int64),
        "n_a": n_a,
        "n_b": n_b,
        "both": both,
    }
    sq_a, sq_b, sq_d = (
        counts[c].to_numpy().astype(float) for c in ("sumsq_a", "sumsq_b", "sumsq_d")
    )
    _, spec_low, spec_high = stats.log_ratio_of_means(
        counts["sum_a"].to_numpy(), sq_a, n_pairs, counts["sum_b"].to_numpy(), sq_b, n_pairs,
        _typical(counts), cross=(sq_a + sq_b - sq_d) / 2,
    )  # fmt: skip
    private = {"_specific_low": spec_low, "_specific_high": spec_high}
    if binary:
        only_a, only_b = n_a - both, n_b - both
        d = (only_a - only_b) / n_pairs
        se = np.sqrt(np.maximum(only_a + only_b - (only_a - only_b) ** 2 / n_pairs, 0)) / n_pairs
        p = stats.mcnemar_p(only_a, only_b)
        return pl.DataFrame(
            {
                **common, "only_a": only_a, "only_b": only_b,
                "freq_a": n_a / n_pairs, "freq_b": n_b / n_pairs,
                "diff": d, "ci_low": d - stats.Z95 * se, "ci_high": d + stats.Z95 * se,
                "p": p, "q": stats.bh_qvalues(p), "test": ["mcnemar"] * len(n_a), **private,
            }
        )  # fmt: skip
    sum_a, sum_b = counts["sum_a"].to_numpy(), counts["sum_b"].to_numpy()
    d, low, high, p = stats.paired_t_from_moments(
        sum_a - sum_b, counts["sumsq_d"].to_numpy(), n_pairs
    )
    return pl.DataFrame(
        {
            **common, "mean_a": sum_a / n_pairs, "mean_b": sum_b / n_pairs,
            "diff": d, "ci_low": low, "ci_high": high,
            "p": p, "q": stats.bh_qvalues(p), "test": ["paired-t"] * len(n_a), **private,
        }
    )  # fmt: skip
