"""How good are the offline labels? Labels an encoder's features in a store and reports the
distribution of held-out detection scores, against a control in which each feature is scored with
another feature's label (a random permutation): what the score looks like when a label carries no
information about its feature.

    .venv/bin/python benchmarks/label_quality.py STORE [--encoder E] [--seed 0]

Prints a markdown table to stdout; progress on stderr. Nothing is written to the store.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

import numpy as np

from saeembed.labels.evidence import load_evidence
from saeembed.labels.offline import (
    OfflineConfig,
    document_classes,
    label_offline,
    matcher_score,
)
from saeembed.store import Store


def summarise(name: str, scores: list[float]) -> str:
    s = np.asarray(scores)
    share = [f"{(s >= t).mean():.1%}" for t in (0.6, 0.7, 0.8, 0.9)]
    return (
        f"| {name} | {len(s):,} | {np.median(s):.3f} | {np.quantile(s, 0.25):.3f} | "
        f"{np.quantile(s, 0.75):.3f} | " + " | ".join(share) + " |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store")
    parser.add_argument("--encoder", default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")

    with Store(args.store, read_only=True) as store:
        encoder = store.resolve_encoder(args.encoder)
        evidence = load_evidence(store, encoder)
    started = time.perf_counter()
    labels = label_offline(evidence, progress=True)
    seconds = time.perf_counter() - started
    scored = [x for x in labels if x.score is not None]
    config = OfflineConfig()
    rng = np.random.default_rng(args.seed)
    others = rng.permutation(len(scored))
    control = []
    for x, j in zip(scored, others, strict=True):
        classes = document_classes(evidence, x.feature, config.strong_fraction)
        score = matcher_score(evidence, scored[j].terms, classes, config.min_heldout)
        if score is not None:
            control.append(score)
    live = sum(evidence.n_active(f) > 0 for f in range(evidence.d_sae))
    print(
        f"{evidence.n_docs:,} documents ({int(evidence.heldout.sum()):,} held out), "
        f"{live:,} of {evidence.d_sae:,} features active, {len(labels):,} labelled, "
        f"{len(scored):,} scored; labelling took {seconds:.1f} s\n"
    )
    print("| labels | features | median | p25 | p75 | >= 0.6 | >= 0.7 | >= 0.8 | >= 0.9 |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(summarise("offline labels, held-out detection", [x.score for x in scored]))
    print(summarise("control: another feature's label", control))


if __name__ == "__main__":
    main()
