"""Integrity against an adversarial user: SQL that cannot write a store's files (single file or
shard directory), ids that cannot be counted twice, other programs' DuckDB files left alone, a
full disk and Ctrl-C that end in one line. Real DuckDB files, the tiny real reader and SAE, and
real `saeembed` processes where a signal or a lock is involved."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from saeembed.cli import main
from saeembed.store import Store


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_error_line(result, needle: str) -> None:
    """Exit 1, no traceback, and a last stderr line `Error: ...` that holds ``needle``."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and needle in last, last


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): digest(p) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def stores(tmp_path_factory, tiny_model, tiny_sae):
    """A single-file store and a shard directory, each with corpus `a`."""
    root = tmp_path_factory.mktemp("integrity")
    model = ("--model", tiny_model, "--sae", tiny_sae)
    texts = [f"the film number {i} was great and the acting was fine" for i in range(12)]
    (root / "a.txt").write_text("\n".join(texts) + "\n")
    for target in (("--db", root / "s.duckdb"), ("--out", f"{root / 'shards'}/")):
        result = invoke("-q", "encode", root / "a.txt", *target, *model)
        assert result.exit_code == 0, result.output
    return root


# ---- 1, 8: user SQL writes nothing ------------------------------------------------------------


def test_user_sql_cannot_write_into_a_shard_directory(stores):
    shards = stores / "shards"
    before = tree_digest(shards)
    shard = next(shards.glob("activations/corpus=a/*.parquet"))
    attempts = {
        "COPY": f"COPY (SELECT 1 AS x WHERE false) TO '{shards / 'manifest.jsonl'}' "
        "(FORMAT csv, HEADER false)",
        "a shard": f"COPY (SELECT 1 AS x) TO '{shard}' (FORMAT parquet)",
        "a new file": f"COPY (SELECT 1 AS x) TO '{shards / 'new.csv'}'",
        "EXPLAIN ANALYZE": f"EXPLAIN ANALYZE COPY (SELECT 1) TO '{shards / 'new.csv'}'",
        "a second statement": f"SELECT 1; COPY (SELECT 1) TO '{shards / 'new.csv'}'",
        "EXPORT": f"EXPORT DATABASE '{shards / 'exported'}'",
    }
    for name, query in attempts.items():
        result = invoke("sql", shards, query)
        needle = "one statement" if name == "a second statement" else "refused"
        one_error_line(result, needle)
    # reading the shards still works, and the directory is byte for byte as it was
    counted = invoke("sql", shards, "SELECT count(*) AS n FROM documents", "--format", "json")
    assert counted.exit_code == 0 and json.loads(counted.stdout) == [{"n": 12}]
    assert tree_digest(shards) == before
    assert "12" in invoke("info", shards, "--format", "csv").stdout


def test_no_user_sql_surface_moves_a_sequence(stores):
    store = stores / "s.duckdb"

    def sequence() -> int:
        with duckdb.connect(str(store), read_only=True) as con:
            return con.execute(
                "SELECT last_value FROM duckdb_sequences() WHERE sequence_name = 'encoder_id_seq'"
            ).fetchall()[0][0]

    before = sequence()
    one_error_line(invoke("sql", store, "SELECT nextval('encoder_id_seq')"), "read-only")
    # a dense search opens the store for writing (it caches embeddings): its --where filter
    # still runs on a read-only connection of its own
    for how in (("film", "--dense"), ("--features", 1)):
        result = invoke("search", store, *how, "--where", "nextval('encoder_id_seq') > 0")
        one_error_line(result, "read-only")
    assert sequence() == before


def test_user_sql_still_reads_what_it_should(stores):
    store = stores / "s.duckdb"
    for query in (
        "DESCRIBE documents",
        "SHOW TABLES",
        "SUMMARIZE documents",
        "EXPLAIN SELECT 1",
        "PRAGMA table_info('documents')",
        "WITH x AS (SELECT 1 AS a) SELECT * FROM x",
        "corpus_summary",  # a named query
    ):
        result = invoke("sql", store, query, "--format", "jsonl")
        assert result.exit_code == 0, (query, result.output)
        assert result.stdout.strip(), query


