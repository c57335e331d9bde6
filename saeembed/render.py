"""Rendering result tables for the terminal and for pipes: an aligned table on a terminal, JSON
lines when stdout is piped, or what --format asks for (table, csv, json, jsonl)."""

from __future__ import annotations

import json
import sys
from typing import TextIO

import polars as pl

FORMATS = ("table", "csv", "json", "jsonl")


def default_format(stream: TextIO = sys.stdout) -> str:
    return "table" if stream.isatty() else "jsonl"


def render(
    frame: pl.DataFrame,
    fmt: str | None = None,
    stream: TextIO | None = None,
    title: str | None = None,
) -> None:
    """Write ``frame`` to ``stream`` (stdout by default) in ``fmt``."""
    stream = stream or sys.stdout
    fmt = fmt or default_format(stream)
    if fmt == "table":
        if title:
            stream.write(f"{title}\n")
        with pl.Config(
            tbl_rows=-1,
            tbl_cols=-1,
            fmt_str_lengths=80,
            tbl_width_chars=200,
            tbl_hide_column_data_types=True,
            tbl_hide_dataframe_shape=True,
            float_precision=4,
        ):
            stream.write(f"{frame}\n" if frame.width else "(no rows)\n")
    elif fmt == "csv":
        stream.write(frame.write_csv())
    elif fmt == "json":
        stream.write(frame.write_json() + "\n")
    elif fmt == "jsonl":
        if frame.height:
            stream.write(frame.write_ndjson())
    else:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


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
