"""Build the evidence embeddings shipped beside the default SAE's labels: for every latent, the
unit mean sentence embedding (all-MiniLM-L6-v2) of windows around its peaks in strongly active
documents of the labelling store (`recipes/build_label_corpus.py`, encoded as the SAE card says).

    python recipes/build_evidence.py labels.duckdb OUT.safetensors [--contexts 24] [--for-sae DIR]

`saeembed features label` stores evidence from its 12 strongest windows per feature, which is
enough to choose label words; shipped evidence is read by every phrase search of every store, so
it takes more (a random sample of the strong windows, as the embedding scorer takes).
"""

from __future__ import annotations

import argparse
import logging
import sys

import numpy as np

from saeembed.embedder import load_embedder
from saeembed.labels.evidence import load_evidence
from saeembed.labels.scoring import ContextBank
from saeembed.labels.table import hash_of_rounded_copy, save_shipped_evidence
from saeembed.store import Store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store")
    parser.add_argument("out")
    parser.add_argument("--contexts", type=int, default=24, help="peak windows per feature")
    parser.add_argument(
        "--for-sae",
        help="record the hash of this copy of the store's SAE at another precision (the fp16 "
        "copy that ships), as `saeembed features export --for-sae` does",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    embedder = load_embedder("default")
    with Store(args.store, read_only=True) as store:
        encoder = store.resolve_encoder(None)
        evidence = load_evidence(store, encoder, max_docs=None)
    sae_sha256 = encoder.sae_sha256
    if args.for_sae:
        sae_sha256 = hash_of_rounded_copy(encoder, args.for_sae)
    bank = ContextBank(evidence, heldout=False, n_positive=args.contexts, n_negative=1)
    features = bank.add([f for f in range(evidence.d_sae) if evidence.n_active(f)])
    logging.info("embedding %d windows of %d features", len(bank.texts), len(features))
    bank.embed(embedder)
    vectors = np.stack([bank.vectors[bank.positives[f]].mean(axis=0) for f in features])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    save_shipped_evidence(args.out, np.array(features), vectors, embedder.model_id, sae_sha256)
    logging.info("%s: %d features", args.out, len(features))


if __name__ == "__main__":
    main()
