"""Reading a label file's bytes into rows: gzip, SQLite (a Goodfire export), Parquet, JSON or JSONL,
CSV or TSV, recognised by content before name. `saeembed.labels.published` then finds the fields of a
known format in what this returns. Every problem is a one-line `InputError` naming the file."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sqlite3
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import polars as pl

from saeembed.compression import decompress
from saeembed.errors import InputError
from saeembed.inputs import json_value

_GZIP_MAGIC = b"\x1f\x8b"
_SQLITE_MAGIC = b"SQLite format 3\x00"
_PARQUET_MAGIC = b"PAR1"
_UTF8_BOM = b"\xef\xbb\xbf"
GOODFIRE_TABLE = "autointerp"
_MAX_LISTED = 8
_DIGITS = re.compile(r"[+-]?\d+")


class Parsed:
    """A parsed file: JSON ``records`` (objects, possibly nested) or a flat ``table``."""

    def __init__(
        self,
        *,
        records: list[dict] | None = None,
        table: dict[str, list] | None = None,
        kind: str,
        sqlite_table: str | None = None,
    ) -> None:
        self.records = records
        self.table = table
        self.kind = kind  # "json", "jsonl", "csv", "tsv", "parquet", "sqlite"
        self.sqlite_table = sqlite_table

    def keys(self) -> list[str]:
        """Field names in first-seen order."""
        if self.table is not None:
            return list(self.table)
        seen: dict[str, None] = {}
        for record in self.records or ():
            seen.update(dict.fromkeys(record))
        return list(seen)

    def column(self, key: str) -> list:
        if self.table is not None:
            return self.table[key]
        return [record.get(key) for record in self.records or ()]

    def rows(self) -> list[dict]:
        """The records, or the table's rows as records."""
        if self.records is not None:
            return self.records
        table = self.table or {}
        return [
            dict(zip(table, values, strict=True)) for values in zip(*table.values(), strict=True)
        ]

    def __len__(self) -> int:
        if self.table is not None:
            return len(next(iter(self.table.values()), []))
        return len(self.records or ())


def read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise InputError(f"label file {path} not found; check the path")
    if path.is_dir():
        raise InputError(f"label file {path} is a directory; pass the label file inside it")
    data = path.read_bytes()
    if data.startswith(_GZIP_MAGIC):
        data = decompress(data, ".gz", f"label file {path}")
    if not data.strip():
        raise InputError(f"label file {path} is empty; download or export it again")
    return data


def parse(data: bytes, path: Path) -> Parsed:
    if data.startswith(_SQLITE_MAGIC):
        return _parse_sqlite(data, path)
    if data.startswith(_PARQUET_MAGIC):
        try:
            frame = pl.read_parquet(io.BytesIO(data))
        except Exception as exc:  # polars raises several kinds for damaged files
            raise InputError(f"label file {path} is not a readable Parquet file ({exc})") from None
        return Parsed(table={c: frame[c].to_list() for c in frame.columns}, kind="parquet")
    if data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM) :]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"label file {path} is not UTF-8 text (byte {exc.start}); re-save it as UTF-8"
        ) from None
    stripped = text.lstrip()
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    if stripped.startswith(("[", "{")):
        return _parse_json(stripped, path)
    if suffixes and suffixes[-1] in (".json", ".jsonl", ".ndjson"):
        raise InputError(f"label file {path} is not valid JSON; check that it is a label export")
    tsv = (suffixes and suffixes[-1] == ".tsv") or _looks_tab_separated(text)
    return _parse_csv(data, path, tsv=bool(tsv))


def _looks_tab_separated(text: str) -> bool:
    first = text.lstrip().split("\n", 1)[0]
    return first.count("\t") > first.count(",")


