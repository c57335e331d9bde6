"""Reading a corpus into a clean table of documents.

This module owns everything between a user's file and the encoder: choosing the format from the
extension (after an optional .gz/.zst/.zstd/.bz2 suffix), decompressing, checking UTF-8, finding
the text and id columns, skipping empty and repeated texts, packing the remaining columns into a
JSON `meta` string, and giving each document a content-derived `doc_id`. Every problem with the
input becomes a one-line `InputError` that names the file and the fix. Files are decompressed as
a stream (`saeembed.compression`); TXT and JSONL are read line by line with repeated texts
dropped as they arrive (`saeembed.inputs.lines`), so their memory follows the distinct texts, not
the size of the file. The other formats are read whole.

The output frame always has the columns of `DOCUMENT_COLUMNS`:
`row_idx` (position in the input), `doc_id`, `ext_id` (the id column as strings, or null),
`text`, and `meta` (a JSON object of the other columns, keys in file order).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from saeembed.compression import COMPRESSIONS, open_decompressed
from saeembed.errors import InputError
from saeembed.inputs.lines import (
    UTF8_BOM,
    StreamedRows,
    json_kind,
    json_value,
    read_jsonl,
    read_txt,
    utf8_error,
)
from saeembed.remote import is_url, local_copy

DOCUMENT_COLUMNS = ("row_idx", "doc_id", "ext_id", "text", "meta")

FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".txt": "txt",
}
_TEXT_FORMATS = {"jsonl", "json", "csv", "tsv", "txt"}


@dataclass
class ReadReport:
    """What reading one input did: how many rows it saw and why some were skipped."""

    path: str
    n_rows: int
    n_empty: int
    n_duplicate_text: int
    text_col: str
    id_col: str | None

    @property
    def n_documents(self) -> int:
        """Rows kept as documents."""
        return self.n_rows - self.n_empty - self.n_duplicate_text

    def summary(self) -> str:
        """One human line for the CLI log."""
        rows = "row" if self.n_rows == 1 else "rows"
        return (
            f"read {self.n_rows:,} {rows} from {self.path}; "
            f"skipped {self.n_empty:,} with no text (null, empty or blank), "
            f"{self.n_duplicate_text:,} repeating an earlier text"
        )


# ---------------------------------------------------------------------------------------- ids


def doc_id_for(text: str, context: str | None = None) -> int:
    """Stable signed 64-bit id of a text: blake2b (8-byte digest) of its UTF-8, big-endian.

    The text is hashed exactly as given: no stripping, case folding or Unicode normalisation, so
    texts that differ only in whitespace or composition get different ids. A document read with a
    ``context`` (text encoded before it but not pooled, such as a response's prompt) is a different
    document from the same text alone: its id hashes the length-prefixed context, then the text.
    """
    data = text.encode("utf-8")
    if context is not None:
        ctx = context.encode("utf-8")
        data = b"context:" + len(ctx).to_bytes(8, "big") + ctx + data
    digest = hashlib.blake2b(data, digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def doc_ids_for(texts: pl.Series) -> pl.Series:
    """`doc_id_for` over a Series (nulls stay null); a plain loop, about 0.1 s per 100k texts."""
    ids = [None if t is None else doc_id_for(t) for t in texts.to_list()]
    return pl.Series("doc_id", ids, dtype=pl.Int64)


# ---------------------------------------------------------------------------------- public API


def read_documents(
    path: str | Path, *, text_col: str | None = None, id_col: str | None = None
) -> tuple[pl.DataFrame, ReadReport]:
    """Read a corpus file into the document table; see the module docstring for its columns."""
    source = str(path)
    fold = text_col or "text"  # repeats of a text are folded as lines stream in
    loaded = _load_input(path, "pass a single corpus file", text_col, id_col, fold)
    if isinstance(loaded, StreamedRows) and loaded.fmt == "txt":
        return _frame_documents(loaded.rows, text_col, id_col, source, loaded)
    if isinstance(loaded, StreamedRows):
        return _documents_from_records(loaded.rows, text_col, id_col, source, loaded)
    if isinstance(loaded, list):
        return _documents_from_records(loaded, text_col, id_col, source)
    return documents_from_frame(loaded, text_col=text_col, id_col=id_col, source=source)


def read_table(path: str | Path) -> pl.DataFrame:
    """Any input file (the formats `read_documents` reads) as a plain polars frame, every column
    kept: for inputs that are not one document per row, such as preference pairs."""
    loaded = _load_input(path, "pass a single file", None, None, None)
    if isinstance(loaded, StreamedRows):
        loaded = loaded.rows
    if isinstance(loaded, list):
        if not loaded:
            raise _empty(str(path))
        return pl.DataFrame(loaded, infer_schema_length=None)
    return loaded


def _load_input(
    path: str | Path,
    directory_hint: str,
    text_col: str | None,
    id_col: str | None,
    fold: str | None,
    source: str | None = None,
) -> StreamedRows | list[dict] | pl.DataFrame:
    """A file's rows, decompressed as they stream and UTF-8 checked: TXT and JSONL as
    `StreamedRows` (repeated texts folded when ``fold`` names the text key), JSON as records,
    everything else as a table (read whole). A URL (``s3://``, ``hf://``...) is read from a
    local copy (`saeembed.remote`), with errors naming the URL."""
    if is_url(path):
        with local_copy(path) as local:
            return _load_input(local, directory_hint, text_col, id_col, fold, source=path)
    source = source or str(path)
    path = Path(path)
    if not path.exists():
        raise InputError(f"no such file: {source}")
    if path.is_dir():
        raise InputError(f"{source} is a directory; {directory_hint}")
    fmt, compression = _format_of(path, source)
    with open_decompressed(path, compression, source) as stream:
        if fmt in ("txt", "jsonl") and stream.peek(1):
            if fmt == "txt":
                return read_txt(stream, source, fold=fold is not None)
            return read_jsonl(stream, source, fold)
        raw = stream.read()
    if not raw:
        raise _empty(source)  # nothing to encode
    if fmt in _TEXT_FORMATS:
        raw = _checked_utf8(raw, source)
    if fmt == "json":
        return _parse_json(raw, source)
    return _read_table(raw, fmt, source, text_col, id_col)


def documents_from_frame(
    frame: pl.DataFrame,
    *,
    text_col: str | None = None,
    id_col: str | None = None,
    source: str = "<frame>",
) -> tuple[pl.DataFrame, ReadReport]:
    """The document table of an in-memory frame; `source` names it in errors and the report."""
    return _frame_documents(frame, text_col, id_col, source)


def _frame_documents(
    frame: pl.DataFrame,
    text_col: str | None,
    id_col: str | None,
    source: str,
    folded: StreamedRows | None = None,
) -> tuple[pl.DataFrame, ReadReport]:
    """`documents_from_frame`, for a frame whose rows may stand for repeats `folded` away."""
    if frame.height == 0:
        raise _empty(source)
    labels = {name: _dtype_label(dtype) for name, dtype in frame.schema.items()}
    text_col = _choose_text_col(labels, text_col, source)
    _check_id_col(labels, id_col, source)
    ids = _frame_ids(frame, id_col, labels, source) if id_col is not None else None
    others = frame.drop([c for c in (text_col, id_col) if c is not None])
    texts = frame[text_col].cast(pl.String)
    return _assemble(texts, ids, _meta_json(others), source, text_col, id_col, folded)


def documents_from_texts(
    texts: Iterable[str], ids: Iterable[str] | None = None
) -> tuple[pl.DataFrame, ReadReport]:
    """The document table of plain Python strings (and optional ids, one per text)."""
    texts = list(texts)
    for i, t in enumerate(texts):
        if t is not None and not isinstance(t, str):
            raise InputError(f"texts must be strings; item {i} is a {type(t).__name__}")
    columns = {"text": pl.Series("text", texts, dtype=pl.String)}
    if ids is not None:
        ids = [None if i is None else str(i) for i in ids]
        if len(ids) != len(texts):
            raise InputError(f"got {len(texts)} texts but {len(ids)} ids; pass one id per text")
        columns["id"] = pl.Series("id", ids, dtype=pl.String)
    return documents_from_frame(
        pl.DataFrame(columns),
        text_col="text",
        id_col="id" if ids is not None else None,
        source="<texts>",
    )


# ------------------------------------------------------------------------- files to raw bytes


def _format_of(path: Path, source: str) -> tuple[str, str | None]:
    """(format, compression suffix or None) from the file name, case-insensitively."""
    name = path.name.lower()
    compression = next((c for c in COMPRESSIONS if name.endswith(c)), None)
    if compression:
        name = name[: -len(compression)]
    ext = Path(name).suffix
    if ext not in FORMATS:
        shown = repr(ext) if ext else "(none)"
        raise InputError(
            f"cannot read {source}: unsupported file extension {shown}; supported: "
            f"{', '.join(FORMATS)} (optionally compressed as {', '.join(COMPRESSIONS)})"
        )
    return FORMATS[ext], compression


def _checked_utf8(raw: bytes, source: str) -> bytes:
    """`raw` without a UTF-8 byte-order mark, after checking it decodes (to report the offset)."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise utf8_error(source, e.start) from None
    return raw[len(UTF8_BOM) :] if raw.startswith(UTF8_BOM) else raw


def _read_table(
    raw: bytes, fmt: str, source: str, text_col: str | None, id_col: str | None
) -> pl.DataFrame:
    """A polars frame from CSV/TSV/Parquet bytes."""
    if fmt == "parquet":
        try:
            return pl.read_parquet(io.BytesIO(raw))
        except (pl.exceptions.PolarsError, OSError) as e:
            raise InputError(
                f"{source} is not a readable Parquet file ({_first_line(e)}); "
                "re-export it, or save it as CSV or JSONL"
            ) from None
    return _read_delimited(raw, "\t" if fmt == "tsv" else ",", source, text_col, id_col)


def _read_delimited(
    raw: bytes, separator: str, source: str, text_col: str | None, id_col: str | None
) -> pl.DataFrame:
    """CSV/TSV with a header row. The text and id columns are read as strings so that texts
    like "42" stay text and ids like "007" keep their zeros; other columns get inferred types
    (scanning the whole file, so a late "n/a" cannot break an integer guess)."""
    as_string = {c: pl.String for c in (text_col or "text", id_col) if c is not None}
    _check_row_widths(raw, separator, source)
    try:
        return pl.read_csv(
            raw, separator=separator, schema_overrides=as_string, infer_schema_length=None
        )
    except pl.exceptions.NoDataError:
        raise _empty(source) from None
    except pl.exceptions.PolarsError as e:
        kind = "TSV" if separator == "\t" else "CSV"
        raise InputError(
            f"{source} cannot be parsed as {kind} ({_first_line(e)}); "
            "check its header, delimiter and quoting"
        ) from None


def _check_row_widths(raw: bytes, separator: str, source: str) -> None:
    """Every row has as many fields as the header: a short row would otherwise be padded with
    nulls (and a cut-off last row stored as a document)."""
    rows = csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline=""), delimiter=separator)
    width = None
    for number, row in enumerate(rows, start=1):
        if not row:
            continue  # blank lines are skipped by the parser too
        if width is None:
            width = len(row)
        elif len(row) != width:
            kind = "TSV" if separator == "\t" else "CSV"
            raise InputError(
                f"{source} row {number} (the header is row 1) has {len(row)} fields, the header "
                f"{width}; fix the "
                f"{kind} row (quote fields that contain the delimiter or line breaks)"
            )


