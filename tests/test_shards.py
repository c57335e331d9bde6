"""Shard directories on tiny real components, with the in-process engine: the shards hold
exactly the single-file store's rows, a kill -9 loses only shards in flight, analyses over the
shards equal the same analyses on the imported single file, and every damaged or mismatched
directory is a one-line error before anything is written."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
import torch

import saeembed.encoding.core as encoding
from saeembed.api import (
    ConceptQuery,
    DiffSettings,
    EncodingOptions,
    ShardOptions,
    correlate,
    diff,
    encode,
    import_shards,
    open_store,
    search,
)
from saeembed.errors import SaeembedError
from saeembed.store.shard_layout import MANIFEST, read_manifest

REPO = Path(__file__).resolve().parent.parent
VOCABULARY = (
    "the movie was great awful plot boring acting stocks rallied on tuesday love film news "
    "market fun story bad good very rain cold sun bright dark night"
)
WORDS = VOCABULARY.split()
CHUNK = 16  # the single-file encoder's chunk in these tests; shards are two chunks
SHARD = 32
ROWS = "doc_id, feature, value, n_tokens, peak_token, peak_start, peak_end, value_sum"


def corpus_file(path: Path, n: int, seed: int, shared: list[str] = ()) -> Path:
    rng = random.Random(seed)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 30))) for _ in range(n)]
    texts[5:5] = list(shared)
    pl.DataFrame({"text": texts, "score": [rng.random() for _ in texts]}).write_csv(path)
    return path


def pairs_file(path: Path, n: int, seed: int, words=WORDS, longest: int = 20) -> Path:
    """``n`` preference pairs of random words (prompt, chosen, rejected) as JSONL."""
    rng = random.Random(seed)

    def text(most: int) -> str:
        return " ".join(rng.choice(words) for _ in range(rng.randint(2, most)))

    rows = [{"prompt": text(8), "chosen": text(longest), "rejected": text(longest)}
            for _ in range(n)]  # fmt: skip
    pl.DataFrame(rows).write_ndjson(path)
    return path


@pytest.fixture()
def small_chunks(monkeypatch):
    monkeypatch.setattr(encoding, "CHUNK_DOCS", CHUNK)


@pytest.fixture()
def corpora(tmp_path):
    shared = ["a text both corpora hold, encoded once"]
    return (
        corpus_file(tmp_path / "a.csv", 110, 1, shared),
        corpus_file(tmp_path / "b.csv", 90, 2, shared),
    )


def opts(tiny_model, tiny_sae):
    return dict(
        encoding=EncodingOptions(model=str(tiny_model), sae=str(tiny_sae), device="cpu"),
        progress=False,
    )


def rows(db, query):
    with open_store(db, read_only=True) as store:
        return store.sql(query)


def same_results(expected: pl.DataFrame, got: pl.DataFrame) -> None:
    """Equal tables: the same rows in the same order, every count and label exactly; floats to
    1e-12 (DuckDB sums doubles in the order it scans, which differs between layouts)."""
    from polars.testing import assert_frame_equal

    assert expected.height > 0
    assert_frame_equal(got, expected, check_exact=False, rel_tol=1e-12, abs_tol=1e-15)


def same_store_rows(single: Path, shards: Path, *, exact: bool = False) -> None:
    """Documents, encoded documents and activations equal row for row: ids, counts and token
    positions exactly; activation values bit for bit when ``exact``, else to float32 rounding.
    Float32 matmuls on some CPUs round differently for another batch composition (a corpus whose
    shared texts an earlier corpus encoded chunks its pending documents differently) or another
    torch thread count (Ray's CPU actors run one thread each)."""
    from polars.testing import assert_frame_equal

    for query in (
        f"SELECT {ROWS} FROM activations ORDER BY ALL",
        "SELECT doc_id, n_tokens, truncated, n_features FROM encoded_documents ORDER BY ALL",
        "SELECT corpus, doc_id, row_idx, ext_id, text, meta::VARCHAR AS meta, context, "
        "parent_id, chunk_idx FROM documents ORDER BY ALL",
        "SELECT corpus, source, text_col, id_col FROM corpora ORDER BY ALL",
    ):
        expected, got = rows(single, query), rows(shards, query)
        assert expected.height > 0
        assert_frame_equal(got, expected, check_exact=exact, rel_tol=1e-5, abs_tol=1e-6)


def test_shards_hold_the_single_file_rows(tmp_path, corpora, tiny_model, tiny_sae, small_chunks):
    a, b = corpora
    for source in (a, b):
        encode(source, tmp_path / "single.duckdb", **opts(tiny_model, tiny_sae))
        encode(
            source,
            f"{tmp_path}/shards/",
            **opts(tiny_model, tiny_sae),
            shards=ShardOptions(shard_docs=SHARD),
        )
        # corpus a: whole chunks in the same order, one process: the same bits
        same_store_rows(tmp_path / "single.duckdb", tmp_path / "shards", exact=source == a)
    manifest = read_manifest(tmp_path / "shards")
    assert [(s.corpus, s.index) for s in manifest] == [("a", i) for i in range(4)] + [
        ("b", i) for i in range(3)
    ]
    # the text both corpora hold is encoded once, in corpus a's shard
    assert rows(tmp_path / "shards", "SELECT count(*) = count(DISTINCT doc_id) AS once "
                "FROM encoded_documents")["once"][0]  # fmt: skip
    # a rerun adds nothing and writes nothing
    before = (tmp_path / "shards" / MANIFEST).read_bytes()
    again = encode(b, f"{tmp_path}/shards/", **opts(tiny_model, tiny_sae))
    assert again.n_new_documents == 0 and again.encoding.n_encoded == 0
    assert (tmp_path / "shards" / MANIFEST).read_bytes() == before


def test_analyses_over_shards_equal_the_imported_file(
    tmp_path, corpora, tiny_model, tiny_sae, small_chunks
):
    a, b = corpora
    shards = tmp_path / "shards"
    for source in (a, b):
        encode(
            source,
            f"{shards}/",
            **opts(tiny_model, tiny_sae),
            shards=ShardOptions(shard_docs=SHARD),
        )
    report = import_shards(shards, tmp_path / "imported.duckdb")
    assert (report.documents, report.encoded) == (202, 201)
    assert import_shards(shards, tmp_path / "imported.duckdb").documents == 0  # repeatable
    same_store_rows(tmp_path / "imported.duckdb", shards, exact=True)
    single, sharded = tmp_path / "imported.duckdb", shards
    for measure in ("presence", "strong", "mean"):
        settings = DiffSettings(measure=measure, min_support=2)
        expected = diff("a", "b", db=single, settings=settings, progress=False).table
        got = diff("a", "b", db=sharded, settings=settings, progress=False).table
        same_results(expected, got)
    # texts in both corpora once took their metadata from whichever row DuckDB scanned first,
    # so this differed now and then; the metadata now comes from the asked corpus
    expected = correlate(single, "score", corpus="a", min_support=2)
    same_results(expected, correlate(sharded, "score", corpus="a", min_support=2))
    found = search(single, top=10, corpus="b", concepts=ConceptQuery(features=[3]))
    same_results(
        found.hits, search(sharded, top=10, corpus="b", concepts=ConceptQuery(features=[3])).hits
    )


KILL_SCRIPT = """
import torch
torch.set_num_threads({threads})
import saeembed.encoding.core as encoding
encoding.CHUNK_DOCS = {chunk}
from saeembed.api import EncodingOptions, ShardOptions, encode
encode({source!r}, {out!r}, encoding=EncodingOptions(model={model!r}, sae={sae!r}, device="cpu"),
       progress=False, shards=ShardOptions(shard_docs={shard}))
"""


def test_kill_9_loses_only_the_shard_in_flight(tmp_path, tiny_model, tiny_sae, small_chunks):
    source = corpus_file(tmp_path / "c.csv", 400, 3)
    encode(source, tmp_path / "single.duckdb", **opts(tiny_model, tiny_sae))
    out = f"{tmp_path}/shards/"
    script = KILL_SCRIPT.format(
        chunk=CHUNK, source=str(source), out=out, model=str(tiny_model), sae=str(tiny_sae),
        shard=SHARD, threads=torch.get_num_threads(),
    )  # fmt: skip
    manifest = tmp_path / "shards" / MANIFEST
    for wanted in (2, 6):
        proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if manifest.exists() and manifest.read_bytes().count(b"\n") >= wanted:
                break
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        listed = read_manifest(tmp_path / "shards")
        assert len(listed) >= wanted, "the kill came before the shards it waited for"
        with open_store(tmp_path / "shards", read_only=True) as store:  # readable between runs
            n = store.sql("SELECT count(*) AS n FROM encoded_documents")["n"][0]
            assert n == sum(s.files["encoded"].rows for s in listed)
    encode(source, out, **opts(tiny_model, tiny_sae))
    assert len(read_manifest(tmp_path / "shards")) == 13
    # the killed runs used this process's thread count: a resume equals a clean run bit for bit
    same_store_rows(tmp_path / "single.duckdb", tmp_path / "shards", exact=True)


CUT_SCRIPT = """
import os, signal
import saeembed.encoding.core as encoding
encoding.CHUNK_DOCS = {chunk}
import saeembed.shards.encode as driver
real = driver.{hook}

def cut(*args, **kwargs):  # the kill -9 at this step of the directory's creation
    if {after}:
        real(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)

driver.{hook} = cut
from saeembed.api import EncodingOptions, ShardOptions, encode
encode({source!r}, {out!r}, encoding=EncodingOptions(model={model!r}, sae={sae!r}, device="cpu"),
       progress=False, shards=ShardOptions(shard_docs={shard}))
"""


def same_directory(clean: Path, got: Path) -> None:
    """Two shard directories hold the same files, header, manifest and rows (row for row)."""
    assert sorted(str(p.relative_to(got)) for p in got.rglob("*")) == sorted(
        str(p.relative_to(clean)) for p in clean.rglob("*")
    )
    headers = [json.loads((d / "saeembed-shards.json").read_text()) for d in (clean, got)]
    for key in ("format", "version", "shard_docs", "corpora"):
        assert headers[0][key] == headers[1][key]
    assert headers[0]["encoder"]["fingerprint"] == headers[1]["encoder"]["fingerprint"]
    listed = [[(s.corpus, s.index, {t: f.rows for t, f in s.files.items()})
               for s in read_manifest(d)] for d in (clean, got)]  # fmt: skip
    assert listed[0] == listed[1]
    same_store_rows(clean, got, exact=True)
    for query in ("SELECT * FROM encoders", "SELECT corpus, source FROM corpora ORDER BY ALL"):
        expected = rows(clean, query).drop("created_at", strict=False)
        assert rows(got, query).drop("created_at", strict=False).equals(expected)


@pytest.mark.parametrize(
    "hook, after, lock",
    [
        ("ensure_encoder", True, True),  # the analysis file open, its encoder row written
        ("write_header", False, False),  # before the header; no lock file (an older saeembed)
    ],
)
def test_a_creation_cut_short_is_finished_by_the_rerun(
    tmp_path, corpora, tiny_model, tiny_sae, small_chunks, hook, after, lock
):
    clean = tmp_path / "clean"
    encode(
        corpora[0], f"{clean}/", **opts(tiny_model, tiny_sae), shards=ShardOptions(shard_docs=SHARD)
    )
    out = tmp_path / "shards"
    script = CUT_SCRIPT.format(
        chunk=CHUNK, hook=hook, after=after, source=str(corpora[0]), out=f"{out}/",
        model=str(tiny_model), sae=str(tiny_sae), shard=SHARD,
    )  # fmt: skip
    assert subprocess.run([sys.executable, "-c", script], cwd=REPO).returncode == -signal.SIGKILL
    assert (out / "analysis.duckdb").is_file() and not (out / "saeembed-shards.json").exists()
    if not lock:
        (out / ".saeembed-shards.lock").unlink()
    with pytest.raises(SaeembedError, match="creation was cut short.*rerun"):
        open_store(out, read_only=True)  # not a shard directory yet: readers say so
    result = encode(
        corpora[0], f"{out}/", **opts(tiny_model, tiny_sae), shards=ShardOptions(shard_docs=SHARD)
    )
    assert result.n_new_documents == 111
    same_directory(clean, out)


def test_a_failed_creation_takes_back_what_it_wrote(
    tmp_path, corpora, tiny_model, tiny_sae, small_chunks, monkeypatch
):
    import errno

    import saeembed.shards.encode as driver

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(driver, "write_header", full)
    empty = tmp_path / "empty"
    empty.mkdir()
    for out in (tmp_path / "new", empty):
        with pytest.raises(OSError, match="No space left"):
            encode(
                corpora[0],
                f"{out}/",
                **opts(tiny_model, tiny_sae),
                shards=ShardOptions(shard_docs=SHARD),
            )
    assert not (tmp_path / "new").exists() and list(empty.iterdir()) == []
    monkeypatch.undo()
    encode(
        corpora[0], f"{empty}/", **opts(tiny_model, tiny_sae), shards=ShardOptions(shard_docs=SHARD)
    )
    encode(
        corpora[0],
        f"{tmp_path}/clean/",
        **opts(tiny_model, tiny_sae),
        shards=ShardOptions(shard_docs=SHARD),
    )
    same_directory(tmp_path / "clean", empty)


def test_a_directory_being_created_is_named_as_such(
    tmp_path, corpora, tiny_model, tiny_sae, small_chunks, monkeypatch
):
    import fcntl

    import saeembed.shards.create as creation

    out = tmp_path / "shards"
    out.mkdir()
    lock = out / ".saeembed-shards.lock"
    lock.write_text(f"{os.getpid()}\n")
    monkeypatch.setattr(creation, "CREATE_WAIT_S", 0.3)
    with open(lock) as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a run that is creating the directory holds it
        with pytest.raises(SaeembedError) as excinfo:
            encode(
                corpora[0],
                f"{out}/",
                **opts(tiny_model, tiny_sae),
                shards=ShardOptions(shard_docs=SHARD),
            )
    message = one_line_error(excinfo)
    assert f"is being created by process {os.getpid()}" in message and "retry" in message
    assert [p.name for p in out.iterdir()] == [lock.name]  # nothing written meanwhile
    encode(
        corpora[0], f"{out}/", **opts(tiny_model, tiny_sae), shards=ShardOptions(shard_docs=SHARD)
    )
    assert not lock.exists()


RACE_SCRIPT = """
import time
from pathlib import Path
import saeembed.encoding.core as encoding
encoding.CHUNK_DOCS = {chunk}
import saeembed.shards.encode as driver
from saeembed.cli import main
ready, go = Path({ready!r}), Path({go!r})
if {creating}:  # holds the creation lock until both runs are under way
    real = driver.write_header

    def slow(*args, **kwargs):
        ready.touch()
        while not go.exists():
            time.sleep(0.01)
        time.sleep(2)
        return real(*args, **kwargs)

    driver.write_header = slow
else:
    ready.touch()
    while not go.exists():
        time.sleep(0.01)
main(["-q", "encode", {source!r}, "--out", {out!r}, "--model", {model!r}, "--sae", {sae!r},
      "--device", "cpu", "--shard-docs", "{shard}"])
"""


def test_two_first_runs_at_once(tmp_path, corpora, tiny_model, tiny_sae, small_chunks):
    out = tmp_path / "shards"
    go = tmp_path / "go"
    procs = []
    for name, creating in (("first", True), ("second", False)):
        script = RACE_SCRIPT.format(
            chunk=CHUNK, ready=str(tmp_path / name), go=str(go), creating=creating,
            source=str(corpora[0]), out=f"{out}/", model=str(tiny_model), sae=str(tiny_sae),
            shard=SHARD,
        )  # fmt: skip
        procs.append(subprocess.Popen([sys.executable, "-c", script], cwd=REPO, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))  # fmt: skip
    deadline = time.time() + 240
    while not ((tmp_path / "first").exists() and (tmp_path / "second").exists()):
        assert time.time() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.05)
    assert (out / ".saeembed-shards.lock").exists()  # the first run is creating the directory
    go.touch()
    outcomes = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert any(code == 0 for code, _ in outcomes), outcomes
    for code, stderr in outcomes:
        assert "not a shard directory" not in stderr
        if code != 0:  # the loser says why, in one line, and asks for a retry
            lines = [line for line in stderr.splitlines() if line.strip()]
            assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
            assert "is in use by" in lines[0] or "is being created by" in lines[0], stderr
            assert "retry" in lines[0]
    encode(
        corpora[0],
        f"{tmp_path}/clean/",
        **opts(tiny_model, tiny_sae),
        shards=ShardOptions(shard_docs=SHARD),
    )
    same_directory(tmp_path / "clean", out)


