"""Rendering result tables for the terminal and for pipes: an aligned table on a terminal, JSON
lines when stdout is piped, or what --format asks for (table, csv, json, jsonl)."""

from __future__ import annotations

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