# ------------------------------------------------------------------------------------- JSON


def _parse_json(raw: bytes, source: str) -> list[dict]:
    """A JSON array of objects, or an object holding one such array (e.g. {"data": [...]})."""
    try:
        value = json_value(raw.decode("utf-8"), source)
    except json.JSONDecodeError as e:
        raise InputError(
            f"{source} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); "
            "fix the file, or write one object per line as .jsonl"
        ) from None
    if isinstance(value, dict):
        value = _wrapped_records(value, source)
    if not isinstance(value, list):
        raise InputError(
            f"{source} holds a JSON {json_kind(value)}; expected an array of objects "
            'or an object with one list of records such as {"data": [...]}'
        )
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise InputError(
                f"item {i} of the records in {source} is a JSON {json_kind(item)}, "
                'not an object; each record must be an object such as {"text": "..."}'
            )
    return value


def _wrapped_records(obj: dict, source: str) -> list:
    """The single list of records inside a wrapper object. Lists of objects win over other
    lists, so `{"version": 1, "tags": ["a"], "data": [{...}]}` still finds `data`."""
    lists = {k: v for k, v in obj.items() if isinstance(v, list)}
    records = {k: v for k, v in lists.items() if v and all(isinstance(x, dict) for x in v)}
    candidates = records or lists
    if len(candidates) != 1:
        found = ", ".join(candidates) if candidates else "none"
        raise InputError(
            f"{source} holds a JSON object, but not exactly one list of records "
            f'(found: {found}); keep one list such as {{"data": [...]}}, or use a top-level array'
        )
    return next(iter(candidates.values()))