@pytest.fixture()
def encoded_dir(tmp_path, corpora, tiny_model, tiny_sae, small_chunks):
    encode(
        corpora[0],
        f"{tmp_path}/shards/",
        **opts(tiny_model, tiny_sae),
        shards=ShardOptions(shard_docs=SHARD),
    )
    return tmp_path / "shards"


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix != ".duckdb" and not p.name.endswith(".wal")
    }


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_a_missing_or_truncated_shard_is_named(encoded_dir):
    shard = encoded_dir / "activations" / "corpus=a" / "shard-00001.parquet"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(SaeembedError) as excinfo:
        open_store(encoded_dir, read_only=True)
    assert "activations/corpus=a/shard-00001.parquet" in one_line_error(excinfo)
    assert "truncated" in str(excinfo.value)
    shard.unlink()
    with pytest.raises(SaeembedError, match="is missing; restore it, or remove its line"):
        open_store(encoded_dir, read_only=True)


def test_two_encoders_mixed_are_refused(encoded_dir):
    manifest = encoded_dir / MANIFEST
    lines = manifest.read_text().splitlines()
    entry = json.loads(lines[-1])
    entry["encoder"] = "0" * 64
    manifest.write_text("\n".join([*lines[:-1], json.dumps(entry)]) + "\n")
    with pytest.raises(SaeembedError, match="mixes two encoders"):
        open_store(encoded_dir, read_only=True)


