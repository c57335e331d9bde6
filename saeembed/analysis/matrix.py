"""An encoder's documents as a sparse documents x concepts matrix (read with one SQL query), the
shared input of correlation analyses. Documents can be capped to a fixed random sample."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from saeembed.store import Encoder, Store

log = logging.getLogger(__name__)


@dataclass
class ConceptMatrix:
    doc_ids: np.ndarray  # int64 [n_docs], sorted
    values: sp.csc_matrix  # float32 [n_docs, d_sae], pooled activation (0 = absent)

    @property
    def n_docs(self) -> int:
        return len(self.doc_ids)

    @property
    def presence(self) -> sp.csc_matrix:
        return (self.values > 0).astype(np.float32).tocsc()


def load_matrix(
    store: Store,
    encoder: Encoder,
    *,
    corpus: str | None = None,
    threshold: float = 0.0,
    max_docs: int | None = None,
) -> ConceptMatrix:
    """Documents encoded by ``encoder`` (of ``corpus``, if given; at most ``max_docs``, a sample
    fixed by document id) and their activations above ``threshold``."""
    doc_ids = store.encoded_doc_ids(encoder, corpus, max_docs)
    store.con.register("matrix_docs", pa.table({"doc_id": doc_ids}))
    try:
        acts = store.con.sql(
            """
            SELECT a.doc_id, a.feature, a.value FROM activations a
            SEMI JOIN matrix_docs m ON m.doc_id = a.doc_id
            WHERE a.encoder_id = ? AND a.value > ?
            """,
            params=[encoder.encoder_id, threshold],
        ).fetchnumpy()
    finally:
        store.con.unregister("matrix_docs")
    rows = np.searchsorted(doc_ids, np.asarray(acts["doc_id"]))
    values = sp.csc_matrix(
        (np.asarray(acts["value"], np.float32), (rows, np.asarray(acts["feature"], np.int64))),
        shape=(len(doc_ids), encoder.d_sae),
    )
    log.info("concept matrix: %d documents, %d activations", len(doc_ids), values.nnz)
    return ConceptMatrix(doc_ids, values)
