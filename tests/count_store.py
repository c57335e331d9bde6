"""A constructed store with exactly known concept counts per corpus, for diff tests."""

from __future__ import annotations

import pyarrow as pa

from saeembed.inputs import documents_from_texts
from saeembed.store import Store
from tests.fakes import ENCODER_FIELDS


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
            (ids[i], f, 1.0 + f / 10 + (n - i) / 10000)
            for f, per in counts.items()
            for i in range(per.get(corpus, 0))
        ]
        per_doc = {d: 0 for d in ids}
        for d, _, _ in rows:
            per_doc[d] += 1
        encoded = pa.table(
            {
                "doc_id": ids,
                "n_tokens": [3] * n,
                "truncated": [False] * n,
                "n_features": [per_doc[d] for d in ids],
            }
        )
        activations = pa.table(
            {
                "doc_id": [r[0] for r in rows],
                "feature": pa.array([r[1] for r in rows], pa.int32()),
                "value": pa.array([r[2] for r in rows], pa.float32()),
                "n_tokens": pa.array([1] * len(rows), pa.int32()),
                "peak_token": pa.array([0] * len(rows), pa.int32()),
                "peak_start": pa.array([0] * len(rows), pa.int32()),
                "peak_end": pa.array([len(corpus)] * len(rows), pa.int32()),
            },
            schema=pa.schema(
                [
                    ("doc_id", pa.int64()),
                    ("feature", pa.int32()),
                    ("value", pa.float32()),
                    ("n_tokens", pa.int32()),
                    ("peak_token", pa.int32()),
                    ("peak_start", pa.int32()),
                    ("peak_end", pa.int32()),
                ]
            ),
        )
        store.write_encoded(encoder.encoder_id, encoded, activations)
    return store