def test_max_rows_bounds_the_fetch_and_says_so(stores):
    result = invoke("sql", stores / "s.duckdb", "SELECT * FROM range(20000000)",
                    "--format", "jsonl", "--max-rows", 5)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["range"] for line in result.stdout.splitlines()] == [0, 1, 2, 3, 4]
    assert "showing the first 5 rows" in result.stderr
    table = invoke("sql", stores / "s.duckdb", "SELECT * FROM range(5000)", "--format", "table")
    assert table.exit_code == 0 and "showing the first 1,000 rows" in table.stderr
    whole = invoke("sql", stores / "s.duckdb", "SELECT * FROM range(5000)", "--format", "csv")
    assert whole.stdout.count("\n") == 5001 and "showing" not in whole.stderr


# ---- 6: Ctrl-C and --timeout -------------------------------------------------------------------

SLOW = "SELECT sum(hash(a.range * b.range)) AS s FROM range(200000) a, range(200000) b"


def _saeembed(*args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "saeembed", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("after", [0.2, 2.0, 5.0])
def test_ctrl_c_stops_a_query_at_once(stores, after):
    """SIGINT ``after`` seconds into a running query (the process says when it starts it)."""
    process = _saeembed("-vv", "sql", stores / "s.duckdb", SLOW, "--timeout", 0)
    try:
        for line in process.stderr:  # wait for the query to start, however slow the start-up
            if "running the query" in line:
                break
        time.sleep(after)
        assert process.poll() is None, process.communicate()
        sent = time.monotonic()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=10)
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    waited = time.monotonic() - sent
    assert waited < 2.0, f"exit {waited:.1f} s after SIGINT"
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "Error: interrupted (Ctrl-C); the query was stopped"


def test_a_query_past_its_timeout_is_stopped(stores):
    started = time.monotonic()
    result = invoke("sql", stores / "s.duckdb", SLOW, "--timeout", 1)
    assert time.monotonic() - started < 5
    one_error_line(result, "timeout of 1 s")


# ---- 2: document identity ----------------------------------------------------------------------


