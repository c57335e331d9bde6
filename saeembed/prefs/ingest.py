"""Pair sets in the store: writing a pair table (`saeembed.prefs.pairs`) as a named pair set,
each response a document of a corpus of the same name, and reading pair sets back with their
response texts and, when asked, a relabelled column.

A pair set read with ``context=True`` stores every response with its prompt as the document's
context (encoded before the response, never pooled), so the same reply to two different prompts
is two documents. Writing is one transaction: a pair set is either all there or absent, and
writing the same pairs again changes nothing."""

from __future__ import annotations

import json

import numpy as np
import polars as pl

from saeembed.embedding_cache import document_embeddings
from saeembed.errors import InputError, StoreError
from saeembed.inputs import doc_id_for
from saeembed.store import Store

STORED_PAIR_COLUMNS = ["pair_id", "prompt", "doc_a", "doc_b", "label", "annotator",
                       "conversation_id", "prompt_group"]  # fmt: skip


def response_documents(pairs: pl.DataFrame, *, context: bool) -> pl.DataFrame:
    """The documents of a pair table's responses (one per distinct response, or per distinct
    (prompt, response) with ``context``), and the pair table with ``doc_a``/``doc_b`` ids."""
    rows, ids_a, ids_b, seen = [], [], [], set()
    for pair in pairs.iter_rows(named=True):
        ctx = pair["prompt"] if context else None
        for side in ("a", "b"):
            text = pair[f"response_{side}"]
            doc_id = doc_id_for(text, ctx)
            (ids_a if side == "a" else ids_b).append(doc_id)
            if doc_id in seen:
                continue
            seen.add(doc_id)
            meta = json.dumps({"pair_id": pair["pair_id"], "side": side})
            rows.append((doc_id, len(rows), f"{pair['pair_id']}:{side}", text, meta, ctx))
    schema = {"doc_id": pl.Int64, "row_idx": pl.Int64, "ext_id": pl.String, "text": pl.String,
              "meta": pl.String, "context": pl.String}  # fmt: skip
    docs = pl.DataFrame(rows, schema=schema, orient="row")
    linked = pairs.with_columns(
        pl.Series("doc_a", ids_a, dtype=pl.Int64), pl.Series("doc_b", ids_b, dtype=pl.Int64)
    )
    return docs, linked.select(STORED_PAIR_COLUMNS)


def add_pairs(
    store: Store, name: str, pairs: pl.DataFrame, *, context: bool = False, source: str | None
) -> int:
    """Store ``pairs`` (a `saeembed.prefs.pairs` table) as pair set ``name`` and its responses as
    corpus ``name``; returns how many pairs were new (0 when exactly these pairs are there)."""
    docs, linked = response_documents(pairs, context=context)
    if pair_set_stored(store, name, linked, context=context):
        return 0
    with store.transaction(
        incoming_documents=Store.incoming_documents(name, docs), incoming_pairs=linked
    ) as con:
        store.insert_documents(con, name, source, RESPONSE_COLUMNS, None)
        insert_pair_rows(con, name, source, context)
    return linked.height


RESPONSE_COLUMNS = "response_a/response_b"  # what `corpora.text_col` says of a pair set


def pair_set_stored(store: Store, name: str, linked: pl.DataFrame, *, context: bool) -> bool:
    """Whether pair set ``name`` holds exactly these pairs already; an error when it holds
    others, or when ``name`` is a corpus that is not a pair set."""
    if not name or not name.strip():
        raise InputError("a pair set needs a name; pass --pairs NAME")
    known = store.sql("SELECT context FROM pair_sets WHERE pairs = ?", [name])
    if known.height:
        stored = store.sql(
            "SELECT pair_id, doc_a, doc_b, label FROM pairs WHERE pairs = ? ORDER BY pair_id",
            [name],
        )
        incoming = linked.select("pair_id", "doc_a", "doc_b", "label").sort("pair_id")
        if bool(known["context"][0]) != context or not stored.equals(incoming):
            raise StoreError(
                f"pair set {name!r} in {store.path} holds different pairs (or was encoded "
                f"{'with' if known['context'][0] else 'without'} context); choose another --pairs name"
            )
        return True
    if name in store.corpora():
        raise StoreError(
            f"{store.path} already has a corpus {name!r} that is not a pair set; "
            "choose another --pairs name"
        )
    return False


