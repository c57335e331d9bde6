"""The two sides of a diff: which documents each side holds, read once per diff and shared by
the concept table, the themes, the examples and the report."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from saeembed.analysis.doc_filter import filtered, where_sql
from saeembed.errors import InputError
from saeembed.store import Encoder, Store


def check_sides(store: Store, corpora_a: list[str], corpora_b: list[str]) -> None:
    """Both sides name corpora of the store, and none is on both."""
    if not corpora_a or not corpora_b:
        raise InputError("a diff needs documents on both sides; give A and at least one B")
    for corpus in [*corpora_a, *corpora_b]:
        store.require_corpus(corpus)
    overlap = sorted(set(corpora_a) & set(corpora_b))
    if overlap:
        raise InputError(f"corpus {overlap[0]!r} is on both sides of the diff; drop it from one")


@dataclass(frozen=True)
class Sides:
    """The documents a diff compares, read once and shared by everything that needs them (the
    concept table, the themes, the examples, the report): one row per (document, side) of the
    documents ``encoder`` encoded in a corpus of side A or of side B (a document in a corpus of
    each side is on both) and passing the ``where`` filter, when there is one."""

    corpora_a: tuple[str, ...]
    corpora_b: tuple[str, ...]
    doc_id: np.ndarray  # int64
    is_a: np.ndarray  # bool
    where: str | None = None

    @property
    def size_a(self) -> int:
        return int(self.is_a.sum())

    @property
    def size_b(self) -> int:
        return len(self.is_a) - self.size_a

    @property
    def a(self) -> np.ndarray:
        return self.doc_id[self.is_a]

    @property
    def b(self) -> np.ndarray:
        return self.doc_id[~self.is_a]

    def table(self):
        """``(doc_id, is_a)`` as an Arrow table (for a temporary DuckDB table)."""
        import pyarrow as pa

        return pa.table({"doc_id": self.doc_id, "is_a": self.is_a})


def read_sides(
    store: Store,
    encoder: Encoder,
    corpora_a: list[str],
    corpora_b: list[str],
    where: str | None = None,
) -> Sides:
    """The `Sides` of a diff of ``corpora_a`` against ``corpora_b``, only the documents passing
    ``where`` when given (`saeembed.analysis.doc_filter`: on a read-only store); an error when a
    side has no such document ``encoder`` encoded."""
    check_sides(store, corpora_a, corpora_b)
    condition = where_sql(where, encoder) if where else "true"
    query = f"""
        SELECT DISTINCT d.doc_id, list_contains($a, d.corpus) AS is_a FROM documents d
        SEMI JOIN encoded_documents e ON e.doc_id = d.doc_id AND e.encoder_id = $encoder
        WHERE (list_contains($a, d.corpus) OR list_contains($b, d.corpus)) AND ({condition})
        ORDER BY d.doc_id, is_a
        """
    params = {"a": list(corpora_a), "b": list(corpora_b), "encoder": encoder.encoder_id}
    rows = filtered(store, query, params, where)
    sides = Sides(tuple(corpora_a), tuple(corpora_b), rows["doc_id"].to_numpy(),
                  rows["is_a"].to_numpy().astype(bool), where)  # fmt: skip
    if not sides.size_a or not sides.size_b:
        empty = "A" if not sides.size_a else "B"
        if where:
            raise InputError(
                f"side {empty} has no document passing --where {where!r}; loosen the filter"
            )
        raise InputError(
            f"side {empty} has no documents encoded by {encoder.name}; encode it first"
        )
    return sides
