"""Concept correlation: which concepts co-occur in documents more than chance, and which concepts
track a metadata column.

Concept x concept: co-occurrence counts come from the sparse documents x concepts matrix, one
block of concepts at a time (block x all, never all x all), and each block keeps only its
strongest pairs, so memory stays ``block x d_sae``. Pairs are scored by NPMI (normalised
pointwise mutual information, Bouma 2009) and phi, need ``min_support`` co-occurring documents,
and *trivial* pairs are marked: near-duplicate concepts whose SAE decoder directions have cosine
above ``max_cosine``, that peak on the same token in most documents they share, or that the store
groups as alike (`saeembed.labels.alike`).

Concept x metadata: a numeric column gives a Spearman rank correlation per concept (presence vs
the column's ranks, which for a binary variable is the same as Spearman's rho); a categorical
column gives per-category enrichment (each category against the rest, with the diff's
statistics); a date column is bucketed (month or year) and gives a rank-correlation trend over
the buckets with each bucket's frequency. p-values get Benjamini-Hochberg q-values."""

from __future__ import annotations

import json
import logging

import numpy as np
import polars as pl
import scipy.sparse as sp
from scipy import stats as sps

from saeembed.analysis import stats
from saeembed.analysis.diff import compare_counts, compare_numeric
from saeembed.analysis.matrix import ConceptMatrix, load_matrix
from saeembed.analysis.measures import DEFAULT_DIFF_MEASURE
from saeembed.errors import InputError
from saeembed.labels.alike import stored_groups
from saeembed.labels.table import label_names
from saeembed.store import Encoder, Store

log = logging.getLogger(__name__)

PAIR_COLUMNS = [
    "feature_a",
    "label_a",
    "feature_b",
    "label_b",
    "n_a",
    "n_b",
    "n_ab",
    "n_docs",
    "npmi",
    "phi",
    "r",
    "decoder_cosine",
    "same_peak",
    "trivial",
]


def _labels(store: Store, encoder: Encoder) -> dict[int, str]:
    names = label_names(store, encoder)
    return dict(zip(names["feature"].to_list(), names["label"].to_list(), strict=True))


