"""The WIMHF recipe as an encoder of a pair set: a signed BatchTopK Matryoshka SAE
(`saeembed.prefs.pair_sae`) trained on the MiniLM embedding differences of the pair set's
responses, stored as an `encoders` row of its own (pooling ``pair-difference``) with its weights
(`pair_saes`), one signed activation per (pair, latent) (`pair_activations`) and offline labels
in `features`. `saeembed.prefs.fit` then analyses it exactly like the document encoder, so both
can be compared on the same pairs.

Training is deterministic for a seed and a pair set; training again with the same settings
finds the same encoder and writes nothing new. The encoder, its weights and its activations are
written in one transaction."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict

import numpy as np
import polars as pl
import pyarrow as pa

from saeembed.labels.table import write_labels
from saeembed.prefs.ingest import dense_differences, load_pairs
from saeembed.prefs.pair_sae import PairSAEConfig, encode_pairs, label_pair_latents, train_pair_sae
from saeembed.store import Encoder, Store
from saeembed.version import __version__

log = logging.getLogger(__name__)

POOLING = "pair-difference"


def is_pair_encoder(store: Store, encoder: Encoder) -> bool:
    return bool(
        store.sql("SELECT count(*) AS n FROM pair_saes WHERE encoder_id = ?", [encoder.encoder_id])[
            "n"
        ][0]
    )


def pair_activation_matrix(store: Store, encoder: Encoder, pairs_name: str, pair_ids: np.ndarray):
    """Signed activations [len(pair_ids), d_sae] of a pair encoder, as a scipy CSC matrix."""
    import scipy.sparse as sp

    from saeembed.errors import StoreError

    acts = store.sql(
        "SELECT pair_id, feature, value FROM pair_activations WHERE encoder_id = ? AND pairs = ?",
        [encoder.encoder_id, pairs_name],
    )
    trained_on = store.sql("SELECT pairs FROM pair_saes WHERE encoder_id = ?", [encoder.encoder_id])
    if acts.is_empty():
        raise StoreError(
            f"pair encoder {encoder.name} was trained on pair set {trained_on['pairs'][0]!r}, "
            f"not {pairs_name!r}; train one on it with `saeembed prefs train-sae`"
        )
    row_of = {int(p): i for i, p in enumerate(pair_ids)}
    keep = acts.filter(pl.col("pair_id").is_in(list(row_of)))
    rows = np.array([row_of[int(p)] for p in keep["pair_id"]], dtype=np.int64)
    return sp.csc_matrix(
        (keep["value"].to_numpy().astype(np.float32), (rows, keep["feature"].to_numpy())),
        shape=(len(pair_ids), encoder.d_sae),
    )


def train_pair_encoder(
    store: Store,
    pairs_name: str,
    settings: dict | None = None,
    *,
    embedder: str = "default",
    progress: bool = False,
) -> tuple[Encoder, bool, dict]:
    """Train (or find) the pair SAE of ``pairs_name`` (``settings``: `PairSAEConfig` fields
    other than ``d_in``) and store it as an encoder; returns the
    encoder, whether it is new, and the training statistics (FVU, active latents, dead)."""
    from saeembed.embedder import load_embedder

    pairs = load_pairs(store, pairs_name)
    model = load_embedder(embedder)
    diffs = dense_differences(store, pairs, model)
    config = PairSAEConfig(d_in=diffs.shape[1], **(settings or {}))
    sae = train_pair_sae(diffs, config, progress=progress)
    log.info("pair SAE trained: %s", sae.stats)
    z = encode_pairs(sae, diffs)
    weights = sae.to_bytes()
    digest = sae.content_hash()
    fields = {
        "name": f"pair-sae-{pairs_name}-{digest[:8]}",
        "model": model.model_id,
        "model_revision": model.revision,
        "layer": 0,
        "sae": f"pair-sae trained on pair set {pairs_name}",
        "sae_sha256": digest,
        "d_sae": config.n_latents,
        "activation": "signed-batchtopk",
        "k": int(round(config.k)),
        "pooling": POOLING,
        "max_tokens": int(model.max_length),
        "truncation": "keep_first",
        "dtype": "float32",
        "chat": "none",
        "prefix": "none",
        "encoding_version": 1,
        "saeembed_version": __version__,
        "config": {"pair_sae": asdict(config), "stats": sae.stats, "pairs": pairs_name},
    }
    nonzero = np.nonzero(z)
    activations = pa.table(
        {
            "pair_id": pa.array(pairs["pair_id"].to_numpy()[nonzero[0]], pa.int64()),
            "feature": pa.array(nonzero[1].astype(np.int32)),
            "value": pa.array(z[nonzero].astype(np.float32)),
        }
    )
    identity = json.dumps({"pair_sae": digest, "pairs": pairs_name, "pooling": POOLING})
    fingerprint = hashlib.sha256(identity.encode()).hexdigest()
    with store.transaction(incoming_pair_acts=activations) as con:
        encoder, created = store.get_or_create_encoder(fingerprint, fields)
        if created:
            con.execute(
                "INSERT INTO pair_saes (encoder_id, pairs, embedder, weights) VALUES (?, ?, ?, ?)",
                [encoder.encoder_id, pairs_name, model.model_id, weights],
            )
            con.execute(
                "INSERT INTO pair_activations SELECT ?, ?, pair_id, feature, value "
                "FROM incoming_pair_acts",
                [encoder.encoder_id, pairs_name],
            )
    labels = label_pair_latents(z, pairs["text_a"].to_list(), pairs["text_b"].to_list())
    write_labels(store, encoder, _as_label_frame(labels, len(pairs)))
    return encoder, created, sae.stats


def _as_label_frame(labels: pl.DataFrame, n_pairs: int) -> pl.DataFrame:
    return labels.with_columns(
        pl.lit("offline-pair").alias("label_source"),
        (pl.col("n_pairs") / n_pairs).alias("density"),
        pl.col("n_pairs").alias("n_docs"),
        pl.col("examples").str.json_decode(pl.List(pl.Utf8)),
    ).select("feature", "label", "description", "label_source", "label_score", "density",
             "n_docs", "examples")  # fmt: skip
