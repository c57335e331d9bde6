"""Do the diff's statistics hold on real corpora, and which ordering serves readers? Over several
seeds:

- null: split one real corpus into two random halves and diff them; every reported concept
  (q < 0.05) is a false discovery. Target: at most 1 on average.
- planted: replace 10% of one half's documents by donor documents that carry a property, and
  find the concept that carries it: the top concept of a diff of *other* donor documents against
  the rest of the base corpus. Target: it ranks in the top 5 of the concepts the planted diff
  finds enriched in A. Also reported: how many of those top 5 are significant carriers in that
  independent diff. The donor documents are either base documents matching ``--property`` (a
  regular expression; they are kept out of the halves) or documents of another corpus
  (``--donor data:...``).
- orderings: the planted diff's output ranked by each ``--sorts`` ordering (diff.rank; and,
  for the scores, the variant that orders the rows below q < 0.05 by the score too), judged
  by its first 10 and 20 rows: the *planted concepts* among them (concepts that fire on the
  property itself: in at least 10 donor documents, their peak token lies in a match of
  ``--property`` in at least half; regex donors only), the precision of the top 10 (the share
  that are carriers: enriched at q < 0.05 in the independent diff of the other donors against
  B), and the median frequency in B (the base corpus) of the top 10, low when the ordering shows
  concepts specific to the plant rather than common everywhere.

    .venv/bin/python benchmarks/diff_stats.py [--n-base 6000] [--property REGEX] [--seeds 10]
    .venv/bin/python benchmarks/diff_stats.py --measure strong --sorts p effect logodds specific
    .venv/bin/python benchmarks/diff_stats.py --donor data:health-tweets

The corpora (a seeded sample of each dataset) are encoded once with the default reader and SAE
into a store under $SAEEMBED_HOME/stores/ (about 2 minutes on 2 CPU cores the first time).
Prints markdown tables to stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time

import numpy as np
import polars as pl

from saeembed.analysis.diff import diff_corpora, rank, sort_score
from saeembed.analysis.measures import DIFF_SORTS, prepare, rows_sql
from saeembed.api import EncodingOptions, encode
from saeembed.errors import InputError
from saeembed.home import cache_dir
from saeembed.labels.table import label_names
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


def property_concepts(
    store: Store,
    pattern: str,
    measure: str,
    corpus: str = "donor",
    min_docs: int = 10,
    min_share: float = 0.5,
) -> set[int]:
    """The planted concepts: those active (under ``measure``) in at least ``min_docs`` documents
    of the donor ``corpus`` whose peak token lies inside a match of ``pattern`` in at least
    ``min_share`` of them: concepts of the property itself, found without any diff."""
    encoder = store.resolve_encoder(None)
    m = prepare(store, encoder, measure)
    rows = store.sql(
        f"""
        SELECT r.feature, r.doc_id, a.peak_start, a.peak_end FROM ({rows_sql(m)}) r
        JOIN activations a ON a.encoder_id = $enc AND a.doc_id = r.doc_id
            AND a.feature = r.feature
        WHERE r.doc_id IN (SELECT doc_id FROM documents WHERE corpus = $corpus)
        """,
        {"enc": encoder.encoder_id, "corpus": corpus},
    )
    texts = store.sql("SELECT doc_id, text FROM documents WHERE corpus = ?", [corpus])
    spans = {
        d: [(x.start(), x.end()) for x in re.finditer(pattern, t, re.I)]
        for d, t in texts.iter_rows()
    }
    on = [
        start is not None and any(s < end and start < e for s, e in spans.get(doc, ()))
        for doc, start, end in zip(
            rows["doc_id"], rows["peak_start"], rows["peak_end"], strict=True
        )
    ]
    shares = (
        rows.with_columns(pl.Series("on", on))
        .group_by("feature")
        .agg(pl.len().alias("n"), pl.col("on").mean().alias("share"))
        .filter((pl.col("n") >= min_docs) & (pl.col("share") >= min_share))
    )
    return set(shares["feature"].to_list())


def orderings(table: pl.DataFrame, sorts, diff=None, alpha: float = 0.05):
    """(name, ranked table) per ordering: each of ``sorts`` as `diff.rank` ships it (the concepts
    at q < alpha by the ordering, the rest by p), and for the scores also ``"NAME, rest too"``:
    the score below the significance line as well. ``table`` is a diff table; ``diff(sort)``
    recomputes it where its columns cannot be re-ranked (numeric measures keep the bounds of
    `specific` private)."""
    for sort in sorts:
        try:
            yield sort, rank(table, alpha, sort)
        except InputError:
            yield sort, diff(sort)
    for sort in sorts:
        if sort == "p":
            continue
        try:
            score = sort_score(table, sort)
        except InputError:
            continue
        keyed = table.with_columns(
            pl.Series("_sig", (table["q"] < alpha).to_numpy()), pl.Series("_key", -score)
        )
        ranked = keyed.sort(["_sig", "_key", "p", "feature"], descending=[True] + [False] * 3)
        yield f"{sort}, rest too", ranked.drop("_sig", "_key")


def planted_trial(
    store: Store,
    rng: np.random.Generator,
    half_a: np.ndarray,
    donor: np.ndarray,
    share: float,
    measure: str = "presence",
    sorts: tuple[str, ...] = DIFF_SORTS[:1],
    planted: set[int] | None = None,
) -> dict:
    """Plant ``share`` of half A with donor documents; rank the carrier concept (found on the
    other donor documents against B) among the concepts enriched in A, and judge the first rows
    of the planted diff under each ordering of ``sorts``."""
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
    carriers = diff_corpora(store, ["donor-ref"], ["null-b"], measure=measure, sort="p").filter(
        pl.col("diff") > 0
    )
    carrier = carriers.row(0, named=True)
    significant = set(carriers.filter(pl.col("q") < 0.05)["feature"].to_list())
    table = diff_corpora(store, ["planted-a"], ["null-b"], measure=measure, sort="p")
    f = carrier["feature"]
    row = table.filter(pl.col("feature") == f)
    result = {
        "carrier": f,
        "label": carrier["label"],
        "diff": row["diff"][0] if row.height else float("nan"),
        "q": row["q"][0] if row.height else float("nan"),
        "reported": table.filter(pl.col("q") < 0.05).height,
        "carriers": len(significant),
    }
    for name, ranked in orderings(table, sorts):
        order = ranked.filter(pl.col("diff") > 0)["feature"].to_list()
        top = ranked.head(20)
        top10 = top["feature"].to_list()[:10]
        result[name] = {
            "rank": order.index(f) + 1 if f in order else None,
            "top5_carriers": sum(x in significant for x in order[:5]),
            "planted10": None if planted is None else sum(x in planted for x in top10),
            "planted20": None if planted is None else len(planted & set(top["feature"])),
            "precision10": sum(x in significant for x in top10) / max(len(top10), 1),
            "freq_b10": float(top.head(10)["freq_b"].median()),
            "labels": top["label"].head(10).to_list(),
        }
    return result


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
    parser.add_argument(
        "--sorts", nargs="+", default=list(DIFF_SORTS), choices=DIFF_SORTS,
        help="orderings of the planted diff to compare (the first is the one of the seed table)",
    )  # fmt: skip
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    db = cache_dir("stores") / "bench-diff-stats.duckdb"
    base_name = f"base-{args.n_base}"
    texts = source_texts(SourceSpec.parse(f"{args.base}#{args.n_base}"), passages=None, seed=0)
    encode(texts, db, corpus=base_name, encoding=EncodingOptions(max_tokens=128))
    if args.donor:
        donor_texts = source_texts(
            SourceSpec.parse(f"{args.donor}#{args.n_donor}"), passages=None, seed=0
        )
        encode(
            donor_texts,
            db,
            corpus=f"donor-{args.n_donor}",
            encoding=EncodingOptions(max_tokens=128),
        )

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
        planted = None if args.donor else property_concepts(store, args.property, args.measure)
        if planted is not None:
            names = label_names(store, store.resolve_encoder(None)).filter(
                pl.col("feature").is_in(list(planted))
            )
            print(f"planted concepts: {sorted(names.iter_rows())}", file=sys.stderr)
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
                    **planted_trial(
                        store,
                        rng,
                        half_a,
                        donor,
                        args.plant,
                        args.measure,
                        tuple(args.sorts),
                        planted,
                    ),
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
    first = args.sorts[0]
    print(f"Planted ({args.plant:.0%} of half A replaced by donor documents; order {first}):\n")
    print(
        "| seed | carrier concept | label | rank among enriched | diff | q | carriers in top 5 "
        "| reported | carriers |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in planted_rows:
        print(
            f"| {r['seed']} | {r['carrier']} | {r['label']} | {r[first]['rank']} | "
            f"{r['diff']:.3f} | {r['q']:.1e} | {r[first]['top5_carriers']} | {r['reported']} "
            f"| {r['carriers']} |"
        )
    n = len(planted_rows)
    print(
        f"\nmeasure {args.measure}; mean over {n} seeds: {np.mean([r['reported'] for r in planted_rows]):.1f} "
        f"concepts reported (q < 0.05) by the planted diff, {np.mean([r['carriers'] for r in planted_rows]):.1f} "
        f"carriers; {len(planted) if planted is not None else 'no'} planted concepts\n"
    )
    print(
        "| ordering | carrier in top 5 | planted concepts in top 10 | in top 20 "
        "| precision of the top 10 | median freq_b of the top 10 |"
    )
    print("|---|---|---|---|---|---|")
    names = [k for k in planted_rows[0] if isinstance(planted_rows[0][k], dict)]
    for name in names:
        got = [r[name] for r in planted_rows]
        top5 = sum(1 for g in got if g["rank"] is not None and g["rank"] <= 5)
        planted10 = "n/a" if planted is None else f"{np.mean([g['planted10'] for g in got]):.1f}"
        planted20 = "n/a" if planted is None else f"{np.mean([g['planted20'] for g in got]):.1f}"
        print(
            f"| {name} | {top5}/{n} | {planted10} | {planted20} "
            f"| {np.mean([g['precision10'] for g in got]):.2f} "
            f"| {np.median([g['freq_b10'] for g in got]):.3f} |"
        )
    print("\nThe top 10 of seed 0 under each ordering:\n")
    for name in names:
        labels = planted_rows[0][name]["labels"]
        print(f"- {name}: {'; '.join(str(x) for x in labels)}")


if __name__ == "__main__":
    main()
