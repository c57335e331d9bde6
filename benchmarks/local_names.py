"""Do the names a store shows fit its documents? Local names (`saeembed.labels.local`) against
the names shipped with the default SAE, scored by the embedding scorer on held-out documents.

For a store of the default encoder (``STORE``, or one built here with ``--build``: passages of
the news-articles and commons-speeches datasets, the first ~150 words of each), this decides
each concept's shown name with the held-out documents left out (their peaks are never read), then
scores on those held-out documents, for a seeded sample of concepts:

- the shipped names of all sampled concepts;
- the names by the peaks' words only (`saeembed.labels.local`, without the choice by meaning);
- the names the store shows (local where it replaced the shipped one, else shipped);
- the local names alone, where a concept got one;
- a control: the shown names shuffled among the concepts.

The embedding scorer is the AUC with which the MiniLM similarity of a name separates held-out
contexts of the concept's peaks from contexts of documents where it is inactive
(`saeembed.labels.scoring`). With ``--time`` it also times naming the whole store, by the
peaks' words only and by meaning (`saeembed.labels.meaning`).

    .venv/bin/python benchmarks/local_names.py STORE [--build N] [--sample 1500] [--seed 0] [--time]

Prints a markdown table to stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

from saeembed.api import EncodingOptions
from saeembed.embedder import load_embedder
from saeembed.labels.evidence import load_evidence
from saeembed.labels.local import SOURCE, LocalConfig
from saeembed.labels.naming import decide_names
from saeembed.labels.scoring import ContextBank, embedding_scores
from saeembed.store import Store


def passages(name: str, n: int, words: int, seed: int) -> list[str]:
    """The first ``words`` words of ``n`` seeded documents of a named dataset with at least
    that many."""
    from saeembed.data import load_dataset

    texts = [t for t in load_dataset(name)["text"].to_list() if t and len(t.split()) >= words]
    picked = np.random.default_rng(seed).choice(len(texts), min(n, len(texts)), replace=False)
    return [" ".join(texts[i].split()[:words]) for i in sorted(picked)]


def build(path: Path, n: int, seed: int) -> None:
    from saeembed.api import encode

    for name in ("news-articles", "commons-speeches"):
        texts = passages(name, n // 2, 150, seed)
        encode(texts, path, corpus=name, encoding=EncodingOptions(max_tokens=256))


def summarise(name: str, scores) -> str:
    s = np.asarray([x for x in scores if x is not None], dtype=float)
    if len(s) == 0:
        return f"| {name} | 0 | | | |"
    return (
        f"| {name} | {len(s):,} | {np.median(s):.3f} | {(s >= 0.7).mean():.1%} | {np.mean(s):.3f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store")
    parser.add_argument("--build", type=int, default=0, help="build a prose store of N passages")
    parser.add_argument("--sample", type=int, default=1500, help="concepts scored")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time", action="store_true", help="also time naming the whole store")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    path = Path(args.store)
    if args.build and not path.exists():
        build(path, args.build, args.seed)

    with Store(path, read_only=True) as store:
        encoder = store.resolve_encoder(None)
        whole_store = {}
        for by_meaning in (False, True) if args.time else ():
            started = time.perf_counter()
            decide_names(store, encoder, LocalConfig(by_meaning=by_meaning))  # as `encode` does
            whole_store[by_meaning] = time.perf_counter() - started
        decided = decide_names(store, encoder, LocalConfig(skip_heldout=True))
        by_words = decide_names(store, encoder, LocalConfig(skip_heldout=True, by_meaning=False))
        evidence = load_evidence(store, encoder)
    if decided is None:
        raise SystemExit(f"{path}: too few documents, or no shipped names to compare with")
    rng = np.random.default_rng(args.seed)
    live = [f for f in decided["feature"].to_list() if evidence.n_active(f) > 0]
    sample = sorted(rng.choice(live, min(args.sample, len(live)), replace=False).tolist())
    rows = decided.filter(pl.col("feature").is_in(sample))
    shipped = dict(zip(rows["feature"], rows["shipped_label"], strict=True))
    shown = dict(zip(rows["feature"], rows["label"], strict=True))
    rows_words = by_words.filter(pl.col("feature").is_in(sample))
    words = dict(zip(rows_words["feature"], rows_words["label"], strict=True))
    local = {
        f: label
        for f, label, source in zip(
            rows["feature"], rows["label"], rows["label_source"], strict=True
        )
        if source == SOURCE
    }
    embedder = load_embedder("default")
    bank = ContextBank(evidence, heldout=True)
    bank.add(sample)
    bank.embed(embedder)
    scored = {}
    for name, labels in (("shipped", shipped), ("shown", shown), ("words", words)):
        scores, control = embedding_scores(
            evidence, {f: t for f, t in labels.items() if t}, embedder, control_seed=args.seed,
            bank=bank,
        )  # fmt: skip
        scored[name], scored[f"{name} control"] = scores, control
    n_held = int(evidence.heldout.sum())
    print(
        f"{path.name}: {evidence.n_docs:,} documents ({n_held:,} held out, never read for the "
        f"names); {len(local):,} of {len(sample):,} sampled concepts show a local name"
        + "".join(f"; names decided for the whole store {'by meaning' if k else 'by words'} "
                  f"in {v:.1f} s" for k, v in whole_store.items())
        + "\n"
    )  # fmt: skip
    print("| names (embedding scorer, held-out) | concepts | median | >= 0.7 | mean |")
    print("|---|---|---|---|---|")
    print(summarise("shipped names", scored["shipped"].values()))
    print(summarise("names by the peaks' words only", scored["words"].values()))
    print(summarise("names the store shows (chosen by meaning)", scored["shown"].values()))
    print(summarise("  where local", [scored["shown"].get(f) for f in local]))
    print(summarise("  the shipped names they replaced", [scored["shipped"].get(f) for f in local]))
    print(summarise("control: shown names shuffled", scored["shown control"].values()))


if __name__ == "__main__":
    main()