def cooccurrence_pairs(
    matrix: ConceptMatrix, *, min_support: int = 10, top: int = 1000, block: int = 512
) -> pl.DataFrame:
    """The ``top`` concept pairs among those co-occurring in >= ``min_support`` documents (each
    unordered pair once), with counts, phi and ``r``, the Pearson correlation of the matrix's
    measure (phi itself for a binary measure). Ranked by NPMI under a binary measure, by r under
    a numeric one (token counts, shares, activations)."""
    x = matrix.presence
    n = matrix.n_docs
    numeric = not matrix.measure.binary
    counts = np.asarray(x.sum(axis=0)).ravel()
    # under presence, concepts in (nearly) every document co-occur with everything: nothing to
    # learn from them; a numeric measure still varies where presence does not
    live = np.flatnonzero((counts >= min_support) & (numeric | (counts <= n - min_support)))
    if len(live) < 2:
        return pl.DataFrame(schema={c: pl.Float64 for c in PAIR_COLUMNS[:0]})
    # CSR both sides: scipy multiplies CSR by CSR without converting either operand per block
    xl = x[:, live].tocsr()  # [docs, live]
    xr = xl.T.tocsr()  # [live, docs]
    n_live = counts[live].astype(np.float64)
    if numeric:
        vl = matrix.values[:, live].astype(np.float64).tocsr()
        vr = vl.T.tocsr()
        mean = np.asarray(vl.mean(axis=0)).ravel()
        sd = np.sqrt(np.maximum(np.asarray(vl.multiply(vl).mean(axis=0)).ravel() - mean**2, 0))
    best: list[tuple[np.ndarray, ...]] = []
    for start in range(0, len(live), block):
        stop = min(start + block, len(live))
        co = (xr[start:stop] @ xl).toarray()  # [block, live] co-occurrence counts
        i_idx, j_idx = np.nonzero(co >= min_support)
        keep = j_idx > i_idx + start  # each unordered pair once, no self-pairs
        i_idx, j_idx = i_idx[keep], j_idx[keep]
        n_ab = co[i_idx, j_idx]
        n_a, n_b = n_live[i_idx + start], n_live[j_idx]
        with np.errstate(invalid="ignore", divide="ignore"):
            npmi = np.log(n_ab * n / (n_a * n_b)) / -np.log(n_ab / n)
            if numeric:
                products = (vr[start:stop] @ vl).toarray()[i_idx, j_idx] / n
                r = (products - mean[i_idx + start] * mean[j_idx]) / (sd[i_idx + start] * sd[j_idx])
            else:  # a binary measure's Pearson correlation is phi
                r = (n * n_ab - n_a * n_b) / np.sqrt(n_a * n_b * (n - n_a) * (n - n_b))
        r = np.nan_to_num(r)
        score = r if numeric else npmi
        if len(score) > top:
            pick = np.argpartition(-score, top)[:top]
            i_idx, j_idx, n_ab, n_a, n_b, npmi, r, score = (
                a[pick] for a in (i_idx, j_idx, n_ab, n_a, n_b, npmi, r, score)
            )
        best.append((live[i_idx + start], live[j_idx], n_a, n_b, n_ab, npmi, r, score))
    fa, fb, n_a, n_b, n_ab, npmi, r, score = (
        np.concatenate(parts) for parts in zip(*best, strict=True)
    )
    order = np.argsort(-score, kind="stable")[:top]
    fa, fb, n_a, n_b, n_ab, npmi, r = (a[order] for a in (fa, fb, n_a, n_b, n_ab, npmi, r))
    with np.errstate(invalid="ignore", divide="ignore"):
        phi = (n * n_ab - n_a * n_b) / np.sqrt(n_a * n_b * (n - n_a) * (n - n_b))
    return pl.DataFrame(
        {
            "feature_a": fa.astype(np.int64),
            "feature_b": fb.astype(np.int64),
            "n_a": n_a.astype(np.int64),
            "n_b": n_b.astype(np.int64),
            "n_ab": n_ab.astype(np.int64),
            "n_docs": np.full(len(fa), n, np.int64),
            "npmi": npmi,
            "phi": np.nan_to_num(phi),
            "r": r,
        }
    )


def decoder_cosines(encoder: Encoder, pairs: pl.DataFrame) -> np.ndarray | None:
    """Cosine of the two concepts' SAE decoder directions, when the encoder's SAE can be loaded."""
    from saeembed.encoding.stack_cache import stored_sae
    from saeembed.errors import SaeembedError

    try:
        sae = stored_sae(encoder)
    except (SaeembedError, OSError) as exc:
        log.warning("decoder cosines skipped: cannot load SAE %s (%s)", encoder.sae, exc)
        return None
    w = sae.W_dec.float()
    w = w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)
    a = w[pairs["feature_a"].to_list()]
    b = w[pairs["feature_b"].to_list()]
    return (a * b).sum(dim=1).numpy()


def same_peak_share(
    store: Store, encoder: Encoder, pairs: pl.DataFrame, doc_ids: np.ndarray
) -> np.ndarray:
    """Per pair: share of the documents having both (among ``doc_ids``, the matrix's documents)
    where both peak on the same token."""
    if pairs.height == 0:
        return np.empty(0)
    tables = {
        "pairs_in": pairs.select("feature_a", "feature_b").to_arrow(),
        "peak_docs": {"doc_id": doc_ids},
    }
    with store.temporary(**tables):
        # the peaks of the pairs' concepts in the sampled documents first: one pass over the
        # activations (a shard directory's Parquet files) instead of a self-join over all rows
        shares = store.sql(
            """
            WITH peaks AS MATERIALIZED (
                SELECT a.doc_id, a.feature, a.peak_token FROM activations a
                SEMI JOIN peak_docs d ON d.doc_id = a.doc_id
                WHERE a.encoder_id = $enc AND a.feature IN (
                    SELECT feature_a FROM pairs_in UNION SELECT feature_b FROM pairs_in)
            )
            SELECT p.feature_a, p.feature_b,
                   avg(CASE WHEN x.peak_token = y.peak_token THEN 1.0 ELSE 0.0 END) AS share
            FROM pairs_in p
            JOIN peaks x ON x.feature = p.feature_a
            JOIN peaks y ON y.feature = p.feature_b AND y.doc_id = x.doc_id
            GROUP BY ALL
            """,
            {"enc": encoder.encoder_id},
        )
    joined = pairs.join(shares, on=["feature_a", "feature_b"], how="left")
    return joined["share"].fill_null(0.0).to_numpy()


