"""The DuckDB store: migrations from blank and from old or foreign files, documents, encoders."""

from __future__ import annotations

import duckdb
import polars as pl
import pytest

from saeembed.errors import StoreError
from saeembed.inputs import documents_from_texts
from saeembed.store import Store, latest_version
from tests.fakes import ENCODER_FIELDS


def test_blank_store_gets_every_migration(tmp_path):
    with Store(tmp_path / "s.duckdb") as store:
        assert store.schema_version() == latest_version()
        rows = store.sql("SELECT version, name FROM schema_migrations ORDER BY version").rows()
        assert rows[0] == (1, "initial")
        tables = set(store.sql("SELECT table_name FROM information_schema.tables")["table_name"])
        assert {
            "documents",
            "encoders",
            "encoded_documents",
            "activations",
            "features",
            "corpora",
        } <= tables


def test_reopening_does_not_migrate_twice(tmp_path):
    Store(tmp_path / "s.duckdb").close()
    with Store(tmp_path / "s.duckdb") as store:
        assert store.sql("SELECT count(*) AS n FROM schema_migrations")["n"][0] == latest_version()


def test_store_from_a_newer_saeembed_is_refused(tmp_path):
    path = tmp_path / "s.duckdb"
    Store(path).close()
    con = duckdb.connect(str(path))
    con.execute("INSERT INTO schema_migrations (version, name) VALUES (999, 'future')")
    con.close()
    with pytest.raises(StoreError, match="schema v999, newer than this saeembed knows"):
        Store(path)


def test_foreign_duckdb_file_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "other.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE mine (x INT)")
    con.close()
    with pytest.raises(StoreError, match="not a saeembed store"):
        Store(path)
    con = duckdb.connect(str(path))
    assert [
        r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
    ] == ["mine"]
    con.close()


def test_missing_store_for_reading(tmp_path):
    with pytest.raises(StoreError, match="no store at .*saeembed encode"):
        Store(tmp_path / "nope.duckdb", read_only=True)
    assert not (tmp_path / "nope.duckdb").exists()


def test_not_a_database(tmp_path):
    path = tmp_path / "junk.duckdb"
    path.write_text("hello")
    with pytest.raises(StoreError, match="cannot open"):
        Store(path)


def test_add_documents_is_idempotent_per_corpus(tmp_path):
    docs, _ = documents_from_texts(["a b", "c d", "e f"])
    with Store(tmp_path / "s.duckdb") as store:
        assert store.add_documents("one", docs) == 3
        assert store.add_documents("one", docs) == 0
        assert store.add_documents("two", docs.head(2)) == 2
        more, _ = documents_from_texts(["a b", "g h"])
        assert store.add_documents("one", more) == 1
        assert store.sql(
            "SELECT corpus, count(*) AS n FROM documents GROUP BY 1 ORDER BY 1"
        ).rows() == [("one", 4), ("two", 2)]
        assert store.corpora() == ["one", "two"]


def test_failed_document_insert_leaves_nothing(tmp_path):
    docs, _ = documents_from_texts(["a b"])
    bad = docs.with_columns(pl.lit(None, dtype=pl.String).alias("text"))  # NOT NULL violation
    with Store(tmp_path / "s.duckdb") as store:
        with pytest.raises(duckdb.Error):
            store.add_documents("one", bad)
        assert store.corpora() == []
        assert store.count_documents("one") == 0


def test_encoder_resolution(tmp_path):
    with Store(tmp_path / "s.duckdb") as store:
        with pytest.raises(StoreError, match="no encoders yet"):
            store.resolve_encoder(None)
        fields = ENCODER_FIELDS
        first, created = store.get_or_create_encoder("fp1", fields)
        again, created_again = store.get_or_create_encoder("fp1", fields)
        assert created and not created_again and again == first
        second, _ = store.get_or_create_encoder("fp2", fields)
        assert (first.name, second.name) == ("m-L1", "m-L1-2")
        assert store.resolve_encoder("m-L1-2") == second
        assert store.resolve_encoder(1) == first
        with pytest.raises(StoreError, match="several encoders"):
            store.resolve_encoder(None)
        with pytest.raises(StoreError, match="no encoder 'x'"):
            store.resolve_encoder("x")


