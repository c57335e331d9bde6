"""Kept concept counts: per encoder, corpus and binary measure, how many of the corpus's encoded
documents have each concept (`concept_counts`, feature -1 holding the number of encoded
documents counted). A single-file store updates them in the transaction that writes the rows
they count (`Store.write_encoded`, `Store.insert_documents`); shard directories keep presence
counts in each shard (`saeembed.shards`). A diff of whole corpora reads them instead of every
activation row. Counts under "strong" exist once the encoder's strong thresholds do
(`saeembed.analysis.measures.ensure_thresholds` fills them), and are used only while their
document count equals the presence count (so a stale count is never read)."""

from __future__ import annotations

import duckdb
import polars as pl

STRONG_FRACTION = 0.5  # "strong": maximum above this fraction of the concept's reference p99
DOCUMENTS = -1  # the feature number under which a corpus's encoded documents are counted
KEPT_MEASURES = ("presence", "strong")

_UPSERT = (
    "ON CONFLICT (encoder_id, corpus, measure, feature) DO UPDATE SET n_docs = "
    "concept_counts.n_docs + excluded.n_docs"
)


def count_sql(encoder_sql: str, activations: str, encoded: str, measures=KEPT_MEASURES) -> str:
    """(encoder_id, corpus, measure, feature, n_docs) counted over the ``activations`` and
    ``encoded`` relations of ``encoder_sql`` joined with `documents`, under ``measures``
    (strong needs the encoder's thresholds)."""
    conditions = {
        "presence": ("", "a.value > 0"),
        "strong": (
            f"JOIN feature_thresholds t ON t.encoder_id = {encoder_sql} AND t.feature = a.feature",
            f"a.value > 0 AND a.value > {STRONG_FRACTION} * t.p99",
        ),
    }
    parts = []
    for measure in measures:
        join, condition = conditions[measure]
        parts += [
            f"""SELECT {encoder_sql} AS encoder_id, d.corpus, '{measure}' AS measure, a.feature,
                       count(*) AS n_docs
                FROM {activations} a JOIN documents d ON d.doc_id = a.doc_id {join}
                WHERE {condition} GROUP BY ALL""",
            f"""SELECT {encoder_sql}, d.corpus, '{measure}', {DOCUMENTS}, count(*)
                FROM {encoded} e JOIN documents d ON d.doc_id = e.doc_id GROUP BY ALL""",
        ]
    return " UNION ALL ".join(parts)


def _measures(con: duckdb.DuckDBPyConnection, encoder_id: int) -> tuple[str, ...]:
    """The measures kept for an encoder now: strong once its thresholds exist."""
    return KEPT_MEASURES if has_thresholds(con, encoder_id) else ("presence",)


def own_table(con: duckdb.DuckDBPyConnection, name: str) -> str:
    """The file's own table ``name``, past any temporary view of that name (a shard
    directory's views shadow its analysis file's tables)."""
    database = con.execute("SELECT current_database()").fetchall()[0][0]
    return f'"{database}".main.{name}'


def has_thresholds(con: duckdb.DuckDBPyConnection, encoder_id: int) -> bool:
    return bool(
        con.execute(
            "SELECT count(*) FROM feature_thresholds WHERE encoder_id = ?", [encoder_id]
        ).fetchall()[0][0]
    )


def add_batch(con: duckdb.DuckDBPyConnection, encoder_id: int) -> None:
    """Inside `write_encoded`'s transaction: count the batch (``batch_activations``,
    ``batch_encoded``) into every corpus that holds its documents."""
    query = count_sql(
        str(int(encoder_id)), "batch_activations", "batch_encoded", _measures(con, encoder_id)
    )
    con.execute(f"INSERT INTO concept_counts {query} {_UPSERT}")