def correlate_concepts(
    store: Store,
    encoder: Encoder | str | int | None = None,
    *,
    corpus: str | None = None,
    min_support: int = 10,
    top: int = 50,
    max_cosine: float = 0.5,
    same_peak: float = 0.5,
    show_trivial: bool = False,
    max_docs: int | None = 50_000,
    threshold: float = 0.0,
    measure: str = DEFAULT_DIFF_MEASURE,
) -> pl.DataFrame:
    """The most strongly co-occurring concept pairs under ``measure``, trivial ones marked (and
    dropped unless ``show_trivial``). Documents beyond ``max_docs`` are sampled."""
    if not isinstance(encoder, Encoder):
        encoder = store.resolve_encoder(encoder)
    matrix = load_matrix(
        store, encoder, corpus=corpus, threshold=threshold, max_docs=max_docs, measure=measure
    )
    pairs = cooccurrence_pairs(matrix, min_support=min_support, top=max(10 * top, 1000))
    if pairs.height == 0:
        return pl.DataFrame(schema=dict.fromkeys(PAIR_COLUMNS, pl.Float64))
    cosine = decoder_cosines(encoder, pairs)
    pairs = pairs.with_columns(
        pl.Series("decoder_cosine", cosine if cosine is not None else [None] * pairs.height,
                  dtype=pl.Float64),
        pl.Series("same_peak", same_peak_share(store, encoder, pairs, matrix.doc_ids),
                  dtype=pl.Float64),
    )  # fmt: skip
    # concepts alike in this store (saeembed.labels.alike: one group) co-occur by construction
    groups = stored_groups(store, encoder)
    group = lambda f: groups.get(f, f)  # noqa: E731
    alike = [
        group(a) == group(b)
        for a, b in zip(pairs["feature_a"].to_list(), pairs["feature_b"].to_list(), strict=True)
    ]
    pairs = pairs.with_columns(
        (
            (pl.col("decoder_cosine").fill_null(0) > max_cosine)
            | (pl.col("same_peak") > same_peak)
            | pl.Series(alike, dtype=pl.Boolean)
        ).alias("trivial")
    )
    if not show_trivial:
        pairs = pairs.filter(~pl.col("trivial"))
    labels = _labels(store, encoder)
    pairs = pairs.with_columns(
        pl.col("feature_a").replace_strict(labels, default=None, return_dtype=pl.Utf8).alias("label_a"),
        pl.col("feature_b").replace_strict(labels, default=None, return_dtype=pl.Utf8).alias("label_b"),
    )  # fmt: skip
    return pairs.select(PAIR_COLUMNS).head(top)


# ---- concept x metadata -------------------------------------------------------------------------
def metadata_column(
    store: Store, matrix: ConceptMatrix, column: str, corpus: str | None = None
) -> pl.Series:
    """The values of ``meta.column`` for the matrix's documents (in its order). A text held by
    several corpora has a row (and metadata) in each: ``corpus``'s row when given, else the
    first corpus by name that has the column, so the value never depends on scan order."""
    with store.temporary(meta_docs={"doc_id": matrix.doc_ids}):
        frame = store.sql(
            """
            SELECT m.doc_id, arg_min(x.v, x.corpus) FILTER (WHERE x.v IS NOT NULL) AS v
            FROM meta_docs m LEFT JOIN (
                SELECT d.doc_id, d.corpus, json_extract(d.meta, '$.' || $col) AS v
                FROM documents d WHERE $corpus IS NULL OR d.corpus = $corpus
            ) x ON x.doc_id = m.doc_id
            GROUP BY m.doc_id ORDER BY m.doc_id
            """,
            {"col": column, "corpus": corpus},
        )
    values = [None if v is None else json.loads(v) for v in frame["v"].to_list()]
    if all(v is None for v in values):
        keys = store.sql(
            "SELECT meta FROM documents WHERE meta IS NOT NULL AND ($corpus IS NULL OR corpus = "
            "$corpus) LIMIT 1",
            {"corpus": corpus},
        )
        have = ", ".join(json.loads(keys["meta"][0])) if keys.height else "none"
        raise InputError(f"no metadata column {column!r} in these documents (columns: {have})")
    return pl.Series(column, values, strict=False)


