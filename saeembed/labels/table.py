"""Labels in and out of the store's `features` table: writing a batch of labels in one
transaction, reading them back, exporting them to a Parquet file, and the label files shipped with
saeembed's own SAEs, which become an encoder's labels when it is created."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from saeembed.errors import InputError
from saeembed.files import atomic_path
from saeembed.labels.offline import FeatureLabel
from saeembed.store import Encoder, Store

log = logging.getLogger(__name__)

#: Columns of a label frame, as `features` stores them (besides `encoder_id`).
LABEL_SCHEMA = {
    "feature": pl.Int64,
    "label": pl.Utf8,
    "description": pl.Utf8,
    "label_source": pl.Utf8,
    "label_score": pl.Float64,
    "density": pl.Float64,
    "n_docs": pl.Int64,
    "examples": pl.List(pl.Utf8),
}
SHIPPED_LABELS = "labels.parquet"
SHIPPED_PREFIX = "shipped:"  # label_source of labels a store took from its SAE's label file
SHIPPED_EVIDENCE = "evidence.safetensors"
SAE_SHA_KEY = b"saeembed.sae_sha256"


def labels_frame(labels: Iterable[FeatureLabel], source: str) -> pl.DataFrame:
    rows = [
        {
            "feature": x.feature,
            "label": x.label,
            "description": x.description,
            "label_source": source,
            "label_score": x.score,
            "density": x.density,
            "n_docs": x.n_docs,
            "examples": x.examples,
        }
        for x in labels
    ]
    return pl.DataFrame(rows, schema=LABEL_SCHEMA)


def conform(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with exactly the label columns (missing optional ones as nulls)."""
    if "feature" not in frame.columns or "label" not in frame.columns:
        raise InputError(
            f"a label table needs `feature` and `label` columns; it has {', '.join(frame.columns)}"
        )
    return frame.select(
        [
            (pl.col(c) if c in frame.columns else pl.lit(None)).cast(dtype).alias(c)
            for c, dtype in LABEL_SCHEMA.items()
        ]
    )


def write_labels(store: Store, encoder: Encoder, frame: pl.DataFrame) -> int:
    """Replace the labels of the features in ``frame`` for ``encoder``, in one transaction."""
    frame = conform(frame)
    if frame.height == 0:
        return 0
    too_big = frame.filter(pl.col("feature") >= encoder.d_sae)
    if too_big.height:
        raise InputError(
            f"labels for feature {too_big['feature'].max()} but encoder {encoder.name} has "
            f"{encoder.d_sae} features; are these labels for another SAE?"
        )
    examples = [None if x is None else json.dumps(x) for x in frame["examples"].to_list()]
    incoming = frame.with_columns(pl.Series("examples", examples, dtype=pl.Utf8)).to_arrow()
    with store.transaction(incoming_labels=incoming) as con:
        con.execute(
            "DELETE FROM features WHERE encoder_id = ? "
            "AND feature IN (SELECT feature FROM incoming_labels)",
            [encoder.encoder_id],
        )
        con.execute(
            """
            INSERT INTO features (encoder_id, feature, label, description, label_source,
                                  label_score, density, n_docs, examples, labelled_at)
            SELECT ?, feature, label, description, label_source, label_score, density, n_docs,
                   examples::JSON, current_timestamp
            FROM incoming_labels
            """,
            [encoder.encoder_id],
        )
    return frame.height


def read_labels(store: Store, encoder: Encoder) -> pl.DataFrame:
    """The encoder's labels, one row per labelled feature, ``examples`` as a list of strings."""
    frame = store.sql(
        """
        SELECT feature, label, description, label_source, label_score, density, n_docs,
               examples::VARCHAR AS examples
        FROM features WHERE encoder_id = ? ORDER BY feature
        """,
        [encoder.encoder_id],
    )
    return frame.with_columns(
        pl.col("examples").str.json_decode(pl.List(pl.Utf8)),
        pl.col("feature").cast(pl.Int64),
        pl.col("n_docs").cast(pl.Int64),
    )


def label_names(store: Store, encoder: Encoder) -> pl.DataFrame:
    """``feature, label`` of every labelled feature of ``encoder`` (for joining onto results)."""
    return store.sql(
        "SELECT feature, label FROM features WHERE encoder_id = ?", [encoder.encoder_id]
    ).with_columns(pl.col("feature").cast(pl.Int64))


def labelled_features(store: Store, encoder: Encoder, source: str) -> set[int]:
    rows = store.con.execute(
        "SELECT feature FROM features WHERE encoder_id = ? AND label_source = ?",
        [encoder.encoder_id, source],
    ).fetchall()
    return {r[0] for r in rows}


def hash_of_rounded_copy(encoder: Encoder, spec: str | Path) -> str:
    """The content hash of the SAE at ``spec`` once it is shown to be ``encoder``'s SAE stored at
    another precision (as `saeembed sae convert --dtype float16` writes it), so that labels and
    evidence made with the encoder can be published for the copy. Refuses anything else."""
    from saeembed.encoding.stack_cache import stored_sae
    from saeembed.errors import SAEError
    from saeembed.sae import load_sae

    original = stored_sae(encoder)
    copy = load_sae(spec)
    why = original.rounding_mismatch(copy)
    if why is not None:
        raise SAEError(
            f"{spec} is not a copy of {encoder.name}'s SAE at another precision: {why}; "
            "labels describe only the SAE they were made with"
        )
    return copy.content_hash()


