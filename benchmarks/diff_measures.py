"""Which concept measure should a diff use? Null halves and planted passages on long documents
(200+ words) and on short snippets, for every measure and test, in one run.

Settings (each a base corpus and donor passages; the donors are kept out of the base):

- ``long-topic``: first 220-word windows of news articles (no religious vocabulary), donors are
  news windows about religion (4+ religious words): a topic shift within one register.
- ``long-register``: the same news windows, donors are 220-word windows of 2012 convention
  speeches: a shift of register (speech against reporting).
- ``short``: Rotten Tomatoes snippets (about 24 tokens), donors are the snippets about comedy
  (funny, hilarious, comic, laughs), as in `benchmarks/diff_stats.py`.

For each seed: the null diff of two random halves of ``--n-side`` documents each (every concept
reported at q < 0.05 is false), and the planted diff after replacing 10% of half A by donors,
where the carrier is the top concept of a diff of the *other* donors against half B under the
same measure; the target is the carrier in the top 5 of the concepts enriched in A.

    .venv/bin/python benchmarks/diff_measures.py [--seeds 10] [--n-side 300] [--settings ...]
    .venv/bin/python benchmarks/diff_measures.py --prepare-only    # encode the corpora, then stop
    .venv/bin/python benchmarks/diff_measures.py --configs strong/proportion \
        --sorts p effect logodds specific    # also compare the orderings of the planted diff

With ``--sorts``, each planted diff's output is also ranked by every ordering (diff.rank) and
judged as in `benchmarks/diff_stats.py`: the planted concepts (those whose peak token lies on
the setting's property, religious or comic words, in half of the donors where they are active)
among its first 10 and 20 rows, the precision of the top 10 (share that are carriers) and the
median frequency in B of the top 10. The orderings logodds and specific need a binary measure.

The corpora are encoded once with the default reader and SAE into
$SAEEMBED_HOME/stores/bench-diff-measures.duckdb (about 6 minutes on 2 CPU cores).
Markdown tables on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

from saeembed.analysis.diff import COUNT_SORTS, diff_corpora
from saeembed.analysis.measures import DIFF_SORTS, get_measure
from saeembed.api import encode
from saeembed.data import load_dataset
from saeembed.home import cache_dir
from saeembed.store import Store

sys.path.insert(0, str(Path(__file__).parent))
from diff_stats import orderings, property_concepts  # noqa: E402  (benchmarks/ is not a package)

RELIGION = (
    r"(?i)\b(church\w*|god|faith|religio\w*|pope|bishops?|christian\w*|muslims?|islam\w*|jewish"
    r"|pray\w*|priests?|catholic\w*|worship\w*|mosques?|spiritual\w*)\b"
)
COMEDY = r"(?i)\b(funny|hilarious|comedy|comic|laughs?)\b"
WORDS = 220  # words per long passage (about 280 model tokens)


def _windows(name: str) -> pl.DataFrame:
    frame = load_dataset(name, split_passages="window", max_tokens=WORDS)
    return frame.filter(pl.col("text").str.split(" ").list.len() >= 200)


def corpora(n_base: int, seed: int = 0) -> dict[str, list[str]]:
    """The texts of every corpus the settings draw from."""
    rng = np.random.default_rng(seed)
    news = _windows("news-articles").with_columns(
        pl.col("text").str.count_matches(RELIGION).alias("religious")
    )
    religious = news.filter(pl.col("religious") >= 4)
    base = news.filter(
        (pl.col("passage_idx") == 0)
        & (pl.col("religious") == 0)
        & ~pl.col("source_row").is_in(religious["source_row"].implode())
    )
    base = base[np.sort(rng.choice(base.height, min(n_base, base.height), replace=False))]
    speeches = _windows("convention-2012")
    speeches = speeches[
        np.sort(rng.choice(speeches.height, min(240, speeches.height), replace=False))
    ]
    reviews = load_dataset("rotten-tomatoes")["text"].unique(maintain_order=True)
    reviews = reviews.sample(min(4 * n_base + 600, len(reviews)), seed=seed, shuffle=False)
    comic = reviews.filter(reviews.str.contains(COMEDY))
    return {
        "news": base["text"].to_list(),
        "news-religion": religious["text"].to_list(),
        "speeches": speeches["text"].to_list(),
        "reviews": reviews.filter(~reviews.str.contains(COMEDY)).to_list(),
        "reviews-comedy": comic.to_list(),
    }


SETTINGS = {
    "long-topic": ("news", "news-religion"),
    "long-register": ("news", "speeches"),
    "short": ("reviews", "reviews-comedy"),
}
#: The property each setting plants, where a regular expression names it (its planted concepts).
PROPERTIES = {"long-topic": RELIGION, "short": COMEDY}


def prepare(db, n_base: int) -> None:
    for corpus, texts in corpora(n_base).items():
        print(f"{corpus}: {len(texts):,} documents", file=sys.stderr)
        encode(texts, db, corpus=corpus)


CONFIGS = [
    ("presence", "proportion"),
    ("strong", "proportion"),
    ("count", "welch"),
    ("count", "mannwhitney"),
    ("share", "welch"),
    ("share", "mannwhitney"),
    ("mean", "welch"),
    ("mean", "mannwhitney"),
    ("max", "welch"),
    ("max", "mannwhitney"),
]


def subset(store: Store, target: str, doc_ids: np.ndarray) -> None:
    """(Re)make corpus ``target`` holding documents ``doc_ids`` (already in the store)."""
    store.con.execute("DELETE FROM documents WHERE corpus = ?", [target])
    store.con.execute(
        "INSERT INTO corpora (corpus, source) VALUES (?, 'benchmark subset') ON CONFLICT DO NOTHING",
        [target],
    )
    with store.temporary(picked={"doc_id": doc_ids}):
        store.con.execute(
            "INSERT INTO documents (corpus, doc_id, row_idx, ext_id, text, meta) "
            "SELECT ?, doc_id, any_value(row_idx), NULL, any_value(text), NULL FROM documents "
            "WHERE doc_id IN (SELECT doc_id FROM picked) GROUP BY doc_id",
            [target],
        )


def ids_of(store: Store, corpus: str) -> np.ndarray:
    return store.sql("SELECT doc_id FROM documents WHERE corpus = ? ORDER BY doc_id", [corpus])[
        "doc_id"
    ].to_numpy()


def enriched(store: Store, a: str, b: str, measure: str, test: str) -> pl.DataFrame:
    return diff_corpora(store, [a], [b], measure=measure, test=test, sort="p").filter(
        pl.col("diff") > 0
    )


def trial(store, rng, base, donor, n_side, plant, measure, test, sorts=(), planted=None) -> dict:
    """One seed of one setting under one measure: the null halves, then the planted diff, ranked
    by each of ``sorts`` (a dict per ordering)."""
    half_a, half_b = np.array_split(rng.permutation(base)[: 2 * n_side], 2)
    subset(store, "null-a", half_a)
    subset(store, "null-b", half_b)
    null = diff_corpora(store, ["null-a"], ["null-b"], measure=measure, test=test)
    donors = rng.permutation(donor)
    n_plant = int(round(plant * n_side))
    subset(store, "planted-a", np.concatenate([half_a[n_plant:], donors[:n_plant]]))
    subset(store, "donor-ref", donors[n_plant:])
    reference = enriched(store, "donor-ref", "null-b", measure, test)
    carrier = reference.row(0, named=True)
    carriers = set(reference.filter(pl.col("q") < 0.05)["feature"].to_list())
    table = diff_corpora(store, ["planted-a"], ["null-b"], measure=measure, test=test, sort="p")
    found = table.filter(pl.col("diff") > 0)
    order = found["feature"].to_list()
    by_p = found.sort("p", "feature")["feature"].to_list()
    f = carrier["feature"]
    result = {
        "false": null.filter(pl.col("q") < 0.05).height,
        "carrier": f,
        "label": carrier["label"],
        "rank": order.index(f) + 1 if f in order else None,
        "rank_p": by_p.index(f) + 1 if f in by_p else None,
        "significant": found.filter(pl.col("q") < 0.05).height,
        "top5_carriers": sum(f in carriers for f in order[:5]),
        "top5_carriers_p": sum(f in carriers for f in by_p[:5]),
    }
    freq = "freq_b" if "freq_b" in table.columns else "mean_b"

    def again(sort):
        return diff_corpora(store, ["planted-a"], ["null-b"], measure=measure, test=test, sort=sort)

    for name, ranked in orderings(table, sorts, again):
        mine = ranked.filter(pl.col("diff") > 0)["feature"].to_list()
        top = ranked.head(20)
        top10 = top["feature"].to_list()[:10]
        result[name] = {
            "rank": mine.index(f) + 1 if f in mine else None,
            "planted10": None if planted is None else sum(x in planted for x in top10),
            "planted20": None if planted is None else len(planted & set(top["feature"])),
            "precision10": sum(x in carriers for x in top10) / max(len(top10), 1),
            "freq_b10": float(top.head(10)[freq].median()),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--n-side", type=int, default=300)
    parser.add_argument("--plant", type=float, default=0.10)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--configs", nargs="+", default=[f"{m}/{t}" for m, t in CONFIGS])
    parser.add_argument(
        "--sorts", nargs="+", default=[], choices=DIFF_SORTS,
        help="also compare these orderings of the planted diff (logodds, specific: binary only)",
    )  # fmt: skip
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    db = cache_dir("stores") / "bench-diff-measures.duckdb"
    prepare(db, 1000)
    summary, orderings = [], []
    with Store(db) as store:
        for setting in args.settings:
            base_name, donor_name = SETTINGS[setting]
            base, donor = ids_of(store, base_name), ids_of(store, donor_name)
            tokens = store.sql(
                "SELECT median(n_tokens) AS m FROM encoded_documents WHERE doc_id IN "
                "(SELECT doc_id FROM documents WHERE corpus = ?)",
                [base_name],
            )["m"][0]
            for config in args.configs:
                measure, test = config.split("/")
                binary = get_measure(measure).binary
                sorts = [s for s in args.sorts if binary or s not in COUNT_SORTS]
                planted = None
                if sorts and setting in PROPERTIES:
                    planted = property_concepts(store, PROPERTIES[setting], measure, donor_name)
                started = time.perf_counter()
                rows = [
                    trial(store, np.random.default_rng(seed), base, donor, args.n_side,
                          args.plant, measure, test, sorts, planted)
                    for seed in range(args.seeds)
                ]  # fmt: skip
                seconds = time.perf_counter() - started
                frame = pl.DataFrame(rows)
                top5 = int((frame["rank"].fill_null(10**9) <= 5).sum())
                top5_p = int((frame["rank_p"].fill_null(10**9) <= 5).sum())
                labels = frame.group_by("label").len().sort("len", descending=True)
                summary.append(
                    {
                        "setting": setting,
                        "tokens": tokens,
                        "measure": measure,
                        "test": test,
                        "null": frame["false"].mean(),
                        "top5": top5,
                        "top5_p": top5_p,
                        "median_rank": frame["rank"].median(),
                        "significant": frame["significant"].mean(),
                        "precision": frame["top5_carriers"].mean() / 5,
                        "precision_p": frame["top5_carriers_p"].mean() / 5,
                        "carrier": f"{labels['label'][0]} ({labels['len'][0]}/{len(rows)})",
                        "seconds": seconds / (3 * args.seeds),
                    }
                )
                print(summary[-1], file=sys.stderr, flush=True)
                for sort in [k for k in rows[0] if isinstance(rows[0][k], dict)]:
                    got = [r[sort] for r in rows]
                    orderings.append(
                        {
                            "setting": setting,
                            "measure": measure,
                            "test": test,
                            "sort": sort,
                            "planted": "n/a" if planted is None else len(planted),
                            "top5": sum(1 for g in got if g["rank"] is not None and g["rank"] <= 5),
                            "planted10": None
                            if planted is None
                            else np.mean([g["planted10"] for g in got]),
                            "planted20": None
                            if planted is None
                            else np.mean([g["planted20"] for g in got]),
                            "precision10": np.mean([g["precision10"] for g in got]),
                            "freq_b10": np.median([g["freq_b10"] for g in got]),
                        }
                    )
                    print(orderings[-1], file=sys.stderr, flush=True)
    print(
        f"n = {args.n_side} per side, {args.plant:.0%} of A planted, {args.seeds} seeds; "
        "null: mean concepts at q < 0.05 between random halves; top 5: seeds with the carrier "
        "among the first 5 enriched concepts (as ranked by the diff; by p); top 5 that are carriers: "
        "share of the planted diff's first 5 enriched concepts that are significant (q < 0.05) in "
        "the diff of the other donors against B\n"
    )
    print("| setting | median tokens | measure | test | null false | carrier top 5 | top 5 by p "
          "| median rank | significant in planted | top 5 that are carriers (diff order; p order) "
          "| most common carrier | s per diff |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in summary:
        print(
            f"| {r['setting']} | {r['tokens']:.0f} | {r['measure']} | {r['test']} | "
            f"{r['null']:.2f} | {r['top5']}/{args.seeds} | {r['top5_p']}/{args.seeds} | "
            f"{r['median_rank']} | {r['significant']:.1f} | {r['precision']:.2f}; "
            f"{r['precision_p']:.2f} | {r['carrier']} | {r['seconds']:.2f} |"
        )
    if orderings:
        print(
            "\nOrderings of the planted diff (planted concepts: peak on the property's words in "
            "half of the donors where active; precision: share of the top 10 that are carriers; "
            "freq_b: median frequency in B of the top 10):\n"
        )
        print(
            "| setting | measure | test | ordering | planted concepts | carrier in top 5 "
            "| planted in top 10 | in top 20 | precision of the top 10 | median freq_b, top 10 |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in orderings:
            p10 = "n/a" if r["planted10"] is None else f"{r['planted10']:.1f}"
            p20 = "n/a" if r["planted20"] is None else f"{r['planted20']:.1f}"
            print(
                f"| {r['setting']} | {r['measure']} | {r['test']} | {r['sort']} | {r['planted']} "
                f"| {r['top5']}/{args.seeds} | {p10} | {p20} | {r['precision10']:.2f} "
                f"| {r['freq_b10']:.3f} |"
            )


if __name__ == "__main__":
    if "--prepare-only" in sys.argv:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
        prepare(cache_dir("stores") / "bench-diff-measures.duckdb", 1000)
    else:
        main()
