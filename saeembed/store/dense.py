"""Dense site vectors in the store (table `dense_vectors`, schema v14): per (encoder, document)
the reader's activations at the encoder's site, mean-pooled over the tokens its SAE pools, as
float32 (`saeembed encode --keep-dense`; made by `saeembed.encoding.dense`). Written with the
document's encoding in one transaction (`Store.write_encoded`) or filled in afterwards for
documents encoded without them (`write_dense`); read back for the analyses by `dense_vectors`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa

from saeembed.errors import StoreError

if TYPE_CHECKING:
    from saeembed.store.store import Encoder, Store

# the columns of a batch of vectors, as `saeembed.encoding.dense.dense_table` makes them
DENSE_SCHEMA = pa.schema(
    [("doc_id", pa.int64()), ("n_tokens", pa.int32()), ("vector", pa.list_(pa.float32()))]
)

# documents of a corpus that an encoder has encoded but holds no dense vector of
_MISSING = """
    FROM documents d
    WHERE d.corpus = $corpus
      AND EXISTS (SELECT 1 FROM encoded_documents e
                  WHERE e.encoder_id = $enc AND e.doc_id = d.doc_id)
      AND NOT EXISTS (SELECT 1 FROM dense_vectors v
                      WHERE v.encoder_id = $enc AND v.doc_id = d.doc_id)
"""


def insert_batch(con: duckdb.DuckDBPyConnection, encoder_id: int) -> None:
    """Inside `Store.write_encoded`'s transaction, with the batch's vectors registered as
    ``batch_dense``: store them beside the batch's rows (a vector already stored makes the whole
    batch roll back, as a document encoded twice does)."""
    con.execute(
        "INSERT INTO dense_vectors (encoder_id, doc_id, n_tokens, vector) "
        "SELECT ?, doc_id, n_tokens, vector FROM batch_dense",
        [encoder_id],
    )


def write_dense(store: Store, encoder_id: int, vectors: pa.Table) -> int:
    """Fill in the vectors of documents already encoded (one transaction); a vector another run
    stored meanwhile is kept, never duplicated. Returns how many were stored."""
    store.require_single_file("store dense vectors in it")
    with store.transaction(batch_dense=vectors) as con:
        return con.execute(
            """
            INSERT INTO dense_vectors (encoder_id, doc_id, n_tokens, vector)
            SELECT ?, b.doc_id, b.n_tokens, b.vector FROM batch_dense b
            WHERE EXISTS (SELECT 1 FROM encoded_documents e
                          WHERE e.encoder_id = ? AND e.doc_id = b.doc_id)
            ON CONFLICT DO NOTHING
            """,
            [encoder_id, encoder_id],
        ).fetchall()[0][0]


def missing_dense(store: Store, encoder_id: int, corpus: str, limit: int) -> pl.DataFrame:
    """Up to ``limit`` documents of ``corpus`` encoded by ``encoder_id`` without a dense vector
    (``doc_id``, ``text``, ``context``), in file order, as `Store.pending_documents` gives them."""
    return store.sql(
        f"SELECT d.doc_id, d.text, d.context {_MISSING} "
        "ORDER BY d.row_idx, d.chunk_idx, d.doc_id LIMIT $limit",
        {"corpus": corpus, "enc": encoder_id, "limit": limit},
    )


def count_missing_dense(store: Store, encoder_id: int, corpus: str, chars: bool = False) -> int:
    """How many documents `missing_dense` has left (with ``chars``: their characters)."""
    what = "coalesce(sum(length(d.text)), 0)" if chars else "count(*)"
    return store.con.execute(
        f"SELECT {what} {_MISSING}", {"corpus": corpus, "enc": encoder_id}
    ).fetchall()[0][0]


def count_dense(store: Store, encoder: Encoder | int, corpus: str | None = None) -> int:
    """Documents (of ``corpus``, if given) with a dense vector of ``encoder``."""
    encoder_id = encoder if isinstance(encoder, int) else encoder.encoder_id
    return store.con.execute(
        """
        SELECT count(*) FROM dense_vectors v WHERE v.encoder_id = $enc AND ($corpus IS NULL
            OR v.doc_id IN (SELECT doc_id FROM documents WHERE corpus = $corpus))
        """,
        {"enc": encoder_id, "corpus": corpus},
    ).fetchall()[0][0]


def dense_vectors(store: Store, encoder: Encoder | int, doc_ids) -> tuple[np.ndarray, np.ndarray]:
    """The dense vectors of ``doc_ids`` (any sequence or array of ids) under ``encoder``, read
    with one query: a float32 matrix ``[len(doc_ids), width]`` in the order of ``doc_ids`` (a
    row of zeros where a document has none), and a bool array saying which rows were found.
    ``width`` is the width of the encoder's site (``d_model`` for the residual stream)."""
    encoder_id = encoder if isinstance(encoder, int) else encoder.encoder_id
    ids = np.asarray(doc_ids, dtype=np.int64).reshape(-1)
    wanted = {"doc_id": pa.array(ids), "pos": pa.array(np.arange(len(ids), dtype=np.int64))}
    with store.temporary(wanted_dense=wanted) as con:
        table = con.sql(
            "SELECT w.pos, v.vector FROM wanted_dense w JOIN dense_vectors v "
            "ON v.doc_id = w.doc_id AND v.encoder_id = ?",
            params=[encoder_id],
        ).to_arrow_table()
    lists = table["vector"].combine_chunks() if table.num_rows else None
    width = len(lists[0]) if lists is not None else _site_width(store, encoder_id)
    matrix = np.zeros((len(ids), width), dtype=np.float32)
    found = np.zeros(len(ids), dtype=bool)
    if lists is None:
        return matrix, found
    values = lists.flatten().to_numpy(zero_copy_only=False)
    if values.size != table.num_rows * width:
        raise StoreError(
            f"the dense vectors of encoder {encoder_id} differ in length; delete its rows of "
            "dense_vectors and encode again with --keep-dense"
        )
    rows = table["pos"].to_numpy()
    matrix[rows] = values.reshape(table.num_rows, width)
    found[rows] = True
    return matrix, found


def _site_width(store: Store, encoder_id: int) -> int:
    """The width the encoder's SAE reads (its recorded ``d_in``), 0 when it records none."""
    found = store.con.execute(
        "SELECT TRY_CAST(config->'sae_cfg'->>'d_in' AS INTEGER) FROM encoders WHERE encoder_id = ?",
        [encoder_id],
    ).fetchall()
    return int(found[0][0]) if found and found[0][0] is not None else 0
