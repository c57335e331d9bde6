"""Kept concept counts (saeembed.store.counts) always equal a recount from the rows: after
encodes that share documents between corpora, after documents are added to a corpus once they
were encoded elsewhere, once strong thresholds exist, after a kill -9 and resume, after a
migration, and in shard directories; and a whole-corpus diff read from them equals the diff
that scans the rows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import polars as pl

import saeembed.analysis.diff as diff_module
from saeembed.analysis.diff import diff_corpora
from saeembed.analysis.measures import ensure_thresholds
from saeembed.api import ShardOptions, encode, open_store
from saeembed.store import Store
from tests.test_shards import SHARD, corpus_file, opts

REPO = Path(__file__).resolve().parent.parent

RECOUNT = """
SELECT a.encoder_id, d.corpus, 'presence' AS measure, a.feature, count(*) AS n_docs
FROM activations a JOIN documents d ON d.doc_id = a.doc_id WHERE a.value > 0 GROUP BY ALL
UNION ALL
SELECT e.encoder_id, d.corpus, 'presence', -1, count(*)
FROM encoded_documents e JOIN documents d ON d.doc_id = e.doc_id GROUP BY ALL
UNION ALL
SELECT a.encoder_id, d.corpus, 'strong', a.feature, count(*)
FROM activations a JOIN documents d ON d.doc_id = a.doc_id
JOIN feature_thresholds t ON t.encoder_id = a.encoder_id AND t.feature = a.feature
WHERE a.value > 0.5 * t.p99 GROUP BY ALL
UNION ALL
SELECT e.encoder_id, d.corpus, 'strong', -1, count(*)
FROM encoded_documents e JOIN documents d ON d.doc_id = e.doc_id
WHERE e.encoder_id IN (SELECT encoder_id FROM feature_thresholds) GROUP BY ALL
"""


def kept_equal_recount(db) -> int:
    """Assert the kept counts equal the recount; returns how many rows they have."""
    with open_store(db, read_only=True) as store:
        kept = store.sql("SELECT * FROM concept_counts ORDER BY ALL")
        recount = store.sql(f"SELECT * FROM ({RECOUNT}) ORDER BY ALL")
    assert kept.height > 0
    assert kept.cast({"n_docs": pl.Int64}).equals(recount.cast({"n_docs": pl.Int64}))
    return kept.height


def test_counts_follow_every_write(tmp_path, tiny_model, tiny_sae):
    db = tmp_path / "s.duckdb"
    shared = ["one text in every corpus", "another shared text"]
    a = corpus_file(tmp_path / "a.csv", 60, 1, shared)
    b = corpus_file(tmp_path / "b.csv", 50, 2, shared)
    encode(a, db, **opts(tiny_model, tiny_sae))
    encode(b, db, **opts(tiny_model, tiny_sae))  # shared documents: encoded already
    kept_equal_recount(db)
    with Store(db) as store:  # documents added to a corpus without encoding (all encoded)
        docs = store.sql("SELECT doc_id, row_idx, ext_id, text, meta FROM documents "
                         "WHERE corpus = 'a' LIMIT 20")  # fmt: skip
        store.add_documents("c", docs)
        ensure_thresholds(store, store.resolve_encoder(None))
    kept_equal_recount(db)
    with open_store(db, read_only=True) as store:
        measures = store.sql("SELECT DISTINCT measure FROM concept_counts ORDER BY 1")
    assert measures["measure"].to_list() == ["presence", "strong"]
    d = corpus_file(tmp_path / "d.csv", 40, 3, shared)
    encode(d, db, **opts(tiny_model, tiny_sae))  # strong counts kept from now on
    kept_equal_recount(db)


def test_kept_diff_equals_the_scan(tmp_path, tiny_model, tiny_sae, monkeypatch):
    db = tmp_path / "s.duckdb"
    encode(corpus_file(tmp_path / "a.csv", 80, 1, ["shared"]), db, **opts(tiny_model, tiny_sae))
    encode(corpus_file(tmp_path / "b.csv", 70, 2, ["shared"]), db, **opts(tiny_model, tiny_sae))
    with Store(db) as store:
        ensure_thresholds(store, store.resolve_encoder(None))
    calls = []
    real = diff_module.kept_moments
    monkeypatch.setattr(
        diff_module, "kept_moments", lambda *a: calls.append(a) or real(*a)
    )  # fmt: skip
    with open_store(db, read_only=True) as store:
        for measure in ("presence", "strong"):
            kept = diff_corpora(store, ["a"], ["b"], measure=measure, min_support=2)
            monkeypatch.setattr(diff_module, "kept_moments", lambda *a: None)
            scanned = diff_corpora(store, ["a"], ["b"], measure=measure, min_support=2)
            monkeypatch.setattr(diff_module, "kept_moments", real)
            assert kept.height > 0 and kept.equals(scanned), measure
    assert len(calls) == 1  # the first diff only (the spy was then replaced)


KILL_SCRIPT = """
import sys, time
from saeembed.api import EncodingOptions, encode

