"""Size and load time of the diff report at full width: every one of the encoder's 8,192
concepts in the table (those no document has are added with zero counts, p = 1), 20 panels with
token shading, built on the demo store (500 rotten vs 500 fresh reviews), then opened several
times in headless Chromium over the DevTools protocol.

    python benchmarks/reports.py --db /tmp/work/demo.duckdb [--runs 5] [--screenshot PNG]

Prints a JSON object: build seconds, page size, and per run the time from navigation to the
page's ready mark (``performance.now()`` when rendering ends) and the wall time the harness saw;
plus console errors and outside requests (both must be empty). Figures: docs/benchmarks.md."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from saeembed.analysis.diff import DIFF_COLUMNS, compare_counts, diff_corpora, rank  # noqa: E402
from saeembed.labels.table import label_names  # noqa: E402
from saeembed.reports import build_diff_report  # noqa: E402
from saeembed.store import Store  # noqa: E402
from tests.browser import Browser  # noqa: E402


def full_table(store: Store, a: str, b: str) -> pl.DataFrame:
    """The diff of every concept of the encoder (untested ones with zero counts)."""
    encoder = store.resolve_encoder(None)
    table = diff_corpora(store, [a], [b], min_support=1, sort="p")
    size_a, size_b = int(table["size_a"][0]), int(table["size_b"][0])
    missing = np.setdiff1d(np.arange(encoder.d_sae), table["feature"].to_numpy())
    zeros = np.zeros(len(missing), np.int64)
    extra = compare_counts(missing, zeros, zeros, size_a, size_b)
    extra = extra.join(label_names(store, encoder), on="feature", how="left")
    both = pl.concat([table.select(DIFF_COLUMNS), extra.select(DIFF_COLUMNS)])
    return rank(both.with_columns(pl.Series("q", both["q"].to_numpy())), 0.05, "p")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--a", default="rotten")
    parser.add_argument("--b", default="fresh")
    parser.add_argument("--panels", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", help="Keep the report here [default: a temporary file].")
    parser.add_argument("--screenshot", help="Save a PNG of the top of the page here.")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="saeembed-bench-reports-"))
    out = Path(args.out) if args.out else work / "report.html"
    with Store(args.db, read_only=True) as store:
        started = time.perf_counter()
        table = full_table(store, args.a, args.b)
        encoder = store.resolve_encoder(None)
        settings = {"db": args.db, "measure": "presence", "test": "proportion", "sort": "p",
                    "alpha": 0.05, "min_support": 1}  # fmt: skip
        report = build_diff_report(
            store, encoder, table, corpora_a=[args.a], corpora_b=[args.b], settings=settings,
            panels=args.panels,
        )  # fmt: skip
        report.write_html(out)
        build = time.perf_counter() - started
    browser = Browser(work / "profile")
    runs = []
    try:
        for _ in range(args.runs):
            t0 = time.perf_counter()
            ready = browser.open(out)
            runs.append({"ready_s": round(ready, 3), "wall_s": round(time.perf_counter() - t0, 3)})
            errors, outside = list(browser.errors), browser.outside_requests(out)
            rows = browser.evaluate("document.getElementById('concepts-count').textContent")
        if args.screenshot:
            browser.screenshot(Path(args.screenshot), height=1000)
    finally:
        browser.close()
    print(
        json.dumps(
            {
                "concepts": table.height,
                "panels": len(report.payload["panels"]),
                "shading": report.payload["meta"]["shading"],
                "build_s": round(build, 1),
                "bytes": out.stat().st_size,
                "runs": runs,
                "ready_median_s": statistics.median(r["ready_s"] for r in runs),
                "ready_max_s": max(r["ready_s"] for r in runs),
                "wall_max_s": max(r["wall_s"] for r in runs),
                "table_count": rows,
                "console_errors": errors,
                "outside_requests": outside,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
