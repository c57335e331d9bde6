"""Concept-filtered clustering against k-means on dense MiniLM embeddings, on real labelled
corpora (`explore_data.py`, default encoder, features relabelled offline on these documents).

The same documents are clustered along different axes by choosing different concepts, and each
clustering is scored (NMI and ARI) against the label of the axis it targets:
- Rotten Tomatoes reviews (fresh + rotten, k = 2) on the sentiment axis: all concepts; concepts
  chosen by 50 example rotten and 50 example fresh reviews; concepts matching a phrase;
  dense k-means;
- Rotten Tomatoes reviews and plot summaries (k = 2) on the register axis (review vs plot):
  concepts chosen by 50 example plot summaries; dense k-means;
- 2016 debates (k = 2) on the moderator-vs-candidate axis: concepts chosen by 50 example
  moderator turns; dense k-means.
Documents with none of the chosen concepts are outliers; they count as one more cluster in the
scores (so no document is dropped), and their share is shown. Example documents are drawn from
the corpus with a fixed seed; the scores include them.

    .venv/bin/python benchmarks/clustering.py [--measures max,strong,count,share,mean]

A second table clusters the same concept sets under every measure in ``--measures``
(`cluster --measure`): binary measures weighted by presence, numeric ones by log1p of the value.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

import numpy as np
import polars as pl
from explore_data import bench_store
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from saeembed.analysis.cluster import cluster_documents, weight_matrix
from saeembed.analysis.concepts import choose_concepts
from saeembed.analysis.matrix import load_matrix
from saeembed.analysis.measures import get_measure
from saeembed.embedding_cache import document_embeddings
from saeembed.errors import InputError
from saeembed.store import Store

TASKS = [  # (name, corpus, metadata column, value -> axis label, example values, phrase)
    ("RT reviews, sentiment", "rt", "category", {"fresh": 0, "rotten": 1}, ["rotten", "fresh"],
     "good or bad, praise or criticism"),
    ("RT reviews + plots, register", "rt", "category", {"fresh": 0, "rotten": 0, "plot": 1},
     ["plot"], "plot and story"),
    ("debates, moderator vs candidates", "debates", "party",
     {"Moderator": 1, "Republican": 0, "Democratic": 0}, ["Moderator"], "asking a question"),
]  # fmt: skip
N_EXAMPLES = 50


def scores(truth: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    return (
        normalized_mutual_info_score(truth, labels),
        adjusted_rand_score(truth, labels),
        float((labels == -1).mean()),
    )


def run_sae(task, label: str, features, weighting: str = "binary") -> tuple:
    """k-means (k = 2) on the SAE vectors restricted to ``features`` (all when None)."""
    name, values, truth, d_sae = task
    started = time.perf_counter()
    chosen = values[:, features].tocsr() if features is not None else values
    result = cluster_documents(weight_matrix(chosen, weighting), method="kmeans", k=2, seed=0)
    dims = len(features) if features is not None else d_sae
    return (name, label, dims, *scores(truth, result.labels), time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measures", default="max,strong,presence,count,share,mean")
    measures = parser.parse_args().measures.split(",")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    path = bench_store()
    rows, measure_rows = [], []
    with Store(path) as store:
        encoder = store.resolve_encoder(None)
        for name, corpus, column, axis, example_values, phrase in TASKS:
            meta = store.sql(
                f"SELECT doc_id, any_value(meta->>'{column}') AS v FROM documents "
                "WHERE corpus = ? GROUP BY doc_id",
                [corpus],
            ).filter(pl.col("v").is_in(list(axis)))
            matrix = load_matrix(store, encoder, corpus=corpus)
            keep = np.isin(matrix.doc_ids, meta["doc_id"].to_numpy())
            doc_ids = matrix.doc_ids[keep]
            values = matrix.values.tocsr()[np.flatnonzero(keep)]
            value_of = dict(zip(meta["doc_id"].to_list(), meta["v"].to_list(), strict=True))
            truth = np.array([axis[value_of[int(d)]] for d in doc_ids])
            rng = np.random.default_rng(0)
            examples = []
            for v in example_values:
                pool = [int(d) for d in doc_ids if value_of[int(d)] == v]
                examples.append(rng.choice(pool, N_EXAMPLES, replace=False).tolist())

            task = (name, values, truth, encoder.d_sae)
            rows.append(run_sae(task, "SAE, all concepts", None))
            rows.append(run_sae(task, "SAE, all concepts (idf)", None, "idf"))
            chosen = set()
            for value, group in zip(example_values, examples, strict=True):
                try:
                    choice = choose_concepts(store, encoder, positives=group, corpus=corpus, top=20)
                except InputError as exc:  # no concept separates these examples at q < 0.05
                    print(f"{name}, {value} examples: {exc}", file=sys.stderr)
                    continue
                chosen |= set(choice.features.tolist())
            if chosen:
                features = np.array(sorted(chosen))
                label = f"SAE, {len(features)} concepts chosen by examples"
                rows.append(run_sae(task, label, features))
            else:
                rows.append((name, "SAE, concepts chosen by examples: none separate them", 0,
                             float("nan"), float("nan"), float("nan"), 0.0))  # fmt: skip
            choice = choose_concepts(store, encoder, phrase=phrase, top=20)
            label = f'SAE, {choice.table.height} concepts matching "{phrase}"'
            rows.append(run_sae(task, label, choice.features))
            concept_sets = {"all concepts": None, "phrase's concepts": choice.features}
            if chosen:
                concept_sets["examples' concepts"] = features
            for measure in measures:
                other = load_matrix(store, encoder, corpus=corpus, measure=measure)
                assert np.array_equal(other.doc_ids, matrix.doc_ids)
                task_m = (name, other.values.tocsr()[np.flatnonzero(keep)], truth, encoder.d_sae)
                weighting = "binary" if get_measure(measure).binary else "log"
                for set_name, chosen_features in concept_sets.items():
                    result = run_sae(task_m, set_name, chosen_features, weighting)
                    measure_rows.append((name, set_name, measure, result[3]))
            texts = store.sql(
                "SELECT doc_id, any_value(text) AS text FROM documents WHERE corpus = ? GROUP BY doc_id",
                [corpus],
            )
            text_of = dict(zip(texts["doc_id"].to_list(), texts["text"].to_list(), strict=True))
            started = time.perf_counter()
            vectors = document_embeddings(store, doc_ids, [text_of[int(d)] for d in doc_ids])
            dense = KMeans(2, n_init=10, random_state=0).fit_predict(vectors)
            rows.append((name, "dense MiniLM k-means", vectors.shape[1], *scores(truth, dense),
                         time.perf_counter() - started))  # fmt: skip

    print("| task | clustering | dimensions | NMI | ARI | outliers | seconds |")
    print("|---|---|---|---|---|---|---|")
    for task, label, dims, nmi, ari, outliers, seconds in rows:
        print(f"| {task} | {label} | {dims:,} | {nmi:.3f} | {ari:.3f} | {outliers:.1%} | {seconds:.1f} |")  # fmt: skip
    table = pl.DataFrame(measure_rows, schema=["task", "concepts", "measure", "nmi"], orient="row")
    print("\nNMI by measure (k-means, k = 2; binary measures by presence, numeric by log1p):\n")
    print("| task | concepts | " + " | ".join(measures) + " |")
    print("|---|---|" + "---|" * len(measures))
    for (task, concepts), group in table.group_by("task", "concepts", maintain_order=True):
        nmi = dict(zip(group["measure"].to_list(), group["nmi"].to_list(), strict=True))
        print(f"| {task} | {concepts} | " + " | ".join(f"{nmi[m]:.3f}" for m in measures) + " |")
    means = table.group_by("measure").agg(pl.col("nmi").mean())
    mean_of = dict(zip(means["measure"].to_list(), means["nmi"].to_list(), strict=True))
    print("| mean | | " + " | ".join(f"{mean_of[m]:.3f}" for m in measures) + " |")


if __name__ == "__main__":
    main()
