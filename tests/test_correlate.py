"""Concept correlation on constructed stores with hand-computed NPMI, phi and rank correlations."""

from __future__ import annotations

import numpy as np
import pytest
from polars.testing import assert_frame_equal
from scipy import stats as sps

from saeembed.analysis.correlate import (
    cooccurrence_pairs,
    correlate_concepts,
    correlate_metadata,
    metadata_column,
)
from saeembed.analysis.diff import diff_corpora
from saeembed.analysis.matrix import load_matrix
from saeembed.errors import InputError
from tests.count_store import build_count_store

SIZES = {"A": 40, "B": 60, "C": 20}
COUNTS = {
    1: {"A": 24, "B": 6},
    3: {"A": 4, "B": 42, "C": 10},
    4: {"A": 10, "B": 15},
    5: {"A": 40, "B": 60, "C": 20},  # in every document: never paired
}


@pytest.fixture
def store(tmp_path):
    store = build_count_store(tmp_path / "c.duckdb", SIZES, COUNTS)
    store.con.execute(
        "UPDATE documents SET meta = json_object('score', row_idx, 'source', corpus, "
        "'day', strftime(DATE '2020-01-01' + CAST(row_idx AS INTEGER) * 7, '%Y-%m-%d'))"
    ).fetchall()
    yield store
    store.close()


def test_pairs_match_hand_computed_npmi_and_phi(store):
    # features 1 and 4 share the first 10 documents of A and the first 6 of B: 16 of 120
    pairs = correlate_concepts(store, same_peak=1.01, max_cosine=1.01, top=10)
    row = pairs.filter(feature_a=1, feature_b=4).row(0, named=True)
    n, n1, n4, n14 = 120, 30, 25, 16
    assert (row["n_a"], row["n_b"], row["n_ab"], row["n_docs"]) == (n1, n4, n14, n)
    assert row["npmi"] == pytest.approx(np.log(n14 * n / (n1 * n4)) / -np.log(n14 / n))
    assert row["phi"] == pytest.approx((n * n14 - n1 * n4) / np.sqrt(n1 * n4 * (n - n1) * (n - n4)))
    assert 5 not in pairs["feature_a"].to_list() + pairs["feature_b"].to_list()
    assert (pairs["npmi"].diff().drop_nulls() <= 0).all()


def test_same_peak_pairs_are_trivial(store):
    # every activation in this store peaks on token 0, so every pair is "the same token"
    assert correlate_concepts(store).height == 0
    marked = correlate_concepts(store, show_trivial=True)
    assert marked["trivial"].all() and (marked["same_peak"] == 1.0).all()


def test_same_peak_is_measured_on_the_sampled_documents(store):
    # outside a 60-document sample, feature 4 peaks elsewhere: only the sample may count
    sample = store.encoded_doc_ids(store.resolve_encoder(None), max_docs=60)
    with store.temporary(sampled={"doc_id": sample}):
        store.con.execute(
            "UPDATE activations SET peak_token = 1 WHERE feature = 4 "
            "AND doc_id NOT IN (SELECT doc_id FROM sampled)"
        )
    kept = correlate_concepts(store, show_trivial=True, max_docs=60, min_support=2)
    assert kept.filter(feature_a=1, feature_b=4)["same_peak"].to_list() == [1.0]
    whole = correlate_concepts(store, show_trivial=True, max_docs=None, min_support=2)
    assert whole.filter(feature_a=1, feature_b=4)["same_peak"].item() < 1.0


def test_a_binary_measure_has_r_equal_to_phi(store):
    pairs = correlate_concepts(store, same_peak=1.01, max_cosine=1.01, top=10)
    assert pairs["r"].to_numpy() == pytest.approx(pairs["phi"].to_numpy())


def test_blocks_give_the_same_pairs(store):
    matrix = load_matrix(store, store.resolve_encoder(None))
    whole = cooccurrence_pairs(matrix, min_support=5, block=512)
    tiny = cooccurrence_pairs(matrix, min_support=5, block=1)
    assert_frame_equal(whole.sort("feature_a", "feature_b"), tiny.sort("feature_a", "feature_b"))


def test_numeric_column_is_spearman(store):
    table = correlate_metadata(store, "score", top=10)
    matrix = load_matrix(store, store.resolve_encoder(None))
    scores = store.sql(
        "SELECT doc_id, any_value(row_idx) AS r FROM documents GROUP BY doc_id ORDER BY doc_id"
    )["r"].to_numpy()
    presence = matrix.presence[:, 1].toarray().ravel()
    rho, p = sps.spearmanr(presence, scores)
    row = table.filter(feature=1).row(0, named=True)
    assert row["rho"] == pytest.approx(rho) and row["p"] == pytest.approx(p, rel=1e-6)
    assert row["rho"] < 0  # feature 1 is in the first documents of A and B


def test_a_concept_in_every_document_has_rho_zero(store):
    # feature 5 is in all 120 documents: its ranks are constant, rho is 0 (not +-inf) and p is 1
    table = correlate_metadata(store, "score", top=100, min_support=2)
    row = table.filter(feature=5).row(0, named=True)
    assert (row["rho"], row["p"]) == (0.0, 1.0)
    assert table["rho"].abs().max() <= 1.0


def test_a_text_in_two_corpora_takes_the_asked_corpus_metadata(store):
    # the first document of A also sits in C with other metadata: --corpus A reads A's row,
    # and without a corpus the first corpus by name decides (never the scan order)
    first = store.sql("SELECT doc_id, text FROM documents WHERE corpus = 'A' AND row_idx = 0")
    store.con.execute(
        "INSERT INTO documents (corpus, doc_id, row_idx, text, meta) "
        "VALUES ('C', ?, 999, ?, json_object('score', 10000))",
        [int(first["doc_id"][0]), first["text"][0]],
    )
    matrix = load_matrix(store, store.resolve_encoder(None), corpus="A")
    at = int(np.searchsorted(matrix.doc_ids, first["doc_id"][0]))
    assert metadata_column(store, matrix, "score", "A")[at] == 0
    assert metadata_column(store, matrix, "score", "C")[at] == 10000
    assert metadata_column(store, matrix, "score")[at] == 0  # A before C


def test_categorical_column_is_one_vs_rest_enrichment(store):
    table = correlate_metadata(store, "source", top=100)
    row = table.filter(category="A", feature=1).row(0, named=True)
    expected = diff_corpora(store, ["A"], ["B", "C"]).filter(feature=1).row(0, named=True)
    for key in ("n_a", "n_b", "size_a", "size_b", "diff", "ci_low", "p"):
        assert row[key] == pytest.approx(expected[key])


def test_date_column_trend(store):
    table = correlate_metadata(store, "day", top=10)
    assert {"rho", "p", "q", "freq_by_bucket"} <= set(table.columns)
    row = table.filter(feature=1).row(0, named=True)
    assert row["rho"] < 0 and len(row["freq_by_bucket"]) > 3  # weekly dates, monthly buckets


def test_missing_column(store):
    with pytest.raises(InputError, match="no metadata column 'nope'.*columns: score, source, day"):
        correlate_metadata(store, "nope")