def insert_pair_rows(con, name: str, source: str | None, context: bool) -> None:
    """Inside a transaction with ``incoming_pairs`` registered: the pair set's rows."""
    con.execute(
        "INSERT INTO pair_sets (pairs, corpus, source, context) VALUES (?, ?, ?, ?)",
        [name, name, source, context],
    )
    con.execute(
        f"INSERT INTO pairs SELECT ?, {', '.join(STORED_PAIR_COLUMNS)} FROM incoming_pairs",
        [name],
    )


def pair_sets(store: Store) -> pl.DataFrame:
    """The pair sets of a store with their pair counts."""
    return store.sql(
        """
        SELECT s.pairs, s.corpus, count(p.pair_id) AS n_pairs, s.context, s.source, s.created_at
        FROM pair_sets s LEFT JOIN pairs p USING (pairs) GROUP BY ALL ORDER BY s.pairs
        """
    )


def require_pair_set(store: Store, name: str | None) -> str:
    """``name`` if the store has that pair set; with None, the store's only pair set."""
    known = pair_sets(store)["pairs"].to_list()
    if name is None and len(known) == 1:
        return known[0]
    if name in known:
        return name
    have = ", ".join(known) or "none yet; run `saeembed prefs encode` first"
    if name is None:
        raise StoreError(f"{store.path} has several pair sets ({have}); choose one with --pairs")
    raise StoreError(f"no pair set {name!r} in {store.path} (pair sets: {have})")


def load_pairs(store: Store, name: str, *, relabel: str | None = None) -> pl.DataFrame:
    """Pair set ``name`` in ``pair_id`` order: the stored columns, ``text_a``/``text_b`` and,
    with ``relabel``, that relabelling's ``decision`` and ``new_label`` (the label to use: the
    decided one, the original where no decision was recorded, null for dropped pairs)."""
    pairs = store.sql(
        f"""
        SELECT {", ".join("p." + c for c in STORED_PAIR_COLUMNS)}, a.text AS text_a, b.text AS text_b
        FROM pairs p
        JOIN pair_sets s USING (pairs)
        JOIN documents a ON a.corpus = s.corpus AND a.doc_id = p.doc_a
        JOIN documents b ON b.corpus = s.corpus AND b.doc_id = p.doc_b
        WHERE p.pairs = $name ORDER BY p.pair_id
        """,
        {"name": name},
    )
    if relabel is None:
        return pairs
    decisions = store.sql(
        "SELECT pair_id, label AS decided, decision FROM pair_labels WHERE pairs = ? AND relabel = ?",
        [name, relabel],
    )
    if decisions.is_empty():
        raise StoreError(
            f"pair set {name!r} has no relabelling {relabel!r}; record one with `saeembed prefs apply`"
        )
    return pairs.join(decisions, on="pair_id", how="left", maintain_order="left").with_columns(
        pl.when(pl.col("decision") == "drop")
        .then(None)
        .otherwise(pl.coalesce("decided", "label"))
        .alias("new_label")
    )


def dense_differences(store: Store, pairs: pl.DataFrame, embedder="default") -> np.ndarray:
    """Sentence embedding of response A minus that of response B, per pair (MiniLM by default;
    computed once, then read from the store's `text_embeddings`)."""
    ids = np.concatenate([pairs["doc_a"].to_numpy(), pairs["doc_b"].to_numpy()])
    texts = pairs["text_a"].to_list() + pairs["text_b"].to_list()
    vectors = document_embeddings(store, ids, texts, embedder)
    return vectors[: pairs.height] - vectors[pairs.height :]
