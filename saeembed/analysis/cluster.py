"""Clustering documents on a chosen subset of concepts, and describing the clusters.

A document is a row of concept activations; `weight_matrix` turns the chosen columns into
L2-normalised rows (binary presence, log1p of the activation, or smoothed idf-weighted presence),
so that every method works in cosine geometry. `cluster_documents` groups the rows:

- ``kmeans``: scikit-learn's KMeans on the sparse rows, ``n_init=10``, ``random_state=seed``.
- ``agglomerative``: Ward linkage on the (dense) normalised rows; for unit vectors the squared
  Euclidean distance is 2 - 2 cos, so Ward merges cosine-close groups. Its distance matrix is
  O(n²), so more than `AGGLOMERATIVE_MAX_DOCS` documents are refused (use kmeans or hdbscan).
- ``hdbscan``: density clustering that picks the number of clusters itself (giving ``k`` is an
  error) and leaves outliers (label -1); ``min_cluster_size`` defaults to max(5, n // 100).
  Identical rows are infinitely dense to it: with binary weighting on a few concepts, where many
  documents coincide, it may make each frequent pattern a cluster of its own (raise
  min_cluster_size).

The two dense methods first reduce the rows with TruncatedSVD (`SVD_COMPONENTS` components,
``random_state=seed``) when there are more columns than that.

Documents with none of the chosen concepts (all-zero rows) carry no signal: they are never given
to the algorithm (they would form a junk cluster), always get label -1, are counted in
``n_empty`` and are not assigned by ``assign_outliers``, which gives every other outlier the
cluster whose centroid is nearest by cosine. Cluster ids run 0..C-1 by decreasing size.

`describe_clusters` names each cluster by its most distinctive concepts: a diff of the cluster
against all other documents (outliers included), as in `saeembed.analysis.diff`, and
`cluster_summary` gives one row per cluster with a name made of its top concepts' labels."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp
from sklearn.preprocessing import normalize

from saeembed.analysis import stats
from saeembed.analysis.cluster_settings import METHODS, WEIGHTINGS
from saeembed.errors import InputError

#: KMeans restarts (the best of them is kept).
KMEANS_N_INIT = 10
#: Dense methods (hdbscan, agglomerative) work on at most this many SVD components.
SVD_COMPONENTS = 50
#: Ward linkage needs an n x n distance matrix: 10,000 documents take about 400 MB.
AGGLOMERATIVE_MAX_DOCS = 10_000

#: Columns of `describe_clusters`, in order.
DESCRIBE_COLUMNS = [
    "cluster",
    "size",
    "share",
    "rank",
    "feature",
    "label",
    "n_in",
    "n_out",
    "freq_in",
    "freq_out",
    "diff",
    "ci_low",
    "ci_high",
    "p",
    "q",
    "significant",
]
DESCRIBE_SCHEMA = {
    "cluster": pl.Int64,
    "size": pl.Int64,
    "share": pl.Float64,
    "rank": pl.Int64,
    "feature": pl.Int64,
    "label": pl.Utf8,
    "n_in": pl.Int64,
    "n_out": pl.Int64,
    "freq_in": pl.Float64,
    "freq_out": pl.Float64,
    "diff": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "p": pl.Float64,
    "q": pl.Float64,
    "significant": pl.Boolean,
}


@dataclass
class ClusterResult:
    labels: np.ndarray  # int64 [n_docs]; -1 = outlier (or empty row)
    n_clusters: int
    outlier_share: float  # share of documents labelled -1 after assignment
    n_empty: int  # documents with none of the chosen concepts (always -1)
    assigned: np.ndarray  # bool [n_docs]: outliers given their nearest cluster
    method: str
    params: dict[str, Any] = field(default_factory=dict)  # JSON-serialisable


# -- weighting ----------------------------------------------------------------------------------


def weight_matrix(values: sp.spmatrix, weighting: str) -> sp.csr_matrix:
    """Rows weighted by ``weighting`` and L2-normalised (all-zero rows stay zero). Only positive
    values count as present. binary: 1; log: log1p(value); idf: log((1 + n) / (1 + df)) + 1,
    with n documents of which df have the concept (scikit-learn's smoothed idf)."""
    if weighting not in WEIGHTINGS:
        raise InputError(f"unknown weighting {weighting!r}; use one of {', '.join(WEIGHTINGS)}")
    x = sp.csr_matrix(values, dtype=np.float64, copy=True)
    x.data[x.data < 0] = 0
    x.eliminate_zeros()
    if weighting == "log":
        x.data = np.log1p(x.data)
    else:
        x.data[:] = 1.0
        if weighting == "idf":
            n = x.shape[0]
            df = np.bincount(x.indices, minlength=x.shape[1])
            idf = np.log((1 + n) / (1 + df)) + 1
            x.data = idf[x.indices]
    return normalize(x, norm="l2", copy=False).tocsr()


# -- clustering ---------------------------------------------------------------------------------


def _check_request(
    method: str, k: int | None, min_cluster_size: int | None, n_rows: int
) -> int | None:
    """Validate the method's arguments against the ``n_rows`` non-empty documents; returns the
    min_cluster_size to use (hdbscan) or None."""
    if method not in METHODS:
        raise InputError(f"unknown clustering method {method!r}; use one of {', '.join(METHODS)}")
    if n_rows == 0:
        raise InputError("no document has any of the chosen concepts; choose other concepts")
    if method == "hdbscan":
        if k is not None:
            raise InputError("hdbscan finds the number of clusters itself; drop k or use kmeans")
        mcs = max(5, n_rows // 100) if min_cluster_size is None else int(min_cluster_size)
        if mcs < 2:
            raise InputError(f"min_cluster_size must be at least 2, got {mcs}")
        if mcs > n_rows:
            raise InputError(
                f"min_cluster_size {mcs} exceeds the {n_rows} documents with the chosen "
                "concepts; lower it"
            )
        return mcs
    if min_cluster_size is not None:
        raise InputError(f"min_cluster_size is for hdbscan only; drop it for {method}")
    if k is None:
        raise InputError(f"{method} needs the number of clusters; give k")
    if not 1 <= k <= n_rows:
        raise InputError(
            f"k={k} but only {n_rows} documents have the chosen concepts; use k from 1 to {n_rows}"
        )
    if method == "agglomerative" and n_rows > AGGLOMERATIVE_MAX_DOCS:
        raise InputError(
            f"agglomerative clustering of {n_rows} documents needs too much memory "
            f"(limit {AGGLOMERATIVE_MAX_DOCS}); use kmeans or hdbscan, or sample documents"
        )
    return None


def _dense(x: sp.csr_matrix, seed: int) -> tuple[np.ndarray, int | None]:
    """Dense rows for the dense methods: reduced by TruncatedSVD when there are more columns than
    `SVD_COMPONENTS` (returns the number of components used, or None)."""
    if x.shape[1] <= SVD_COMPONENTS:
        return x.toarray(), None
    from sklearn.decomposition import TruncatedSVD

    n_components = min(SVD_COMPONENTS, x.shape[0] - 1)
    if n_components < 2:
        return x.toarray(), None
    svd = TruncatedSVD(n_components=n_components, random_state=seed)
    return svd.fit_transform(x), n_components


def _fit(
    x: sp.csr_matrix, method: str, k: int | None, seed: int, mcs: int | None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Raw labels of the non-empty rows ``x`` and the method's parameters."""
    if method == "kmeans":
        from sklearn.cluster import KMeans

        model = KMeans(n_clusters=k, n_init=KMEANS_N_INIT, random_state=seed)
        return model.fit_predict(x), {"n_init": KMEANS_N_INIT}
    dense, n_components = _dense(x, seed)
    if method == "agglomerative":
        from sklearn.cluster import AgglomerativeClustering

        if k == 1:
            return np.zeros(x.shape[0], np.int64), {"linkage": "ward"}
        labels = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(dense)
        return labels, {"linkage": "ward", "svd_components": n_components}
    from sklearn.cluster import HDBSCAN

    labels = HDBSCAN(min_cluster_size=mcs, copy=False).fit_predict(dense)
    return labels, {"min_cluster_size": mcs, "svd_components": n_components}


def _renumber(labels: np.ndarray) -> np.ndarray:
    """Cluster ids 0..C-1 by decreasing size; equal sizes by first document. -1 stays -1."""
    out = np.full(len(labels), -1, np.int64)
    ids = np.unique(labels[labels >= 0])
    if len(ids) == 0:
        return out
    sizes = np.array([(labels == c).sum() for c in ids])
    first = np.array([np.flatnonzero(labels == c)[0] for c in ids])
    order = np.lexsort((first, -sizes))
    for new, old in enumerate(ids[order]):
        out[labels == old] = new
    return out


def _assign_to_centroids(x: sp.csr_matrix, labels: np.ndarray) -> np.ndarray:
    """Labels with every outlier row of ``x`` given the cluster whose centroid is nearest by
    cosine (ties to the lower id); returns the new labels."""
    n_clusters = int(labels.max()) + 1
    outliers = np.flatnonzero(labels < 0)
    if n_clusters == 0 or len(outliers) == 0:
        return labels
    members = labels >= 0
    indicator = sp.csr_matrix(
        (np.ones(members.sum()), (labels[members], np.flatnonzero(members))),
        shape=(n_clusters, x.shape[0]),
    )
    centroids = normalize(sp.csr_matrix(indicator @ x), norm="l2")
    similarity = np.asarray((x[outliers] @ centroids.T).todense())
    out = labels.copy()
    out[outliers] = similarity.argmax(axis=1)
    return out


def cluster_documents(
    x: sp.csr_matrix,
    *,
    method: str = "kmeans",
    k: int | None = None,
    seed: int = 0,
    min_cluster_size: int | None = None,
    assign_outliers: bool = False,
) -> ClusterResult:
    """Cluster the rows of ``x`` (documents x chosen concepts, e.g. from `weight_matrix`; rows
    are L2-normalised here too). All-zero rows are left out and labelled -1. ``k`` is required
    by kmeans and agglomerative and refused by hdbscan; ``min_cluster_size`` is for hdbscan."""
    x = normalize(sp.csr_matrix(x, dtype=np.float64), norm="l2").tocsr()
    x.eliminate_zeros()
    nonempty = np.diff(x.indptr) > 0
    mcs = _check_request(method, k, min_cluster_size, int(nonempty.sum()))
    rows = x[nonempty]
    raw, method_params = _fit(rows, method, k, seed, mcs)
    inner = _renumber(np.asarray(raw, np.int64))
    assigned_inner = np.zeros(len(inner), bool)
    if assign_outliers:
        new = _assign_to_centroids(rows, inner)
        assigned_inner = (inner < 0) & (new >= 0)
        inner = new
    labels = np.full(x.shape[0], -1, np.int64)
    labels[nonempty] = inner
    assigned = np.zeros(x.shape[0], bool)
    assigned[nonempty] = assigned_inner
    params: dict[str, Any] = {
        "seed": int(seed),
        "k": None if k is None else int(k),
        "min_cluster_size": mcs,
        "svd_components": None,
        "assign_outliers": bool(assign_outliers),
        **method_params,
    }
    return ClusterResult(
        labels=labels,
        n_clusters=int(inner.max()) + 1 if len(inner) else 0,
        outlier_share=float((labels < 0).mean()) if len(labels) else 0.0,
        n_empty=int((~nonempty).sum()),
        assigned=assigned,
        method=method,
        params=params,
    )


def cluster_values(values: sp.spmatrix, *, weighting: str = "idf", **options: Any) -> ClusterResult:
    """`weight_matrix` then `cluster_documents` (``options`` are its keywords); the weighting is
    recorded in the result's params."""
    result = cluster_documents(weight_matrix(values, weighting), **options)
    result.params["weighting"] = weighting
    return result


# -- description --------------------------------------------------------------------------------


def _cluster_counts(
    presence: sp.csr_matrix, labels: np.ndarray, n_clusters: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per cluster and concept, documents of the cluster having it ([C, d]); per concept,
    documents having it ([d]); cluster sizes ([C])."""
    members = labels >= 0
    indicator = sp.csr_matrix(
        (np.ones(members.sum()), (labels[members], np.flatnonzero(members))),
        shape=(n_clusters, len(labels)),
    )
    counts = np.asarray((indicator @ presence).todense()).astype(np.int64)
    totals = np.asarray(presence.sum(axis=0)).ravel().astype(np.int64)
    sizes = np.bincount(labels[members], minlength=n_clusters).astype(np.int64)
    return counts, totals, sizes


def _unique_tables_p(n_in, size_in, n_out, size_out) -> np.ndarray:
    """`stats.proportion_test` p-values, computed once per distinct 2x2 table: many (cluster,
    concept) pairs share one, and Fisher's exact test is a Python loop."""
    tables = np.stack([n_in, size_in, n_out, size_out], axis=1)
    distinct, inverse = np.unique(tables, axis=0, return_inverse=True)
    p, _ = stats.proportion_test(*distinct.T)
    return p[inverse.ravel()]


def describe_clusters(
    presence: sp.csc_matrix,
    labels: np.ndarray,
    features: np.ndarray,
    feature_labels: dict[int, str],
    *,
    top: int = 5,
    alpha: float = 0.05,
    min_support: int = 5,
) -> pl.DataFrame:
    """The ``top`` most distinctive concepts of each cluster (long format, `DESCRIBE_COLUMNS`).

    Each cluster is compared with all other documents (outliers included) on every concept (a
    column of ``presence``, whose feature id is ``features[column]``) present in at least
    ``min_support`` documents overall: frequencies, their difference with a Newcombe 95%
    interval, and a two-sided p-value (Fisher's exact test for small expected counts, else the
    z-test). q-values are Benjamini-Hochberg over every (cluster, concept) pair tested; pairs
    where the concept is not more frequent in the cluster cannot be reported and enter that
    family with p = 1 (conservative). Significant (q < alpha) over-represented concepts come
    first by difference; if fewer than ``top``, the best other over-represented ones fill in
    with ``significant`` false. Outliers (-1) get no description."""
    labels = np.asarray(labels, np.int64)
    features = np.asarray(features, np.int64)
    if presence.shape != (len(labels), len(features)):
        raise InputError(
            f"presence is {presence.shape[0]} x {presence.shape[1]} but there are "
            f"{len(labels)} labels and {len(features)} features; pass matching arrays"
        )
    if top < 1:
        raise InputError(f"top must be at least 1, got {top}")
    n = len(labels)
    n_clusters = int(labels.max()) + 1 if n else 0
    binary = sp.csr_matrix(presence > 0, dtype=np.float64)
    counts, totals, sizes = _cluster_counts(binary, labels, n_clusters)
    tested = np.flatnonzero(totals >= min_support)
    sizes_out = n - sizes
    usable = np.flatnonzero((sizes > 0) & (sizes_out > 0))
    if len(tested) == 0 or len(usable) == 0:
        return pl.DataFrame(schema=DESCRIBE_SCHEMA)
    # every (cluster, concept) pair, flattened cluster-major
    c_idx = np.repeat(usable, len(tested))
    f_idx = np.tile(tested, len(usable))
    n_in = counts[c_idx, f_idx]
    n_out = totals[f_idx] - n_in
    size_in, size_out = sizes[c_idx], sizes_out[c_idx]
    freq_in, freq_out = n_in / size_in, n_out / size_out
    over = freq_in > freq_out
    p = np.ones(len(n_in))
    if over.any():
        p[over] = _unique_tables_p(n_in[over], size_in[over], n_out[over], size_out[over])
    q = stats.bh_qvalues(p)
    keep = np.flatnonzero(over)
    ci_low, ci_high = stats.newcombe_interval(
        n_in[keep], size_in[keep], n_out[keep], size_out[keep]
    )
    frame = pl.DataFrame(
        {
            "cluster": c_idx[keep],
            "size": size_in[keep],
            "share": size_in[keep] / n,
            "feature": features[f_idx[keep]],
            "n_in": n_in[keep],
            "n_out": n_out[keep],
            "freq_in": freq_in[keep],
            "freq_out": freq_out[keep],
            "diff": freq_in[keep] - freq_out[keep],
            "ci_low": ci_low,
            "ci_high": ci_high,
            "p": p[keep],
            "q": q[keep],
            "significant": q[keep] < alpha,
        },
        schema_overrides={"cluster": pl.Int64, "size": pl.Int64, "feature": pl.Int64},
    )
    names = pl.DataFrame(
        {
            "feature": pl.Series(list(feature_labels), dtype=pl.Int64),
            "label": pl.Series(list(feature_labels.values()), dtype=pl.Utf8),
        }
    )
    frame = (
        frame.sort(
            ["cluster", "significant", "diff", "p", "feature"],
            descending=[False, True, True, False, False],
        )
        .with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over("cluster").alias("rank"))
        .filter(pl.col("rank") <= top)
        .join(names, on="feature", how="left")
    )
    return frame.select(DESCRIBE_COLUMNS).cast(DESCRIBE_SCHEMA).sort(["cluster", "rank"])


def cluster_summary(result: ClusterResult, describe_frame: pl.DataFrame) -> pl.DataFrame:
    """One row per cluster, then one for outliers (-1) if any: ``cluster, size, share, name,
    top_features``. The name joins the labels of the cluster's 3 best-ranked concepts in
    ``describe_frame`` with " / " (#id where a concept has no label; "cluster C" where none
    was described); top_features lists every described concept's id in rank order."""
    labels = result.labels
    n = max(len(labels), 1)
    ranked = describe_frame.sort(["cluster", "rank"])
    rows = []
    clusters = list(range(result.n_clusters)) + ([-1] if (labels < 0).any() else [])
    for c in clusters:
        size = int((labels == c).sum())
        if c < 0:
            rows.append((c, size, size / n, "outliers", []))
            continue
        mine = ranked.filter(pl.col("cluster") == c)
        ids = mine["feature"].to_list()
        words = [
            lab if lab else f"#{fid}"
            for fid, lab in zip(ids[:3], mine["label"].to_list()[:3], strict=True)
        ]
        rows.append((c, size, size / n, " / ".join(words) or f"cluster {c}", ids))
    return pl.DataFrame(
        rows,
        schema={
            "cluster": pl.Int64,
            "size": pl.Int64,
            "share": pl.Float64,
            "name": pl.Utf8,
            "top_features": pl.List(pl.Int64),
        },
        orient="row",
    )
