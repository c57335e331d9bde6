"""A shard directory opened as a store: its small `analysis.duckdb` (a saeembed store that holds
the corpora and encoder rows and everything analyses write) with temporary views named
`documents`, `encoded_documents` and `activations` over the manifest's Parquet files. The views
shadow the analysis file's own (empty) tables, so every analysis reads shards with the SQL it
runs on a single-file store, and the shards stay write-once."""

from __future__ import annotations

from pathlib import Path

import duckdb

from saeembed.errors import StoreError
from saeembed.store.counts import own_table
from saeembed.store.shard_layout import ANALYSIS_DB, check_shards, read_header, read_manifest

_COLUMNS = {
    "documents": "corpus, doc_id, row_idx, ext_id, text, meta::JSON AS meta, context, parent_id, "
    "chunk_idx",
    "encoded": "{encoder_id}::INTEGER AS encoder_id, doc_id, n_tokens, truncated, n_features, "
    "encoded_at",
    "activations": "{encoder_id}::INTEGER AS encoder_id, doc_id, feature, value, n_tokens, "
    "peak_token, peak_start, peak_end, value_sum",
    # the shards' presence counts summed per corpus, beside the file's own (strong) counts
    "counts": "{encoder_id}::INTEGER AS encoder_id, corpus, 'presence' AS measure, feature, "
    "sum(n_docs)::BIGINT AS n_docs",
}
_TAILS = {"counts": " GROUP BY ALL UNION ALL SELECT * FROM {own} WHERE measure <> 'presence'"}
_VIEWS = {
    "documents": "documents",
    "encoded": "encoded_documents",
    "activations": "activations",
    "counts": "concept_counts",
}


def analysis_db(root: Path) -> Path:
    return root / ANALYSIS_DB


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def sync_rows(con: duckdb.DuckDBPyConnection, header: dict) -> None:
    """The analysis file's encoder and corpus rows, as the header gives them (rebuilds them
    when `analysis.duckdb` was lost or copied without the shards' last corpora)."""
    encoder = header["encoder"]
    known = con.execute(
        "SELECT fingerprint FROM encoders WHERE encoder_id = ?", [encoder["encoder_id"]]
    ).fetchall()
    if not known:
        cols = ", ".join(encoder)
        marks = ", ".join("?" for _ in encoder)
        con.execute(f"INSERT INTO encoders ({cols}) VALUES ({marks})", list(encoder.values()))
    for corpus, row in header.get("corpora", {}).items():
        con.execute(
            "INSERT INTO corpora (corpus, source, text_col, id_col) VALUES (?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            [corpus, row.get("source"), row.get("text_col"), row.get("id_col")],
        )


def attach_shards(con: duckdb.DuckDBPyConnection, root: Path) -> dict:
    """Create the temporary views over the manifest's shards on ``con``; returns the header.
    A missing or truncated shard, or a shard of another encoder, is a one-line error."""
    header = read_header(root)
    encoder = header["encoder"]
    shards = read_manifest(root)
    check_shards(root, shards, encoder["fingerprint"])
    stored = con.execute(
        "SELECT encoder_id FROM encoders WHERE fingerprint = ?", [encoder["fingerprint"]]
    ).fetchall()
    if not stored:
        raise StoreError(
            f"{analysis_db(root)} does not hold the encoder of {root}; delete it and open the "
            "directory once writable (for example `saeembed info DIR`) to rebuild it"
        )
    base = root.resolve()
    for table, view in _VIEWS.items():
        files = [str(base / s.files[table].path) for s in shards if table in s.files]
        if not files:
            con.execute(f"DROP VIEW IF EXISTS temp.{view}")
            continue  # the analysis file's empty table stands in
        listed = ", ".join(_literal(f) for f in files)
        columns = _COLUMNS[table].format(encoder_id=int(stored[0][0]))
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT {columns} FROM read_parquet([{listed}], "
            "hive_partitioning = true, hive_types = {'corpus': VARCHAR})"
            + _TAILS.get(table, "").format(own=own_table(con, "concept_counts"))
        )
    return header
