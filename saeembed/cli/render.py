"""Rendering result tables for the terminal and for pipes: an aligned table on a terminal, JSON
lines when stdout is piped, or what --format asks for (table, csv, json, jsonl).

Every value prints in every format (`printable` makes the columns fit the format first):

- **Bytes** (BLOB) print as text in DuckDB's form: printable ASCII as is, every other byte (and
  ``\\``, ``'``, ``"``) as ``\\xHH`` (``'\\xAA\\x00ab'::BLOB`` reads it back). Bytes inside a list
  or struct turn the whole value into its JSON text.
- **Lists, arrays, structs and maps** are JSON values in json and jsonl, and their JSON text in
  csv (which holds only flat values); the table shows them as polars does. A map whose keys are
  not text is written as a list of ``{"key", "value"}`` pairs.
- **inf, -inf and NaN** stay numbers in the table and in csv (``inf``, ``-inf``, ``NaN``, which
  DuckDB, pandas and polars read back as floats). JSON has no such numbers: json and jsonl write
  them as the strings ``"inf"``, ``"-inf"`` and ``"nan"`` (DuckDB's own text for them), never as
  null, which stays for a missing value.
- **Dates and timestamps** polars cannot print (DuckDB's ``infinity`` and ``-infinity``, or a
  year beyond ±262,000) make that column text: ``infinity``, ``-infinity``, the others as ISO
  dates. A timestamp with a time zone keeps its offset (``+00:00``).
- A **duration** is ISO-8601 text in csv (``P1DT2H``).

A table fits the terminal (its width, or ``$COLUMNS``; 120 when there is none): the widest
text columns are wrapped onto more lines, down to `MIN_TEXT_WIDTH` characters, until it does.

Types that never reach polars intact from DuckDB (INTERVAL, UNION, BIT, TIMETZ, ...) are cast to
text before, in SQL: `saeembed.sql_values.relation_frame`.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import shutil
import sys
import textwrap
from typing import TextIO

import numpy as np
import polars as pl
from polars.exceptions import PanicException, PolarsError

FORMATS = ("table", "csv", "json", "jsonl")
MIN_TEXT_WIDTH = 16
FALLBACK_WIDTH = 120
_NESTED = (pl.List, pl.Array, pl.Struct, pl.Map)
_TEXT_KEYS = (pl.String, pl.Categorical, pl.Enum)


def default_format(stream: TextIO = sys.stdout) -> str:
    return "table" if stream.isatty() else "jsonl"


def render(
    frame: pl.DataFrame,
    fmt: str | None = None,
    stream: TextIO | None = None,
    title: str | None = None,
) -> None:
    """Write ``frame`` to ``stream`` (stdout by default) in ``fmt`` (see the module docstring
    for how values each format cannot hold are written)."""
    stream = stream or sys.stdout
    fmt = fmt or default_format(stream)
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    frame = printable(frame, fmt)
    if fmt == "table":
        if title:
            stream.write(f"{title}\n")
        stream.write(f"{fit_width(frame, terminal_width())}\n" if frame.width else "(no rows)\n")
    elif fmt == "csv":
        stream.write(frame.write_csv())
    elif fmt == "json":
        rows = _json_rows(frame)
        stream.write((frame.write_json() if rows is None else f"[{','.join(rows)}]") + "\n")
    elif frame.height:  # jsonl
        rows = _json_rows(frame)
        stream.write(frame.write_ndjson() if rows is None else "".join(r + "\n" for r in rows))


def printable(frame: pl.DataFrame, fmt: str) -> pl.DataFrame:
    """``frame`` with every column in a type the ``fmt`` writer can write (the module docstring
    says how); ``frame`` itself when all are."""
    columns = [_printable(s, fmt) for s in frame.get_columns()]
    if all(new is old for new, old in zip(columns, frame.get_columns(), strict=True)):
        return frame
    return pl.DataFrame(columns)


def _printable(s: pl.Series, fmt: str) -> pl.Series:
    dtype = s.dtype
    if dtype == pl.Binary:
        return pl.Series(
            s.name, [v if v is None else blob_text(v) for v in s.to_list()], dtype=pl.String
        )
    if dtype == pl.Object:
        return pl.Series(s.name, [v if v is None else str(v) for v in s.to_list()], dtype=pl.String)
    if _contains(dtype, (pl.Binary, pl.Object)):
        # bytes inside a nested value: the whole value as its JSON text
        return pl.Series(
            s.name, [v if v is None else _json_text(v, dtype) for v in s.to_list()], dtype=pl.String
        )
    if dtype in (pl.Date, pl.Datetime):
        s = _dates(s)
    if isinstance(dtype, pl.Map) and not isinstance(dtype.key, _TEXT_KEYS) and fmt != "table":
        s = s.map.entries()
    if fmt == "csv":
        if isinstance(s.dtype, _NESTED):
            return _json_fragments(s).set(s.is_null(), None)
        if s.dtype == pl.Duration:
            return s.dt.to_string("iso")
    return s


def blob_text(value: bytes) -> str:
    """``value`` as DuckDB writes a BLOB as text: printable ASCII as is, every other byte and
    ``\\ ' "`` as ``\\xHH``."""
    return "".join(chr(b) if 32 <= b <= 126 and b not in _ESCAPED else f"\\x{b:02X}" for b in value)