def test_unknown_corpus(tmp_path):
    with (
        Store(tmp_path / "s.duckdb") as store,
        pytest.raises(StoreError, match="no corpus 'x'.*none yet"),
    ):
        store.require_corpus("x")


def test_v1_store_upgrades_keeping_its_labels(tmp_path):
    import duckdb

    path = tmp_path / "v1.duckdb"
    _v1_store(path)
    with duckdb.connect(str(path)) as con:
        con.execute("INSERT INTO features (encoder_id, feature, label) VALUES (1, 3, 'old label')")
    with Store(path) as store:
        assert store.schema_version() == latest_version() >= 2
        row = store.sql("SELECT feature, label, density, n_docs, examples FROM features")
        assert row.to_dicts() == [
            {"feature": 3, "label": "old label", "density": None, "n_docs": None, "examples": None}
        ]


def _v1_store(path):
    import duckdb

    from saeembed.store.migrations import MIGRATIONS

    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, "
        "applied_at TIMESTAMP NOT NULL DEFAULT current_timestamp)"
    )
    version, name, apply = MIGRATIONS[0]
    apply(con)
    con.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [version, name])
    con.close()


def test_reading_an_older_store_upgrades_it_first(tmp_path):
    _v1_store(tmp_path / "old.duckdb")
    with Store(tmp_path / "old.duckdb", read_only=True) as store:
        assert store.schema_version() == latest_version()
        assert store.sql("SELECT count(*) AS n FROM pairs")["n"][0] == 0  # a v3 table


def test_an_older_read_only_file_is_refused_with_the_fix(tmp_path):
    import os

    _v1_store(tmp_path / "old.duckdb")
    os.chmod(tmp_path / "old.duckdb", 0o444)
    if os.access(tmp_path / "old.duckdb", os.W_OK):  # root ignores file modes
        pytest.skip("this user can write read-only files")
    with pytest.raises(StoreError, match="needs a schema upgrade"):
        Store(tmp_path / "old.duckdb", read_only=True)


def test_a_failed_write_shows_its_own_error_not_the_rollback(tmp_path):
    """When the failing write has already ended the transaction (as a full disk does), the
    error raised is the write's, not "cannot rollback - no transaction is active"."""
    store = Store(tmp_path / "s.duckdb")
    failing = pytest.raises(duckdb.IOException, match="No space left on device")
    with failing, store.transaction() as con:
        con.execute("CREATE TABLE scratch (x INTEGER)")
        con.rollback()  # the transaction is gone, as after a failed write
        raise duckdb.IOException("No space left on device")
    assert "scratch" not in store.sql("SELECT table_name FROM duckdb_tables()")["table_name"]
    store.close()


def test_a_store_killed_while_being_created_opens_for_reading(tmp_path):
    """A kill between creating the file and its first migration leaves an empty DuckDB file
    (schema v0): a reader builds it, as a writer would, rather than refusing it."""

    path = tmp_path / "s.duckdb"
    duckdb.connect(str(path)).close()
    with Store(path, read_only=True) as store:
        assert store.schema_version() == latest_version()
        assert store.corpora() == []


def test_the_lock_holder_is_named_on_one_line():
    """A process holding a store, started with a script of several lines, is named in one line
    (errors are one line)."""
    import subprocess
    import sys

    from saeembed.store.store import _lock_holder

    holder = subprocess.Popen([sys.executable, "-c", "import time\ntime.sleep(30)\n"])
    try:
        named = _lock_holder(f"Conflicting lock is held in python (PID {holder.pid}) by user")
    finally:
        holder.kill()
    assert named.startswith(f"process {holder.pid} (python") and "\n" not in named
    assert "import time time.sleep(30)" in named
