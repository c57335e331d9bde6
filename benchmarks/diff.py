"""Diff and correlation at scale, on a synthetic store (a single file, and the same data as a shard
directory): two corpora of 1,000,000 documents each,
about 300 active concepts per document drawn from a power law over 8,192 concepts (600M
activation rows). Times `saeembed diff`'s counting and statistics against a naive reference (join
the activations to their documents and group by corpus and feature), and the concept-pair search
of `saeembed correlate` over one corpus, each in a fresh process so peak memory is its own.

    .venv/bin/python benchmarks/diff.py [--docs 1000000] [--concepts 300] [--memory-limit 4GB]

Both are built once (several minutes each) under $SAEEMBED_HOME/stores/ and reused. `diff` and
`diff-presence` read the kept concept counts (the whole corpora are compared), the `-scan`
variants the activation rows.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

D_SAE = 8192
CHUNK = 20_000
SYNTHETIC_ENCODER = dict(
    name="synthetic", model="synthetic", model_revision=None, layer=0, sae="synthetic",
    sae_sha256="0" * 64, d_sae=D_SAE, activation="topk", k=32, pooling="max", max_tokens=64,
    truncation="keep_first", dtype="float32", chat="none", prefix="bos", encoding_version=1,
    saeembed_version="bench", config={},
)  # fmt: skip


def synthetic_chunks(n_docs: int, per_doc: int, seed: int = 0):
    """(corpus, row_idx, doc_ids, activation doc ids, features, values) chunk by chunk: the
    same data for the single file and the shards."""
    rng = np.random.default_rng(seed)
    ranks = rng.permutation(D_SAE)  # which concept gets which frequency rank
    weights = 1.0 / (np.arange(D_SAE) + 10.0) ** 0.8
    weights = weights[np.argsort(ranks)]
    weights /= weights.sum()
    cdf = np.cumsum(weights)
    for side, corpus in enumerate(("A", "B")):
        for start in range(0, n_docs, CHUNK):
            ids = np.arange(start, min(start + CHUNK, n_docs), dtype=np.int64)
            doc_ids = ids + side * 10 * n_docs + 1
            draws = np.searchsorted(cdf, rng.random((len(ids), int(per_doc * 1.25))))
            draws = np.minimum(draws, D_SAE - 1)
            keys = np.unique(doc_ids[:, None] * D_SAE + draws)
            act_doc, feature = keys // D_SAE, (keys % D_SAE).astype(np.int32)
            values = rng.random(len(keys), dtype=np.float32) + 0.01
            yield corpus, ids, doc_ids, act_doc, feature, values


def build(path: Path, n_docs: int, per_doc: int, seed: int = 0) -> None:
    from saeembed.store import Store
    from saeembed.store.counts import recount

    with Store(path) as store:
        encoder, _ = store.get_or_create_encoder("synthetic", SYNTHETIC_ENCODER)
        store.con.execute("SET preserve_insertion_order = false")
        for corpus in ("A", "B"):
            store.con.execute("INSERT INTO corpora (corpus) VALUES (?)", [corpus])
        for corpus, ids, doc_ids, act_doc, feature, values in synthetic_chunks(
            n_docs, per_doc, seed
        ):
            store.con.register("chunk_docs", pa.table({"doc_id": doc_ids, "row_idx": ids}))
            store.con.register(
                "chunk_acts", pa.table({"doc_id": act_doc, "feature": feature, "value": values})
            )
            store.con.execute(
                "INSERT INTO documents (corpus, doc_id, row_idx, text) "
                "SELECT ?, doc_id, row_idx, '' FROM chunk_docs",
                [corpus],
            )
            store.con.execute(
                "INSERT INTO encoded_documents (encoder_id, doc_id, n_tokens, truncated, "
                "n_features) SELECT ?, doc_id, 64, false, 0 FROM chunk_docs",
                [encoder.encoder_id],
            )
            store.con.execute(
                "INSERT INTO activations SELECT ?, doc_id, feature, value, 1, 0, 0, 1, value "
                "FROM chunk_acts",
                [encoder.encoder_id],
            )
            store.con.unregister("chunk_docs")
            store.con.unregister("chunk_acts")
            print(f"{corpus}: {ids[-1] + 1:,} documents", file=sys.stderr, flush=True)
        # rows written directly, not through write_encoded: count them once, as migration v9 does
        with store.transaction() as con:
            recount(con, encoder.encoder_id, ("presence",))
        store.con.execute("CHECKPOINT")


def build_shards(root: Path, n_docs: int, per_doc: int, seed: int = 0) -> None:
    """The same data as a shard directory: one shard per chunk, written with the shard layout's
    own functions (manifest line last)."""
    from saeembed.shards.worker import shard_counts, write_parquet
    from saeembed.store import Store
    from saeembed.store.shard_layout import Shard, append_manifest, shard_path, write_header

    root.mkdir(parents=True)
    with Store(root / "analysis.duckdb") as analysis:
        encoder, _ = analysis.get_or_create_encoder("synthetic", SYNTHETIC_ENCODER)
        row = analysis.sql("SELECT * FROM encoders").row(0, named=True)
    write_header(root, {**row, "created_at": str(row["created_at"])}, CHUNK)
    header = json.loads((root / "saeembed-shards.json").read_text())
    header["corpora"] = {c: {"source": None, "text_col": None, "id_col": None, "n_docs": n_docs,
                             "digest": ""} for c in ("A", "B")}  # fmt: skip
    (root / "saeembed-shards.json").write_text(json.dumps(header))
    index = {"A": 0, "B": 0}
    for corpus, ids, doc_ids, act_doc, feature, values in synthetic_chunks(n_docs, per_doc, seed):
        n = len(ids)
        one = np.ones(len(act_doc), dtype=np.int32)
        tables = {
            "documents": pa.table({
                "doc_id": doc_ids, "row_idx": ids, "ext_id": pa.nulls(n, pa.string()),
                "text": pa.array([""] * n), "meta": pa.nulls(n, pa.string()),
                "context": pa.nulls(n, pa.string()), "parent_id": pa.nulls(n, pa.int64()),
                "chunk_idx": pa.nulls(n, pa.int32()),
            }),
            "encoded": pa.table({
                "doc_id": doc_ids, "n_tokens": np.full(n, 64, np.int32),
                "truncated": np.zeros(n, bool), "n_features": np.zeros(n, np.int32),
                "encoded_at": pa.array([None] * n, pa.timestamp("us")),
            }),
            "activations": pa.table({
                "doc_id": act_doc, "feature": feature, "value": values, "n_tokens": one,
                "peak_token": one * 0, "peak_start": one * 0, "peak_end": one, "value_sum": values,
            }),
        }  # fmt: skip
        tables["counts"] = shard_counts(tables["activations"], n, [])
        i = index[corpus]
        files = {t: write_parquet(root, shard_path(t, corpus, i), x) for t, x in tables.items()}
        append_manifest(root, Shard(corpus, i, row["fingerprint"], files))
        index[corpus] += 1
        print(f"shards {corpus}: {ids[-1] + 1:,} documents", file=sys.stderr, flush=True)


NAIVE = """
SELECT d.corpus, a.feature, count(*) AS n
FROM activations a JOIN documents d ON d.doc_id = a.doc_id
WHERE a.encoder_id = 1 AND d.corpus IN ('A', 'B')
GROUP BY ALL
"""


def measure(path: str, what: str, memory_limit: str) -> dict:
    """Run one measurement in this (fresh) process and return its figures."""
    from saeembed.analysis.correlate import correlate_concepts
    from saeembed.analysis.diff import diff_corpora
    from saeembed.store import Store

    with Store(path, read_only=what != "thresholds") as store:
        store.con.execute(f"SET memory_limit = '{memory_limit}'")
        started = time.perf_counter()
        if what == "thresholds":  # once per store: strong presence's per-concept p99
            from saeembed.analysis.measures import ensure_thresholds

            store.con.execute("DELETE FROM feature_thresholds")
            ensure_thresholds(store, store.resolve_encoder(None))
            result = {"rows": store.sql("SELECT count(*) AS n FROM feature_thresholds")["n"][0]}
        elif what.startswith("diff"):  # the default measure (strong), or presence
            measure = {"measure": "presence"} if "presence" in what else {}
            if what.endswith("scan"):  # the rows, not the kept counts
                import saeembed.analysis.diff as diff_module

                diff_module.kept_moments = lambda *args: None
            table = diff_corpora(store, ["A"], ["B"], **measure)
            result = {"rows": table.height, "significant": table.filter(table["q"] < 0.05).height}
        elif what == "naive":
            rows = store.con.sql(NAIVE).fetchall()
            result = {"rows": len(rows)}
        elif what == "plan":
            from saeembed.queries import bind_params, get_query

            query = get_query("diff_counts")
            params = bind_params(
                store, query, {"corpora_a": ["A"], "corpora_b": ["B"], "threshold": 0.0}
            )
            plan = store.con.sql("EXPLAIN ANALYZE " + query.sql, params=params).fetchall()
            result = {"plan": plan[0][1]}
        else:
            pairs = correlate_concepts(store, corpus="A", top=20, show_trivial=True)
            result = {"rows": pairs.height, "top_npmi": float(pairs["npmi"][0])}
        seconds = time.perf_counter() - started
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork + exec
    status = Path("/proc/self/status").read_text()
    peak = int(next(x for x in status.splitlines() if x.startswith("VmHWM")).split()[1]) / 2**20
    return {"what": what, "seconds": seconds, "peak_rss_gib": peak, **result}


def run_child(path: Path, what: str, memory_limit: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--measure", what, "--db", str(path),
         "--memory-limit", memory_limit],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--concepts", type=int, default=300)
    parser.add_argument("--memory-limit", default="4GB")
    parser.add_argument("--db", default=None)
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.db, args.measure, args.memory_limit)))
        return

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from saeembed.home import cache_dir

    name = f"bench-diff-{args.docs}x{args.concepts}"
    path = Path(args.db) if args.db else cache_dir("stores") / f"{name}.duckdb"
    shards = path.with_name(path.name.removesuffix(".duckdb") + "-shards")
    for target, builder in ((path, build), (shards, build_shards)):
        if not target.exists():
            started = time.perf_counter()
            tmp = target.with_name(target.name + ".building")
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
            builder(tmp, args.docs, args.concepts)
            tmp.rename(target)
            print(f"built {target} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    whats = ("thresholds", "diff", "diff-scan", "diff-presence", "diff-presence-scan", "naive",
             "correlate")  # fmt: skip
    for layout, target in (("single file", path), ("shards", shards)):
        size = sum(f.stat().st_size for f in target.rglob("*")) if target.is_dir() else (
            target.stat().st_size
        )  # fmt: skip
        results = {w: run_child(target, w, args.memory_limit) for w in whats}
        print(f"\n{layout}: 2 x {args.docs:,} documents, ~{args.concepts} concepts each, "
              f"{size / 2**30:.1f} GiB")  # fmt: skip
        print("| job | seconds | peak RSS (GiB) | result |")
        print("|---|---|---|---|")
        for r in results.values():
            extra = {k: v for k, v in r.items() if k not in ("what", "seconds", "peak_rss_gib")}
            print(f"| {r['what']} | {r['seconds']:.2f} | {r['peak_rss_gib']:.2f} | {extra} |")
        ratio = results["naive"]["seconds"] / results["diff-scan"]["seconds"]
        print(f"\nnaive counting / saeembed diff scanning the rows: {ratio:.2f}x; the diff from "
              f"kept counts: {results['diff']['seconds']:.2f} s")  # fmt: skip
    plan = run_child(path, "plan", args.memory_limit)["plan"]
    print("\nEXPLAIN ANALYZE of queries/diff_counts.sql (single file):\n")
    print(plan)


if __name__ == "__main__":
    main()
