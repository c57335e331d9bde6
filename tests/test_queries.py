"""Named queries on a constructed store whose right answers are known by hand."""

from __future__ import annotations

import pyarrow as pa
import pytest

from saeembed.errors import StoreError
from saeembed.inputs import documents_from_texts
from saeembed.queries import named_queries, run_query
from saeembed.store import Store
from tests.fakes import ENCODER_FIELDS


@pytest.fixture
def store(tmp_path):
    """Corpus A: 3 docs, corpus B: 2 docs. Feature 5 is in A0, A1, B0; feature 7 in A2 only."""
    store = Store(tmp_path / "s.duckdb")
    a, _ = documents_from_texts(["good film here", "great acting", "bad plot"])
    b, _ = documents_from_texts(["nice movie", "stocks fell"])
    store.add_documents("A", a)
    store.add_documents("B", b)
    enc, _ = store.get_or_create_encoder("fp", ENCODER_FIELDS)
    ids = {
        **dict(zip(["A0", "A1", "A2"], a["doc_id"], strict=True)),
        **dict(zip(["B0", "B1"], b["doc_id"], strict=True)),
    }
    encoded = pa.table(
        {
            "doc_id": list(ids.values()),
            "n_tokens": [3, 2, 2, 2, 2],
            "truncated": [False] * 5,
            "n_features": [1, 1, 1, 1, 0],
        }
    )
    # (doc, feature, value, n_tokens, peak_token, peak_start, peak_end)
    acts = [
        ("A0", 5, 1.0, 1, 0, 0, 4),
        ("A1", 5, 3.0, 2, 0, 0, 5),
        ("A2", 7, 2.0, 1, 0, 0, 3),
        ("B0", 5, 0.5, 1, 1, 5, 10),
    ]
    activations = pa.table(
        {
            "doc_id": [ids[d] for d, *_ in acts],
            "feature": pa.array([r[1] for r in acts], pa.int32()),
            "value": pa.array([r[2] for r in acts], pa.float32()),
            "n_tokens": pa.array([r[3] for r in acts], pa.int32()),
            "peak_token": pa.array([r[4] for r in acts], pa.int32()),
            "peak_start": pa.array([r[5] for r in acts], pa.int32()),
            "peak_end": pa.array([r[6] for r in acts], pa.int32()),
            "value_sum": pa.array([r[2] * r[3] for r in acts], pa.float32()),
        }
    )
    store.write_encoded(enc.encoder_id, encoded, activations)
    store.con.execute(
        "INSERT INTO features (encoder_id, feature, label) VALUES (1, 5, 'positive words')"
    ).complete()
    store.ids = ids
    yield store
    store.close()


def test_every_named_query_is_documented():
    for query in named_queries().values():
        assert query.description, query.name
        assert all(p.help for p in query.params), query.name


def test_feature_frequencies(store):
    rows = (
        run_query(store, "feature_frequencies")
        .select("corpus", "feature", "label", "n_docs", "corpus_docs", "freq", "max_value")
        .rows()
    )
    assert rows == [
        ("A", 5, "positive words", 2, 3, pytest.approx(2 / 3), 3.0),
        ("A", 7, None, 1, 3, pytest.approx(1 / 3), 2.0),
        ("B", 5, "positive words", 1, 2, 0.5, 0.5),
    ]
    only_b = run_query(store, "feature_frequencies", corpus="B", encoder_id="m-L1")
    assert only_b.select("corpus", "feature", "n_docs").rows() == [("B", 5, 1)]
    assert run_query(store, "feature_frequencies", min_docs=2).height == 1


def test_top_documents_marks_the_peak(store):
    frame = run_query(store, "top_documents", feature=5)
    assert frame["doc_id"].to_list() == [store.ids["A1"], store.ids["A0"], store.ids["B0"]]
    assert frame["peak_text"].to_list() == ["great", "good", "movie"]
    assert frame["context"].to_list() == ["«great» acting", "«good» film here", "nice «movie»"]
    assert run_query(store, "top_documents", feature=5, corpus="B", limit=1)[
        "doc_id"
    ].to_list() == [store.ids["B0"]]


def test_document_features(store):
    frame = run_query(store, "document_features", doc_id=store.ids["A1"])
    assert frame.select("feature", "label", "value", "active_tokens", "peak_text").rows() == [
        (5, "positive words", 3.0, 2, "great")
    ]
    assert run_query(store, "document_features", doc_id=store.ids["B1"]).height == 0


def test_corpus_summary(store):
    frame = run_query(store, "corpus_summary")
    assert frame.select(
        "corpus", "encoder_id", "documents", "encoded", "tokens", "mean_features"
    ).rows() == [("A", 1, 3, 3, 7, 1.0), ("B", 1, 2, 2, 4, 0.5)]


def test_parameter_errors(store):
    with pytest.raises(StoreError, match="needs -p feature"):
        run_query(store, "top_documents")
    with pytest.raises(StoreError, match="has no parameter 'colour'"):
        run_query(store, "top_documents", feature=5, colour="red")
    with pytest.raises(StoreError, match="no named query 'nope'"):
        run_query(store, "nope")
