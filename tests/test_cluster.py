"""Clustering: weightings by hand, recovery of planted groups by every method, empty rows and
outlier assignment, and the cluster descriptions on constructed data whose counts are exact."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.metrics import adjusted_rand_score

from saeembed.analysis import cluster as cl
from saeembed.analysis.cluster import (
    DESCRIBE_COLUMNS,
    METHODS,
    WEIGHTINGS,
    cluster_documents,
    cluster_summary,
    cluster_values,
    describe_clusters,
    weight_matrix,
)
from saeembed.errors import InputError

SIZES = (60, 40, 20)  # three planted groups, of distinct sizes (so their ids are known)
BLOCK = 8  # concepts of each group's own block: group g has columns g*BLOCK .. g*BLOCK+7
SHARED = len(SIZES) * BLOCK  # columns SHARED..SHARED+3: in every other document of each group
EQUAL = SHARED + 3  # one of those: frequency exactly 1/2 in every group
N_COLS = 62  # then random rare noise; the last two columns are kept for hand-placed documents
LONER = N_COLS - 2


def planted(seed: int = 1) -> tuple[sp.csc_matrix, np.ndarray]:
    """Activations [120, N_COLS] and the true group of each document (rows shuffled). A block
    concept j is in the documents r of its group with (r + j) % 5 != 0: exactly 80% of them."""
    rng = np.random.default_rng(seed)
    rows, truth = [], []
    for group, size in enumerate(SIZES):
        for r in range(size):
            v = np.zeros(N_COLS)
            for j in range(BLOCK):
                if (r + j) % 5:
                    v[group * BLOCK + j] = rng.uniform(0.5, 3)
            for j in range(4):
                if (r + j * (j < 3)) % 2 == 0:
                    v[SHARED + j] = rng.uniform(0.5, 3)
            noise = rng.random(LONER - SHARED - 4) < 0.05
            v[SHARED + 4 : LONER][noise] = rng.uniform(0.5, 3, noise.sum())
            rows.append(v)
            truth.append(group)
    order = rng.permutation(len(rows))
    return sp.csc_matrix(np.array(rows)[order]), np.array(truth)[order]


@pytest.fixture(scope="module")
def data() -> tuple[sp.csc_matrix, np.ndarray]:
    return planted()


# -- weighting ----------------------------------------------------------------------------------


HAND = sp.csc_matrix(np.array([[1.0, 0.0, 3.0], [2.0, 5.0, 0.0], [0.0, 0.0, 0.0]]))


def test_binary_weighting_by_hand():
    x = weight_matrix(HAND, "binary")
    assert isinstance(x, sp.csr_matrix)
    s = 1 / np.sqrt(2)
    assert x.toarray() == pytest.approx(np.array([[s, 0, s], [s, s, 0], [0, 0, 0]]))


def test_log_weighting_by_hand():
    x = weight_matrix(HAND, "log").toarray()
    # row 0: (log 2, 0, log 4) = log 2 * (1, 0, 2), so (1, 0, 2) / sqrt(5)
    assert x[0] == pytest.approx(np.array([1, 0, 2]) / np.sqrt(5))
    norm = np.sqrt(np.log(3) ** 2 + np.log(6) ** 2)
    assert x[1] == pytest.approx(np.array([np.log(3), np.log(6), 0]) / norm)
    assert x[2].tolist() == [0, 0, 0]


def test_idf_weighting_by_hand():
    x = weight_matrix(HAND, "idf").toarray()
    # n = 3 documents; document frequencies (2, 1, 1): idf = log(4 / 3) + 1, log(2) + 1 twice
    common, rare = np.log(4 / 3) + 1, np.log(2) + 1
    norm = np.hypot(common, rare)
    assert x[0] == pytest.approx(np.array([common, 0, rare]) / norm)
    assert x[1] == pytest.approx(np.array([common, rare, 0]) / norm)
    assert x[2].tolist() == [0, 0, 0]
    # the same as scikit-learn's smoothed tf-idf of the presence matrix
    reference = TfidfTransformer(smooth_idf=True, norm="l2").fit_transform(HAND > 0)
    assert x == pytest.approx(reference.toarray())


def test_weightings_give_unit_rows(data):
    values, _ = data
    for weighting in WEIGHTINGS:
        norms = sp.linalg.norm(weight_matrix(values, weighting), axis=1)
        assert norms == pytest.approx(np.ones(values.shape[0]))


# -- clustering ---------------------------------------------------------------------------------


@pytest.mark.parametrize("weighting", WEIGHTINGS)
@pytest.mark.parametrize("method", ["kmeans", "agglomerative"])
def test_planted_groups_are_recovered_exactly(data, method, weighting):
    values, truth = data
    result = cluster_documents(weight_matrix(values, weighting), method=method, k=3)
    # ids by decreasing size: the planted groups are 60, 40, 20 documents
    assert result.labels.dtype == np.int64
    assert result.labels.tolist() == truth.tolist()
    assert (result.n_clusters, result.outlier_share, result.n_empty) == (3, 0.0, 0)
    assert not result.assigned.any()
    assert result.method == method


@pytest.mark.parametrize("weighting", WEIGHTINGS)
def test_hdbscan_recovers_the_groups_with_few_outliers(data, weighting):
    values, truth = data
    result = cluster_documents(weight_matrix(values, weighting), method="hdbscan")
    kept = result.labels >= 0
    assert result.n_clusters == 3
    assert result.outlier_share < 0.05
    assert adjusted_rand_score(truth[kept], result.labels[kept]) == 1.0
    sizes = np.bincount(result.labels[kept])
    assert (np.diff(sizes) <= 0).all()
    # 62 columns are reduced to 50 SVD components; default min_cluster_size max(5, 120 // 100)
    assert result.params["svd_components"] == 50
    assert result.params["min_cluster_size"] == 5


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_labels_and_params_are_json(data, method):
    values, _ = data
    k = None if method == "hdbscan" else 3
    first = cluster_values(values, weighting="log", method=method, k=k, seed=7)
    again = cluster_values(values, weighting="log", method=method, k=k, seed=7)
    assert np.array_equal(first.labels, again.labels)
    params = json.loads(json.dumps(first.params))
    assert params["seed"] == 7 and params["k"] == k and params["weighting"] == "log"


def test_ids_are_ordered_by_size_with_ties_by_first_document():
    raw = np.array([5, 2, 2, -1, 9, 9, 9, 5])
    assert cl._renumber(raw).tolist() == [1, 2, 2, -1, 0, 0, 0, 1]


def with_extra_rows(values: sp.csc_matrix) -> sp.csr_matrix:
    """The planted data, then a loner (two group-0 concepts and a concept of its own, far from
    every group) and an empty document."""
    loner = np.zeros(N_COLS)
    loner[[0, 1]] = 1.0
    loner[LONER] = 3.0
    extra = sp.csr_matrix(np.vstack([loner, np.zeros(N_COLS)]))
    return sp.vstack([sp.csr_matrix(values), extra]).tocsr()


def test_empty_rows_are_outliers_and_never_assigned(data):
    values, truth = data
    x = weight_matrix(with_extra_rows(values), "log")
    result = cluster_documents(x, method="kmeans", k=3, assign_outliers=True)
    assert result.labels[-1] == -1 and not result.assigned[-1]
    assert result.n_empty == 1
    assert result.outlier_share == pytest.approx(1 / len(result.labels))
    assert result.labels[:-2].tolist() == truth.tolist()
    # kmeans has no outliers of its own: nothing is assigned
    assert not result.assigned.any()


def test_hdbscan_outliers_go_to_the_nearest_centroid(data):
    values, truth = data
    x = weight_matrix(with_extra_rows(values), "log")
    plain = cluster_documents(x, method="hdbscan")
    assert plain.labels[-2] == -1  # the loner is an outlier
    assert plain.labels[-1] == -1 and plain.n_empty == 1
    result = cluster_documents(x, method="hdbscan", assign_outliers=True)
    group0 = np.bincount(result.labels[:-2][truth == 0]).argmax()
    assert result.labels[-2] == group0 == 0
    assert result.assigned[-2] and not result.assigned[-1]
    assert result.assigned.sum() == (plain.labels[:-1] == -1).sum()
    assert result.labels[-1] == -1
    assert result.outlier_share == pytest.approx(1 / len(result.labels))
    # assignment only fills outliers: the clustered documents keep their labels
    clustered = plain.labels >= 0
    assert np.array_equal(result.labels[clustered], plain.labels[clustered])


def test_clustering_errors(data, monkeypatch):
    values, _ = data
    x = weight_matrix(values, "binary")
    with pytest.raises(InputError, match="give k"):
        cluster_documents(x, method="kmeans")
    with pytest.raises(InputError, match="give k"):
        cluster_documents(x, method="agglomerative")
    with pytest.raises(InputError, match="unknown clustering method 'dbscan'"):
        cluster_documents(x, method="dbscan", k=3)
    with pytest.raises(InputError, match="unknown weighting 'tfidf'"):
        weight_matrix(values, "tfidf")
    with pytest.raises(InputError, match="drop k"):
        cluster_documents(x, method="hdbscan", k=3)
    with pytest.raises(InputError, match="hdbscan only"):
        cluster_documents(x, method="kmeans", k=3, min_cluster_size=10)
    with pytest.raises(InputError, match="lower it"):
        cluster_documents(x, method="hdbscan", min_cluster_size=500)
    # k above the non-empty documents (two of four are empty)
    few = weight_matrix(sp.csr_matrix(np.array([[1.0, 0], [0, 0], [0, 2.0], [0, 0]])), "binary")
    with pytest.raises(InputError, match="only 2 documents"):
        cluster_documents(few, method="kmeans", k=3)
    with pytest.raises(InputError, match="no document has any"):
        cluster_documents(sp.csr_matrix((3, 2)), method="kmeans", k=1)
    monkeypatch.setattr(cl, "AGGLOMERATIVE_MAX_DOCS", 100)
    with pytest.raises(InputError, match="use kmeans or hdbscan"):
        cluster_documents(x, method="agglomerative", k=3)


# -- description --------------------------------------------------------------------------------


FEATURES = np.arange(N_COLS) + 1000  # the columns' feature ids
LABELS = {int(f): f"concept {f}" for f in FEATURES[:SHARED]}


@pytest.fixture(scope="module")
def described(data):
    values, truth = data
    presence = (values > 0).astype(np.float32).tocsc()
    return describe_clusters(presence, truth, FEATURES, LABELS, top=BLOCK)


def test_each_group_is_described_by_its_block(described):
    assert described.columns == DESCRIBE_COLUMNS
    assert described.height == len(SIZES) * BLOCK
    for group, size in enumerate(SIZES):
        mine = described.filter(described["cluster"] == group)
        block = FEATURES[group * BLOCK : (group + 1) * BLOCK]
        assert mine["feature"].to_list() == block.tolist()  # equal counts: by feature id
        assert mine["rank"].to_list() == list(range(1, BLOCK + 1))
        assert mine["label"].to_list() == [f"concept {f}" for f in block]
        assert set(mine["size"]) == {size}
        assert set(mine["share"]) == {size / 120}
        # 80% of the group has each of its block's concepts, no other document does
        assert set(mine["n_in"]) == {size * 4 // 5} and set(mine["n_out"]) == {0}
        assert mine["freq_in"].to_list() == pytest.approx([0.8] * BLOCK)
        assert mine["freq_out"].to_list() == [0.0] * BLOCK
        assert mine["diff"].to_list() == pytest.approx([0.8] * BLOCK)
        assert (mine["ci_low"] > 0).all() and (mine["ci_high"] <= 1).all()
        assert (mine["q"] < 0.05).all() and mine["significant"].all()
        assert (mine["p"] <= mine["q"]).all()


def test_top_limits_rows_per_cluster(data):
    values, truth = data
    presence = (values > 0).astype(np.float32).tocsc()
    frame = describe_clusters(presence, truth, FEATURES, LABELS, top=3)
    assert frame.group_by("cluster").len().sort("cluster")["len"].to_list() == [3, 3, 3]


def test_a_concept_equally_common_everywhere_is_never_significant(data):
    values, truth = data
    presence = (values > 0).astype(np.float32).tocsc()
    frame = describe_clusters(presence, truth, FEATURES, LABELS, top=N_COLS)
    equal = frame.filter(frame["feature"] == int(FEATURES[EQUAL]))
    assert not equal["significant"].any()
    # the shared concepts (1/2 in every group) are never over-represented at all
    shared = {int(f) for f in FEATURES[SHARED : SHARED + 4]}
    assert not shared & set(frame["feature"].to_list())
    # fillers beyond the significant ones are marked, after the significant ones
    for _, rows in frame.group_by("cluster"):
        sig = rows.sort("rank")["significant"].to_list()
        assert sig == sorted(sig, reverse=True)


def test_describe_compares_against_outliers_too():
    # 10 docs: cluster 0 = docs 0-4, outliers 5-9; concept 0 in docs 0-4, concept 1 in 0-1, 5-9
    presence = np.zeros((10, 2))
    presence[:5, 0] = 1
    presence[[0, 1, 5, 6, 7, 8, 9], 1] = 1
    labels = np.array([0] * 5 + [-1] * 5)
    frame = describe_clusters(sp.csc_matrix(presence), labels, np.array([7, 8]), {}, min_support=1)
    assert frame["feature"].to_list() == [7]  # concept 8 is rarer in the cluster than outside
    row = frame.row(0, named=True)
    assert (row["freq_in"], row["freq_out"], row["label"]) == (1.0, 0.0, None)
    assert row["size"] == 5 and row["share"] == 0.5
    with pytest.raises(InputError, match="pass matching arrays"):
        describe_clusters(sp.csc_matrix(presence), labels[:5], np.array([7, 8]), {})


def test_summary_names_clusters_and_outliers(data):
    values, truth = data
    x = weight_matrix(with_extra_rows(values), "log")
    result = cluster_documents(x, method="kmeans", k=3)
    presence = (with_extra_rows(values) > 0).astype(np.float32).tocsc()
    frame = describe_clusters(presence, result.labels, FEATURES, LABELS)
    summary = cluster_summary(result, frame)
    assert summary.columns == ["cluster", "size", "share", "name", "top_features"]
    assert summary["cluster"].to_list() == [0, 1, 2, -1]
    assert summary["size"].to_list() == [60 + 1, 40, 20, 1]  # the loner joins group 0
    assert summary["share"].sum() == pytest.approx(1.0)
    assert summary["name"][0] == "concept 1000 / concept 1001 / concept 1002"
    assert summary["name"][-1] == "outliers"
    assert summary["top_features"][1].to_list() == list(range(1008, 1013))
    assert summary["top_features"][-1].to_list() == []
