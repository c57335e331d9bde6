"""How high can a label score under the embedding scorer? Scores, on the held-out documents of a
labelling store, each feature's evidence embedding (the mean embedding of its peak windows in
the labelling documents, `evidence.safetensors`) as if it were the embedding of its label,
beside the store's own labels (for the default encoder: the shipped ones).

    .venv/bin/python benchmarks/label_ceiling.py labels.duckdb [EVIDENCE] [--sample 1000]

A short label rarely carries more of the contexts than their own mean embedding does, so this
is a practical ceiling for labels under `saeembed.labels.scoring`. Prints markdown to stdout.
"""

from __future__ import annotations

import argparse
import logging
import sys

import numpy as np
from safetensors.numpy import load_file

from saeembed.embedder import load_embedder
from saeembed.labels.evidence import load_evidence
from saeembed.labels.scoring import ContextBank
from saeembed.labels.table import SHIPPED_EVIDENCE, read_labels
from saeembed.pretrained import shipped_saes
from saeembed.store import Store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store")
    parser.add_argument("evidence", nargs="?", default=None, help="default: the shipped file")
    parser.add_argument("--sample", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    path = args.evidence or next(iter(shipped_saes().values())) / SHIPPED_EVIDENCE
    shipped = load_file(str(path))
    row = {int(f): i for i, f in enumerate(shipped["feature"])}
    vectors = shipped["embedding"].astype(np.float32)
    embedder = load_embedder("default")
    with Store(args.store, read_only=True) as store:
        encoder = store.resolve_encoder(None)
        evidence = load_evidence(store, encoder, max_docs=None)
        labels = read_labels(store, encoder)
    label_of = dict(zip(labels["feature"].to_list(), labels["label"].to_list(), strict=True))
    active = [f for f in range(evidence.d_sae) if evidence.n_active(f) and label_of.get(f)]
    rng = np.random.default_rng(args.seed)
    sample = sorted(rng.choice(active, min(args.sample, len(active)), replace=False).tolist())
    bank = ContextBank(evidence, heldout=True)
    features = [f for f in bank.add(sample) if f in row]
    bank.embed(embedder)
    label_vectors = embedder.embed([label_of[f] for f in features])
    by_label = [bank.score(f, label_vectors[i]) for i, f in enumerate(features)]
    by_evidence = [bank.score(f, vectors[row[f]]) for f in features]
    print("| as the label | features | median | p25 | p75 |")
    print("|---|---|---|---|---|")
    for name, scores in (("the store's labels", by_label), ("evidence embedding", by_evidence)):
        s = np.asarray(scores)
        print(f"| {name} | {len(s):,} | {np.median(s):.3f} | {np.quantile(s, 0.25):.3f} | "
              f"{np.quantile(s, 0.75):.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
