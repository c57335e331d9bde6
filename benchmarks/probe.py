"""Sparse concept probes against dense probes, in the four regimes of the sparse-probing study
(Kantamneni et al. 2025, "Are Sparse Autoencoders Useful? A Case Study in Sparse Probing"):
data scarcity, class imbalance, label noise and covariate shift, on shipped datasets.

The store (built with ``--build``, the default encoder with ``encode --keep-dense``, documents
cut to their first 128 tokens) holds:

- ``rt``: Rotten Tomatoes fresh and rotten review snippets and plot summaries;
- ``commons``: House of Commons speeches (party), ``debates``: 2016 debate turns (party),
  ``convention``: 2012 convention speeches (party);
- ``news``: news articles of nine outlets;
- small samples of ``headlines`` and ``tweets``;

and every document carries ``genre`` (nine: review, plot summary, parliamentary speech, debate
turn, convention speech, news article, business headline, health tweet, and a
``side`` (left / right) where it has a party. Tasks:

==============  =========================================  ======================
task            documents                                   label
==============  =========================================  ======================
review side     rt reviews                                  fresh / rotten
commons party   commons, Con or Lab                         Con / Lab
debate party    debates, Democratic or Republican           party
outlet          news                                        nine outlets
genre           every document                              nine genres
==============  =========================================  ======================

Regimes (each a fresh split per seed; scores on held-out documents only):

- **full**: 5-fold cross-fitting, as `saeembed probe` runs;
- **scarce N**: N training documents (stratified), the rest held out;
- **imbalance P**: two-class tasks, training positives (the second class) a share P of 400
  training documents; the rest held out;
- **noise 30%**: 30% of the training labels replaced by another class; held-out labels clean;
- **shift**: the left / right side trained on one corpus, scored on another (commons ->
  debates, commons -> convention, debates -> commons).

Probes: concepts (top-k, k by inner CV), the reader's mean-pooled activations at the SAE's layer
(``dense_vectors``), the sentence embedder (MiniLM); all at their inner-CV settings.

    .venv/bin/python benchmarks/probe.py STORE [--build] [--seeds 3] [--scale 100000]

``--scale N`` times the probe on a synthetic N documents x 8,192 concepts matrix with the
real store's activations per document (no dense probes, no store). Prints markdown tables.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

import numpy as np
import polars as pl
import scipy.sparse as sp

from saeembed.analysis.matrix import load_matrix
from saeembed.analysis.probe_models import (
    Concepts,
    Target,
    cross_fit_concepts,
    cross_fit_dense,
    fit_concepts,
    fit_dense,
    make_folds,
)
from saeembed.analysis.probe_scores import metric
from saeembed.embedding_cache import stored_document_embeddings
from saeembed.store import Store
from saeembed.store.dense import dense_vectors

GENRES = {"rt": None, "commons": "parliamentary speech", "debates": "debate turn",
          "convention": "convention speech", "news": "news article",
          "headlines": "business headline", "tweets": "health tweet"}  # fmt: skip
SIDE = {"Con": "right", "Lab": "left", "Republican": "right", "Democratic": "left",
        "republican": "right", "democrat": "left"}  # fmt: skip
TASKS = {
    "review side": ("rt", "category", ["fresh", "rotten"]),
    "commons party": ("commons", "party", ["Con", "Lab"]),
    "debate party": ("debates", "party", ["Democratic", "Republican"]),
    "outlet": ("news", "outlet", None),
    "genre": (None, "genre", None),
}
SHIFTS = [("commons", "debates"), ("commons", "convention"), ("debates", "commons")]


def build(path: str) -> None:
    from saeembed.api import EncodingOptions, encode
    from saeembed.data import load_dataset

    rng = np.random.default_rng(0)

    def sample(frame: pl.DataFrame, n: int) -> pl.DataFrame:
        return frame.sample(min(n, frame.height), seed=int(rng.integers(1 << 30)))

    rt = load_dataset("rotten-tomatoes")
    frames = {
        "rt": pl.concat([sample(rt.filter(pl.col("category") == c), n) for c, n in
                         (("fresh", 700), ("rotten", 700), ("plot", 300))]),  # fmt: skip
        "commons": sample(load_dataset("commons-speeches").filter(
            pl.col("party").is_in(["Con", "Lab"]) & (pl.col("text").str.len_chars() > 200)), 800),
        "debates": load_dataset("debates-2016").filter(pl.col("text").str.len_chars() > 40),
        "convention": load_dataset("convention-2012"),
        "news": pl.concat([sample(g, 90) for _, g in
                           load_dataset("news-articles").group_by("outlet", maintain_order=True)]),
        "headlines": sample(load_dataset("guardian-headlines"), 300),
        "tweets": sample(load_dataset("health-tweets"), 300),
    }  # fmt: skip
    for corpus, frame in frames.items():
        genre = (
            pl.when(pl.col("category") == "plot").then(pl.lit("plot summary"))
            .otherwise(pl.lit("film review")) if corpus == "rt" else pl.lit(GENRES[corpus])
        )  # fmt: skip
        frame = frame.with_columns(genre.alias("genre"))
        if "party" in frame.columns:
            frame = frame.with_columns(
                pl.col("party").replace_strict(SIDE, default=None).alias("side")
            )
        keep = [
            c
            for c in frame.columns
            if frame[c].dtype in (pl.Utf8, pl.Int64, pl.Float64, pl.Boolean)
        ]
        print(f"encoding {corpus}: {frame.height} documents", file=sys.stderr)
        encode(frame.select(keep), path, corpus=corpus, keep_dense=True,
               encoding=EncodingOptions(max_tokens=128))  # fmt: skip


class Task:
    """A task's concept matrix, dense inputs and target (documents with a label only)."""

    def __init__(self, store: Store, corpus: str | None, column: str, classes, embed: bool):
        encoder = store.resolve_encoder(None)
        matrix = load_matrix(store, encoder, corpus=corpus, measure="max")
        from saeembed.analysis.correlate import metadata_column

        values = metadata_column(store, matrix, column, corpus).cast(pl.Utf8)
        keep = values.is_not_null().to_numpy()
        if classes:
            keep &= values.is_in(classes).fill_null(False).to_numpy()
        labels = values.filter(pl.Series(keep))
        names = sorted(labels.unique().to_list())
        code = {c: i for i, c in enumerate(names)}
        self.doc_ids = matrix.doc_ids[keep]
        self.x = Concepts(matrix.values.tocsr()[keep])
        kind = "binary" if len(names) == 2 else "multiclass"
        self.target = Target(kind, np.array([code[v] for v in labels.to_list()]), names)
        reader, found = dense_vectors(store, encoder, self.doc_ids)
        assert found.all(), "build the store with --keep-dense"
        self.dense = {"reader": reader}
        if embed:
            self.dense["embedder"] = stored_document_embeddings(store, self.doc_ids)