def export_labels(frame: pl.DataFrame, path: str | Path, *, sae_sha256: str | None) -> Path:
    """Write a label frame to Parquet, recording which SAE (content hash) it labels."""
    path = Path(path)
    table = conform(frame).to_arrow()
    if sae_sha256:
        table = table.replace_schema_metadata({SAE_SHA_KEY: sae_sha256.encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", compression_level=19)
    return path


def parquet_sae_sha(path: Path) -> str | None:
    metadata = pq.read_schema(path).metadata or {}
    value = metadata.get(SAE_SHA_KEY)
    return value.decode() if value else None


def shipped_labels_for(sae_sha256: str) -> Path | None:
    """The label file shipped with a packaged SAE whose weights hash to ``sae_sha256``."""
    from saeembed.pretrained import shipped_saes

    for directory in shipped_saes().values():
        path = directory / SHIPPED_LABELS
        if path.is_file() and parquet_sae_sha(path) == sae_sha256:
            return path
    return None


def ensure_shipped_labels(store: Store, encoder: Encoder) -> int:
    """Give an encoder with no labels yet the labels shipped with its SAE, if there are any
    (their ``label_source`` becomes ``shipped:<source>``: made on the SAE's labelling corpus, not
    on this store's documents), and one with no evidence embeddings the shipped ones (they
    describe the SAE's features whatever their labels: a store made before they shipped gets
    them at its next encode). Returns how many labels were written."""
    has = store.con.execute(
        "SELECT count(*) FROM features WHERE encoder_id = ?", [encoder.encoder_id]
    ).fetchall()[0][0]
    path = shipped_labels_for(encoder.sae_sha256)
    if path is None:
        return 0
    if has:
        ensure_shipped_evidence(store, encoder, path.parent / SHIPPED_EVIDENCE)
        return 0
    labels = read_saeembed_labels(path).with_columns(
        pl.when(pl.col("label_source").str.starts_with(SHIPPED_PREFIX))
        .then(pl.col("label_source"))
        .otherwise(SHIPPED_PREFIX + pl.col("label_source").fill_null("unknown"))
        .alias("label_source")
    )
    written = write_labels(store, encoder, labels)
    log.info(
        "encoder %s: %d shipped feature labels from %s", encoder.name, written, path.parent.name
    )
    ensure_shipped_evidence(store, encoder, path.parent / SHIPPED_EVIDENCE)
    return written


def read_saeembed_labels(path: Path) -> pl.DataFrame:
    """A label file written by `export_labels`, metadata dropped."""
    table = pq.read_table(path)
    return conform(pl.from_arrow(table.replace_schema_metadata(None)))


def write_evidence(
    store: Store,
    encoder: Encoder,
    features: np.ndarray,
    vectors: np.ndarray,
    model: str,
    n_contexts: np.ndarray | None = None,
) -> int:
    """Replace the evidence embeddings of ``features`` for ``encoder``, in one transaction."""
    if len(features) == 0:
        return 0
    counts = n_contexts if n_contexts is not None else np.full(len(features), None)
    incoming = pa.table(
        {
            "feature": pa.array(np.asarray(features, dtype=np.int32)),
            "embedding": pa.array(
                list(np.asarray(vectors, dtype=np.float32)), pa.list_(pa.float32())
            ),
            "n_contexts": pa.array(list(counts), pa.int32()),
        }
    )
    with store.transaction(incoming_evidence=incoming) as con:
        con.execute(
            "DELETE FROM feature_evidence WHERE encoder_id = ? "
            "AND feature IN (SELECT feature FROM incoming_evidence)",
            [encoder.encoder_id],
        )
        con.execute(
            "INSERT INTO feature_evidence (encoder_id, feature, model, embedding, n_contexts) "
            "SELECT ?, feature, ?, embedding, n_contexts FROM incoming_evidence",
            [encoder.encoder_id, model],
        )
    return len(features)


def read_evidence(store: Store, encoder: Encoder, model: str) -> tuple[np.ndarray, np.ndarray]:
    """``(features, vectors)``: the evidence embeddings of ``encoder`` made with ``model``."""
    table = store.con.sql(
        "SELECT feature, embedding FROM feature_evidence WHERE encoder_id = ? AND model = ? "
        "ORDER BY feature",
        params=[encoder.encoder_id, model],
    ).to_arrow_table()
    if table.num_rows == 0:
        return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
    features = table["feature"].to_numpy().astype(np.int64)
    flat = table["embedding"].combine_chunks().flatten().to_numpy()
    return features, flat.reshape(table.num_rows, -1).astype(np.float32)


def save_shipped_evidence(
    path: str | Path, features: np.ndarray, vectors: np.ndarray, model: str, sae_sha256: str
) -> Path:
    """Write evidence embeddings (fp16) for shipping beside an SAE's labels."""
    from safetensors.numpy import save_file

    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(
            {
                "feature": np.asarray(features, dtype=np.int32),
                "embedding": np.asarray(vectors, dtype=np.float16),
            },
            str(tmp),
            metadata={"model": model, "sae_sha256": sae_sha256},
        )
    return path


def ensure_shipped_evidence(store: Store, encoder: Encoder, path: Path) -> int:
    """Give an encoder with no evidence embeddings those shipped at ``path``, if the file exists
    and is for the encoder's SAE."""
    from safetensors import safe_open

    has = store.con.execute(
        "SELECT count(*) FROM feature_evidence WHERE encoder_id = ?", [encoder.encoder_id]
    ).fetchall()[0][0]
    if has or not path.is_file():
        return 0
    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata() or {}
        if meta.get("sae_sha256") != encoder.sae_sha256:
            return 0
        features, vectors = f.get_tensor("feature"), f.get_tensor("embedding")
    return write_evidence(store, encoder, features, vectors.astype(np.float32), meta["model"])
