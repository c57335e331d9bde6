"""Every DuckDB result type prints in every output format: `saeembed sql DB QUERY --format F`
through the real command line on a real store, for each type and each of table, csv, json and
jsonl, exits 0 with no traceback, and the values that matter read back exactly (a blob's bytes,
a TIMETZ's offset, inf and NaN in JSON, ...). See `saeembed.cli.render` and `saeembed.sql_values`."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math

import duckdb
import polars as pl
import pytest
from click.testing import CliRunner

from saeembed.cli import main
from saeembed.cli.render import FORMATS, render
from saeembed.store import Store

# one column ``v`` per type, in one or more rows
TYPES = {
    "blob": r"SELECT '\xAA\x00ab\x5C\x22'::BLOB AS v",
    "bit": "SELECT '0101'::BIT AS v",
    "interval": "SELECT INTERVAL '1 year 2 months 3 days 04:05:06.5' AS v",
    "union": "SELECT * FROM (VALUES (union_value(num := 2)::UNION(num INTEGER, str VARCHAR)), "
    "(union_value(str := 'x')::UNION(num INTEGER, str VARCHAR))) t(v)",
    "map": "SELECT MAP {'a': 1, 'b': 2} AS v",
    "array": "SELECT [1.5, 2, 3]::FLOAT[3] AS v",
    "list": "SELECT [1, 2, NULL] AS v",
    "struct": "SELECT {'x': 1, 'y': 'a'} AS v",
    "timetz": "SELECT '12:34:56+05:30'::TIMETZ AS v",
    "timestamptz": "SELECT '2024-01-02 03:04:05+05:30'::TIMESTAMPTZ AS v",
    "decimal": "SELECT 12345.678::DECIMAL(18, 3) AS v",
    "hugeint": "SELECT 170141183460469231731687303715884105727::HUGEINT AS v",
    "uuid": "SELECT '4b1f1d2a-1c3e-4e5f-8a9b-0c1d2e3f4a5b'::UUID AS v",
    "enum": "SELECT 'happy'::ENUM('sad', 'happy') AS v",
    "double": "SELECT * FROM (VALUES ('inf'::DOUBLE), ('-inf'::DOUBLE), ('nan'::DOUBLE), (1.5)) t(v)",
    "null": "SELECT NULL AS v",
}


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    """An empty store (migrated), with one row in each table holding lists or bytes."""
    path = tmp_path_factory.mktemp("types") / "s.duckdb"
    with Store(path) as store:
        store.con.execute(
            "INSERT INTO feature_evidence (encoder_id, feature, model, embedding, n_contexts) "
            "VALUES (1, 7, 'mini', [0.1, -0.5, 'inf'::FLOAT], 3)"
        )
        store.con.execute(
            "INSERT INTO text_embeddings VALUES ('mini', 42, [0.25, 'nan'::FLOAT, 2.0])"
        )
        store.con.execute(r"INSERT INTO pair_saes VALUES (1, 'p', 'mini', '\x00\x01AZ\xFF'::BLOB)")
    return path


def sql(db, query: str, fmt: str) -> str:
    result = CliRunner().invoke(main, ["sql", str(db), query, "--format", fmt])
    shown = result.output + (result.stderr or "")
    assert result.exit_code == 0, shown
    assert result.exception is None, shown
    assert "Traceback" not in shown and "panicked" not in shown, shown
    return result.stdout


def json_values(db, query: str, fmt: str) -> list:
    out = sql(db, query, fmt)
    rows = json.loads(out) if fmt == "json" else [json.loads(line) for line in out.splitlines()]
    return [row["v"] for row in rows]


def csv_values(db, query: str) -> list[str]:
    return [row["v"] for row in csv.DictReader(io.StringIO(sql(db, query, "csv")))]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", TYPES)
def test_every_type_prints_in_every_format(db, kind, fmt):
    out = sql(db, TYPES[kind], fmt)
    assert out.strip(), f"{kind} printed nothing as {fmt}"


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_json_values_read_back(db, fmt):
    (blob,) = json_values(db, TYPES["blob"], fmt)
    assert blob == r"\xAA\x00ab\x5C\x22"
    assert duckdb.sql("SELECT $b::BLOB", params={"b": blob}).fetchall() == [(b'\xaa\x00ab\\"',)]
    assert json_values(db, TYPES["bit"], fmt) == ["0101"]
    assert json_values(db, TYPES["interval"], fmt) == ["1 year 2 months 3 days 04:05:06.5"]
    assert json_values(db, TYPES["union"], fmt) == ["2", "x"]
    assert json_values(db, TYPES["map"], fmt) == [{"a": 1, "b": 2}]
    assert json_values(db, TYPES["array"], fmt) == [[1.5, 2.0, 3.0]]
    assert json_values(db, TYPES["list"], fmt) == [[1, 2, None]]
    assert json_values(db, TYPES["struct"], fmt) == [{"x": 1, "y": "a"}]
    assert json_values(db, TYPES["timetz"], fmt) == ["12:34:56+05:30"]
    (stamp,) = json_values(db, TYPES["timestamptz"], fmt)
    when = dt.datetime.fromisoformat(stamp)
    assert when.utcoffset() is not None, stamp  # the offset is written
    assert when == dt.datetime(2024, 1, 1, 21, 34, 5, tzinfo=dt.UTC)
    assert json_values(db, TYPES["decimal"], fmt) == ["12345.678"]
    assert json_values(db, TYPES["hugeint"], fmt) == ["170141183460469231731687303715884105727"]
    assert json_values(db, TYPES["uuid"], fmt) == ["4b1f1d2a-1c3e-4e5f-8a9b-0c1d2e3f4a5b"]
    assert json_values(db, TYPES["enum"], fmt) == ["happy"]
    assert json_values(db, TYPES["double"], fmt) == ["inf", "-inf", "nan", 1.5]
    assert json_values(db, TYPES["null"], fmt) == [None]


def test_csv_values_read_back(db):
    (blob,) = csv_values(db, TYPES["blob"])
    assert blob == r"\xAA\x00ab\x5C\x22"
    assert csv_values(db, TYPES["bit"]) == ["0101"]
    assert csv_values(db, TYPES["interval"]) == ["1 year 2 months 3 days 04:05:06.5"]
    assert csv_values(db, TYPES["union"]) == ["2", "x"]
    assert csv_values(db, TYPES["map"]) == ['{"a":1,"b":2}']
    assert csv_values(db, TYPES["array"]) == ["[1.5,2.0,3.0]"]
    assert csv_values(db, TYPES["list"]) == ["[1,2,null]"]
    assert csv_values(db, TYPES["struct"]) == ['{"x":1,"y":"a"}']
    assert csv_values(db, TYPES["timetz"]) == ["12:34:56+05:30"]
    (stamp,) = csv_values(db, TYPES["timestamptz"])
    assert dt.datetime.fromisoformat(stamp) == dt.datetime(2024, 1, 1, 21, 34, 5, tzinfo=dt.UTC)
    assert csv_values(db, TYPES["decimal"]) == ["12345.678"]
    assert csv_values(db, TYPES["hugeint"]) == ["170141183460469231731687303715884105727"]
    assert csv_values(db, TYPES["uuid"]) == ["4b1f1d2a-1c3e-4e5f-8a9b-0c1d2e3f4a5b"]
    assert csv_values(db, TYPES["enum"]) == ["happy"]
    doubles = [float(v) for v in csv_values(db, TYPES["double"])]
    assert doubles[:2] == [math.inf, -math.inf] and math.isnan(doubles[2]) and doubles[3] == 1.5
    assert sql(db, TYPES["null"], "csv") == "v\n\n"  # an empty cell
    assert sql(db, "SELECT NULL AS v, 1 AS w", "csv") == "v,w\n,1\n"


def test_table_shows_the_values(db):
    assert r"\xAA\x00ab\x5C\x22" in sql(db, TYPES["blob"], "table")
    assert "0101" in sql(db, TYPES["bit"], "table")
    assert "12:34:56+05:30" in sql(db, TYPES["timetz"], "table")
    assert "1 year 2 months 3 days" in sql(db, TYPES["interval"], "table")
    table = sql(db, TYPES["double"], "table")
    assert all(word in table for word in ("inf", "-inf", "NaN", "1.5"))
    assert "170141183460469231731687303715884105727" in sql(db, TYPES["hugeint"], "table")


def test_nested_and_unusual_values(db):
    """Types inside lists, structs and maps, and values polars cannot print on its own."""
    query = (
        r"SELECT [INTERVAL 1 DAY] AS a, {'b c': '\x01'::BLOB} AS b, MAP {1: '1'::BIT} AS m, "
        r"[1.0, 'nan'::DOUBLE] AS l, 'infinity'::DATE AS d, '-infinity'::TIMESTAMP AS t, "
        "340282366920938463463374607431768211455::UHUGEINT AS u, 1 AS x, 2 AS x"
    )
    for fmt in FORMATS:
        sql(db, query, fmt)
    (row,) = json.loads(sql(db, query, "json"))
    assert row["a"] == ["1 day"]
    assert row["b"] == {"b c": r"\x01"}
    assert row["m"] == {"1": "1"}
    assert row["l"] == [1.0, "nan"]
    assert (row["d"], row["t"]) == ("infinity", "-infinity")
    assert row["u"] == "340282366920938463463374607431768211455"
    (line,) = csv.DictReader(io.StringIO(sql(db, query, "csv")))
    assert json.loads(line["l"]) == [1.0, "nan"] and line["d"] == "infinity"


@pytest.mark.parametrize("table", ["feature_evidence", "text_embeddings", "pair_saes"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_the_stores_own_tables_print(db, table, fmt):
    out = sql(db, f"SELECT * FROM {table}", fmt)
    if fmt == "csv":
        (row,) = csv.DictReader(io.StringIO(out))
        if table == "feature_evidence":
            assert json.loads(row["embedding"]) == [0.1, -0.5, "inf"]
        elif table == "text_embeddings":
            assert json.loads(row["vector"]) == [0.25, "nan", 2.0]
        else:
            assert row["weights"] == r"\x00\x01AZ\xFF"
    elif fmt == "json":
        (row,) = json.loads(out)
        assert table != "feature_evidence" or row["embedding"] == [0.1, -0.5, "inf"]


def test_render_on_frames_from_elsewhere():
    """Frames built in Python (not through `saeembed.sql_values`) print too."""
    frame = pl.DataFrame(
        {
            "b": [b"\x00a", None],
            "lb": [[b"x"], None],
            "f": [math.inf, None],
            "f32": pl.Series([[0.1, math.nan], None], dtype=pl.List(pl.Float32)),
            "d": [dt.timedelta(days=1), None],
        }
    )
    outputs = {}
    for fmt in FORMATS:
        stream = io.StringIO()
        render(frame, fmt, stream)
        outputs[fmt] = stream.getvalue()
    first = json.loads(outputs["jsonl"].splitlines()[0])
    assert first == {"b": r"\x00a", "lb": '["x"]', "f": "inf", "f32": [0.1, "nan"], "d": first["d"]}
    assert json.loads(outputs["json"])[1] == {"b": None, "lb": None, "f": None, "f32": None} | {
        "d": None
    }
    assert outputs["csv"].splitlines()[1].startswith(r"\x00a,")
