"""Stored sentence embeddings: computed once with the real MiniLM, then read back."""

from __future__ import annotations

import numpy as np
import pytest

from saeembed.embedder import load_embedder
from saeembed.embedding_cache import document_embeddings, embedder_key
from saeembed.inputs import doc_id_for
from saeembed.store import Store


@pytest.fixture(scope="module")
def minilm(saeembed_home, registry):
    return load_embedder("default")


def test_embeddings_are_computed_once_then_read(tmp_path, minilm, monkeypatch):
    texts = ["a cat sat on the mat", "stock markets fell", "a cat sat on the mat", "rain"]
    ids = np.array([doc_id_for(t) for t in texts])
    with Store(tmp_path / "e.duckdb") as store:
        first = document_embeddings(store, ids, texts, minilm)
        np.testing.assert_allclose(first, minilm.embed(texts), atol=1e-6)
        n = store.sql("SELECT count(*) AS n FROM text_embeddings")["n"][0]
        assert n == 3  # the repeated text is stored once
        assert store.sql("SELECT DISTINCT embedder FROM text_embeddings")["embedder"][0] == (
            embedder_key(minilm)
        )

        def refuse(texts, batch_size=64):
            raise AssertionError(f"re-embedded {len(texts)} texts")

        monkeypatch.setattr(minilm, "embed", refuse)
        again = document_embeddings(store, ids[::-1], texts[::-1], minilm)
        np.testing.assert_array_equal(again, first[::-1])


def test_a_read_only_store_is_read_and_embedded_in_memory(tmp_path, minilm):
    """A reader (a read-only connection) gets the stored embeddings plus the missing ones
    computed in memory, in order, and writes nothing."""
    texts = ["a cat sat on the mat", "stock markets fell", "rain", "snow"]
    ids = np.array([doc_id_for(t) for t in texts])
    with Store(tmp_path / "e.duckdb") as store:
        document_embeddings(store, ids[:2], texts[:2], minilm)  # two of four cached
    with Store(tmp_path / "e.duckdb", read_only=True) as store:
        got = document_embeddings(store, ids[::-1], texts[::-1], minilm)
        assert store.sql("SELECT count(*) AS n FROM text_embeddings")["n"][0] == 2
    np.testing.assert_allclose(got, minilm.embed(texts[::-1]), atol=1e-6)


def test_dense_search_reads_a_store_it_cannot_write(tmp_path, minilm, monkeypatch):
    from saeembed.api import search
    from tests.fakes import ENCODER_FIELDS, write_constructed

    db = tmp_path / "s.duckdb"
    texts = ["cats purr on warm mats", "the stock market fell sharply", "heavy rain all day"]
    with Store(db) as store:
        from saeembed.inputs import documents_from_texts

        docs, _ = documents_from_texts(texts)
        store.add_documents("c", docs)
        encoder, _ = store.get_or_create_encoder("x", {**ENCODER_FIELDS, "d_sae": 4})
        ids = docs["doc_id"].to_list()
        rows = [(doc_id, i, 1.0, 0, 4) for i, doc_id in enumerate(ids)]
        write_constructed(store, encoder.encoder_id, ids, rows, 4)
    monkeypatch.setattr(Store, "can_write", staticmethod(lambda path: False))
    found = search(db, "stock prices dropped", mode="dense", top=1)
    assert found.hits["text"].to_list() == ["the stock market fell sharply"]
    with Store(db, read_only=True) as store:
        assert store.sql("SELECT count(*) AS n FROM text_embeddings")["n"][0] == 0
