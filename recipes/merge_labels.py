"""Make the default SAE's shipped label files from a new labelling run: each feature takes the new
label where the new run saw it in at least MIN_DOCS labelling documents, and keeps its current
shipped label otherwise; the new evidence embeddings ship beside them.

    python recipes/merge_labels.py NEW.parquet NEW.evidence.safetensors OUT_DIR [--min-docs 5]

NEW.* are written by `benchmarks/label_quality.py STORE --save-labels NEW.parquet`; OUT_DIR is
the SAE's directory (its labels.parquet is read, then replaced, with evidence.safetensors).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl
from safetensors import safe_open

from saeembed.labels.table import (
    SHIPPED_EVIDENCE,
    SHIPPED_LABELS,
    export_labels,
    parquet_sae_sha,
    read_saeembed_labels,
    save_shipped_evidence,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("new_labels")
    parser.add_argument("new_evidence")
    parser.add_argument("out_dir")
    parser.add_argument("--min-docs", type=int, default=5)
    args = parser.parse_args()
    out = Path(args.out_dir)
    sha = parquet_sae_sha(out / SHIPPED_LABELS)
    if sha != parquet_sae_sha(Path(args.new_labels)):
        sys.exit("the new labels are for another SAE")
    old = read_saeembed_labels(out / SHIPPED_LABELS)
    new = read_saeembed_labels(Path(args.new_labels)).filter(
        pl.col("label").is_not_null() & (pl.col("n_docs") >= args.min_docs)
    )
    merged = pl.concat([new, old.join(new.select("feature"), on="feature", how="anti")]).sort(
        "feature"
    )
    export_labels(merged, out / SHIPPED_LABELS, sae_sha256=sha)
    with safe_open(args.new_evidence, framework="numpy") as f:
        model = (f.metadata() or {})["model"]
        features, vectors = f.get_tensor("feature"), f.get_tensor("embedding")
    save_shipped_evidence(out / SHIPPED_EVIDENCE, features, vectors, model, sha)
    print(
        f"{new.height:,} new labels, {merged.height - new.height:,} kept; "
        f"{len(features):,} evidence embeddings ({model})",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
