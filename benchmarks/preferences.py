"""How well do concepts explain real preferences? HH-RLHF harmless-base test (2,312 pairs; 2,308
with two non-empty replies), every response encoded as an assistant turn with the default reader
and SAE. Held-out AUC (5 folds, pairs sharing a prompt kept together) of logistic models on:
the length difference only; the dense MiniLM embedding difference (plus length); all concepts
(L2); and k = 5, 10, 20 concepts chosen by an L1 path inside each training fold (plus length).
Also the top concepts by Δwin-rate from per-concept regressions with a length control.

    .venv/bin/python benchmarks/preferences.py [--min-prevalence 0.01]

Encoding the 4,616 responses takes a few minutes on 2 CPU cores the first time (cached in a
store under $SAEEMBED_HOME/stores/). Prints markdown to stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

import numpy as np
import polars as pl

from saeembed.analysis import stats
from saeembed.api import encode
from saeembed.home import cache_dir
from saeembed.inputs import doc_ids_for
from saeembed.labels.table import label_names
from saeembed.prefs.pairs import assign_folds, read_pairs
from saeembed.prefs.regression import fit_per_concept
from saeembed.prefs.sparse import cross_validated_auc
from saeembed.store import Store


def concept_matrix(store: Store, doc_ids: np.ndarray, d_sae: int) -> np.ndarray:
    """Dense presence [len(doc_ids), d_sae] for the given documents."""
    store.con.register("wanted", pl.DataFrame({"doc_id": np.unique(doc_ids)}).to_arrow())
    acts = store.sql(
        "SELECT a.doc_id, a.feature FROM activations a SEMI JOIN wanted w ON w.doc_id = a.doc_id"
    )
    encoded = set(
        store.sql("SELECT e.doc_id FROM encoded_documents e SEMI JOIN wanted w USING (doc_id)")[
            "doc_id"
        ].to_list()
    )
    store.con.unregister("wanted")
    missing = len(set(doc_ids.tolist()) - encoded)
    if missing:
        raise SystemExit(f"{missing} responses are not encoded in the store")
    unique, inverse = np.unique(doc_ids, return_inverse=True)
    out = np.zeros((len(unique), d_sae), dtype=np.float32)
    out[np.searchsorted(unique, acts["doc_id"].to_numpy()), acts["feature"].to_numpy()] = 1.0
    return out[inverse]  # a response shared by several pairs fills each of their rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-prevalence", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    pairs = read_pairs("data:hh-rlhf-harmless", seed=args.seed)
    responses = pl.concat([pairs["response_a"], pairs["response_b"]]).unique().to_list()
    db = cache_dir("stores") / "bench-preferences.duckdb"
    result = encode(responses, db, corpus="hh-responses", chat="assistant", max_tokens=256)
    encoder = result.encoding.encoder
    started = time.perf_counter()
    with Store(db, read_only=False) as store:
        ids_a = doc_ids_for(pairs["response_a"]).to_numpy()
        ids_b = doc_ids_for(pairs["response_b"]).to_numpy()
        names = label_names(store, encoder)
        labels = dict(zip(names["feature"].to_list(), names["label"].to_list(), strict=True))
        x_a = concept_matrix(store, ids_a, encoder.d_sae)
        x_b = concept_matrix(store, ids_b, encoder.d_sae)
    delta = x_a - x_b
    y = pairs["label"].to_numpy().astype(int)
    length = (
        (pairs["response_a"].str.len_chars() - pairs["response_b"].str.len_chars())
        .to_numpy()[:, None]
        .astype(float)
    )
    folds = assign_folds(pairs, 5, seed=args.seed)
    prevalence = (delta != 0).mean(axis=0)
    keep = np.flatnonzero(prevalence >= args.min_prevalence)
    d = delta[:, keep]
    print(f"{len(pairs)} pairs, {len(keep):,} concepts with prevalence >= {args.min_prevalence}",
          file=sys.stderr)  # fmt: skip

    from saeembed.embedder import load_embedder

    embedder = load_embedder("default")
    emb = embedder.embed(responses)
    row = {t: i for i, t in enumerate(responses)}
    dense = emb[[row[t] for t in pairs["response_a"]]] - emb[[row[t] for t in pairs["response_b"]]]

    aucs = {
        "length": cross_validated_auc(d, y, length, folds, k=None, use_concepts=False),
        "dense": cross_validated_auc(dense, y, length, folds, k=None),
        "all": cross_validated_auc(d, y, length, folds, k=None),
    }
    for k in (5, 10, 20):
        aucs[f"k{k}"] = cross_validated_auc(d, y, length, folds, k=k)
        print(f"k={k}: {aucs[f'k{k}']:.3f}", file=sys.stderr)
    fit = fit_per_concept(d, y, length)
    q = np.full(len(keep), np.nan)
    ok = ~np.isnan(fit["p"])
    q[ok] = stats.bh_qvalues(fit["p"][ok])
    table = pl.DataFrame(
        {
            "feature": keep,
            "label": [labels.get(int(f)) for f in keep],
            "prevalence": fit["prevalence"],
            "coef": fit["coef"],
            "odds_ratio": np.exp(fit["coef"]),
            "p": fit["p"],
            "q": q,
            "win_rate_delta": fit["win_rate_delta"],
        }
    )
    seconds = time.perf_counter() - started

    gain = aucs["dense"] - aucs["length"]
    print(f"HH-RLHF harmless test: {len(pairs):,} pairs, {len(keep):,} concepts tested; "
          f"{seconds:.0f} s after encoding\n")  # fmt: skip
    print("| model | held-out AUC | share of the dense probe's gain over length |")
    print("|---|---|---|")
    for name, auc in aucs.items():
        share = (auc - aucs["length"]) / gain if gain > 0 and name != "length" else float("nan")
        print(f"| {name} | {auc:.3f} | {share:.0%} |")
    sig = table.filter(pl.col("q") < 0.05).sort(pl.col("win_rate_delta").abs(), descending=True)
    print(f"\n{sig.height} concepts at q < 0.05 (length-controlled); top 12 by |Δwin-rate|:\n")
    print("| feature | label | prevalence | coef | Δwin-rate | q |")
    print("|---|---|---|---|---|---|")
    for r in sig.head(12).iter_rows(named=True):
        print(f"| {r['feature']} | {r['label']} | {r['prevalence']:.3f} | {r['coef']:+.3f} | "
              f"{r['win_rate_delta']:+.3f} | {r['q']:.1e} |")  # fmt: skip


if __name__ == "__main__":
    main()