def add_documents(con: duckdb.DuckDBPyConnection, corpus: str, new_ids: str) -> None:
    """Inside `insert_documents`' transaction, after the insert: documents new to ``corpus``
    (the relation ``new_ids`` of their ``doc_id``) that an encoder encoded already, while in
    another corpus, count into ``corpus`` too."""
    encoders = con.execute(
        f"SELECT DISTINCT encoder_id FROM encoded_documents e "
        f"SEMI JOIN {new_ids} n ON n.doc_id = e.doc_id"
    ).fetchall()
    for (encoder_id,) in encoders:
        encoded = (
            f"(SELECT e.doc_id FROM encoded_documents e SEMI JOIN {new_ids} n "
            f"ON n.doc_id = e.doc_id WHERE e.encoder_id = {int(encoder_id)})"
        )
        activations = (
            f"(SELECT a.* FROM activations a SEMI JOIN {new_ids} n ON n.doc_id = a.doc_id "
            f"WHERE a.encoder_id = {int(encoder_id)})"
        )
        query = count_sql(str(int(encoder_id)), activations, encoded, _measures(con, encoder_id))
        # only this corpus: the documents' other corpora have counted them already
        con.execute(
            f"INSERT INTO concept_counts SELECT * FROM ({query}) c WHERE c.corpus = ? {_UPSERT}",
            [corpus],
        )


def recount(con: duckdb.DuckDBPyConnection, encoder_id: int, measures=KEPT_MEASURES) -> None:
    """Replace the encoder's kept counts under ``measures`` with a full recount (a migration, or
    the strong counts when the thresholds are first computed). Writes the file's own table
    (in a shard directory, where presence counts live in the shards, only strong ones)."""
    listed = ", ".join(f"'{m}'" for m in measures)
    table = own_table(con, "concept_counts")
    con.execute(f"DELETE FROM {table} WHERE encoder_id = ? AND measure IN ({listed})", [encoder_id])
    query = count_sql(
        str(int(encoder_id)),
        f"(SELECT * FROM activations WHERE encoder_id = {int(encoder_id)})",
        f"(SELECT * FROM encoded_documents WHERE encoder_id = {int(encoder_id)})",
        measures,
    )
    con.execute(f"INSERT INTO {table} {query}")


def kept_counts(con, encoder_id: int, corpus: str, measure: str):
    """(features, counts, n_docs) kept for one corpus under ``measure``, or None when they are
    not kept or are stale (their document count differs from the presence count)."""
    rows = con.execute(
        "SELECT measure, feature, n_docs FROM concept_counts WHERE encoder_id = ? AND corpus = ? "
        "AND measure IN ('presence', ?) ORDER BY feature",
        [encoder_id, corpus, measure],
    ).fetchall()
    sizes = {m: n for m, f, n in rows if f == DOCUMENTS}
    if measure not in sizes or sizes.get("presence") != sizes[measure]:
        return None
    kept = [(f, n) for m, f, n in rows if m == measure and f != DOCUMENTS]
    return [f for f, _ in kept], [n for _, n in kept], sizes[measure]


def kept_moments(con, encoder_id: int, corpus_a: str, corpus_b: str, measure: str):
    """(feature, n_a, n_b) from the kept counts of two whole corpora, and their sizes; None
    when either side's counts under ``measure`` are not kept (or stale, or empty)."""
    if measure not in KEPT_MEASURES:
        return None
    a = kept_counts(con, encoder_id, corpus_a, measure)
    b = kept_counts(con, encoder_id, corpus_b, measure)
    if a is None or b is None or not a[2] or not b[2]:
        return None
    schema = {"feature": pl.Int32, "n": pl.Int64}
    side_a = pl.DataFrame({"feature": a[0], "n": a[1]}, schema=schema).rename({"n": "n_a"})
    side_b = pl.DataFrame({"feature": b[0], "n": b[1]}, schema=schema).rename({"n": "n_b"})
    moments = side_a.join(side_b, on="feature", how="full", coalesce=True).fill_null(0)
    return moments.sort("feature"), a[2], b[2]