def train_test(x, dense, target: Target, train, test, seed: int) -> dict[str, float]:
    """Held-out scores of each probe trained on ``train`` (labels as ``target`` has them) and
    scored on ``test`` against ``truth`` (the target of ``test``)."""
    t_train, t_test = target.subset(train), target.subset(test)
    out = {
        "concepts": metric(
            t_test, fit_concepts(x[train], t_train, seed=seed).predict(x[test], t_test)
        )
    }
    for name, z in dense.items():
        out[name] = metric(t_test, fit_dense(z[train], t_train, seed=seed).predict(z[test], t_test))
    return out


def full(task: Task, seed: int) -> dict[str, float]:
    folds = make_folds(task.target, 5, seed)
    out = {
        "concepts": metric(
            task.target, cross_fit_concepts(task.x, task.target, folds, seed=seed).chosen
        )
    }
    for name, z in task.dense.items():
        out[name] = metric(task.target, cross_fit_dense(z, task.target, folds, seed=seed)[0])
    return out


def scarce(task: Task, n: int, seed: int) -> dict[str, float]:
    from sklearn.model_selection import train_test_split

    index = np.arange(len(task.target.y))
    train, test = train_test_split(index, train_size=n, stratify=task.target.y, random_state=seed)
    return train_test(task.x, task.dense, task.target, train, test, seed)


def imbalance(task: Task, share: float, seed: int, size: int = 400) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    y = task.target.y
    size = min(size, int(0.8 * (y == 0).sum()))  # leave documents of both classes to score
    positives = max(1, round(share * size))
    pos = rng.choice(np.flatnonzero(y == 1), positives, replace=False)
    neg = rng.choice(np.flatnonzero(y == 0), size - positives, replace=False)
    train = np.sort(np.r_[pos, neg])
    test = np.setdiff1d(np.arange(len(y)), train)
    return train_test(task.x, task.dense, task.target, train, test, seed)


