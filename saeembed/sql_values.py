"""DuckDB results as polars frames that hold every value: `relation_frame`.

``relation.pl()`` goes through Arrow, and some DuckDB types do not survive the trip: INTERVAL and
UNION fail to convert, a TIMETZ loses its offset, a BIT arrives as its raw padded bytes, a
UHUGEINT above 2**127 wraps to a negative number, a BIGNUM arrives as opaque bytes, and a MAP
whose keys are not text cannot be written as JSON. `relation_frame` casts those columns (and
those types inside LIST, ARRAY, STRUCT and MAP columns) to VARCHAR in SQL first, which gives
DuckDB's own text form of each value:

- BLOB: the bytes, printable ASCII as is and every other byte (and ``\\``, ``'``, ``"``) as
  ``\\xHH``, e.g. ``\\xAA\\x00ab`` (``'\\xAA\\x00ab'::BLOB`` reads it back)
- BIT: its bits, e.g. ``0101``
- INTERVAL: e.g. ``1 year 2 months 3 days 04:05:06.5``
- UNION: its member's value as text
- TIMETZ: the time with its offset, e.g. ``12:34:56+05:30``
- UHUGEINT, BIGNUM: the number's digits
- MAP keys: their text, so that a map is a JSON object

Every other type (numbers, DECIMAL, HUGEINT, VARCHAR, UUID, ENUM, dates, times, TIMESTAMPs with
or without a time zone, NULL, nested types of those) keeps its polars type.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import duckdb
import polars as pl

if TYPE_CHECKING:
    from duckdb.sqltypes import DuckDBPyType

__all__ = ["relation_frame", "text_type"]

# DuckDB type ids that polars holds exactly as ``relation.pl()`` gives them
_HELD = frozenset(
    {
        "boolean",
        "tinyint",
        "smallint",
        "integer",
        "bigint",
        "hugeint",
        "utinyint",
        "usmallint",
        "uinteger",
        "ubigint",
        "float",
        "double",
        "decimal",
        "varchar",
        "uuid",
        "enum",
        "null",
        "time",
        "time_ns",
        "date",
        "timestamp",
        "timestamp_s",
        "timestamp_ms",
        "timestamp_ns",
        "timestamp with time zone",
    }
)


def relation_frame(relation: duckdb.DuckDBPyRelation) -> pl.DataFrame:
    """``relation``'s rows as a polars DataFrame, with the columns polars cannot hold (see the
    module docstring) cast to VARCHAR in SQL; a relation that needs no cast is fetched as it is
    (``relation.pl()``). The query runs once."""
    casts = [text_type(t) for t in relation.types]
    if all(c is None for c in casts):
        return relation.pl()
    # columns by position (``#n``): a result may name two columns alike
    items = (
        f"#{i} AS {_quote(name)}" if cast is None else f"CAST(#{i} AS {cast}) AS {_quote(name)}"
        for i, (name, cast) in enumerate(zip(relation.columns, casts, strict=True), start=1)
    )
    return relation.project(", ".join(items)).pl()


def text_type(duck_type: DuckDBPyType) -> str | None:
    """The SQL type to cast a column of ``duck_type`` to so that polars holds every value, or
    None when it holds them as they are."""
    kind = duck_type.id
    if kind in ("list", "array"):
        children = dict(duck_type.children)
        inner = text_type(children["child"])
        if inner is None:
            return None
        return f"{inner}[]" if kind == "list" else f"{inner}[{children['size']}]"
    if kind == "struct":
        fields = duck_type.children
        inner = [text_type(t) for _, t in fields]
        if all(i is None for i in inner):
            return None
        members = (f"{_quote(n)} {i or t}" for (n, t), i in zip(fields, inner, strict=True))
        return f"STRUCT({', '.join(members)})"
    if kind == "map":
        children = dict(duck_type.children)
        key = "VARCHAR" if children["key"].id != "varchar" else None
        value = text_type(children["value"])
        if key is None and value is None:
            return None
        return f"MAP({key or children['key']}, {value or children['value']})"
    return None if kind in _HELD else "VARCHAR"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
