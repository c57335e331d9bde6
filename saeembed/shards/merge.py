"""Loading a shard directory into a single-file store (`saeembed store import DIR --db FILE`):
corpora, documents, the encoder (under the target's own id), its encoded documents and
activations, the pair sets, and the per-feature results analyses kept (labels, strong-presence thresholds,
evidence embeddings), in one transaction, with the encoder's kept counts recounted. Documents and encodings the target already holds
are not added again, so an import can be repeated."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from saeembed.errors import StoreError
from saeembed.store import Store
from saeembed.store.counts import KEPT_MEASURES, has_thresholds, recount
from saeembed.store.shard_layout import check_shards, is_shard_dir, read_header, read_manifest
from saeembed.store.shard_views import analysis_db

# per-feature tables the analysis file keeps for its encoder, carried over with the encoder id
FEATURE_TABLES = ("features", "feature_thresholds", "feature_evidence")
# pair sets recorded in the analysis file, by their keys
PAIR_TABLES = {
    "pair_sets": ("pairs",),
    "pairs": ("pairs", "pair_id"),
    "pair_labels": ("pairs", "pair_id", "relabel"),
}


@dataclass
class ImportReport:
    documents: int
    encoded: int
    activations: int
    encoder: str

    def summary(self) -> str:
        return (
            f"imported {self.documents:,} documents and {self.encoded:,} encoded documents "
            f"({self.activations:,} activations) of encoder {self.encoder}"
        )


def _files(root: Path, shards, table: str) -> str:
    base = root.resolve()
    paths = [str(base / s.files[table].path).replace("'", "''") for s in shards]
    return "[" + ", ".join(f"'{p}'" for p in paths) + "]"


def import_shards(root: str | Path, db: str | Path) -> ImportReport:
    root = Path(root)
    if not is_shard_dir(root):
        raise StoreError(
            f"{root} is not a shard directory (no saeembed-shards.json); pass a directory "
            "written by `saeembed encode FILE --out DIR/`"
        )
    if Path(db).is_dir():
        raise StoreError(f"{db} is a directory; pass the .duckdb file to import into with --db")
    header = read_header(root)
    held = header["encoder"]
    shards = read_manifest(root)
    check_shards(root, shards, held["fingerprint"])
    fields = {k: v for k, v in held.items() if k not in ("encoder_id", "fingerprint", "created_at")}
    fields["config"] = json.loads(fields.get("config") or "{}")
    with Store(db) as target:
        encoder, _ = target.get_or_create_encoder(held["fingerprint"], fields)
        new_id = encoder.encoder_id
        before = target.sql(
            "SELECT (SELECT count(*) FROM documents) AS d, (SELECT count(*) FROM activations) AS a, "
            "(SELECT count(*) FROM encoded_documents) AS e"
        ).row(0)
        source = str(analysis_db(root).resolve()).replace("'", "''")
        with target.transaction() as con:
            for corpus, row in header.get("corpora", {}).items():
                con.execute(
                    "INSERT INTO corpora (corpus, source, text_col, id_col) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT DO NOTHING",
                    [corpus, row.get("source"), row.get("text_col"), row.get("id_col")],
                )
            if shards:
                _copy_rows(con, root, shards, new_id)
            con.execute(f"ATTACH '{source}' AS shard_analysis (READ_ONLY)")
            try:
                old_id = con.execute(
                    "SELECT encoder_id FROM shard_analysis.encoders WHERE fingerprint = ?",
                    [held["fingerprint"]],
                ).fetchall()[0][0]
                for table in FEATURE_TABLES:
                    con.execute(
                        f"INSERT INTO {table} BY NAME SELECT * REPLACE ({new_id} AS encoder_id) "
                        f"FROM shard_analysis.{table} s WHERE s.encoder_id = {int(old_id)} AND "
                        f"NOT EXISTS (SELECT 1 FROM {table} t WHERE t.encoder_id = {new_id} "
                        "AND t.feature = s.feature)"
                    )
                for table, key in PAIR_TABLES.items():
                    match = " AND ".join(f"t.{k} = s.{k}" for k in key)
                    con.execute(
                        f"INSERT INTO {table} BY NAME SELECT * FROM shard_analysis.{table} s "
                        f"WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE {match})"
                    )
            finally:
                con.execute("DETACH shard_analysis")
            strong = has_thresholds(con, new_id)
            recount(con, new_id, KEPT_MEASURES if strong else ("presence",))
        after = target.sql(
            "SELECT (SELECT count(*) FROM documents) AS d, (SELECT count(*) FROM activations) AS a, "
            "(SELECT count(*) FROM encoded_documents) AS e"
        ).row(0)
    return ImportReport(
        after[0] - before[0], after[2] - before[2], after[1] - before[1], encoder.name
    )


def _copy_rows(con, root: Path, shards, encoder_id: int) -> None:
    """The shards' documents, activations and encoded documents, each row once."""
    hive = "hive_partitioning = true, hive_types = {'corpus': VARCHAR}"
    con.execute(
        f"""
        INSERT INTO documents (corpus, doc_id, row_idx, ext_id, text, meta, context, parent_id,
                               chunk_idx)
        SELECT n.corpus, n.doc_id, n.row_idx, n.ext_id, n.text, n.meta, n.context, n.parent_id,
               n.chunk_idx
        FROM read_parquet({_files(root, shards, "documents")}, {hive}) n
        WHERE NOT EXISTS (SELECT 1 FROM documents d WHERE d.corpus = n.corpus AND d.doc_id = n.doc_id)
        """
    )
    con.execute(
        f"""
        INSERT INTO activations (encoder_id, doc_id, feature, value, n_tokens, peak_token,
                                 peak_start, peak_end, value_sum)
        SELECT {encoder_id}, a.doc_id, a.feature, a.value, a.n_tokens, a.peak_token,
               a.peak_start, a.peak_end, a.value_sum
        FROM read_parquet({_files(root, shards, "activations")}) a
        WHERE NOT EXISTS (SELECT 1 FROM encoded_documents e
                          WHERE e.encoder_id = {encoder_id} AND e.doc_id = a.doc_id)
        """
    )
    con.execute(
        f"""
        INSERT INTO encoded_documents (encoder_id, doc_id, n_tokens, truncated, n_features,
                                       encoded_at)
        SELECT {encoder_id}, n.doc_id, n.n_tokens, n.truncated, n.n_features, n.encoded_at
        FROM read_parquet({_files(root, shards, "encoded")}) n
        WHERE NOT EXISTS (SELECT 1 FROM encoded_documents e
                          WHERE e.encoder_id = {encoder_id} AND e.doc_id = n.doc_id)
        """
    )