def noise(task: Task, share: float, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    y = task.target.y
    test = rng.choice(len(y), len(y) // 5, replace=False)
    train = np.setdiff1d(np.arange(len(y)), test)
    noisy = y.copy()
    flip = train[rng.random(len(train)) < share]
    n_classes = len(task.target.classes)
    noisy[flip] = (y[flip] + rng.integers(1, n_classes, len(flip))) % n_classes  # another class
    t_noisy = Target(task.target.kind, noisy, task.target.classes)
    t_train, t_test = t_noisy.subset(train), task.target.subset(test)
    out = {
        "concepts": metric(
            t_test, fit_concepts(task.x[train], t_train, seed=seed).predict(task.x[test], t_test)
        )
    }
    for name, z in task.dense.items():
        out[name] = metric(t_test, fit_dense(z[train], t_train, seed=seed).predict(z[test], t_test))
    return out


def shift(store: Store, source: str, goal: str, seed: int, embed: bool) -> dict[str, float]:
    a = Task(store, source, "side", ["left", "right"], embed)
    b = Task(store, goal, "side", ["left", "right"], embed)
    fitted = fit_concepts(a.x, a.target, seed=seed)
    out = {"concepts": metric(b.target, fitted.predict(b.x, b.target))}
    for name in a.dense:
        model = fit_dense(a.dense[name], a.target, seed=seed)
        out[name] = metric(b.target, model.predict(b.dense[name], b.target))
    return out


def shuffled(task: Task, seed: int) -> tuple[float, int, int]:
    """The label permuted: the concept probe's held-out score, and of the hypotheses chosen on
    the discovery half, how many were tested and how many reach q < 0.05 on the other half."""
    from saeembed.analysis.probe_hypotheses import discovery_split, held_out_test, select

    rng = np.random.default_rng(1000 + seed)
    target = Target(task.target.kind, rng.permutation(task.target.y), task.target.classes)
    folds = make_folds(target, 5, seed)
    score = metric(target, cross_fit_concepts(task.x, target, folds, seed=seed).chosen)
    discovery = discovery_split(target, seed)
    chosen = select(task.x[discovery], target.subset(np.flatnonzero(discovery)), seed=seed)
    validation = np.flatnonzero(~discovery)
    tested = held_out_test(task.x[validation], target.subset(validation), chosen)
    return score, tested.height, int((tested["q"] < 0.05).sum())


def row(task: str, regime: str, results: list[dict[str, float]]) -> str:
    names = list(results[0])
    mean = {n: float(np.mean([r[n] for r in results])) for n in names}
    sd = {n: float(np.std([r[n] for r in results])) for n in names}
    cells = " | ".join(f"{mean[n]:.3f} ± {sd[n]:.3f}" for n in names)
    gap = mean["concepts"] - mean["reader"]
    wins = sum(r["concepts"] >= r["reader"] for r in results)
    return f"| {task} | {regime} | {cells} | {gap:+.3f} | {wins}/{len(results)} |"


def scale(store: Store, n: int) -> None:
    """Time the concept probe on a synthetic n x 8,192 matrix with the real store's activations
    per document (values drawn from the real nonzeros), a label carried by 20 concepts."""
    matrix = load_matrix(store, store.resolve_encoder(None), measure="max")
    per_doc = np.diff(matrix.values.tocsr().indptr)
    rng = np.random.default_rng(0)
    counts = rng.choice(per_doc, n)
    d = matrix.values.shape[1]
    popularity = np.asarray((matrix.values > 0).sum(axis=0)).ravel() + 1.0
    cols = rng.choice(d, counts.sum(), p=popularity / popularity.sum())
    rows = np.repeat(np.arange(n), counts)
    vals = rng.choice(matrix.values.data, counts.sum())
    x = sp.csr_matrix((vals, (rows, cols)), shape=(n, d))
    x.sum_duplicates()
    signal = np.asarray(x[:, :20].sum(axis=1)).ravel()
    y = (signal + rng.normal(0, signal.std(), n) > np.median(signal)).astype(int)
    target = Target("binary", y, ["a", "b"])
    from saeembed.analysis.probe_hypotheses import discovery_split, held_out_test, select
    from saeembed.analysis.probe_scores import scores_with_intervals

    clock = [time.perf_counter()]
    concepts = Concepts(x)  # the layouts the probe reads
    clock.append(time.perf_counter())
    probe = cross_fit_concepts(concepts, target, make_folds(target, 5, 0))
    clock.append(time.perf_counter())
    scores_with_intervals(target, {"chosen": probe.chosen, **probe.by_k})
    clock.append(time.perf_counter())
    discovery = discovery_split(target, 0)
    chosen = select(concepts[discovery], target.subset(np.flatnonzero(discovery)))
    held_out_test(concepts[~discovery], target.subset(np.flatnonzero(~discovery)), chosen)
    clock.append(time.perf_counter())
    stages = " / ".join(f"{b - a:.1f}" for a, b in zip(clock, clock[1:], strict=False))
    print(f"| {n:,} x {d:,} | {x.nnz:,} | {clock[-1] - clock[0]:.1f} s ({stages}) | "
          f"{metric(target, probe.chosen):.3f} | {sorted(probe.k_of_fold.values())} |")  # fmt: skip


REGIMES = ("full", "scarce", "imbalance", "noise", "shift", "null")


def task_rows(store: Store, name: str, regimes: set[str], seeds: range, embed: bool) -> list:
    """Print the task's rows for ``regimes``; return its shuffled-label results (if asked)."""
    corpus, column, classes = TASKS[name]
    task = Task(store, corpus, column, classes, embed)
    print(f"{name}: {len(task.target.y)} documents", file=sys.stderr)
    runs = []
    if "full" in regimes:
        runs.append(("full (5-fold)", lambda s: full(task, s)))
    if "scarce" in regimes:
        runs += [(f"scarce {n}", lambda s, n=n: scarce(task, n, s)) for n in (24, 96)]
    if "imbalance" in regimes and task.target.kind == "binary":
        runs += [(f"imbalance {p:.0%}", lambda s, p=p: imbalance(task, p, s)) for p in (0.05, 0.01)]
    if "noise" in regimes:
        runs.append(("noise 30%", lambda s: noise(task, 0.3, s)))
    for regime, run in runs:
        print(row(name, regime, [run(s) for s in seeds]), flush=True)
    if "null" in regimes and name in ("review side", "genre"):
        return [shuffled(task, s) for s in range(10)]
    return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("store")
    parser.add_argument("--build", action="store_true")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--no-embedder", action="store_true")
    parser.add_argument("--scale", type=int)
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--regimes", default=",".join(REGIMES))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.build:
        build(args.store)
    embed, regimes, seeds = not args.no_embedder, set(args.regimes.split(",")), range(args.seeds)
    with Store(args.store) as store:
        if args.scale:
            print(
                "| documents x concepts | activations | seconds (prepare / 5-fold cross-fit / "
                "intervals / hypotheses) | AUC | k per fold |"
            )
            print("|---|---:|---:|---:|---|")
            scale(store, args.scale)
            return
        probes = "concepts | reader" + (" | embedder" if embed else "")
        print(f"| task | regime | {probes} | concepts − reader | concepts ≥ reader |")
        print("|---|---|" + "---:|" * (len(probes.split("|")) + 2))
        nulls = [(name, task_rows(store, name, regimes, seeds, embed))
                 for name in args.tasks.split(",")]  # fmt: skip
        for source, goal in SHIFTS if "shift" in regimes else ():
            results = [shift(store, source, goal, s, embed) for s in seeds]
            print(row("side (left/right)", f"shift {source} → {goal}", results), flush=True)
        if any(results for _, results in nulls):
            print("\n| shuffled label (10 seeds) | concept probe: max held-out score | mean | "
                  "hypotheses tested | at q < 0.05 |")  # fmt: skip
            print("|---|---:|---:|---:|---:|")
        for name, results in nulls:
            if results:
                scores = [r[0] for r in results]
                print(f"| {name} | {max(scores):.3f} | {np.mean(scores):.3f} | "
                      f"{sum(r[1] for r in results)} | {sum(r[2] for r in results)} |")  # fmt: skip


if __name__ == "__main__":
    main()
