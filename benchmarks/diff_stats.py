"""Do the diff's statistics hold on real corpora? Two checks, over several seeds:

- null: split one real corpus into two random halves and diff them; every reported concept
  (q < 0.05) is a false discovery. Target: at most 1 on average.
- planted: replace 10% of one half's documents by donor documents that carry a property, and
  find the concept that carries it: the top concept of a diff of *other* donor documents against
  the rest of the base corpus. Target: it ranks in the top 5 of the concepts the planted diff
  finds enriched in A. Also reported: how many of those top 5 are significant carriers in that
  independent diff. The donor documents are either base documents matching ``--property`` (a
  regular expression; they are kept out of the halves) or documents of another corpus
  (``--donor data:...``).

    .venv/bin/python benchmarks/diff_stats.py [--n-base 6000] [--property REGEX] [--seeds 10]
    .venv/bin/python benchmarks/diff_stats.py --donor data:health-tweets

The corpora (a seeded sample of each dataset) are encoded once with the default reader and SAE
into a store under $SAEEMBED_HOME/stores/ (about 2 minutes on 2 CPU cores the first time).
Prints markdown tables to stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

import numpy as np
import polars as pl

from saeembed.analysis.diff import diff_corpora
from saeembed.api import encode
from saeembed.home import cache_dir
from saeembed.store import Store
from saeembed.train.recipe import SourceSpec, source_texts


def subset(store: Store, source: str, target: str, doc_ids: np.ndarray) -> None:
    """(Re)make corpus ``target`` from documents ``doc_ids`` of corpus ``source``."""
    store.con.execute("DELETE FROM documents WHERE corpus = ?", [target])
    store.con.execute(
        "INSERT INTO corpora (corpus, source) VALUES (?, ?) ON CONFLICT DO NOTHING",
        [target, f"subset of {source}"],
    )
    store.con.register("picked", pl.DataFrame({"doc_id": doc_ids}).to_arrow())
    store.con.execute(
        """
        INSERT INTO documents (corpus, doc_id, row_idx, ext_id, text, meta)
        SELECT ?, d.doc_id, d.row_idx, d.ext_id, d.text, d.meta
        FROM documents d SEMI JOIN picked p ON p.doc_id = d.doc_id WHERE d.corpus = ?
        """,
        [target, source],
    )
    store.con.unregister("picked")


def doc_ids(store: Store, corpus: str) -> np.ndarray:
    return store.sql("SELECT doc_id FROM documents WHERE corpus = ? ORDER BY doc_id", [corpus])[
        "doc_id"
    ].to_numpy()


def planted_trial(
    store: Store,
    rng: np.random.Generator,
    half_a: np.ndarray,
    donor: np.ndarray,
    share: float,
    measure: str = "presence",
) -> dict:
    """Plant ``share`` of half A with donor documents; rank the carrier concept (found on the
    other donor documents against B) among the concepts enriched in A."""
    donors = rng.permutation(donor)
    n_plant = int(round(share * len(half_a)))
    plant, reference = donors[:n_plant], donors[n_plant:]
    subset(store, "base", "planted-a", half_a[n_plant:])
    store.con.execute(
        "INSERT INTO documents (corpus, doc_id, row_idx, ext_id, text, meta) "
        "SELECT 'planted-a', doc_id, row_idx, ext_id, text, meta "
        "FROM documents WHERE corpus = 'donor' AND doc_id IN (SELECT unnest(?))",
        [plant.tolist()],
    )
    subset(store, "donor", "donor-ref", reference)
    carriers = diff_corpora(store, ["donor-ref"], ["null-b"], measure=measure).filter(
        pl.col("diff") > 0
    )
    carrier = carriers.row(0, named=True)
    significant = set(carriers.filter(pl.col("q") < 0.05)["feature"].to_list())
    enriched = diff_corpora(store, ["planted-a"], ["null-b"], measure=measure).filter(
        pl.col("diff") > 0
    )
    order = enriched["feature"].to_list()
    by_p = enriched.sort("p", "feature")["feature"].to_list()
    row = enriched.filter(pl.col("feature") == carrier["feature"])
    return {
        "carrier": carrier["feature"],
        "label": carrier["label"],
        "rank": order.index(carrier["feature"]) + 1 if carrier["feature"] in order else None,
        "rank_p": by_p.index(carrier["feature"]) + 1 if carrier["feature"] in by_p else None,
        "diff": row["diff"][0] if row.height else float("nan"),
        "q": row["q"][0] if row.height else float("nan"),
        "top5_carriers": sum(f in significant for f in order[:5]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="data:rotten-tomatoes")
    parser.add_argument("--n-base", type=int, default=6000)
    parser.add_argument("--property", default=r"\b(funny|hilarious|comedy|comic|laughs?)\b")
    parser.add_argument("--donor", default=None, help="another corpus as the donor")
    parser.add_argument("--n-donor", type=int, default=600)
    parser.add_argument("--plant", type=float, default=0.10)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--measure", default="presence", help="concept measure of the diffs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    db = cache_dir("stores") / "bench-diff-stats.duckdb"
    base_name = f"base-{args.n_base}"
    texts = source_texts(SourceSpec.parse(f"{args.base}#{args.n_base}"), passages=None, seed=0)
    encode(texts, db, corpus=base_name, max_tokens=128)
    if args.donor:
        donor_texts = source_texts(
            SourceSpec.parse(f"{args.donor}#{args.n_donor}"), passages=None, seed=0
        )
        encode(donor_texts, db, corpus=f"donor-{args.n_donor}", max_tokens=128)

    with Store(db) as store:
        all_base = doc_ids(store, base_name)
        if args.donor:
            subset(store, f"donor-{args.n_donor}", "donor", doc_ids(store, f"donor-{args.n_donor}"))
            subset(store, base_name, "base", all_base)
            what = f"{args.donor} ({args.n_donor:,} documents)"
        else:
            matching = store.sql(
                "SELECT doc_id FROM documents WHERE corpus = ? AND regexp_matches(text, ?, 'i')",
                [base_name, args.property],
            )["doc_id"].to_numpy()
            subset(store, base_name, "donor", matching)
            subset(store, base_name, "base", np.setdiff1d(all_base, matching))
            what = f"base documents matching {args.property!r} ({len(matching):,})"
        base, donor = doc_ids(store, "base"), doc_ids(store, "donor")
        null_rows, planted_rows = [], []
        started = time.perf_counter()
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            half_a, half_b = np.array_split(rng.permutation(base), 2)
            subset(store, "base", "null-a", half_a)
            subset(store, "base", "null-b", half_b)
            table = diff_corpora(store, ["null-a"], ["null-b"], measure=args.measure)
            null_rows.append(
                {
                    "seed": seed,
                    "tested": table.height,
                    "q<0.05": table.filter(pl.col("q") < 0.05).height,
                    "p<0.05": table.filter(pl.col("p") < 0.05).height,
                }
            )
            planted_rows.append(
                {
                    "seed": seed,
                    **planted_trial(store, rng, half_a, donor, args.plant, args.measure),
                }
            )
            print(f"seed {seed}: {null_rows[-1]} {planted_rows[-1]}", file=sys.stderr)
        seconds = time.perf_counter() - started

    null = pl.DataFrame(null_rows)
    print(
        f"base {args.base} ({len(base):,} documents after removing donors), donor: {what}, "
        f"{args.seeds} seeds, {seconds:.1f} s for {3 * args.seeds} diffs\n"
    )
    print("Null (two random halves of the base corpus):\n")
    print("| seed | concepts tested | reported at q < 0.05 | at p < 0.05 |")
    print("|---|---|---|---|")
    for r in null_rows:
        print(f"| {r['seed']} | {r['tested']:,} | {r['q<0.05']} | {r['p<0.05']} |")
    print(
        f"\nmean false discoveries at q < 0.05: {null['q<0.05'].mean():.2f} "
        f"(max {null['q<0.05'].max()}); mean share of concepts at p < 0.05: "
        f"{(null['p<0.05'] / null['tested']).mean():.3f} (5% expected)\n"
    )
    print(f"Planted ({args.plant:.0%} of half A replaced by donor documents):\n")
    print("| seed | carrier concept | label | rank among enriched | diff | q | carriers in top 5 |")
    print("|---|---|---|---|---|---|---|")
    for r in planted_rows:
        print(
            f"| {r['seed']} | {r['carrier']} | {r['label']} | {r['rank']} | "
            f"{r['diff']:.3f} | {r['q']:.1e} | {r['top5_carriers']} |"
        )
    in_top5 = sum(1 for r in planted_rows if r["rank"] is not None and r["rank"] <= 5)
    in_top5_p = sum(1 for r in planted_rows if r["rank_p"] is not None and r["rank_p"] <= 5)
    print(
        f"\nmeasure {args.measure}: carrier in the top 5: {in_top5} of {len(planted_rows)} "
        f"seeds ({in_top5_p} when ranked by p)"
    )


if __name__ == "__main__":
    main()