_ESCAPED = frozenset(b"\\'\"")


def _contains(dtype: pl.DataType, kinds: tuple) -> bool:
    """Whether ``dtype`` is, or holds at any depth, one of the types ``kinds``."""
    if dtype in kinds or isinstance(dtype, kinds):
        return True
    if isinstance(dtype, (pl.List, pl.Array)):
        return _contains(dtype.inner, kinds)
    if isinstance(dtype, pl.Struct):
        return any(_contains(f.dtype, kinds) for f in dtype.fields)
    if isinstance(dtype, pl.Map):
        return _contains(dtype.key, kinds) or _contains(dtype.value, kinds)
    return False


# --- dates polars cannot print -----------------------------------------------------------------


# polars prints dates within chrono's range, years -262144 to 262143: a margin inside it, as days
# from 1970-01-01
_FIRST_DAY = int(np.datetime64("-262000-01-01", "D").astype(np.int64))
_LAST_DAY = int(np.datetime64("262000-12-31", "D").astype(np.int64))
_PER_DAY = {"ms": 86_400_000, "us": 86_400_000_000, "ns": 86_400_000_000_000}


def _dates(s: pl.Series) -> pl.Series:
    """``s`` (Date or Datetime) as it is when polars can print every value; else as text, with
    DuckDB's ``infinity`` and ``-infinity`` named and the other values as ISO dates."""
    physical = s.to_physical()
    if s.dtype == pl.Date:
        unit, per_day, top = "D", 1, 2**31 - 1
    else:
        unit, per_day, top = s.dtype.time_unit, _PER_DAY[s.dtype.time_unit], 2**63 - 1
    low, high = max(_FIRST_DAY * per_day, -top), min(_LAST_DAY * per_day, top)
    inside = physical.is_null() | ((physical >= low) & (physical <= high))
    if inside.all():
        return s
    shown = pl.DataFrame({"v": s, "in": inside}).select(
        pl.when(pl.col("in")).then(pl.col("v")).cast(pl.String)
    )
    texts = shown.to_series().to_list()
    for i in (~inside).arg_true().to_list():
        value = physical[i]
        texts[i] = (
            "infinity"
            if value == top
            else "-infinity"
            if value == -top
            else str(np.datetime64(value, unit))
        )
    return pl.Series(s.name, texts, dtype=pl.String)


# --- JSON ------------------------------------------------------------------------------------

_NONFINITE = {math.inf: "inf", -math.inf: "-inf"}


def _json_rows(frame: pl.DataFrame) -> list[str] | None:
    """Each row of ``frame`` as a JSON object, or None when polars' own writer writes every value
    as it is (no inf or NaN anywhere: polars writes those as null)."""
    if not any(_nonfinite(s) for s in frame.get_columns()):
        return None
    fragments = pl.DataFrame([_json_fragments(s).alias(f"c{i}") for i, s in enumerate(frame)])
    parts: list[pl.Expr] = []
    for i, name in enumerate(frame.columns):
        parts.append(pl.lit(("{" if i == 0 else ",") + json.dumps(name, ensure_ascii=False) + ":"))
        parts.append(pl.col(f"c{i}"))
    parts.append(pl.lit("}"))
    return fragments.select(pl.concat_str(parts)).to_series().to_list()


def _nonfinite(s: pl.Series) -> bool:
    """Whether ``s`` holds inf or NaN at any depth."""
    dtype = s.dtype
    if dtype.is_float():
        return bool((s.is_nan() | s.is_infinite()).any())
    if not _contains(dtype, (pl.Float32, pl.Float64)):
        return False
    if isinstance(dtype, pl.List):
        return _nonfinite(s.list.explode())
    if isinstance(dtype, pl.Array):
        return _nonfinite(s.arr.explode())
    if isinstance(dtype, pl.Struct):
        return any(_nonfinite(s.struct.field(f.name)) for f in dtype.fields)
    if isinstance(dtype, pl.Map):
        return _nonfinite(s.map.keys().list.explode()) or _nonfinite(s.map.values().list.explode())
    return False


def _json_fragments(s: pl.Series) -> pl.Series:
    """Each value of ``s`` as JSON text (``null`` for a missing one), inf and NaN as strings."""
    dtype = s.dtype
    if not (dtype.is_float() or isinstance(dtype, _NESTED)) or not _nonfinite(s):
        try:
            # polars' own JSON for each value: that of the struct {"v": value}, unwrapped
            encoded = pl.DataFrame([s.alias("v")]).select(
                pl.struct("v").struct.json_encode().str.slice(5).str.head(-1)
            )
            return encoded.to_series().alias(s.name)
        except (PolarsError, PanicException):  # a value polars cannot write: as Python writes it
            pass
    elif dtype.is_float():
        frame = pl.DataFrame([s.alias("v")])
        v = pl.col("v")
        encoded = frame.select(
            pl.when(v.is_nan())
            .then(pl.lit('"nan"'))
            .when(v == math.inf)
            .then(pl.lit('"inf"'))
            .when(v == -math.inf)
            .then(pl.lit('"-inf"'))
            .otherwise(pl.struct(v).struct.json_encode().str.slice(5).str.head(-1))
        )
        return encoded.to_series().alias(s.name)
    return pl.Series(s.name, [_json_text(v, dtype) for v in s.to_list()], dtype=pl.String)