def test_an_id_seen_again_in_a_corpus_is_refused(tmp_path, tiny_model, tiny_sae):
    model = ("--model", tiny_model, "--sae", tiny_sae)
    db = tmp_path / "ids.duckdb"
    for name, word in (("p1", "film"), ("p2", "soup"), ("q", "book")):
        lines = [json.dumps({"id": f"k{i}", "text": f"the {word} number {i} was fine"})
                 for i in range(12)]  # fmt: skip
        (tmp_path / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    encode = ("-q", "encode", "--db", db, "--id-col", "id", *model)
    assert invoke(*encode[:2], tmp_path / "p1.jsonl", *encode[2:], "--corpus", "P").exit_code == 0
    assert invoke(*encode[:2], tmp_path / "q.jsonl", *encode[2:], "--corpus", "Q").exit_code == 0
    before = digest(db)
    again = invoke(*encode[:2], tmp_path / "p2.jsonl", *encode[2:], "--corpus", "P")
    one_error_line(again, f"{tmp_path / 'p2.jsonl'} line 1: id 'k0' already names another text")
    assert digest(db) == before
    # encoding the same file again is not a clash: nothing is added
    same = invoke(*encode[:2], tmp_path / "p1.jsonl", *encode[2:], "--corpus", "P")
    assert same.exit_code == 0
    paired = invoke("diff", "P", "Q", "--db", db, "--paired", "--pair-on", "id",
                    "--min-support", 1, "--format", "json")  # fmt: skip
    assert paired.exit_code == 0, paired.output
    assert {row["n_pairs"] for row in json.loads(paired.stdout)} == {12}


def test_a_corpus_remembers_every_source_and_numbers_rows_once(tmp_path, tiny_model, tiny_sae):
    model = ("--model", tiny_model, "--sae", tiny_sae)
    db = tmp_path / "stems.duckdb"
    (tmp_path / "x.txt").write_text("".join(f"plain line {i} of the text file\n" for i in range(5)))
    (tmp_path / "x.csv").write_text(
        "text\n" + "".join(f"row {i} of the table file\n" for i in range(4))
    )
    for name in ("x.txt", "x.csv", "x.txt"):  # the last: a rerun adds nothing
        result = invoke("-q", "encode", tmp_path / name, "--db", db, *model)
        assert result.exit_code == 0, result.output
    with Store(db, read_only=True) as store:
        rows = store.sql("SELECT row_idx, text FROM documents ORDER BY row_idx")
        sources = store.sql(
            "SELECT source, first_row, n_documents FROM corpus_sources WHERE corpus = 'x' "
            "ORDER BY first_row"
        )
    assert rows["row_idx"].to_list() == list(range(9))
    assert rows["text"][5] == "row 0 of the table file"
    assert sources.rows() == [
        (str((tmp_path / "x.txt").resolve()), 0, 5),
        (str((tmp_path / "x.csv").resolve()), 5, 4),
    ]
    info = json.loads(invoke("info", db, "--format", "jsonl").stdout.splitlines()[0])
    both = f"{(tmp_path / 'x.txt').resolve()}; {(tmp_path / 'x.csv').resolve()}"
    assert (info["corpus"], info["documents"], info["source"]) == ("x", 9, both)


def test_pairing_refuses_a_key_two_documents_share(tmp_path):
    from saeembed.analysis.diff import paired_diff
    from saeembed.errors import InputError
    from tests.count_store import build_count_store

    store = build_count_store(tmp_path / "c.duckdb", {"A": 4, "B": 4}, {1: {"A": 2, "B": 1}})
    with store:
        store.con.execute("UPDATE documents SET ext_id = 'same' WHERE corpus = 'A'")
        with pytest.raises(InputError, match="4 documents of corpus 'A' share the id 'same'"):
            paired_diff(store, "A", "B", pair_on="id", min_support=1)


# ---- 3: other programs' files --------------------------------------------------------------


def _foreign_files(root: Path) -> dict[str, Path]:
    made = {}
    look_alike = root / "app.duckdb"  # saeembed's column names, another program's rows
    with duckdb.connect(str(look_alike)) as con:
        con.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, "
            "applied_at TIMESTAMP NOT NULL DEFAULT current_timestamp)"
        )
        con.execute("INSERT INTO schema_migrations (version, name) VALUES (1, 'create users')")
        con.execute("CREATE TABLE documents (id INTEGER, body VARCHAR)")
    made["look-alike"] = look_alike
    other = root / "other.duckdb"
    with duckdb.connect(str(other)) as con:
        con.execute("CREATE TABLE users (id INTEGER, name VARCHAR)")
    made["other tables"] = other
    odd = root / "odd.duckdb"  # a table named like the marker, holding something else
    with duckdb.connect(str(odd)) as con:
        con.execute("CREATE TABLE saeembed_store (x INTEGER)")
    made["odd marker"] = odd
    text = root / "notes.duckdb"
    text.write_text("not a database at all\n")
    made["not DuckDB"] = text
    return made


def test_a_foreign_duckdb_file_is_never_written(tmp_path, tiny_model, tiny_sae):
    files = _foreign_files(tmp_path)
    (tmp_path / "a.txt").write_text("one text\nanother text\n")
    for kind, path in files.items():
        before = digest(path)
        for args in (
            ("sql", path, "select 1"),
            ("info", path),
            ("features", "show", path, 1),
            ("encode", tmp_path / "a.txt", "--db", path, "--model", tiny_model, "--sae", tiny_sae),
        ):
            result = invoke(*args)
            needle = "cannot open" if kind == "not DuckDB" else "not a saeembed store"
            one_error_line(result, needle)
            assert "chmod" not in result.stderr
        assert digest(path) == before, kind
        assert not Path(f"{path}.wal").exists()