def committed(n):  # each committed batch, told to the parent; slow enough to be caught
    print(n, flush=True)
    time.sleep(0.05)

options = EncodingOptions(model={model!r}, sae={sae!r}, device="cpu", batch_tokens=64)
encode({source!r}, {db!r}, encoding=options, progress=False, on_batch=committed)
"""


def test_counts_after_kill_9_and_resume(tmp_path, tiny_model, tiny_sae):
    source = corpus_file(tmp_path / "c.csv", 600, 4)
    db = tmp_path / "s.duckdb"
    script = KILL_SCRIPT.format(
        source=str(source), db=str(db), model=str(tiny_model), sae=str(tiny_sae)
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    for line in proc.stdout:  # the writer holds the store: its own count of committed batches
        if int(line) >= 10:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with open_store(db, read_only=True) as store:
        at_kill = store.sql("SELECT count(*) AS n FROM encoded_documents")["n"][0]
    assert 0 < at_kill < 600, f"the kill did not land mid-encode ({at_kill} of 600 encoded)"
    kept_equal_recount(db)
    encode(source, db, **opts(tiny_model, tiny_sae))
    kept_equal_recount(db)


def test_migration_backfills_the_counts(tmp_path, tiny_model, tiny_sae):
    db = tmp_path / "s.duckdb"
    encode(corpus_file(tmp_path / "a.csv", 40, 1), db, **opts(tiny_model, tiny_sae))
    with Store(db) as store:  # back to schema v8: no kept counts
        store.con.execute("DROP TABLE concept_counts")
        store.con.execute("DROP TABLE saeembed_store; DROP TABLE corpus_sources")  # (v10)
        for column in ("shipped_label", "shipped_source", "shipped_score", "local_evidence",
                       "named_at"):  # (v11)  # fmt: skip
            store.con.execute(f"ALTER TABLE features DROP COLUMN {column}")
        store.con.execute("DELETE FROM schema_migrations WHERE version >= 9")
    kept_equal_recount(db)  # the read-only open upgrades the writable file first


def test_shard_counts_equal_a_recount(tmp_path, tiny_model, tiny_sae, monkeypatch):
    import saeembed.encoding.core as encoding

    monkeypatch.setattr(encoding, "CHUNK_DOCS", SHARD // 2)
    out = tmp_path / "shards"
    shared = ["a shared text"]
    for name, seed in (("a", 1), ("b", 2)):
        source = corpus_file(tmp_path / f"{name}.csv", 70, seed, shared)
        encode(
            source, f"{out}/", **opts(tiny_model, tiny_sae), shards=ShardOptions(shard_docs=SHARD)
        )
    kept_equal_recount(out)
    with Store(out) as store:  # strong counts kept in the analysis file once thresholds exist
        ensure_thresholds(store, store.resolve_encoder(None))
    kept_equal_recount(out)
    with open_store(out, read_only=True) as store:
        kept = diff_corpora(store, ["a"], ["b"], measure="strong", min_support=2)
        monkeypatch.setattr(diff_module, "kept_moments", lambda *a: None)
        assert kept.equals(diff_corpora(store, ["a"], ["b"], measure="strong", min_support=2))
    # a corpus added later: its presence counts come with its shards, the strong counts are
    # stale for it (so unused) until recounted
    source = corpus_file(tmp_path / "c.csv", 40, 3, shared)
    encode(source, f"{out}/", **opts(tiny_model, tiny_sae))
    with open_store(out, read_only=True) as store:
        from saeembed.store.counts import kept_counts

        assert kept_counts(store.con, 1, "c", "presence") is not None
        assert kept_counts(store.con, 1, "c", "strong") is None