def _json_text(value, dtype: pl.DataType) -> str:
    return json.dumps(_plain(value, dtype), ensure_ascii=False, separators=(",", ":"), default=str)


def _plain(value, dtype: pl.DataType):
    """``value`` (a Python value of a ``dtype`` column) as plain JSON data: inf and NaN as
    strings, a 32-bit float by its shortest digits, bytes as DuckDB's text, dates as ISO."""
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return _NONFINITE[value]
        return float(str(np.float32(value))) if dtype == pl.Float32 else value
    if isinstance(value, bytes):
        return blob_text(value)
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.isoformat() if value.tzinfo else value.isoformat(sep=" ")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dict):
        if isinstance(dtype, pl.Struct):
            types = {f.name: f.dtype for f in dtype.fields}
            return {k: _plain(v, types.get(k, pl.Null)) for k, v in value.items()}
        inner = dtype.value if isinstance(dtype, pl.Map) else pl.Null
        return {str(_plain(k, pl.Null)): _plain(v, inner) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        inner = dtype.inner if isinstance(dtype, (pl.List, pl.Array)) else pl.Null
        return [_plain(v, inner) for v in value]
    if isinstance(value, (str, int, bool)):
        return value
    return str(value)


def terminal_width() -> int:
    """The terminal's width in characters ($COLUMNS first; `FALLBACK_WIDTH` without one)."""
    return shutil.get_terminal_size((FALLBACK_WIDTH, 24)).columns


def fit_width(frame: pl.DataFrame, width: int) -> str:
    """``frame`` as an aligned table at most ``width`` characters wide where wrapping its text
    columns can make it so: the widest text column is wrapped (at word boundaries, its own line
    breaks kept) to what the others leave, down to `MIN_TEXT_WIDTH`; then the next."""
    limits: dict[str, int] = {}
    text = [c for c, dtype in frame.schema.items() if dtype == pl.String]
    while True:
        shown = frame.with_columns(_wrapped(frame[c], n) for c, n in limits.items())
        with pl.Config(
            tbl_rows=-1,
            tbl_cols=-1,
            fmt_str_lengths=60_000,
            tbl_width_chars=60_000,
            tbl_hide_column_data_types=True,
            tbl_hide_dataframe_shape=True,
            float_precision=4,
        ):
            table = str(shown)
        over = max(len(line) for line in table.splitlines()) - width
        widths = {c: _longest_line(shown[c]) for c in text}
        shrinkable = {c: w for c, w in widths.items() if w > MIN_TEXT_WIDTH}
        if over <= 0 or not shrinkable:
            return table
        column = max(shrinkable, key=lambda c: shrinkable[c])
        limits[column] = max(shrinkable[column] - over, MIN_TEXT_WIDTH)


def _longest_line(column: pl.Series) -> int:
    lengths = column.fill_null("").str.split("\n").list.eval(pl.element().str.len_chars())
    return int(lengths.list.max().max() or 0)


def _wrapped(column: pl.Series, width: int) -> pl.Series:
    def wrap(value: str | None) -> str | None:
        if value is None:
            return None
        lines = value.split("\n")
        return "\n".join(
            "\n".join(textwrap.wrap(line, width, break_on_hyphens=False) or [""]) for line in lines
        )

    return column.map_elements(wrap, return_dtype=pl.String, skip_nulls=False)


# --- helpers for commands ---------------------------------------------------------------------
def scientific(frame: pl.DataFrame, *columns: str) -> pl.DataFrame:
    """``columns`` (those present) as strings like ``3.2e-05``: p- and q-values span many orders
    of magnitude, which a fixed number of decimals hides. Nulls become empty strings."""
    present = [c for c in columns if c in frame.columns]
    return frame.with_columns(
        pl.col(present).map_elements(
            lambda v: "" if v is None else f"{v:.1e}", return_dtype=pl.Utf8
        )
    )


def join_lists(frame: pl.DataFrame, separators: dict[str, str]) -> pl.DataFrame:
    """List columns (those present) joined into strings, ``{column: separator}``: for the table
    and CSV formats, which cannot hold lists."""
    present = {c: sep for c, sep in separators.items() if c in frame.columns}
    return frame.with_columns(pl.col(c).list.join(sep) for c, sep in present.items())


def write_json(obj, stream: TextIO | None = None) -> None:
    """One JSON object on one line (dates and other non-JSON values as strings)."""
    (stream or sys.stdout).write(json.dumps(obj, default=str) + "\n")
