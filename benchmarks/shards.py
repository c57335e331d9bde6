"""Shard encoding on Ray against the single-process encoder, on the same real documents with the
default model: the single-file encode with 2 torch threads, then `encode --out DIR/ --engine ray`
with 2 CPU actors of 1 thread each, each in a fresh process. Prints wall time (cluster start and
model loads included), encoding time and tokens per second of each, the Ray overhead, and how
far the shards' values are from the single-file ones.

    .venv/bin/python benchmarks/shards.py [--docs 400] [--shard-docs 25]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = """
import json, sys, time, torch
torch.set_num_threads({threads})
from saeembed.api import encode
started = time.perf_counter()
result = encode({source!r}, {target!r}, progress=False, **{options!r})
wall = time.perf_counter() - started
print(json.dumps({{"wall": wall, "encode_seconds": result.encoding.seconds,
                  "worker_seconds": result.encoding.worker_seconds,
                  "tokens": result.encoding.n_tokens, "docs": result.encoding.n_encoded}}))
"""


def run(source: Path, target: str, threads: int, options: dict) -> dict:
    code = CHILD.format(threads=threads, source=str(source), target=target, options=options)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=400)
    parser.add_argument("--shard-docs", type=int, default=25)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    import polars as pl

    from saeembed.data import load_dataset
    from saeembed.store import Store

    texts = load_dataset("news-articles").sample(args.docs, seed=0)["text"].to_list()
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "news.jsonl"
        pl.DataFrame({"text": texts}).write_ndjson(source)
        run(source, f"{tmp}/warm.duckdb", 2, {})  # model files and page cache warm for both
        single = run(source, f"{tmp}/single.duckdb", 2, {})
        options = {"engine": "ray", "workers": 2, "shard_docs": args.shard_docs}
        sharded = run(source, f"{tmp}/shards/", 1, options)
        query = "SELECT doc_id, feature, value FROM activations"
        with (
            Store(f"{tmp}/single.duckdb", read_only=True) as a,
            Store(f"{tmp}/shards", read_only=True) as b,
        ):
            joined = a.sql(query).join(b.sql(query), on=["doc_id", "feature"], how="full")
    only_one = joined.filter(pl.col("value").is_null() | pl.col("value_right").is_null()).height
    max_diff = (joined["value"] - joined["value_right"]).abs().max()
    print(f"{args.docs} news articles, {single['tokens']:,} tokens, default model, 2 CPU cores")
    print("| run | wall s | encoding s | tok/s (encoding) |")
    print("|---|---|---|---|")
    for name, r in (("single process, 2 threads", single), ("Ray, 2 actors x 1 thread", sharded)):
        speed = r["tokens"] / r["encode_seconds"]
        print(f"| {name} | {r['wall']:.1f} | {r['encode_seconds']:.1f} | {speed:,.0f} |")
    busy = sharded["worker_seconds"] / 2  # two actors working at once
    print(f"\nRay overhead, wall: {sharded['wall'] / single['wall'] - 1:+.1%}; from dispatch: "
          f"{sharded['encode_seconds'] / single['encode_seconds'] - 1:+.1%}; actors' encoding "
          f"time / 2 against the single process: {busy / single['encode_seconds'] - 1:+.1%}")  # fmt: skip
    print(f"rows in one store only: {only_one}; largest value difference: {max_diff:.2e}")


if __name__ == "__main__":
    main()