def test_a_cut_manifest_line_does_not_count(encoded_dir):
    manifest = encoded_dir / MANIFEST
    text = manifest.read_text()
    manifest.write_text(text + text.splitlines()[0][:40])  # a kill in the middle of a line
    assert len(read_manifest(encoded_dir)) == 4
    with open_store(encoded_dir, read_only=True) as store:
        assert store.sql("SELECT count(*) AS n FROM documents")["n"][0] == 111


def test_bad_targets_fail_before_writing(tmp_path, encoded_dir, corpora, tiny_model, tiny_sae):
    before = snapshot(encoded_dir)
    other_sae = tmp_path / "other-sae"
    from tests.fakes import random_sae

    random_sae(seed=5).save(other_sae)
    cases = [
        (dict(encoding=EncodingOptions(model=str(tiny_model), sae=str(other_sae))),
         "holds the shards of encoder"),
        (dict(corpus="a", source=corpora[1]), "was encoded from another input"),
        (dict(corpus="bad name/x"), "cannot name a shard folder"),
        (dict(corpus="x" * 300), "too long to name a shard folder"),
        (dict(shards=ShardOptions(shard_docs=0)), "--shard-docs must be >= 1 (got 0)"),
    ]  # fmt: skip
    for change, message in cases:
        options = {**opts(tiny_model, tiny_sae), **change}
        source = options.pop("source", corpora[0])
        with pytest.raises(SaeembedError) as excinfo:
            encode(source, f"{encoded_dir}/", **options)
        assert message in one_line_error(excinfo)
        assert snapshot(encoded_dir) == before
        assert rows(encoded_dir, "SELECT corpus FROM corpora")["corpus"].to_list() == ["a"]
        if "shard folder" in message:  # a new directory is not even made
            with pytest.raises(SaeembedError, match=message):
                encode(source, f"{tmp_path}/fresh/", **options)
            assert not (tmp_path / "fresh").exists()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(SaeembedError, match="holds other files and is not a shard directory"):
        encode(corpora[0], f"{busy}/", **opts(tiny_model, tiny_sae))
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]
    with pytest.raises(SaeembedError, match="not a shard directory"):
        open_store(busy)
    # an analysis file alone that holds rows is not a creation cut short: kept and refused
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "analysis.duckdb").write_bytes((encoded_dir / "analysis.duckdb").read_bytes())
    with pytest.raises(SaeembedError, match="holds other files and is not a shard directory"):
        encode(corpora[0], f"{kept}/", **opts(tiny_model, tiny_sae))
    assert [p.name for p in kept.iterdir()] == ["analysis.duckdb"]
    assert (kept / "analysis.duckdb").read_bytes() == (encoded_dir / "analysis.duckdb").read_bytes()


