"""How well do concepts explain real preferences? HH-RLHF harmless-base test (2,312 pairs; 2,308
with two non-empty replies), through `saeembed.prefs` exactly as `saeembed prefs fit` runs it.

Three encoders on the same pairs and folds (5 folds, pairs sharing a prompt kept together):
- the default reader + SAE, each response read alone as an assistant turn;
- the same, each response read after its prompt (`prefs encode --context`), pooled over the
  response's own tokens (with --context; skipped unless asked, it takes ~40 min on 2 cores);
- the WIMHF recipe: a signed BatchTopK Matryoshka SAE (32 latents, 4 active) on MiniLM
  embedding differences (`prefs train-sae`).
For each: held-out AUC of length only, the dense MiniLM probe, all concepts and k = 5/10/20
concepts, and the share of the dense probe's gain over length they recover; then the top
concepts of the default encoder by Δwin-rate among those significant at q < 0.05 with
prevalence >= 0.05. The default encoder's features are first relabelled offline on the
responses themselves (`saeembed features label DB --corpus hh-rlhf-harmless`): the shipped
labels come from a general mix of text and name many features by words of other domains.

    .venv/bin/python benchmarks/preferences.py [--context] [--max-tokens 256] [--measures ...]

The default encoder is also fitted under every measure in ``--measures`` (`prefs fit
--measure`), one row each.

Stores are cached under $SAEEMBED_HOME/stores/ (the first run encodes 4,616 responses, a few
minutes). Prints markdown to stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import polars as pl

from saeembed.api import preferences as api
from saeembed.data import prefer_local_hh_rlhf
from saeembed.home import cache_dir
from saeembed.labels import label_features
from saeembed.store import Store

# the shared HH-RLHF copy beside the checkout
prefer_local_hh_rlhf(Path(__file__).resolve().parents[2] / "shared" / "datasets" / "hh-rlhf")

PAIRS = "hh-rlhf-harmless"


def report_row(name: str, report, seconds: float) -> str:
    m = report.metrics
    gain = m["dense"] - m["length"]
    share = lambda key: f"{(m[key] - m['length']) / gain:.0%}" if gain > 0 else "n/a"  # noqa: E731
    return (
        f"| {name} | {m['length']:.3f} | {m['dense']:.3f} | {m['all']:.3f} ({share('all')}) | "
        f"{m['k5']:.3f} ({share('k5')}) | {m['k10']:.3f} ({share('k10')}) | "
        f"{m['k20']:.3f} ({share('k20')}) | {report.summary['n_concepts_tested']:,} | {seconds:.0f} s |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--context", action="store_true", help="Also the prompt-context encoder.")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--measures", default="presence,strong,count,share,mean,max")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")

    runs = [("default encoder, response alone", "bench-preferences.duckdb", False)]
    if args.context:
        runs.append(("default encoder, response after its prompt", "bench-preferences-context.duckdb", True))  # fmt: skip
    rows, main_report = [], None
    for name, file, context in runs:
        db = cache_dir("stores") / file
        encoded = api.encode_pairs(f"data:{PAIRS}", db, pairs=PAIRS, context=context,
                                   encoding=api.PAIR_ENCODING.but(max_tokens=args.max_tokens),
                                   seed=args.seed)  # fmt: skip
        with Store(db) as store:  # labels from the responses themselves (offline, ~15 s)
            label_features(store, encoded.encoding.encoder, corpus=PAIRS, progress=False)
        started = time.perf_counter()
        report = api.fit(db, PAIRS, settings=api.FitSettings(seed=args.seed, examples=1))
        rows.append(report_row(name, report, time.perf_counter() - started))
        for measure in args.measures.split(","):
            if measure == "presence":  # the row above
                continue
            started = time.perf_counter()
            other = api.fit(db, PAIRS, settings=api.FitSettings(seed=args.seed, measure=measure))
            rows.append(
                report_row(f"{name}, --measure {measure}", other, time.perf_counter() - started)
            )
        if not context:
            main_report, main_db = report, db
            started = time.perf_counter()
            encoder, _, stats = api.train_sae(db, PAIRS, seed=args.seed)
            trained = time.perf_counter() - started
            started = time.perf_counter()
            wimhf = api.fit(
                db,
                PAIRS,
                encoder=encoder.name,
                settings=api.FitSettings(seed=args.seed, min_prevalence=0.0),
            )
            rows.append(
                report_row("WIMHF pair SAE (32 latents, k = 4)", wimhf, time.perf_counter() - started)
            )  # fmt: skip
            print(f"pair SAE: FVU {stats['fvu']:.3f}, {stats['l0']:.2f} active latents per pair, "
                  f"{stats['dead']} dead, trained in {trained:.0f} s (embeddings included)",
                  file=sys.stderr)  # fmt: skip

    s = main_report.summary
    print(f"HH-RLHF harmless test: {s['n_pairs']:,} pairs; held-out AUC (share of the dense probe's "
          "gain over length)\n")  # fmt: skip
    print("| encoder | length | dense MiniLM | all concepts | k = 5 | k = 10 | k = 20 | concepts tested | fit time |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    table = main_report.features.filter((pl.col("q") < 0.05) & (pl.col("prevalence") >= 0.05))
    print(f"\nDefault encoder (labels from the responses, offline): {s['n_significant']:,} of "
          f"{s['n_concepts_tested']:,} concepts at q < 0.05 (length-controlled); among those with "
          "prevalence >= 0.05, the 12 with the largest |Δwin-rate|:\n")  # fmt: skip
    print("| feature | label | prevalence | coef | Δwin-rate | q | example |")
    print("|---|---|---|---|---|---|---|")
    top = table.sort(pl.col("win_rate_delta").abs(), descending=True).head(12)
    for r in top.iter_rows(named=True):
        example = (r.get("examples") or [""])[0].replace("|", "/")[:90]
        print(f"| {r['feature']} | {r['label']} | {r['prevalence']:.3f} | {r['coef']:+.3f} | "
              f"{r['win_rate_delta']:+.3f} | {r['q']:.1e} | {example} |")  # fmt: skip
    sparse = main_report.sparse.filter(pl.col("k") == 10)
    print(
        "\nThe 10-concept model fitted on all pairs (coefficient per SD of Δ, length-controlled):\n"
    )
    print("| feature | label | coef |")
    print("|---|---|---|")
    for r in sparse.sort("coef").iter_rows(named=True):
        print(f"| {r['feature']} | {r['label']} | {r['coef']:+.3f} |")
    print(f"\n(store: {main_db})", file=sys.stderr)


if __name__ == "__main__":
    main()