def _documents_from_records(
    records: list[dict],
    text_col: str | None,
    id_col: str | None,
    source: str,
    folded: StreamedRows | None = None,
) -> tuple[pl.DataFrame, ReadReport]:
    """Documents from parsed JSON records. Meta is serialised here with `json.dumps` rather than
    through polars so nested values come back exactly (polars would union the keys of nested
    objects across rows and fill the gaps with nulls); keys a record lacks are left out."""
    if not records:
        raise _empty(source)
    labels = _record_labels(records, folded.kinds if folded else None)
    text_col = _choose_text_col(labels, text_col, source)
    _check_id_col(labels, id_col, source)
    texts = pl.Series("text", [r.get(text_col) for r in records], dtype=pl.String)
    ids = None
    if id_col is not None:
        ids = pl.Series("ext_id", [_id_string(r.get(id_col)) for r in records], dtype=pl.String)
    skip = {text_col, id_col}
    meta = pl.Series(
        "meta",
        [_compact_json({k: v for k, v in r.items() if k not in skip}) for r in records],
        dtype=pl.String,
    )
    return _assemble(texts, ids, meta, source, text_col, id_col, folded)


def _record_labels(records: list[dict], kinds: dict[str, set[str]] | None) -> dict[str, str]:
    """Column name -> type label for JSON records (or for the ``kinds`` their keys were seen
    with), keys in first-seen order. "String" means every non-null value is a string and "Null"
    means all are null, matching `_dtype_label`."""
    if kinds is None:
        kinds = {}
        for record in records:
            for key, value in record.items():
                seen = kinds.setdefault(key, set())
                if value is not None:
                    seen.add(json_kind(value))
    return {
        key: "Null" if not s else "String" if s == {"string"} else "/".join(sorted(s))
        for key, s in kinds.items()
    }