def test_shards_are_write_once(encoded_dir, tiny_model, tiny_sae):
    with open_store(encoded_dir) as store, pytest.raises(SaeembedError, match="shard directory"):
        store.add_documents("x", pl.DataFrame())


def test_queries_reach_the_shards_and_nothing_else(encoded_dir):
    from saeembed.api import sql

    n = sql(encoded_dir, "SELECT count(*) AS n FROM activations")["n"][0]
    assert n == sum(s.files["activations"].rows for s in read_manifest(encoded_dir))
    with pytest.raises(SaeembedError, match="disabled by configuration"):
        sql(encoded_dir, "SELECT * FROM read_text('/etc/hostname')")


def test_cli_encode_out_and_import(tmp_path, corpora, tiny_model, tiny_sae):
    from click.testing import CliRunner

    from saeembed.cli import main

    runner = CliRunner()
    common = ["--model", str(tiny_model), "--sae", str(tiny_sae), "--device", "cpu"]
    out = tmp_path / "out"
    result = runner.invoke(main, ["-q", "encode", str(corpora[0]), "--out", str(out), *common])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["store", "import", str(out), "--db", str(tmp_path / "s.duckdb")])
    assert result.exit_code == 0 and "imported 111 documents" in result.output
    both = runner.invoke(main, ["encode", str(corpora[0]), "--out", str(out), "--db", "x.duckdb"])
    assert both.exit_code == 2 and "either --db FILE" in both.output
    ray_alone = runner.invoke(
        main, ["encode", str(corpora[0]), "--db", "x.duckdb", "--workers", "2"]
    )
    assert ray_alone.exit_code == 2 and "pass --out DIR" in ray_alone.output


