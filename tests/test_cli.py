"""The command line, end to end on tiny real components and a real DuckDB file."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from saeembed.cli import main

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture
def corpus_file(tmp_path):
    path = tmp_path / "reviews.jsonl.gz"
    rows = [
        {"id": "r1", "text": "the movie was great .", "stars": 5},
        {"id": "r2", "text": "awful plot , boring acting", "stars": 1},
        {"id": "r3", "text": "   ", "stars": 3},
        {"id": "r4", "text": "i love this film", "stars": 4},
    ]
    with gzip.open(path, "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return path


def run(*args, ok=True):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output + result.stderr
    return result


@pytest.fixture
def encoded_db(tmp_path, corpus_file, tiny_model, tiny_sae):
    db = tmp_path / "s.duckdb"
    run(
        "-q",
        "encode",
        corpus_file,
        "--db",
        db,
        "--id-col",
        "id",
        "--model",
        tiny_model,
        "--sae",
        tiny_sae,
    )
    return db


def test_encode_then_sql(encoded_db):
    out = run(
        "sql",
        encoded_db,
        "SELECT corpus, ext_id, meta FROM documents ORDER BY row_idx",
        "--format",
        "json",
    ).stdout
    assert json.loads(out) == [
        {"corpus": "reviews", "ext_id": "r1", "meta": '{"stars":5}'},
        {"corpus": "reviews", "ext_id": "r2", "meta": '{"stars":1}'},
        {"corpus": "reviews", "ext_id": "r4", "meta": '{"stars":4}'},
    ]
    lines = run(
        "sql",
        encoded_db,
        "SELECT count(*) AS n FROM encoded_documents WHERE n_tokens > $m",
        "-p",
        "m",
        4,
    ).stdout
    assert [json.loads(x) for x in lines.splitlines()] == [{"n": 2}]  # piped: JSON lines
    csv = run("sql", encoded_db, "SELECT 1 AS a, 'x' AS b", "--format", "csv").stdout
    assert csv == "a,b\n1,x\n"


def test_encode_reports_skipped_rows_and_is_idempotent(tmp_path, corpus_file, tiny_model, tiny_sae):
    db = tmp_path / "s.duckdb"
    args = ("encode", corpus_file, "--db", db, "--model", tiny_model, "--sae", tiny_sae)
    first = run(*args)
    assert "3 new documents; encoded 3" in first.stderr
    second = run(*args)
    assert "skipped 1 with no text" in second.stderr
    assert "0 new documents; encoded 0" in second.stderr
    assert run("-q", *args).stderr == ""  # -q: nothing but errors


def test_named_query_through_sql(encoded_db):
    feature = json.loads(
        run("sql", encoded_db, "SELECT feature FROM activations ORDER BY value DESC LIMIT 1").stdout
    )["feature"]
    rows = [
        json.loads(x)
        for x in run(
            "sql", encoded_db, "top_documents", "-p", "feature", feature, "-p", "limit", 1
        ).stdout.splitlines()
    ]
    assert len(rows) == 1 and "«" in rows[0]["context"]
    assert "top_documents" in run("queries", "--format", "csv").stdout


def test_info(encoded_db):
    out = run("info", encoded_db, "--format", "jsonl").stdout.splitlines()
    corpus, encoder = json.loads(out[0]), json.loads(out[1])
    assert corpus["corpus"] == "reviews" and corpus["documents"] == 3
    assert encoder["documents"] == 3 and encoder["layer"] == 1 and encoder["d_sae"] == 64


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        (None, (), r"no such file"),
        (b"", (), r"is empty"),
        (b'{"body": "x", "title": "y"}\n', (), r"no column 'text'.*body, title"),
        (b'{"text": "caf\xe9"}\n', (), r"not valid UTF-8"),
        (b'{"text": "a", "id": 1}\n{"text": "b", "id": 1}\n', ("--id-col", "id"), r"duplicate"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    tmp_path, tiny_model, tiny_sae, content, extra, message
):
    path = tmp_path / "in.jsonl"
    if content is not None:
        path.write_bytes(content)
    db = tmp_path / "s.duckdb"
    result = run(
        "encode", path, "--db", db, "--model", tiny_model, "--sae", tiny_sae, *extra, ok=False
    )
    assert result.exit_code == 1
    error = result.stderr.strip()
    assert error.startswith("Error: ") and "\n" not in error and re.search(message, error), error
    assert not db.exists()


def test_sae_that_does_not_fit_is_refused(tmp_path, corpus_file, tiny_model):
    from tests.fakes import random_sae

    random_sae(d_in=8).save(tmp_path / "narrow")
    result = run(
        "encode",
        corpus_file,
        "--db",
        tmp_path / "s.duckdb",
        "--model",
        tiny_model,
        "--sae",
        tmp_path / "narrow",
        ok=False,
    )
    assert "d_in=8 does not match the model's hidden size 16" in result.stderr
    assert not (tmp_path / "s.duckdb").exists()  # refused before the store is created


def test_missing_model_or_sae_path_is_refused_before_writing(
    tmp_path, corpus_file, tiny_model, tiny_sae
):
    db = tmp_path / "s.duckdb"
    result = run(
        "encode",
        corpus_file,
        "--db",
        db,
        "--model",
        tmp_path / "no-model",
        "--sae",
        tiny_sae,
        ok=False,
    )
    assert "no model directory at" in result.stderr
    result = run(
        "encode",
        corpus_file,
        "--db",
        db,
        "--model",
        tiny_model,
        "--sae",
        tmp_path / "no-sae",
        ok=False,
    )
    assert "no SAE at" in result.stderr
    assert not db.exists()


def test_unknown_encoder_and_missing_store(encoded_db, tmp_path):
    result = run(
        "sql", encoded_db, "top_documents", "-p", "feature", 1, "-p", "encoder_id", "nope", ok=False
    )
    assert "no encoder 'nope'" in result.stderr
    result = run("info", tmp_path / "missing.duckdb", ok=False)
    assert "no store at" in result.stderr and not (tmp_path / "missing.duckdb").exists()


def test_sae_info_and_convert(tmp_path, tiny_sae):
    info = json.loads(run("sae", "info", tiny_sae).stdout)
    assert (info["d_in"], info["d_sae"], info["activation"], info["k"], info["layer"]) == (
        16,
        64,
        "topk",
        4,
        1,
    )
    run("sae", "convert", tiny_sae, tmp_path / "copy", "--dtype", "float16")
    copy = json.loads(run("sae", "info", tmp_path / "copy").stdout)
    assert copy["d_sae"] == 64
    # the copy is its own source (a store encoded with it reloads the copy, not the original)
    assert copy["source"] == f"saeembed:{tmp_path / 'copy'}"
    from saeembed.sae import load_sae

    assert load_sae(tmp_path / "copy").cfg.extra["converted_from"] == f"saeembed:{tiny_sae}"


def test_labels_exported_for_an_fp16_copy_apply_to_its_stores(
    encoded_db, tmp_path, corpus_file, tiny_model, tiny_sae
):
    """Labels made with an SAE can be published for its fp16 copy (which hashes differently),
    and only for a copy: a different SAE is refused by name."""
    from saeembed.labels.table import parquet_sae_sha
    from saeembed.sae import load_sae
    from tests.fakes import random_sae

    run("-q", "features", "label", encoded_db)
    half = tmp_path / "half"
    run("sae", "convert", tiny_sae, half, "--dtype", "float16")
    plain, for_half = tmp_path / "plain.parquet", tmp_path / "half.parquet"
    run("features", "export", encoded_db, "-o", plain)
    run("features", "export", encoded_db, "-o", for_half, "--for-sae", half)
    assert parquet_sae_sha(plain) == load_sae(tiny_sae).content_hash()
    assert parquet_sae_sha(for_half) == load_sae(half).content_hash() != parquet_sae_sha(plain)

    half_db = tmp_path / "half.duckdb"
    run(
        "-q",
        "encode",
        corpus_file,
        "--db",
        half_db,
        "--id-col",
        "id",
        "--model",
        tiny_model,
        "--sae",
        half,
    )
    refused = run("features", "import", half_db, plain, ok=False)
    assert "labels the SAE with hash" in refused.stderr
    run("features", "import", half_db, for_half)
    assert run("features", "export", half_db, "-o", tmp_path / "again.parquet").exit_code == 0
    assert len(pl_labels(for_half)) > 5
    assert pl_labels(tmp_path / "again.parquet") == pl_labels(for_half)

    other = tmp_path / "other"
    random_sae(seed=5).save(other)
    out = run(
        "features", "export", encoded_db, "-o", tmp_path / "x.parquet", "--for-sae", other, ok=False
    )
    assert out.stderr.startswith(f"Error: {other} is not a copy of ")
    assert "W_enc differs by " in out.stderr and not (tmp_path / "x.parquet").exists()


def test_output_side_tokens_only_from_the_encoders_own_sae(
    tmp_path, corpus_file, tiny_model, monkeypatch
):
    """The labeller reads the tokens a feature promotes from the encoder's SAE; when the SAE at
    the recorded place is no longer that one (a replaced shipped SAE), it proposes none."""
    from saeembed.labels import _promoted
    from saeembed.store import Store
    from tests.fakes import random_sae

    read = []
    monkeypatch.setattr(
        "saeembed.labels.output.promoted_tokens",
        lambda sae, reader: read.append(sae.content_hash()) or {0: ("word",)},
    )
    sae_dir = tmp_path / "sae"
    random_sae().save(sae_dir)
    db = tmp_path / "s.duckdb"
    run("-q", "encode", corpus_file, "--db", db, "--id-col", "id", "--model", tiny_model,
        "--sae", sae_dir)  # fmt: skip
    with Store(db, read_only=True) as store:
        encoder = store.resolve_encoder(None)
    assert _promoted(encoder) == {0: ("word",)} and read == [encoder.sae_sha256]
    random_sae(seed=5).save(sae_dir)  # another SAE where the encoder's was
    assert _promoted(encoder) == {} and len(read) == 1


def pl_labels(path: Path) -> list[tuple[int, str]]:
    import polars as pl

    return pl.read_parquet(path).select("feature", "label").sort("feature").rows()


def _commands(group: click.Group, prefix: str = "") -> list[str]:
    names = []
    for name, command in group.commands.items():
        names.append(f"{prefix}{name}")
        if isinstance(command, click.Group):
            names += _commands(command, f"{prefix}{name} ")
    return names


def test_every_command_is_documented_in_the_readme():
    readme = README.read_text()
    missing = [c for c in _commands(main) if f"saeembed {c}" not in readme]
    assert not missing, f"commands missing from README.md: {missing}"


@pytest.fixture
def labelled_db(tmp_path):
    from tests.labelled_store import build_labelled_store

    store, texts = build_labelled_store(tmp_path / "labelled.duckdb")
    store.close()
    return tmp_path / "labelled.duckdb", texts


def test_features_label_show_search_export_import(labelled_db, tmp_path):
    db, texts = labelled_db
    out = run("features", "label", db, "--format", "json")
    rows = {r["feature"]: r for r in json.loads(out.stdout)}
    assert rows[0]["label"] == "film" and rows[0]["label_score"] == 1.0
    assert "labelled 3 features (" in out.stderr
    shown = run("features", "show", db, "0", "--top", "2").stdout
    assert "label: film  (offline, detection score 1.00)" in shown
    assert shown.split("top documents:")[1].count("«film»") == 2
    as_json = json.loads(run("features", "show", db, "0", "--format", "json").stdout)
    assert as_json["n_docs"] == sum("film" in t.split() for t in texts)
    found = run("features", "search", db, "match", "--words-only", "--format", "jsonl").stdout
    assert [json.loads(x)["feature"] for x in found.splitlines()] == [1]
    exported = tmp_path / "labels.parquet"
    run("features", "export", db, "-o", exported)
    table = tmp_path / "mine.csv"
    table.write_text("feature,label\n2,my own words\n")
    run("features", "import", db, table)
    shown = run("features", "show", db, "2").stdout
    assert "label: my own words  (table" in shown
    run("features", "import", db, exported)
    assert "my own words" not in run("features", "show", db, "2").stdout


def test_features_errors_are_one_line(labelled_db):
    db, _ = labelled_db
    out = run("features", "show", db, "99", ok=False)
    assert out.exit_code == 1
    assert out.stderr.strip() == "Error: feature 99 does not exist; features are 0..3"
    out = run("features", "search", db, "film", ok=False)
    assert "has no feature labels yet; run `saeembed features label`" in out.stderr
    out = run("features", "label", db, "--method", "llm", ok=False)
    assert out.stderr.strip() == "Error: LLM labelling needs --api-base URL and --llm-model NAME"


def test_diff_files_end_to_end(tmp_path, tiny_model, tiny_sae):
    """Two files, encoded on the fly into --db, then diffed; rows follow the documented keys."""
    good = tmp_path / "good.txt"
    bad = tmp_path / "bad.txt"
    good.write_text("\n".join(f"great film number {i} , loved it" for i in range(30)) + "\n")
    bad.write_text("\n".join(f"awful plot {i} , boring acting" for i in range(30)) + "\n")
    db = tmp_path / "d.duckdb"
    out = run(
        "diff", good, bad, "--db", db, "--model", tiny_model, "--sae", tiny_sae,
        "--format", "jsonl", "--top", "5", "--examples", "1",
    )  # fmt: skip
    rows = [json.loads(x) for x in out.stdout.splitlines()]
    assert rows and len(rows) <= 5
    for key in ("feature", "label", "n_a", "n_b", "freq_a", "freq_b", "diff", "ci_low",
                "ci_high", "p", "q", "examples"):  # fmt: skip
        assert key in rows[0]
    assert all(r["ci_low"] <= r["diff"] <= r["ci_high"] for r in rows)
    assert "good vs bad" in out.stderr and "concepts tested" in out.stderr
    # the corpora are now in the store: diff them by name, paired by row
    again = run("-q", "diff", "good", "bad", "--db", db, "--paired", "--format", "json")
    assert {"both", "only_a", "only_b"} <= set(json.loads(again.stdout)[0])
    missing = run("diff", "nothing-here", "bad", "--db", db, ok=False)
    assert "'nothing-here' is neither a file, a named dataset (data:NAME) nor a corpus" in (
        missing.stderr
    )


def test_correlate_command(tmp_path):
    from tests.count_store import build_count_store

    store = build_count_store(
        tmp_path / "c.duckdb", {"A": 30, "B": 30}, {1: {"A": 20, "B": 5}, 2: {"A": 12, "B": 3}}
    )
    store.con.execute("UPDATE documents SET meta = json_object('source', corpus)").fetchall()
    store.close()
    db = tmp_path / "c.duckdb"
    pairs = json.loads(run("correlate", db, "--show-trivial", "--format", "json").stdout)
    assert [(p["feature_a"], p["feature_b"], p["n_ab"]) for p in pairs] == [(1, 2, 15)]
    enriched = run("correlate", db, "--with", "source", "--format", "jsonl").stdout.splitlines()
    first = json.loads(enriched[0])
    assert (first["category"], first["feature"]) in {("A", 1), ("B", 1)}
    table = run("correlate", db, "--show-trivial", "--format", "table").stdout
    header = [c.strip() for c in table.splitlines()[1].strip("│").split("┆")]
    assert "phi" in header and "r" not in header  # under a binary measure r is phi
    assert "r" in pairs[0] and pairs[0]["r"] == pytest.approx(pairs[0]["phi"])  # JSON keeps it


def test_commands_that_count_share_one_default_measure():
    """Whether a document has a concept means the same in diff and correlate: strong."""
    import inspect

    from saeembed import api

    def default(fn):
        return inspect.signature(fn).parameters["measure"].default

    assert api.DiffSettings().measure == default(api.correlate) == "strong"


def test_bad_token_limits_are_refused_before_writing(tmp_path, corpus_file, tiny_model, tiny_sae):
    """--max-tokens beyond the reader's positions, or below 1, is refused before any store exists
    (it used to fail with a traceback after the documents were stored)."""
    db = tmp_path / "s.duckdb"
    common = ("encode", corpus_file, "--db", db, "--model", tiny_model, "--sae", tiny_sae)
    result = run(*common, "--max-tokens", 99_999_999_999, ok=False)
    assert "--max-tokens 99,999,999,999 is beyond what" in result.stderr
    assert "Traceback" not in result.stderr
    result = run(*common, "--batch-tokens", 0, ok=False)
    assert "Invalid value for '--batch-tokens': 0 is not in the range x>=1." in result.stderr
    assert not db.exists()


def test_sql_reaches_no_other_file_unless_allowed(encoded_db, tmp_path):
    out = tmp_path / "out.csv"
    secret = tmp_path / "secret.txt"
    secret.write_text("password")
    copy = f"COPY (SELECT doc_id FROM documents) TO '{out}'"
    refusals = {
        copy: "COPY statements are refused",
        f"SELECT content FROM read_text('{secret}')": "file system operations are disabled",
        "INSTALL httpfs": "LOAD statements are refused",
    }
    for query, message in refusals.items():
        result = run("sql", encoded_db, query, ok=False)
        assert result.exit_code != 0 and "Traceback" not in result.stderr
        assert message in result.stderr
    assert not out.exists()
    run("sql", encoded_db, copy, "--allow-files")
    assert out.read_text().splitlines()[0] == "doc_id"
    found = run("sql", encoded_db, f"SELECT content FROM read_text('{secret}')", "--allow-files")
    assert "password" in found.output


def test_sql_file_problems_are_one_line(encoded_db, tmp_path):
    (tmp_path / "binary.sql").write_bytes(b"\xff\xfe\x00\x01")
    (tmp_path / "empty.sql").write_text("  \n")
    cases = {
        f"@{tmp_path / 'missing.sql'}": "no SQL file",
        f"@{tmp_path}": "is a directory",
        f"@{tmp_path / 'binary.sql'}": "is not UTF-8 text",
        f"@{tmp_path / 'empty.sql'}": "holds no SQL text",
    }
    for query, message in cases.items():
        result = run("sql", encoded_db, query, ok=False)
        assert message in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_a_mistyped_store_is_not_created(tmp_path):
    missing = tmp_path / "typo.duckdb"
    for args in (
        ("diff", "a", "b", "--db", missing),
        ("search", missing, "film"),
        ("cluster", missing),
        ("prefs", "fit", missing),
        ("features", "label", missing),
    ):
        result = run(*args, ok=False)
        assert result.exit_code != 0 and "no store at" in result.stderr, args
        assert "Traceback" not in result.stderr
        assert not missing.exists(), args


def _hold(db, *, read_only: bool):
    """Another process holding ``db`` open (read-only or for writing) until killed."""
    import subprocess
    import sys

    code = (
        "import duckdb, sys, time; c = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == '1');"
        "print('ready', flush=True); time.sleep(120)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(db), "1" if read_only else "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "ready"
    return holder


def test_readers_share_a_store_and_a_busy_store_names_its_holder(encoded_db, corpus_file):
    reader = _hold(encoded_db, read_only=True)
    try:
        for args in (
            ("info", encoded_db),
            ("sql", encoded_db, "SELECT count(*) AS n FROM documents"),
            ("search", encoded_db, "--features", "1"),
            ("features", "show", encoded_db, "1"),
        ):
            run(*args)  # read-only opens: they share the store with the other reader
    finally:
        reader.kill()
        reader.wait()
    writer = _hold(encoded_db, read_only=False)
    try:
        result = run("info", encoded_db, ok=False)
        assert f"is in use by process {writer.pid} (python" in result.stderr
        assert "retry when it has finished" in result.stderr and "Traceback" not in result.stderr
    finally:
        writer.kill()
        writer.wait()


def test_info_marks_sources_that_are_gone(tmp_path, corpus_file, tiny_model, tiny_sae):
    copy = tmp_path / "gone.jsonl.gz"
    copy.write_bytes(corpus_file.read_bytes())
    db = tmp_path / "s.duckdb"
    run("-q", "encode", copy, "--db", db, "--model", tiny_model, "--sae", tiny_sae)
    assert json.loads(run("info", db).stdout.splitlines()[0])["source"] == str(copy)
    copy.unlink()
    assert json.loads(run("info", db).stdout.splitlines()[0])["source"] == (
        f"{copy} (no longer there)"
    )


def test_quiet_means_nothing_but_errors_on_stderr(tmp_path):
    """`saeembed -q` across the analysis commands: results on stdout, stderr empty; an error
    still says what went wrong."""
    from tests.count_store import build_count_store

    db = tmp_path / "q.duckdb"
    build_count_store(db, {"A": 40, "B": 60}, {1: {"A": 24, "B": 6}, 3: {"A": 4, "B": 42}}).close()
    db_arg = str(db)
    commands = [
        ["diff", "A", "B", "--db", db_arg, "--format", "json"],
        ["diff", "A", "B", "--db", db_arg, "--format", "table", "--examples", "1"],
        ["correlate", db_arg, "--format", "json"],
        ["search", db_arg, "--features", "1", "--format", "json"],
        ["search", db_arg, "--positive", "A:0", "--positive", "A:1", "--format", "json"],
        ["cluster", db_arg, "--features", "1,3", "--k", "2", "--format", "json"],
        ["features", "pages", db_arg, "--out", str(tmp_path / "pages"), "--top", "2"],
        ["info", db_arg],
        ["sql", db_arg, "feature_frequencies", "-p", "limit", "3"],
    ]
    for args in commands:
        result = run("-q", *args)
        assert result.stderr == "", (args, result.stderr)
        assert result.stdout.strip() or args[0] == "features", args
    failed = run("-q", "diff", "A", "Z", "--db", db_arg, ok=False)
    assert failed.exit_code != 0 and failed.stderr.startswith("Error: ")


def test_encoding_options_are_defined_once():
    """The encoding options the commands offer come from `EncodingOptions`, and every API
    function that encodes takes them as one `EncodingOptions` (none repeats a field as a
    parameter of its own); pairs are read as assistant turns unless told otherwise."""
    import inspect

    from saeembed import api
    from saeembed.api import preferences
    from saeembed.encoding.options import EncodingOptions

    for fn in (api.encode, preferences.encode_pairs, api.diff):
        params = inspect.signature(fn).parameters
        assert "encoding" in params and params["encoding"].default is None, fn
        assert not set(EncodingOptions.names()) & set(params), fn
    assert EncodingOptions(chat="assistant") == preferences.PAIR_ENCODING
    with pytest.raises(Exception, match="unknown chat turn 'system'"):
        EncodingOptions(chat="system").check()
    from saeembed.encoding.options import CHAT_TURNS
    from saeembed.inputs.tokens import CHAT_MODES

    assert CHAT_TURNS == CHAT_MODES  # kept apart only so that the options need no torch
