"""A constructed pair set with a planted preference, for preference tests.

Each of 8 concepts is present in each response independently with probability 0.3; the label
follows a logistic model with known coefficients on the presence differences (and none on
length, which is pure noise), so the right answer of every analysis is known."""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy.special import expit

from saeembed.prefs.ingest import add_pairs
from saeembed.prefs.pairs import prompt_group
from saeembed.store import Store
from tests.fakes import ENCODER_FIELDS, write_constructed

D_SAE = 8
EFFECTS = {3: 1.5, 5: -1.0}  # concept -> true log-odds per unit presence difference
LABELS = {3: "polite apology", 5: "harmful instructions"}


def planted_pairs(n: int, seed: int = 0, annotators: int = 0):
    """(pairs table, presence of A [n, 8], presence of B [n, 8])."""
    rng = np.random.default_rng(seed)
    xa = (rng.random((n, D_SAE)) < 0.3).astype(float)
    xb = (rng.random((n, D_SAE)) < 0.3).astype(float)
    logit = sum(coef * (xa[:, f] - xb[:, f]) for f, coef in EFFECTS.items())
    y = (rng.random(n) < expit(logit)).astype(float)
    pad_a, pad_b = rng.integers(0, 40, n), rng.integers(0, 40, n)
    prompts = [f"question {i // 2}" for i in range(n)]  # two pairs share each prompt
    table = pl.DataFrame(
        {
            "pair_id": np.arange(n, dtype=np.int64),
            "prompt": prompts,
            "response_a": [f"answer A to pair {i}." + " more" * pad_a[i] for i in range(n)],
            "response_b": [f"answer B to pair {i}." + " more" * pad_b[i] for i in range(n)],
            "label": y,
            "annotator": [f"w{i % annotators}" if annotators else None for i in range(n)],
            "conversation_id": pl.Series([None] * n, dtype=pl.String),
            "prompt_group": [prompt_group(p) for p in prompts],
        },
        schema_overrides={"annotator": pl.String},
    )
    return table, xa, xb


def build_pair_store(path, n: int = 1500, seed: int = 0, annotators: int = 0):
    """A store holding pair set "planted" encoded by a constructed encoder (labels for the
    planted concepts). Returns (store, encoder, pairs table, xa, xb)."""
    from saeembed.labels.table import write_labels

    table, xa, xb = planted_pairs(n, seed, annotators)
    store = Store(path)
    encoder, _ = store.get_or_create_encoder("fp-pairs", {**ENCODER_FIELDS, "d_sae": D_SAE})
    add_pairs(store, "planted", table, context=False, source="constructed")
    stored = store.sql("SELECT pair_id, doc_a, doc_b FROM pairs ORDER BY pair_id")
    rows = []
    for side, x in (("doc_a", xa), ("doc_b", xb)):
        ids = stored[side].to_list()
        rows += [(ids[i], f, 1.0, 0, 6) for i, f in zip(*np.nonzero(x), strict=True)]
    doc_ids = stored["doc_a"].to_list() + stored["doc_b"].to_list()
    write_constructed(store, encoder.encoder_id, doc_ids, rows, n_tokens=5)
    write_labels(
        store, encoder, pl.DataFrame({"feature": list(LABELS), "label": list(LABELS.values())})
    )
    return store, encoder, table, xa, xb
