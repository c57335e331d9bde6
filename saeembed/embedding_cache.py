"""Dense sentence embeddings of stored documents, computed once per embedder and kept in the
store's `text_embeddings` table: the dense baselines (the preference probe, the pair SAE's
inputs) read them from there on every later run. A document's embedding is of its text alone
(never its context)."""

from __future__ import annotations

import logging

import numpy as np
import polars as pl
import pyarrow as pa

from saeembed.store import Store

log = logging.getLogger(__name__)
BATCH = 2048  # documents embedded and committed at a time


def embedder_key(embedder) -> str:
    """How an embedder is named in `text_embeddings`: model id and revision."""
    return f"{embedder.model_id}@{embedder.revision}"


def document_embeddings(
    store: Store, doc_ids: np.ndarray, texts: list[str], embedder="default"
) -> np.ndarray:
    """Embeddings [len(doc_ids), dim] of documents (``texts[i]`` is the text of ``doc_ids[i]``;
    repeats are fine), reading what the store has and embedding and storing the rest, a batch
    per transaction, so an interrupted run keeps what it finished."""
    from saeembed.embedder import load_embedder

    model = load_embedder(embedder) if isinstance(embedder, str) else embedder
    key = embedder_key(model)
    frame = pl.DataFrame({"doc_id": np.asarray(doc_ids, np.int64), "text": texts}).unique(
        "doc_id", keep="first", maintain_order=True
    )
    known = _stored(store, key, frame["doc_id"])
    missing = frame.filter(~pl.col("doc_id").is_in(known["doc_id"].implode()))
    if missing.height:
        log.info("embedding %d documents with %s", missing.height, key)
        if store.read_only:
            log.info("the store is read-only: these embeddings are not kept for the next run")
    computed = []
    for start in range(0, missing.height, BATCH):
        part = missing.slice(start, BATCH)
        vectors = model.embed(part["text"].to_list())
        table = pa.table({
            "doc_id": pa.array(part["doc_id"].to_numpy()),
            "vector": pa.array(list(vectors), pa.list_(pa.float32())),
        })  # fmt: skip
        if store.read_only:  # a reader embeds what it needs and keeps it in memory
            computed.append(pl.from_arrow(table))
            continue
        with store.transaction(incoming_embeddings=table) as con:
            con.execute(
                "INSERT INTO text_embeddings SELECT ?, doc_id, vector FROM incoming_embeddings "
                "ON CONFLICT DO NOTHING",
                [key],
            )
    stored = _stored(store, key, frame["doc_id"])
    if computed:
        stored = pl.concat([stored, *computed], how="vertical_relaxed")
    matrix = np.stack(stored["vector"].to_list()).astype(np.float32)
    row = {d: i for i, d in enumerate(stored["doc_id"].to_list())}
    return matrix[[row[int(d)] for d in np.asarray(doc_ids)]]


def stored_document_embeddings(store: Store, doc_ids, embedder="default") -> np.ndarray:
    """`document_embeddings` of documents already in ``store``, their texts read from it."""
    ids = np.asarray(doc_ids, dtype=np.int64)
    texts = store.texts(ids)
    text_of = dict(zip(texts["doc_id"].to_list(), texts["text"].to_list(), strict=True))
    return document_embeddings(store, ids, [text_of[int(d)] for d in ids], embedder)


def _stored(store: Store, key: str, doc_ids: pl.Series) -> pl.DataFrame:
    with store.temporary(wanted_embeddings=pl.DataFrame({"doc_id": doc_ids})):
        return store.sql(
            "SELECT t.doc_id, t.vector FROM text_embeddings t "
            "SEMI JOIN wanted_embeddings w ON w.doc_id = t.doc_id WHERE t.embedder = ?",
            [key],
        )
