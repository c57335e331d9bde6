"""Themes in the diff (`saeembed diff --by themes`): planted kinds of documents in long passages,
and the null.

Base: 220-word windows of news articles with no religious vocabulary (as in
`benchmarks/diff_measures.py`). Three planted genres, each a kind of document rather than a word:

- ``religion``: news windows about religion (4+ religious words): a topic within one register;
- ``convention``: windows of 2012 US convention speeches: a register (speech against reporting);
- ``commons``: windows of UK House of Commons speeches: another register, another country.

For each genre and seed: side A is ``n_side`` base windows with ``plant`` (10%) of them replaced by
windows of the genre, side B ``n_side`` other base windows. A seed succeeds when a theme at
q < 0.05 enriched in A has at least 60% planted members and holds at least 60% of the planted
windows. The null: two random halves of the base (every significant theme is false).

    .venv/bin/python benchmarks/themes.py [--seeds 10] [--n-side 300] [--genres ...]
    .venv/bin/python benchmarks/themes.py --prepare-only    # encode the corpora, then stop

The corpora are encoded once with the default reader and SAE into
$SAEEMBED_HOME/stores/bench-themes.duckdb (about 10 minutes on 2 CPU cores). Prints a markdown
table on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

from saeembed.api import encode
from saeembed.data import load_dataset
from saeembed.home import cache_dir
from saeembed.store import Store

sys.path.insert(0, str(Path(__file__).parent))
from diff_measures import WORDS, corpora  # noqa: E402  (benchmarks/ is not a package)

GENRES = {"religion": "news-religion", "convention": "speeches", "commons": "commons"}


def commons(n: int, seed: int = 0) -> list[str]:
    """``n`` 220-word windows of House of Commons speeches, at most one per speech."""
    frame = load_dataset("commons-speeches", split_passages="window", max_tokens=WORDS)
    frame = frame.filter(
        (pl.col("text").str.split(" ").list.len() >= 200) & (pl.col("passage_idx") == 0)
    )
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(frame.height, min(n, frame.height), replace=False))
    return frame[picked]["text"].to_list()


def prepare(db: Path, n_base: int) -> None:
    texts = corpora(n_base)
    wanted = {
        "news": texts["news"],
        "news-religion": texts["news-religion"],
        "speeches": texts["speeches"],
        "commons": commons(240),
    }
    for corpus, docs in wanted.items():
        print(f"{corpus}: {len(docs):,} documents", file=sys.stderr)
        encode(docs, db, corpus=corpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument(
        "--concept-themes",
        type=int,
        default=None,
        help="per side (default: the library's; 0: regions only)",
    )
    parser.add_argument("--n-side", type=int, default=300)
    parser.add_argument("--plant", type=float, default=0.10)
    parser.add_argument("--genres", nargs="+", default=list(GENRES))
    parser.add_argument("--n-base", type=int, default=700)
    parser.add_argument("--db", type=Path, default=None)
    parser.add_argument("--prepare-only", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
    db = args.db or cache_dir("stores") / "bench-themes.duckdb"
    if not db.exists():
        started = time.perf_counter()
        prepare(db, args.n_base)
        print(f"encoded {db} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    if args.prepare_only:
        return
    run(db, args)


def run(db: Path, args) -> None:
    with Store(db, read_only=True) as store:
        rows = [summarise(genre, outcomes(store, genre, args)) for genre in ["null", *args.genres]]
    print("| planted | seeds found | significant themes (A / B) | best purity | best recall | "
          "themes | s per diff |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(r)


def outcomes(store: Store, genre: str, args) -> list[dict]:
    """`judge` of each seed's themes diff for one planted genre (or the null) on ``store``
    (which holds the corpora ``news`` and those of `GENRES`); ``args``: seeds, first_seed,
    n_side, plant, concept_themes."""
    from saeembed.analysis.themes import diff_themes

    corpora = ("news",) if genre == "null" else ("news", GENRES[genre])
    ids = {
        c: store.sql("SELECT doc_id FROM documents WHERE corpus = ? ORDER BY doc_id", [c])[
            "doc_id"
        ].to_numpy()
        for c in corpora
    }
    n_plant = int(round(args.plant * args.n_side))
    found = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        rng = np.random.default_rng(seed)
        base = rng.permutation(ids["news"])
        side_a, side_b = base[: args.n_side], base[args.n_side : 2 * args.n_side]
        planted = np.zeros(0, dtype=np.int64)
        if genre != "null":
            planted = rng.choice(ids[GENRES[genre]], n_plant, replace=False)
            side_a = np.concatenate([side_a[: args.n_side - n_plant], planted])
        started = time.perf_counter()
        themes = diff_themes(store, side_a, side_b, seed=seed, concept_themes=args.concept_themes)
        seconds = time.perf_counter() - started
        found.append(judge(themes.table, planted, seconds))
        print(f"{genre} seed {seed}: {found[-1]}", file=sys.stderr)
    return found


def judge(table: pl.DataFrame, planted: np.ndarray, seconds: float) -> dict:
    significant = table.filter(pl.col("q") < 0.05)
    enriched = significant.filter(pl.col("diff") > 0)
    best = (0.0, 0.0)
    planted_set = set(planted.tolist())
    for members in enriched["doc_ids"].to_list():
        hit = len(planted_set & set(members))
        purity = hit / len(members) if members else 0.0
        recall = hit / len(planted_set) if planted_set else 0.0
        if (purity >= 0.6 and recall >= 0.6) > (best[0] >= 0.6 and best[1] >= 0.6) or (
            min(purity, recall) > min(best)
        ):
            best = (purity, recall)
    return {
        "found": bool(planted_set) and best[0] >= 0.6 and best[1] >= 0.6,
        "significant_a": enriched.height,
        "significant_b": significant.height - enriched.height,
        "purity": best[0],
        "recall": best[1],
        "themes": table.height,
        "seconds": seconds,
    }


def summarise(genre: str, outcomes: list[dict]) -> str:
    found = sum(o["found"] for o in outcomes)
    sig_a = sum(o["significant_a"] for o in outcomes)
    sig_b = sum(o["significant_b"] for o in outcomes)
    purity = np.median([o["purity"] for o in outcomes])
    recall = np.median([o["recall"] for o in outcomes])
    themes = np.median([o["themes"] for o in outcomes])
    seconds = np.median([o["seconds"] for o in outcomes])
    shown = "–" if genre == "null" else f"{found}/{len(outcomes)}"
    return (
        f"| {genre} | {shown} | {sig_a} / {sig_b} | {purity:.2f} | {recall:.2f} | {themes:.0f} | "
        f"{seconds:.1f} |"
    )


if __name__ == "__main__":
    main()
