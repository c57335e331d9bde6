"""How good are feature labels? Labels an encoder's features offline in a store (nothing is written
to it) and scores them on held-out documents with both scorers, beside the labels the store
already has (for a store of the default encoder: the shipped labels) and a control:

- lexical detection: balanced accuracy of "the document contains one of the label's terms" at
  telling strongly active from inactive held-out documents (`offline.matcher_score`);
- embedding scorer: AUC of the MiniLM similarity between the label and held-out contexts (peak
  windows of strongly active documents against random windows of inactive ones,
  `saeembed.labels.scoring`), on a seeded sample of features;
- control: each feature scored with another feature's label (a seeded derangement).

    .venv/bin/python benchmarks/label_quality.py STORE [--encoder E] [--sample 2000] [--seed 0]
        [--words-only] [--save-labels OUT.parquet] [--documents-of OTHER.duckdb]

``--documents-of`` keeps only the documents another store also holds (document ids are hashes
of the text): labels of two SAEs scored on the same held-out documents.

Prints markdown tables to stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time

import numpy as np

from saeembed.embedder import load_embedder
from saeembed.labels import _promoted
from saeembed.labels.evidence import document_classes, load_evidence
from saeembed.labels.offline import OfflineConfig, label_offline, matcher_score
from saeembed.labels.scoring import ContextBank, embedding_scores
from saeembed.labels.table import export_labels, labels_frame, read_labels
from saeembed.store import Store


def summarise(name: str, scores) -> str:
    s = np.asarray([x for x in scores if x is not None], dtype=float)
    if len(s) == 0:
        return f"| {name} | 0 | | | | | | | |"
    share = [f"{(s >= t).mean():.1%}" for t in (0.6, 0.7, 0.8, 0.9)]
    return (
        f"| {name} | {len(s):,} | {np.median(s):.3f} | {np.quantile(s, 0.25):.3f} | "
        f"{np.quantile(s, 0.75):.3f} | " + " | ".join(share) + " |"
    )


def label_terms(label: str | None) -> tuple[str, ...]:
    """The matcher terms of an offline label string (`render_terms`, shape labels included)."""
    if not label:
        return ()
    inner = re.search(r"\((.*?)(?: \.\.\.)?\)$", label)
    body = inner.group(1) if inner else label
    return tuple(t.strip().strip('"') for t in body.split(" / ") if t.strip())


def lexical(evidence, labels: dict[int, tuple[str, ...]], config: OfflineConfig, order=None):
    """Held-out lexical detection of each feature's terms (of ``order[i]``'s terms if given)."""
    features = sorted(labels)
    out = {}
    for i, f in enumerate(features):
        terms = labels[features[order[i]]] if order is not None else labels[f]
        if terms:
            classes = document_classes(evidence, f, config.strong_fraction)
            out[f] = matcher_score(evidence, terms, classes, config.min_heldout)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store")
    parser.add_argument("--encoder", default=None)
    parser.add_argument(
        "--sample", type=int, default=2000, help="features for the embedding scorer"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--words-only", action="store_true", help="label by words only (v1)")
    parser.add_argument("--save-labels", default=None)
    parser.add_argument(
        "--documents-of", default=None, help="score on the documents this other store also has"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")

    only = None
    if args.documents_of:
        with Store(args.documents_of, read_only=True) as other:
            only = other.sql("SELECT DISTINCT doc_id FROM documents")["doc_id"].to_numpy()
    with Store(args.store, read_only=True) as store:
        encoder = store.resolve_encoder(args.encoder)
        evidence = load_evidence(store, encoder, only=only)
        existing = read_labels(store, encoder)
    if existing.height == 0:  # a store made before its encoder got the shipped labels
        from saeembed.labels.table import read_saeembed_labels, shipped_labels_for

        shipped = shipped_labels_for(encoder.sae_sha256)
        existing = read_saeembed_labels(shipped) if shipped else existing
    embedder = load_embedder("default")
    config = OfflineConfig()
    started = time.perf_counter()
    output = {} if args.words_only else _promoted(encoder)
    new = label_offline(
        evidence,
        config=config,
        progress=True,
        embedder=None if args.words_only else embedder,
        output=output,
    )
    seconds = time.perf_counter() - started
    if args.save_labels:
        export_labels(labels_frame(new, "offline"), args.save_labels, sae_sha256=encoder.sae_sha256)
        if not args.words_only:
            from saeembed.labels.table import save_shipped_evidence

            kept = [x for x in new if x.evidence is not None]
            save_shipped_evidence(
                args.save_labels.replace(".parquet", ".evidence.safetensors"),
                np.array([x.feature for x in kept]),
                np.stack([x.evidence for x in kept]),
                embedder.model_id,
                encoder.sae_sha256,
            )
    new_text = {x.feature: x.label for x in new if x.label}
    new_terms = {x.feature: x.terms for x in new if x.terms}
    old_text = {
        r["feature"]: r["label"]
        for r in existing.iter_rows(named=True)
        if r["label"] and r["label_source"] != "offline-new"
    }
    old_terms = {f: label_terms(t) for f, t in old_text.items()}
    live = sum(evidence.n_active(f) > 0 for f in range(evidence.d_sae))
    print(
        f"{evidence.n_docs:,} documents ({int(evidence.heldout.sum()):,} held out), "
        f"{live:,} of {evidence.d_sae:,} features active, {len(new):,} labelled in {seconds:.0f} s "
        f"({'words only' if args.words_only else 'words and meaning'}); "
        f"{len(old_text):,} existing labels\n"
    )
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(new_terms))
    print("| labels | features | median | p25 | p75 | >= 0.6 | >= 0.7 | >= 0.8 | >= 0.9 |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(summarise("lexical: existing labels", lexical(evidence, old_terms, config).values()))
    print(summarise("lexical: new labels", lexical(evidence, new_terms, config).values()))
    print(summarise("lexical control", lexical(evidence, new_terms, config, order).values()))

    common = sorted(set(new_text) & set(old_text)) or sorted(new_text)
    sample = sorted(rng.choice(common, min(args.sample, len(common)), replace=False).tolist())
    bank = ContextBank(evidence, heldout=True)
    bank.add(sample)
    bank.embed(embedder)
    new_scores, control = embedding_scores(
        evidence, {f: new_text[f] for f in sample}, embedder, control_seed=args.seed, bank=bank
    )
    print(summarise("embedding: new labels", new_scores.values()))
    print(summarise("embedding control (new labels shuffled)", control.values()))
    if old_text:
        old_scores, old_control = embedding_scores(
            evidence, {f: old_text[f] for f in sample if f in old_text}, embedder,
            control_seed=args.seed, bank=bank,
        )  # fmt: skip
        print(summarise("embedding: existing labels", old_scores.values()))
        print(summarise("embedding control (existing labels shuffled)", old_control.values()))


if __name__ == "__main__":
    main()
