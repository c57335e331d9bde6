"""The bad-input matrix: every command given something it cannot use exits non-zero with one
error line on stderr that names the problem, never a traceback, and leaves the store's rows as
they were. Built on tiny real components (a random few-layer reader and SAE, real DuckDB files).
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import json
import pickle
from pathlib import Path

import duckdb
import pytest
import torch
import zstandard
from click.testing import CliRunner

from saeembed.cli import main
from saeembed.store import Store
from tests.fakes import random_sae
from tests.pair_store import build_pair_store

TEXTS_A = [f"the film number {i} was great and the acting was fine" for i in range(12)]
TEXTS_B = [f"the soup number {i} was cold and the bread was stale" for i in range(12)]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model, tiny_sae):
    """Files and stores the cases refer to, built once."""
    root = tmp_path_factory.mktemp("bad")
    model = ("--model", tiny_model, "--sae", tiny_sae)
    for name, texts in (("a", TEXTS_A), ("b", TEXTS_B)):
        (root / f"{name}.txt").write_text("\n".join(texts) + "\n")
        result = invoke("-q", "encode", root / f"{name}.txt", "--db", root / "s.duckdb", *model)
        assert result.exit_code == 0, result.output
    build_pair_store(root / "pairs.duckdb", n=200, seed=1)[0].close()

    plain = ("\n".join(TEXTS_A) * 40).encode()
    for suffix, compress in ((".gz", gzip.compress), (".bz2", bz2.compress),
                             (".zst", zstandard.ZstdCompressor().compress)):  # fmt: skip
        whole = compress(plain)
        (root / f"cut.txt{suffix}").write_bytes(whole[: len(whole) // 2])
    (root / "empty.txt").write_bytes(b"")
    (root / "latin1.txt").write_bytes("caf\xe9 cr\xe8me\n".encode("latin-1"))
    (root / "corpus.xyz").write_text("text")
    (root / "ragged.csv").write_text("text,n\nfine,1\nshort\n")
    (root / "nocol.csv").write_text("n,m\n1,2\n")
    (root / "good.csv").write_text("text,n\nfine,1\n")
    (root / "deep.json").write_text("[" * 200_000 + "]" * 200_000)
    (root / "surrogate.jsonl").write_text('{"text": "bad \\ud800 text"}\n')
    (root / "scalar.jsonl").write_text('{"text": "fine"}\n42\n')
    (root / "adir").mkdir()
    (root / "binary.sql").write_bytes(b"\xff\xfe\x00\x01")
    (root / "labels.json.gz").write_bytes(gzip.compress(b'[{"index": 1, "label": "x"}]')[:20])
    (root / "queue.jsonl").write_text('{"pair_id": 1, "decision": "maybe"}\n')
    with duckdb.connect(str(root / "app.duckdb")) as con:  # another program's database
        con.execute("CREATE TABLE schema_migrations (version INTEGER, name VARCHAR)")
    (root / "ids1.jsonl").write_text('{"id": "k0", "text": "one"}\n{"id": "k1", "text": "two"}\n')
    (root / "ids2.jsonl").write_text('{"id": "k0", "text": "one"}\n{"id": "k1", "text": "2"}\n')
    ids = ("encode", root / "ids1.jsonl", "--db", root / "s.duckdb", "--corpus", "ids")
    assert invoke("-q", *ids, "--id-col", "id", *model).exit_code == 0

    nan = random_sae()
    nan.W_enc.data[0, 0] = float("nan")
    nan_dir = root / "nan-sae"
    nan.save(nan_dir)
    # saving checks nothing; loading must refuse (the saved tensors carry the NaN)
    wide = root / "wide-sae"
    random_sae().save(wide)
    cfg = json.loads((wide / "cfg.json").read_text())
    cfg["k"] = 1_000_000
    (wide / "cfg.json").write_text(json.dumps(cfg))
    pickled = root / "pickled-sae"
    pickled.mkdir()
    (pickled / "cfg.json").write_text(json.dumps({"d_in": 16, "d_sae": 32, "activation": "relu"}))
    with open(pickled / "pytorch_model.bin", "wb") as out:
        pickle.dump({"W_enc": torch.zeros(16, 32), "evil": print}, out)
    return root


def cases(root: Path, tiny_model: Path, tiny_sae: Path) -> list[tuple[str, tuple, str]]:
    """(case, command line, what the error must say)."""
    s, p = root / "s.duckdb", root / "pairs.duckdb"
    model = ("--model", tiny_model, "--sae", tiny_sae)
    enc = ("encode",)
    return [
        # encode: the input
        ("missing file", (*enc, root / "nope.txt", "--db", s, *model), "nope.txt"),
        ("directory", (*enc, root / "adir", "--db", s, *model), "adir"),
        ("unknown extension", (*enc, root / "corpus.xyz", "--db", s, *model), "extension"),
        ("empty file", (*enc, root / "empty.txt", "--db", s, *model), "empty"),
        ("truncated gzip", (*enc, root / "cut.txt.gz", "--db", s, *model), "not valid gzip"),
        ("truncated bzip2", (*enc, root / "cut.txt.bz2", "--db", s, *model), "not valid bzip2"),
        ("truncated zstd", (*enc, root / "cut.txt.zst", "--db", s, *model), "not valid zstd"),
        ("not UTF-8", (*enc, root / "latin1.txt", "--db", s, *model), "UTF-8"),
        ("ragged CSV", (*enc, root / "ragged.csv", "--db", s, *model), "has 1 fields"),
        ("no text column", (*enc, root / "nocol.csv", "--db", s, *model), "text"),
        (
            "unknown --text-col",
            (*enc, root / "good.csv", "--db", s, "--text-col", "zz", *model),
            "zz",
        ),  # fmt: skip
        ("JSON nested 200k deep", (*enc, root / "deep.json", "--db", s, *model), "deep.json"),
        ("lone surrogate", (*enc, root / "surrogate.jsonl", "--db", s, *model), "surrogate"),
        ("JSONL scalar line", (*enc, root / "scalar.jsonl", "--db", s, *model), "line 2"),
        # encode: the options and the model
        (
            "huge --max-tokens",
            (*enc, root / "a.txt", "--db", s, "--max-tokens", 10**11, *model),
            "--max-tokens",
        ),  # fmt: skip
        ("zero --max-tokens", (*enc, root / "a.txt", "--db", s, "--max-tokens", 0, *model), "0"),
        (
            "zero --chunk-tokens",
            (*enc, root / "a.txt", "--db", s, "--chunk-tokens", 0, *model),
            "chunk",
        ),  # fmt: skip
        (
            "missing model",
            (*enc, root / "a.txt", "--db", s, "--model", root / "no-model", "--sae", tiny_sae),
            "no model directory",
        ),  # fmt: skip
        (
            "missing SAE",
            (*enc, root / "a.txt", "--db", s, "--model", tiny_model, "--sae", root / "no-sae"),
            "no SAE at",
        ),  # fmt: skip
        (
            "NaN SAE",
            (*enc, root / "a.txt", "--db", s, "--model", tiny_model, "--sae", root / "nan-sae"),
            "NaN",
        ),  # fmt: skip
        (
            "k beyond d_sae",
            (*enc, root / "a.txt", "--db", s, "--model", tiny_model, "--sae", root / "wide-sae"),
            "k=1,000,000",
        ),  # fmt: skip
        (
            "pickled weights",
            (*enc, root / "a.txt", "--db", s, "--model", tiny_model, "--sae", root / "pickled-sae"),
            "pickled-sae",
        ),  # fmt: skip
        # diff
        ("--alpha above 1", ("diff", "a", "b", "--db", s, "--alpha", 5), "--alpha"),
        ("--threshold nan", ("diff", "a", "b", "--db", s, "--threshold", "nan"), "--threshold"),
        ("unknown corpus", ("diff", "a", "zz", "--db", s), "zz"),
        ("same corpus twice", ("diff", "a", "a", "--db", s), "both sides"),
        (
            "themes, numeric measure",
            ("diff", "a", "b", "--db", s, "--by", "themes", "--measure", "mean"),
            "binary measure",
        ),
        (
            "themes, paired",
            ("diff", "a", "b", "--db", s, "--by", "themes", "--paired"),
            "does not take --paired",
        ),
        (
            "themes, one theme",
            ("diff", "a", "b", "--db", s, "--by", "themes", "--themes", 1),
            "--themes",
        ),
        ("diff, mistyped store", ("diff", "a", "b", "--db", root / "typo.duckdb"), "no store"),
        ("unknown measure", ("diff", "a", "b", "--db", s, "--measure", "zz"), "zz"),
        ("unknown sort", ("diff", "a", "b", "--db", s, "--sort", "zz"), "zz"),
        # search
        ("empty phrase", ("search", s, "  "), "empty"),
        ("--where syntax", ("search", s, "--features", 1, "--where", "nonsense ==="), "--where"),
        (
            "--where reads a file",
            (
                "search",
                s,
                "--features",
                1,
                "--where",
                "(SELECT count(*) FROM read_text('/etc/passwd')) > 0",
            ),
            "file system operations are disabled",
        ),  # fmt: skip
        (
            "feature out of range",
            ("search", s, "--features", 1, "--where", "feature:99999 > 0"),
            "feature:99999",
        ),  # fmt: skip
        ("search, mistyped store", ("search", root / "typo.duckdb", "--features", 1), "no store"),
        # cluster
        (
            "cluster --color-by",
            ("cluster", s, "--k", 2, "--map", root / "m.html", "--color-by", 9999),
            "9999",
        ),  # fmt: skip
        ("cluster, mistyped store", ("cluster", root / "typo.duckdb"), "no store"),
        # features
        ("import missing file", ("features", "import", s, root / "nope.json"), "nope.json"),
        ("import damaged gzip", ("features", "import", s, root / "labels.json.gz"), "gzip"),
        (
            "export into missing dir",
            ("features", "export", s, "-o", root / "no" / "l.parquet"),
            "no",
        ),  # fmt: skip
        ("export onto a directory", ("features", "export", s, "-o", root / "adir"), "adir"),
        (
            "export into an unwritable folder",
            ("features", "export", s, "-o", "/proc/self/labels.parquet"),
            "cannot write",
        ),  # fmt: skip
        ("unknown label method", ("features", "label", s, "--method", "zz"), "zz"),
        ("feature beyond the SAE", ("features", "show", s, 99999), "99999"),
        # sql
        ("@missing.sql", ("sql", s, f"@{root / 'missing.sql'}"), "no SQL file"),
        ("@directory", ("sql", s, f"@{root / 'adir'}"), "is a directory"),
        ("@binary", ("sql", s, f"@{root / 'binary.sql'}"), "not UTF-8"),
        (
            "COPY TO a file",
            ("sql", s, f"COPY (SELECT 1) TO '{root / 'x.csv'}'"),
            "COPY statements are refused",
        ),  # fmt: skip
        (
            "EXPLAIN ANALYZE COPY",
            ("sql", s, f"EXPLAIN ANALYZE COPY (SELECT 1) TO '{root / 'x.csv'}'"),
            "COPY statements are refused",
        ),  # fmt: skip
        ("two statements", ("sql", s, "SELECT 1; SELECT 2"), "one statement at a time"),
        ("a write", ("sql", s, "DELETE FROM documents"), "DELETE statements are refused"),
        ("SET", ("sql", s, "SET threads = 1"), "refused"),
        ("nextval", ("sql", s, "SELECT nextval('encoder_id_seq')"), "read-only"),
        ("read_text", ("sql", s, "SELECT * FROM read_text('/etc/hostname')"), "disabled"),
        ("--timeout below 0", ("sql", s, "SELECT 1", "--timeout", -1), "--timeout"),
        (
            "--where moves a sequence",
            ("search", s, "--features", 1, "--where", "nextval('encoder_id_seq') > 0"),
            "read-only",
        ),  # fmt: skip
        (
            "sql on another program's file",
            ("sql", root / "app.duckdb", "SELECT 1"),
            "not a saeembed",
        ),
        ("info on another program's file", ("info", root / "app.duckdb"), "not a saeembed store"),
        (
            "encode into another program's file",
            (*enc, root / "a.txt", "--db", root / "app.duckdb", *model),
            "not a saeembed store",
        ),  # fmt: skip
        (
            "an id that names another text",
            (*enc, root / "ids2.jsonl", "--db", s, "--corpus", "ids", "--id-col", "id", *model),
            "ids2.jsonl line 2: id 'k1' already names another text",
        ),  # fmt: skip
        ("SQL syntax", ("sql", s, "SELEC 1"), "syntax"),
        # preferences
        (
            "prefs export into missing dir",
            ("prefs", "export", p, "-o", root / "no" / "x.jsonl"),
            "no",
        ),  # fmt: skip
        (
            "prefs flag --queue onto a dir",
            ("prefs", "flag", p, "--concept", "5:-", "--no-model", "--queue", root / "adir"),
            "adir",
        ),  # fmt: skip
        ("unknown pair set", ("prefs", "fit", p, "--pairs", "nope"), "nope"),
        ("bad decision", ("prefs", "apply", p, root / "queue.jsonl", "--as", "x"), "maybe"),
    ]


def snapshot(path: Path) -> dict[str, int]:
    """Row counts of every table of a store."""
    with Store(path, read_only=True) as store:
        tables = store.sql("SELECT table_name FROM duckdb_tables() WHERE NOT temporary")
        return {
            t: store.sql(f'SELECT count(*) AS n FROM "{t}"')["n"][0] for t in tables["table_name"]
        }


def test_every_bad_input_is_one_line_and_changes_nothing(world, tiny_model, tiny_sae):
    table = cases(world, tiny_model, tiny_sae)
    assert len(table) >= 40
    stores = [world / "s.duckdb", world / "pairs.duckdb"]
    before = {s: snapshot(s) for s in stores}
    foreign = hashlib.sha256((world / "app.duckdb").read_bytes()).hexdigest()
    failures = []
    for name, args, message in table:
        result = invoke(*args)
        stderr = result.stderr.strip().splitlines()
        last = stderr[-1] if stderr else ""
        problems = []
        if result.exit_code == 0:
            problems.append("exit 0")
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            problems.append(f"raised {type(result.exception).__name__}: {result.exception}")
        if "Traceback" in result.stderr:
            problems.append("traceback")
        if not last.startswith("Error: ") or message not in last:
            problems.append(f"last stderr line {last[:200]!r} lacks {message!r}")
        if problems:
            failures.append(f"{name}: {'; '.join(problems)}")
    assert not failures, "\n".join(failures)
    assert {s: snapshot(s) for s in stores} == before
    assert hashlib.sha256((world / "app.duckdb").read_bytes()).hexdigest() == foreign
    assert not (world / "typo.duckdb").exists() and not (world / "x.csv").exists()
    assert not list((world / "adir").iterdir())  # nothing written into the directory
    assert not list(world.glob(".*.partial")) and not list(world.glob("*.tmp"))
