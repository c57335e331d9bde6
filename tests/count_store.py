"""A constructed store with exactly known concept counts per corpus, for diff tests."""

from __future__ import annotations

from saeembed.inputs import documents_from_texts
from saeembed.store import Store
from tests.fakes import ENCODER_FIELDS, write_constructed


def build_count_store(path, sizes: dict[str, int], counts: dict[int, dict[str, int]]) -> Store:
    """Corpus c has sizes[c] documents; feature f is active (value 1 + f/10 + a little more for earlier documents) in the first
    counts[f][c] documents of corpus c. Document i of every corpus has ext_id "i"."""
    store = Store(path)
    encoder, _ = store.get_or_create_encoder("fp-counts", ENCODER_FIELDS)
    for corpus, n in sizes.items():
        texts = [f"{corpus} document {i}" for i in range(n)]
        docs, _ = documents_from_texts(texts)
        docs = docs.with_columns(docs["row_idx"].cast(str).alias("ext_id"))
        store.add_documents(corpus, docs)
        ids = docs["doc_id"].to_list()
        rows = [
            (ids[i], f, 1.0 + f / 10 + (n - i) / 10000, 0, len(corpus))
            for f, per in counts.items()
            for i in range(per.get(corpus, 0))
        ]
        write_constructed(store, encoder.encoder_id, ids, rows, n_tokens=3)
    return store
