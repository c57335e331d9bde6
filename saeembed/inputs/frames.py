"""Shaping a table of documents: filtering rows by column values, splitting each document into
passages, and writing a frame to a file in the format its name says. `saeembed.data` applies
them to named datasets (`filter=`, `split_passages=`); `saeembed data get -o` writes with them."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import polars as pl

from saeembed.errors import InputError
from saeembed.files import atomic_path

__all__ = ["PASSAGE_MODES", "check_split", "filter_frame", "split_into_passages", "write_dataset"]

PASSAGE_MODES = ("paragraph", "window")
_BLANK_LINE = re.compile(r"\n\s*\n")
_WRITE_FORMATS = (".jsonl.gz", ".jsonl", ".ndjson", ".parquet", ".csv")


# ---------------------------------------------------------------------------------- filtering


_TRUE, _FALSE = {"true", "1", "yes", "t", "y"}, {"false", "0", "no", "f", "n"}


def _coerce(column: str, dtype: pl.DataType, values: list) -> list:
    """Filter values as the column's type; strings (e.g. from a `data:` reference) are parsed."""
    bad = InputError(
        f"filter values {values!r} are not all valid {dtype} values for column {column!r}"
    )
    if dtype == pl.String:
        if not all(isinstance(v, str) for v in values):
            raise bad
        return values
    if all(isinstance(v, str) for v in values):
        try:
            if dtype == pl.Boolean:
                if not all(v.strip().lower() in _TRUE | _FALSE for v in values):
                    raise bad
                return [v.strip().lower() in _TRUE for v in values]
            series = pl.Series(column, values, dtype=pl.String)
            if dtype == pl.Date:
                return series.str.to_date(strict=True).to_list()
            if isinstance(dtype, pl.Datetime):
                return series.str.to_datetime(strict=True).to_list()
            if dtype.is_numeric():
                return series.cast(dtype, strict=True).to_list()
        except pl.exceptions.PolarsError as exc:
            raise bad from exc
        raise bad
    try:
        return pl.Series(column, values, dtype=dtype, strict=True).to_list()
    except (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError) as exc:
        raise bad from exc


def filter_frame(frame: pl.DataFrame, filter: dict) -> pl.DataFrame:
    """Rows where every `column` equals the value, or one of the values, given for it (a None
    value matches nulls). An unknown column is an `InputError` that lists the columns."""
    if not isinstance(filter, dict):
        raise InputError(
            f"filter must be a dict of column -> value or [values], not {type(filter).__name__}"
        )
    condition = pl.lit(True)
    for column, wanted in filter.items():
        if column not in frame.columns:
            raise InputError(
                f"cannot filter on unknown column {column!r}; columns: {', '.join(frame.columns)}"
            )
        values = list(wanted) if isinstance(wanted, (list, tuple, set, frozenset)) else [wanted]
        present = [v for v in values if v is not None]
        match = pl.col(column).is_null() if len(present) < len(values) else pl.lit(False)
        if present:
            match = match | pl.col(column).is_in(_coerce(column, frame.schema[column], present))
        condition = condition & match
    return frame.filter(condition)


# ---------------------------------------------------------------------------------- passages


def check_split(mode: str, max_tokens: int) -> None:
    if mode not in PASSAGE_MODES:
        raise InputError(f"unknown split_passages {mode!r}; use one of: {', '.join(PASSAGE_MODES)}")
    if mode == "window" and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise InputError(f"max_tokens must be a positive integer, not {max_tokens!r}")


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in _BLANK_LINE.split(text) if p.strip()]


def _windows(text: str, size: int) -> list[str]:
    words = text.split()
    return [" ".join(words[i : i + size]) for i in range(0, len(words), size)]


def split_into_passages(frame: pl.DataFrame, mode: str, *, max_tokens: int = 256) -> pl.DataFrame:
    """One row per passage of each row's `text`, metadata copied to every passage.

    "paragraph": split on blank lines (lines holding only whitespace); each passage is stripped
    and empty ones are dropped. "window": consecutive runs of `max_tokens` whitespace-separated
    words joined by single spaces (the last may be shorter); no tokenizer is involved, so a
    window of N words is roughly N to 1.5N model tokens. Rows with no passages disappear.
    Output columns: `source_row` (kept if present, else the row's position), `passage_idx`
    (0-based within its row), `text`, then the other columns in order.
    """
    check_split(mode, max_tokens)
    if "text" not in frame.columns:
        raise InputError(
            f"split_passages needs a 'text' column; columns: {', '.join(frame.columns)}"
        )
    if "source_row" not in frame.columns:
        frame = frame.with_row_index("source_row").with_columns(pl.col("source_row").cast(pl.Int64))
    split = _paragraphs if mode == "paragraph" else (lambda t: _windows(t, max_tokens))
    pieces = [[] if t is None else split(t) for t in frame["text"].to_list()]
    out = frame.with_columns(pl.Series("text", pieces, dtype=pl.List(pl.String)))
    out = out.with_columns(
        pl.int_ranges(0, pl.col("text").list.len(), dtype=pl.Int64).alias("passage_idx")
    )
    out = out.explode(["text", "passage_idx"]).filter(pl.col("text").is_not_null())
    others = [c for c in frame.columns if c not in ("source_row", "passage_idx", "text")]
    return out.select("source_row", "passage_idx", "text", *others)


# ------------------------------------------------------------------------------------ writing


def write_dataset(frame: pl.DataFrame, path: str | Path) -> Path:
    """Write `frame` to `path` in the format its extension names (.jsonl or .ndjson, .jsonl.gz,
    .parquet, .csv), creating folders and replacing the file atomically; returns the path."""
    path = Path(path)
    suffix = next((s for s in _WRITE_FORMATS if path.name.lower().endswith(s)), None)
    if suffix is None:
        raise InputError(
            f"cannot tell the format of {path}; end the name in {', '.join(_WRITE_FORMATS)}"
        )
    try:
        with atomic_path(path) as tmp:
            if suffix in (".jsonl", ".ndjson"):
                frame.write_ndjson(tmp)
            elif suffix == ".jsonl.gz":
                with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as out:
                    out.write(frame.write_ndjson().encode("utf-8"))
            elif suffix == ".parquet":
                frame.write_parquet(tmp)
            else:
                frame.write_csv(tmp)
    except pl.exceptions.PolarsError as exc:
        raise InputError(
            f"cannot write {path} as {suffix}: {str(exc).splitlines()[0]}; try .parquet"
        ) from exc
    return path