def _id_string(value: object) -> str | None:
    """An id as a string: strings as they are, other JSON values as their JSON text."""
    return value if value is None or isinstance(value, str) else _compact_json(value)


def _compact_json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# ------------------------------------------------------------------------------- columns


def _dtype_label(dtype: pl.DataType) -> str:
    """A type name for messages; categoricals count as text."""
    if dtype == pl.String or isinstance(dtype, (pl.Categorical, pl.Enum)):
        return "String"
    return str(dtype)


def _choose_text_col(labels: dict[str, str], text_col: str | None, source: str) -> str:
    """The given column, else `text`, else the only string column; it must hold strings."""
    names = ", ".join(labels)
    if text_col is not None:
        if text_col not in labels:
            raise InputError(
                f"no column {text_col!r} in {source}; columns are: {names} "
                "(choose one with --text-col)"
            )
        chosen = text_col
    elif "text" in labels:
        chosen = "text"
    else:
        strings = [name for name, label in labels.items() if label == "String"]
        if len(strings) != 1:
            found = f"{len(strings)} string columns" if strings else "no string column"
            raise InputError(
                f"cannot tell which column of {source} holds the text: no column 'text' and "
                f"{found}; columns are: {names} (choose one with --text-col)"
            )
        chosen = strings[0]
    if labels[chosen] not in ("String", "Null"):
        raise InputError(
            f"column {chosen!r} of {source} holds {labels[chosen]} values, not text; "
            "choose a string column with --text-col"
        )
    return chosen


def _check_id_col(labels: dict[str, str], id_col: str | None, source: str) -> None:
    if id_col is not None and id_col not in labels:
        raise InputError(
            f"no column {id_col!r} in {source}; columns are: {', '.join(labels)} "
            "(choose one with --id-col, or omit it)"
        )


