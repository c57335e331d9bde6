"""Stored sentence embeddings: computed once with the real MiniLM, then read back."""

from __future__ import annotations

import numpy as np
import pytest

from saeembed.embedder import load_embedder
from saeembed.embedding_cache import document_embeddings, embedder_key
from saeembed.inputs import doc_id_for
from saeembed.store import Store


@pytest.fixture(scope="module")
def minilm(saeembed_home):
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
