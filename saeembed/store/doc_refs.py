"""Short references to documents, for people: ``CORPUS:ROW`` (``fresh:12``, the corpus's 13th
input row) and ``CORPUS:ROW.CHUNK`` for a passage of a chunked document (``books:3.2``). A
document's stored ``doc_id`` is a 64-bit content hash, unchanged; results show these references
beside it, and every option that takes a document takes either."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import polars as pl
import pyarrow as pa

from saeembed.errors import InputError
from saeembed.store.store import Store

_REF = re.compile(r"^(?P<corpus>.+):(?P<row>\d+)(?:\.(?P<chunk>\d+))?$")


def resolve_doc(store: Store, ref: str | int) -> int:
    """The ``doc_id`` that ``ref`` names: a ``CORPUS:ROW[.CHUNK]`` reference or a doc_id."""
    if isinstance(ref, (int, np.integer)):
        return int(ref)
    text = str(ref).strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    match = _REF.match(text)
    if match is None:
        raise InputError(
            f"{text!r} names no document; write CORPUS:ROW (e.g. fresh:12, as results show it) "
            "or a doc_id"
        )
    corpus, row = match["corpus"], int(match["row"])
    chunk = None if match["chunk"] is None else int(match["chunk"])
    found = store.sql(
        "SELECT doc_id FROM documents WHERE corpus = $corpus AND row_idx = $row "
        "AND coalesce(chunk_idx, 0) = $chunk ORDER BY doc_id LIMIT 1",
        {"corpus": corpus, "row": row, "chunk": chunk or 0},
    )
    if found.is_empty():
        store.require_corpus(corpus)
        raise InputError(
            f"no document {text} in {store.path}: corpus {corpus!r} has rows 0.."
            f"{store.count_documents(corpus) - 1} (chunks: CORPUS:ROW.CHUNK)"
        )
    return int(found["doc_id"][0])


def resolve_docs(store: Store, refs: Sequence[str | int]) -> list[int]:
    return [resolve_doc(store, ref) for ref in refs]


def doc_refs(store: Store, doc_ids, corpora=None) -> list[str]:
    """The short reference of each document (in the given corpus, when ``corpora`` says which:
    one text can sit in several)."""
    ids = np.asarray(doc_ids, dtype=np.int64)
    wanted = pa.table(
        {
            "i": pa.array(np.arange(len(ids), dtype=np.int64)),
            "doc_id": pa.array(ids),
            "corpus": pa.array(list(corpora) if corpora is not None else [None] * len(ids),
                               type=pa.string()),
        }
    )  # fmt: skip
    with store.temporary(wanted_refs=wanted):
        rows = store.sql(
            """
            SELECT w.i, arg_min(d.corpus || ':' || d.row_idx::VARCHAR
                       || coalesce('.' || d.chunk_idx::VARCHAR, ''), d.corpus) AS ref
            FROM wanted_refs w JOIN documents d
              ON d.doc_id = w.doc_id AND (w.corpus IS NULL OR d.corpus = w.corpus)
            GROUP BY w.i
            """
        )
    found = dict(zip(rows["i"].to_list(), rows["ref"].to_list(), strict=True))
    return [found.get(i, str(int(d))) for i, d in enumerate(ids)]


def with_refs(store: Store, frame: pl.DataFrame, column: str = "doc") -> pl.DataFrame:
    """``frame`` (with ``doc_id`` and maybe ``corpus``) with the short reference ``column``
    placed just before ``doc_id``."""
    corpora = frame["corpus"].to_list() if "corpus" in frame.columns else None
    refs = pl.Series(column, doc_refs(store, frame["doc_id"].to_numpy(), corpora), pl.String)
    at = frame.columns.index("doc_id")
    return frame.insert_column(at, refs)
