"""Kill -9 at random moments (seeded), several trials each, for the writing commands that
`test_encode`, `test_real_model`, `test_chunks`, `test_shards` and `test_llm_server` do not
cover: `prefs encode`, offline `features label` and `cluster` (with its map). After every kill
the store opens and holds no half-written result; after a final run to completion it equals,
row for row, a run that was never interrupted. Each command runs as `python -m saeembed` in its
own process with the tiny test model. (`encode` is here too, at random moments; the real
model's kill is in `test_real_model.py`, the shards' in `test_shards.py`.)"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from saeembed.api import encode
from saeembed.store import Store
from tests.test_shards import corpus_file, opts, pairs_file

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent
TRIALS = 4


def saeembed(*args: str) -> list[str]:
    return [sys.executable, "-m", "saeembed", "-q", *map(str, args)]


def timed_run(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, capture_output=True)
    return time.perf_counter() - started


def kill_at_random_moments(command, seconds: float, seed: int, after_kill) -> int:
    """Run ``command`` ``TRIALS`` times, each killed with SIGKILL at a random moment within
    ``seconds`` (a run that finishes first is left alone), calling ``after_kill()`` after each.
    Returns how many runs were killed."""
    rng = random.Random(seed)
    killed = 0
    for _ in range(TRIALS):
        proc = subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            proc.wait(timeout=rng.uniform(0.3, 0.9 * seconds))
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            killed += 1
        after_kill()
    return killed


def table(db: Path, query: str) -> pl.DataFrame:
    with Store(db, read_only=True) as store:
        return store.sql(query)


ENCODE_TABLES = (
    "SELECT corpus, doc_id, row_idx, text, meta::VARCHAR AS meta FROM documents ORDER BY ALL",
    "SELECT encoder_id, doc_id, n_tokens, truncated, n_features FROM encoded_documents "
    "ORDER BY ALL",
    "SELECT * FROM activations ORDER BY ALL",
    "SELECT * FROM concept_counts ORDER BY ALL",
)


def test_encode(tmp_path, tiny_model, tiny_sae):
    source = corpus_file(tmp_path / "c.csv", 2000, 9)
    model = ["--model", tiny_model, "--sae", tiny_sae, "--device", "cpu", "--batch-tokens", "96"]
    clean, killed = tmp_path / "clean.duckdb", tmp_path / "killed.duckdb"
    seconds = timed_run(saeembed("encode", source, "--db", clean, *model))
    command = saeembed("encode", source, "--db", killed, *model)

    def consistent():
        if killed.exists():
            every_encoding_whole(killed)

    assert kill_at_random_moments(command, seconds, 4, consistent) >= 2
    subprocess.run(command, cwd=REPO, check=True, capture_output=True)
    same_tables(killed, clean, ENCODE_TABLES)


def every_encoding_whole(db: Path) -> None:
    """No encoded document lacks its activations."""
    (n,) = table(db, "SELECT count(*) FROM encoded_documents e ANTI JOIN activations a "
                 "USING (doc_id) WHERE e.n_features > 0").row(0)  # fmt: skip
    assert n == 0


def same_tables(killed: Path, clean: Path, queries) -> None:
    """Equal row for row, except what a resumed run's different batches may change
    (docs/schema.md): activation values to float32 rounding, and so, rarely, which concept wins
    a near-tie for a token's top k (at most 1 row in 200 here); every document is encoded
    exactly once either way, and the kept counts equal a recount of the killed store."""
    from tests.test_counts import kept_equal_recount

    for query in queries:
        got, expected = table(killed, query), table(clean, query)
        if "activations" in query:
            keys = ["encoder_id", "doc_id", "feature"]
            assert not got.select(keys).is_duplicated().any()
            both = got.join(expected, on=keys, how="inner", suffix="_clean")
            assert both.height >= 0.995 * max(got.height, expected.height), query
            for column in ("value", "value_sum"):
                assert both[column].to_numpy() == pytest.approx(
                    both[f"{column}_clean"].to_numpy(), rel=1e-5
                )
        elif "concept_counts" in query:
            kept_equal_recount(killed)
        elif "encoded_documents" in query:
            assert got.drop("n_features").equals(expected.drop("n_features")), query
        else:
            assert got.equals(expected), query


PAIR_TABLES = (
    "SELECT pairs, corpus, source, context FROM pair_sets ORDER BY ALL",
    "SELECT * FROM pairs ORDER BY ALL",
    "SELECT corpus, doc_id, row_idx, text, context FROM documents ORDER BY ALL",
    "SELECT encoder_id, doc_id, n_tokens, truncated, n_features FROM encoded_documents "
    "ORDER BY ALL",
    "SELECT * FROM activations ORDER BY ALL",
    "SELECT * FROM concept_counts ORDER BY ALL",
)


def test_prefs_encode(tmp_path, tiny_model, tiny_sae):
    source = pairs_file(tmp_path / "pairs.jsonl", 1000, 0, longest=30)
    model = ["--model", tiny_model, "--sae", tiny_sae, "--device", "cpu", "--batch-tokens", "96"]
    clean, killed = tmp_path / "clean.duckdb", tmp_path / "killed.duckdb"
    seconds = timed_run(saeembed("prefs", "encode", source, "--db", clean, "--context", *model))
    command = saeembed("prefs", "encode", source, "--db", killed, "--context", *model)

    def consistent():
        if killed.exists():
            (pairs,) = table(killed, "SELECT count(*) FROM pairs").row(0)
            assert pairs in (0, 1000)  # the pair set is stored whole or not at all
            every_encoding_whole(killed)

    assert kill_at_random_moments(command, seconds, 1, consistent) >= 2
    subprocess.run(command, cwd=REPO, check=True, capture_output=True)
    same_tables(killed, clean, PAIR_TABLES)


@pytest.fixture()
def encoded_store(tmp_path, tiny_model, tiny_sae) -> Path:
    db = tmp_path / "encoded.duckdb"
    encode(corpus_file(tmp_path / "c.csv", 600, 7), db, corpus="c", **opts(tiny_model, tiny_sae))
    return db


LABEL_QUERY = (
    "SELECT encoder_id, feature, label, description, label_source, label_score, density, n_docs, "
    "examples FROM features ORDER BY feature"
)


def two_copies(store: Path, folder: Path) -> tuple[Path, Path]:
    """The encoded store copied twice: for the clean run and for the killed one."""
    clean, killed = folder / "clean.duckdb", folder / "killed.duckdb"
    shutil.copy(store, clean)
    shutil.copy(store, killed)
    return clean, killed


def test_features_label(tmp_path, encoded_store):
    clean, killed = two_copies(encoded_store, tmp_path)
    seconds = timed_run(saeembed("features", "label", clean))
    command = saeembed("features", "label", killed)

    def consistent():
        labels = table(killed, "SELECT count(*) AS n, count(label) AS l FROM features").row(0)
        assert labels[0] == labels[1]  # no feature row without its label

    assert kill_at_random_moments(command, seconds, 2, consistent) >= 2
    subprocess.run(command, cwd=REPO, check=True, capture_output=True)
    assert table(killed, LABEL_QUERY).height > 0
    assert table(killed, LABEL_QUERY).equals(table(clean, LABEL_QUERY))


MEMBERS = (
    "SELECT m.doc_id, m.cluster, m.assigned, m.x, m.y FROM cluster_members m "
    "JOIN clusterings c USING (clustering_id) WHERE c.clustering_id = "
    "(SELECT max(clustering_id) FROM clusterings) ORDER BY m.doc_id"
)


def test_cluster_with_map(tmp_path, encoded_store):
    clean, killed = two_copies(encoded_store, tmp_path)
    options = ["--corpus", "c", "--method", "kmeans", "--k", "4", "--examples", "0"]
    seconds = timed_run(saeembed("cluster", clean, *options, "--map", tmp_path / "clean.html"))
    page = tmp_path / "killed.html"
    command = saeembed("cluster", killed, *options, "--map", page)

    def consistent():
        whole = table(
            killed,
            "SELECT c.clustering_id, c.n_clusters, (SELECT count(*) FROM clusters k WHERE "
            "k.clustering_id = c.clustering_id) AS clusters, (SELECT count(*) FROM "
            "cluster_members m WHERE m.clustering_id = c.clustering_id) AS members "
            "FROM clusterings c",
        )
        for row in whole.iter_rows(named=True):  # every stored clustering is whole
            assert row["clusters"] == row["n_clusters"] and row["members"] == 600
        if page.exists():  # the page is there whole, or not at all
            assert page.read_text().rstrip().endswith("</html>")
        assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]

    assert kill_at_random_moments(command, seconds, 3, consistent) >= 2
    subprocess.run(command, cwd=REPO, check=True, capture_output=True)
    assert table(killed, MEMBERS).equals(table(clean, MEMBERS))
    assert page.read_text().rstrip().endswith("</html>")