def test_preference_pairs_shard_the_same_way(tmp_path, tiny_model, tiny_sae, small_chunks):
    from saeembed.api import preferences

    source = pairs_file(tmp_path / "pairs.jsonl", 60, 8)
    reading = opts(tiny_model, tiny_sae)["encoding"].but(chat="assistant")  # as responses are
    common = dict(context=True, encoding=reading, progress=False)
    shards = tmp_path / "shards"
    single = preferences.encode_pairs(source, tmp_path / "single.duckdb", **common)
    sharded = preferences.encode_pairs(source, f"{shards}/", **common)
    assert (single.n_new_pairs, sharded.n_new_pairs) == (60, 60)
    again = preferences.encode_pairs(source, f"{tmp_path}/shards/", **common)
    assert again.n_new_pairs == 0 and again.encoding.n_encoded == 0
    same_store_rows(tmp_path / "single.duckdb", tmp_path / "shards")
    for query in ("SELECT * FROM pairs ORDER BY ALL",
                  "SELECT pairs, corpus, source, context FROM pair_sets"):  # fmt: skip
        assert rows(tmp_path / "shards", query).equals(rows(tmp_path / "single.duckdb", query))
    import_shards(tmp_path / "shards", tmp_path / "imported.duckdb")
    query = "SELECT * FROM pairs ORDER BY ALL"
    assert rows(tmp_path / "imported.duckdb", query).equals(rows(tmp_path / "shards", query))
    fits = [
        preferences.fit(db, settings=preferences.FitSettings(dense=False, ks=(2,)))
        for db in (tmp_path / "imported.duckdb", shards)
    ]
    same_results(fits[0].features, fits[1].features)
    assert fits[0].metrics == pytest.approx(fits[1].metrics)
    swapped = pl.read_ndjson(source).rename({"chosen": "rejected", "rejected": "chosen"})
    swapped.write_ndjson(tmp_path / "other.jsonl")
    with pytest.raises(SaeembedError, match="holds different pairs"):
        preferences.encode_pairs(tmp_path / "other.jsonl", f"{tmp_path}/shards/", pairs="pairs",
                                 **common)  # fmt: skip


def test_ray_options_without_the_ray_engine_are_refused(tmp_path, corpora, tiny_model, tiny_sae):
    from saeembed.errors import InputError

    for options in (ShardOptions(workers=2), ShardOptions(gpus_per_worker=1.0)):
        with pytest.raises(InputError, match="run Ray actors; add --engine ray"):
            encode(corpora[0], f"{tmp_path}/out/", **opts(tiny_model, tiny_sae), shards=options)
    assert not (tmp_path / "out").exists()  # refused before a directory is made
    with pytest.raises(InputError, match="--workers must be >= 1"):
        ShardOptions(engine="ray", workers=0).check()