def detect_kind(values: pl.Series) -> str:
    non_null = values.drop_nulls()
    if non_null.dtype.is_numeric() and non_null.dtype != pl.Boolean:
        return "numeric"
    if non_null.dtype == pl.Utf8 and non_null.len():
        try:
            parsed = non_null.str.to_datetime(strict=False)
        except pl.exceptions.ComputeError:  # no date format fits
            return "categorical"
        if parsed.null_count() == 0:
            return "date"
    return "categorical"


def column_ranks(x) -> tuple[sp.csc_matrix, np.ndarray]:
    """Mid-ranks of each column of a sparse non-negative matrix (its zeros tied at the bottom),
    without densifying: a sparse matrix holding ``rank - zero_rank`` at the non-zeros (so its
    product with a centred vector is the rank covariance), and each column's rank variance."""
    x = sp.csc_matrix(x, dtype=np.float64)
    x.sort_indices()
    n, m = x.shape
    col = np.repeat(np.arange(m), np.diff(x.indptr))
    order = np.lexsort((x.data, col))
    v, c = x.data[order], col[order]
    new = np.r_[True, (c[1:] != c[:-1]) | (v[1:] != v[:-1])] if len(v) else np.zeros(0, bool)
    group = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    sizes = np.diff(np.r_[starts, len(v)])
    position = np.arange(len(v)) - x.indptr[c]  # among the column's non-zeros, ascending
    zeros = n - np.diff(x.indptr)
    mid = zeros[c] + position[starts][group] + (sizes[group] + 1) / 2
    zero_rank = (zeros + 1) / 2
    data = np.empty(len(v))
    data[order] = mid - zero_rank[c]
    ranks = sp.csc_matrix((data, x.indices, x.indptr), shape=x.shape)
    sumsq = np.bincount(c, weights=mid**2, minlength=m) + zeros * zero_rank**2
    return ranks, sumsq / n - ((n + 1) / 2) ** 2