def _parse_json(text: str, path: Path) -> Parsed:
    try:
        value = json_value(text, f"label file {path}")
        kind = "json"
    except json.JSONDecodeError:
        value, kind = _parse_jsonl(text, path), "jsonl"
    if isinstance(value, dict):
        value = _unwrap_json_object(value)
    if isinstance(value, Parsed):
        return value
    if not isinstance(value, list):
        raise InputError(
            f"label file {path} holds a JSON {type(value).__name__}; expected a list of "
            "objects with a feature index and a label"
        )
    for number, item in enumerate(value, start=1):
        if not isinstance(item, dict):
            raise InputError(
                f"label file {path}: item {number} is a JSON {type(item).__name__}, not an "
                "object; each item should hold a feature index and a label"
            )
    if not value:
        raise InputError(f"label file {path} holds no labels (an empty JSON list)")
    return Parsed(records=value, kind=kind)


def _parse_jsonl(text: str, path: Path) -> list:
    records = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            records.append(json_value(line, f"label file {path} line {lineno}"))
        except json.JSONDecodeError as exc:
            raise InputError(
                f"label file {path} line {lineno} is not valid JSON ({exc.msg}); "
                "check that it is a JSON or JSONL label export"
            ) from None
    return records


def _unwrap_json_object(value: dict) -> list | Parsed:
    """A top-level JSON object as records: a known wrapper's list, an index-to-label mapping, or
    the object itself as the only record."""
    if "index" not in value and isinstance(value.get("explanations"), list):
        return value["explanations"]  # {"explanations": [...]}, as some export clients save it
    for key in ("features", "edits"):  # Goodfire API responses and variant JSON
        if isinstance(value.get(key), list):
            return value[key]
    if value and all(
        _DIGITS.fullmatch(k.strip()) and (isinstance(v, str) or v is None) for k, v in value.items()
    ):
        return Parsed(table={"feature": list(value), "label": list(value.values())}, kind="json")
    return [value]


def _parse_csv(data: bytes, path: Path, *, tsv: bool) -> Parsed:
    try:
        frame = pl.read_csv(io.BytesIO(data), separator="\t" if tsv else ",", infer_schema=False)
    except Exception as exc:  # polars raises several kinds for malformed text
        kind = "TSV" if tsv else "CSV"
        raise InputError(
            f"label file {path} is not readable as {kind} ({str(exc).splitlines()[0]}); "
            "check the separator and quoting"
        ) from None
    return Parsed(
        table={c: frame[c].to_list() for c in frame.columns}, kind="tsv" if tsv else "csv"
    )


def _parse_sqlite(data: bytes, path: Path) -> Parsed:
    with contextlib.ExitStack() as stack:
        db_path = path
        with path.open("rb") as raw:
            gzipped = raw.read(len(_SQLITE_MAGIC)) != _SQLITE_MAGIC
        if gzipped:  # sqlite reads only files: give it a decompressed copy
            handle, temp = tempfile.mkstemp(suffix=".db")
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            stack.callback(os.unlink, temp)
            db_path = Path(temp)
        try:
            conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        except sqlite3.Error as exc:
            raise InputError(f"label file {path} is not a readable SQLite file ({exc})") from None
        stack.callback(conn.close)
        try:
            tables = [
                row[0]
                for row in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY name"
                )
            ]
            if GOODFIRE_TABLE in tables:
                table = GOODFIRE_TABLE
            elif len(tables) == 1:
                table = tables[0]
            else:
                raise InputError(
                    f"label file {path} is SQLite with tables {name_list(tables) or '(none)'}; "
                    f"expected a table {GOODFIRE_TABLE!r} or exactly one table of labels"
                )
            quoted = '"' + table.replace('"', '""') + '"'
            cursor = conn.execute(f"SELECT * FROM {quoted}")
            names = [d[0] for d in cursor.description]
            rows = cursor.fetchall()
        except sqlite3.Error as exc:
            raise InputError(f"label file {path} is not a readable SQLite file ({exc})") from None
    columns = {name: [row[i] for row in rows] for i, name in enumerate(names)}
    return Parsed(table=columns, kind="sqlite", sqlite_table=table)


def name_list(names: Sequence[str] | Iterable[str]) -> str:
    names = [str(n) for n in names]
    shown = ", ".join(names[:_MAX_LISTED])
    return shown + (f", … ({len(names)} in all)" if len(names) > _MAX_LISTED else "")
