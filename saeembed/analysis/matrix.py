"""An encoder's documents as a sparse documents x concepts matrix of one concept measure (read
with one SQL query), the shared input of correlation, clustering, retrieval by example and
preference fits. Documents can be capped to a fixed random sample."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from saeembed.analysis.measures import Measure, prepare, rows_sql
from saeembed.store import Encoder, Store

log = logging.getLogger(__name__)


@dataclass
class ConceptMatrix:
    doc_ids: np.ndarray  # int64 [n_docs], sorted
    values: sp.csc_matrix  # float32 [n_docs, d_sae], the measure's value (0 = absent)
    measure: Measure

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
    measure: str | Measure = "max",
    doc_ids: np.ndarray | None = None,
) -> ConceptMatrix:
    """Documents encoded by ``encoder`` (of ``corpus``, if given; at most ``max_docs``, a sample
    fixed by document id; or exactly the encoded ones of ``doc_ids``) and the ``measure`` of
    their concepts whose maximum activation exceeds ``threshold``
    (`saeembed.analysis.measures`)."""
    m = prepare(store, encoder, measure)
    if doc_ids is None:
        doc_ids = store.encoded_doc_ids(encoder, corpus, max_docs)
    else:
        doc_ids = np.unique(np.asarray(doc_ids, dtype=np.int64))
    with store.temporary(matrix_docs={"doc_id": doc_ids}) as con:
        acts = con.sql(
            f"""
            SELECT doc_id, feature, v FROM ({rows_sql(m, "$1")} AND a.value > $2) x
            SEMI JOIN matrix_docs d USING (doc_id)
            """,
            params=[encoder.encoder_id, threshold],
        ).fetchnumpy()
    rows = np.searchsorted(doc_ids, np.asarray(acts["doc_id"]))
    values = sp.csc_matrix(
        (np.asarray(acts["v"], np.float32), (rows, np.asarray(acts["feature"], np.int64))),
        shape=(len(doc_ids), encoder.d_sae),
    )
    log.info("concept matrix (%s): %d documents, %d activations", m.name, len(doc_ids), values.nnz)
    return ConceptMatrix(doc_ids, values, m)