def _rank_correlation(x, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spearman rho of each concept's measure (presence or a number) with ``y``, and p-values."""
    n = len(y)
    r = sps.rankdata(y)
    r = (r - r.mean()) / r.std()
    ranks, var = column_ranks(x)
    cov = np.asarray(ranks.T @ r).ravel() / n  # mean(rank_x * r), r centred
    constant = var <= 1e-12 * n**2  # a concept in every document: no correlation to measure
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(constant, 0.0, cov / np.sqrt(var))
        t = rho * np.sqrt((n - 2) / np.maximum(1 - rho**2, 1e-12))
    rho = np.clip(np.nan_to_num(rho), -1.0, 1.0)
    return rho, 2 * sps.t.sf(np.abs(np.nan_to_num(t)), n - 2)


def correlate_metadata(
    store: Store,
    column: str,
    encoder: Encoder | str | int | None = None,
    *,
    corpus: str | None = None,
    kind: str = "auto",
    min_support: int = 10,
    top: int = 50,
    alpha: float = 0.05,
    bucket: str = "auto",
    max_docs: int | None = None,
    threshold: float = 0.0,
    measure: str = DEFAULT_DIFF_MEASURE,
) -> pl.DataFrame:
    """Concepts against metadata column ``column`` (numeric, categorical or date) under
    ``measure``: Spearman's rho of the measure with a numeric or date column; per category,
    the diff's statistics for that measure (proportions, or Welch's test of means)."""
    if not isinstance(encoder, Encoder):
        encoder = store.resolve_encoder(encoder)
    matrix = load_matrix(
        store, encoder, corpus=corpus, threshold=threshold, max_docs=max_docs, measure=measure
    )
    values = metadata_column(store, matrix, column, corpus)
    kind = detect_kind(values) if kind == "auto" else kind
    if kind not in ("numeric", "categorical", "date"):
        raise InputError(f"unknown column kind {kind!r}; use numeric, categorical or date")
    present = values.is_not_null().to_numpy()
    x = matrix.values[present] if not matrix.measure.binary else matrix.presence[present]
    values = values.filter(pl.Series(present))
    support = np.asarray((x > 0).sum(axis=0)).ravel()
    tested = np.flatnonzero(support >= min_support)
    labels = _labels(store, encoder)
    if kind == "categorical":
        frame = _categorical(x, values.cast(pl.Utf8), tested, support, matrix.measure.binary)
    else:
        if kind == "date":
            dates = values.cast(pl.Utf8).str.to_datetime(strict=False)
            span = (dates.max() - dates.min()).days if dates.len() else 0
            unit = bucket if bucket != "auto" else ("1mo" if span <= 3 * 366 else "1y")
            buckets = dates.dt.truncate(unit)
            y = buckets.rank("dense").to_numpy().astype(np.float64)
        else:
            y = values.cast(pl.Float64).to_numpy()
        rho, p = _rank_correlation(x[:, tested], y)
        frame = pl.DataFrame(
            {
                "feature": tested.astype(np.int64),
                "n_docs": support[tested].astype(np.int64),
                "rho": rho,
                "p": p,
                "q": stats.bh_qvalues(p),
            }
        )
        if kind == "date":
            frame = frame.with_columns(_bucket_frequencies(x, buckets, tested))
    frame = frame.with_columns(
        pl.col("feature").replace_strict(labels, default=None, return_dtype=pl.Utf8).alias("label")
    )
    effect = "diff" if kind == "categorical" else "rho"
    frame = frame.with_columns(
        (pl.col("q") < alpha).alias("_sig"), pl.col(effect).abs().alias("_abs")
    )
    first = ["category"] if kind == "categorical" else []
    # ties broken by feature (and category): polars' sort does not keep the input order
    keys = ["_sig", "_abs", "p", "feature", *first]
    frame = frame.sort(keys, descending=[True, True, False, False, False][: len(keys)])
    rest = [c for c in frame.columns if c not in (*first, "feature", "label", "_sig", "_abs")]
    return frame.select([*first, "feature", "label", *rest]).head(top)


def _categorical(
    x, categories: pl.Series, tested: np.ndarray, support: np.ndarray, binary: bool = True
) -> pl.DataFrame:
    parts = []
    column_sum = lambda m: np.asarray(m.sum(axis=0)).ravel()[tested]  # noqa: E731
    total, total_sq = column_sum(x), column_sum(x.multiply(x))
    for category in categories.unique().sort().to_list():
        inside = (categories == category).to_numpy()
        size_in, size_out = int(inside.sum()), int((~inside).sum())
        x_in = x[inside]
        n_in = column_sum(x_in > 0)
        n_out = support[tested] - n_in
        if binary:
            part = compare_counts(tested, n_in, n_out, size_in, size_out)
        else:
            s_in, sq_in = column_sum(x_in), column_sum(x_in.multiply(x_in))
            moments = pl.DataFrame(
                {"feature": tested, "n_a": n_in, "n_b": n_out, "sum_a": s_in,
                 "sum_b": total - s_in, "sumsq_a": sq_in, "sumsq_b": total_sq - sq_in}
            )  # fmt: skip
            part = compare_numeric(moments, size_in, size_out)
        parts.append(part.with_columns(pl.lit(category).alias("category")))
    frame = pl.concat(parts)
    return frame.with_columns(pl.Series("q", stats.bh_qvalues(frame["p"].to_numpy())))


def _bucket_frequencies(x, buckets: pl.Series, tested: np.ndarray) -> pl.Series:
    keys = buckets.unique().sort()
    freqs = []
    for key in keys.to_list():
        inside = (buckets == key).to_numpy()
        freqs.append(np.asarray(x[inside].mean(axis=0)).ravel()[tested])
    table = np.vstack(freqs).T  # [tested, buckets]
    return pl.Series("freq_by_bucket", table.tolist(), dtype=pl.List(pl.Float64))