def test_a_store_made_before_the_marker_is_still_recognised(tmp_path):
    path = tmp_path / "old.duckdb"
    Store(path).close()
    with duckdb.connect(str(path)) as con:  # as a store of schema v9 looked
        con.execute("DROP TABLE saeembed_store; DROP TABLE corpus_sources")
        con.execute(
            "ALTER TABLE features DROP COLUMN shipped_label; "
            "ALTER TABLE features DROP COLUMN shipped_source; "
            "ALTER TABLE features DROP COLUMN shipped_score; "
            "ALTER TABLE features DROP COLUMN local_evidence; "
            "ALTER TABLE features DROP COLUMN named_at"
        )  # (v11)
        con.execute("DELETE FROM schema_migrations WHERE version >= 10")
    with Store(path, read_only=True) as store:  # upgraded on open: it is writable
        assert store.sql("SELECT format FROM saeembed_store")["format"].to_list() == [
            "saeembed-store"
        ]
        assert "shipped_label" in store.sql("SELECT * FROM features LIMIT 0").columns


# ---- 4: a full disk ------------------------------------------------------------------------


def test_a_full_disk_while_encoding_is_one_line(tmp_path, tiny_model, tiny_sae):
    """The store's write-ahead log is /dev/full, where every write fails with ENOSPC."""
    model = ("--model", tiny_model, "--sae", tiny_sae)
    (tmp_path / "a.txt").write_text("".join(f"text number {i} here\n" for i in range(20)))
    (tmp_path / "b.txt").write_text("".join(f"other words {i} there\n" for i in range(20)))
    db = tmp_path / "full.duckdb"
    assert invoke("-q", "encode", tmp_path / "a.txt", "--db", db, *model).exit_code == 0
    with Store(db, read_only=True) as store:
        kept = store.sql("SELECT count(*) AS n FROM encoded_documents")["n"][0]
    os.symlink("/dev/full", f"{db}.wal")
    try:
        result = invoke("encode", tmp_path / "b.txt", "--db", db, *model)
    finally:
        os.unlink(f"{db}.wal")
    one_error_line(result, "No space left on device")
    assert "free some space" in result.stderr
    with Store(db, read_only=True) as store:  # what was committed before is whole
        assert store.sql("SELECT count(*) AS n FROM encoded_documents")["n"][0] == kept


def test_a_full_disk_while_writing_shards_is_one_line(tmp_path, tiny_model, tiny_sae, monkeypatch):
    """ENOSPC injected into the Parquet writer the shard encoder uses."""
    import errno

    import pyarrow.parquet as pq

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pq, "write_table", full)
    (tmp_path / "a.txt").write_text("".join(f"text number {i} here\n" for i in range(20)))
    result = invoke("encode", tmp_path / "a.txt", "--out", f"{tmp_path / 'out'}/",
                    "--model", tiny_model, "--sae", tiny_sae)  # fmt: skip
    one_error_line(result, "No space left on device")


# ---- 10: cache stores nobody named ---------------------------------------------------------


def test_diff_cache_stores_are_per_input(tmp_path):
    from saeembed.api.compare import diff_cache_store

    a, b, c = (tmp_path / f"{n}.txt" for n in "abc")
    for path in (a, b, c):
        path.write_text("text\n")
    assert diff_cache_store([a, b]) == diff_cache_store([a, b])
    assert diff_cache_store([a, b]) != diff_cache_store([a, c])
    assert diff_cache_store([a, b]) != diff_cache_store([b, a])
    first = diff_cache_store([a, b])
    time.sleep(0.01)
    a.write_text("text, edited\n")
    assert diff_cache_store([a, b]) != first  # an edited file is encoded afresh


def test_a_reader_names_a_shard_directory_whose_creation_was_cut_short(tmp_path):
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "analysis.duckdb").write_bytes(b"")  # a kill before the header was written
    one_error_line(invoke("info", cut), "creation was cut short")
    assert [p.name for p in cut.iterdir()] == ["analysis.duckdb"]  # a reader changes nothing