def _frame_ids(frame: pl.DataFrame, id_col: str, labels: dict[str, str], source: str) -> pl.Series:
    try:
        return frame[id_col].cast(pl.String)
    except pl.exceptions.PolarsError:
        raise InputError(
            f"id column {id_col!r} of {source} holds {labels[id_col]} values, which cannot be "
            "ids; choose a column of strings or integers with --id-col"
        ) from None


def _meta_json(others: pl.DataFrame) -> pl.Series:
    """Each row of `others` as a compact JSON object, keys in column order ("{}" if none)."""
    if others.width == 0:
        return pl.Series("meta", ["{}"] * others.height, dtype=pl.String)
    jsonable = others.with_columns(_jsonable(name, dtype) for name, dtype in others.schema.items())
    return jsonable.select(pl.struct(pl.all()).struct.json_encode().alias("meta")).to_series()


def _jsonable(name: str, dtype: pl.DataType) -> pl.Expr:
    """Adjust columns polars' JSON writer handles badly: binary (it panics) becomes base64, and
    naive datetimes get ISO 8601's "T" (polars writes a space; dates and zoned datetimes are
    already ISO)."""
    column = pl.col(name)
    if dtype == pl.Binary:
        return column.bin.encode("base64")
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is None:
        return column.dt.to_string("%Y-%m-%dT%H:%M:%S%.f")
    return column


# -------------------------------------------------------------------------------- assembly


def _assemble(
    texts: pl.Series,
    ids: pl.Series | None,
    meta: pl.Series,
    source: str,
    text_col: str,
    id_col: str | None,
    folded: StreamedRows | None = None,
) -> tuple[pl.DataFrame, ReadReport]:
    """Skip empty texts, then repeated texts (keeping the first), check ids, add doc_id. Rows
    `folded` while streaming stand for their later repeats too, which count as skipped here."""
    n = len(texts)
    row_idx = pl.int_range(0, n, dtype=pl.Int64, eager=True)
    weight = pl.repeat(1, n, dtype=pl.Int64, eager=True)
    if folded is not None and folded.row_idx is not None:
        row_idx = folded.row_idx
    if folded is not None and folded.weights is not None:
        weight = folded.weights
    if ids is None:
        ids = pl.repeat(None, n, dtype=pl.String, eager=True)
    table = pl.DataFrame(
        {"row_idx": row_idx, "ext_id": ids, "text": texts, "meta": meta, "weight": weight}
    )
    n_rows = int(weight.sum())
    kept = table.filter(pl.col("text").str.strip_chars().fill_null("") != "")
    if kept.height == 0:
        raise InputError(
            f"every text in column {text_col!r} of {source} is empty ({n_rows:,} rows); "
            "choose the column that holds the documents with --text-col"
        )
    unique = kept.filter(pl.col("text").is_first_distinct())
    if id_col is not None:
        _check_ids(unique, id_col, source)
    docs = unique.with_columns(doc_id=doc_ids_for(unique["text"])).select(DOCUMENT_COLUMNS)
    report = ReadReport(
        path=source,
        n_rows=n_rows,
        n_empty=n_rows - int(kept["weight"].sum()),
        n_duplicate_text=int(kept["weight"].sum()) - unique.height,
        text_col=text_col,
        id_col=id_col,
    )
    return docs, report


def _check_ids(kept: pl.DataFrame, id_col: str, source: str) -> None:
    """Ids of the kept rows must be present and unique; rows skipped as empty or as a repeat of
    an earlier text are not documents, so their ids do not matter."""
    missing = kept.filter(pl.col("ext_id").is_null())
    if missing.height:
        raise InputError(
            f"{missing.height:,} rows of {source} have no value in id column {id_col!r} "
            f"(first at row_idx {missing['row_idx'][0]}); fill them in, or omit --id-col"
        )
    repeats = kept["ext_id"].filter(~kept["ext_id"].is_first_distinct())
    if repeats.len():
        raise InputError(
            f"id column {id_col!r} of {source} is not unique: {repeats.len():,} duplicate ids, "
            f"first {repeats[0]!r}; choose a column with unique values for --id-col, "
            "or omit --id-col"
        )


def _empty(source: str) -> InputError:
    return InputError(f"{source} is empty: nothing to encode")


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
