"""The line-oriented corpus formats (.txt, .jsonl/.ndjson) read as a stream, in memory bounded by
what they hold rather than by the size of the file.

This module owns splitting a decompressed byte stream into lines (one "\\n" ends a line, a BOM
is dropped, the offset of the first byte that is not UTF-8 is reported), parsing JSONL lines
into records, and folding repeated texts into their first row while streaming: a row whose text
equals an earlier one is dropped as soon as it is read, and the first row carries the count.
`saeembed.inputs` turns the result into the document table (a folded row counts as skipped,
exactly as if it had been read). It also owns `json_value`, the checked JSON parser that both
JSON formats and the label files use.
"""

from __future__ import annotations

import json
import re
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import polars as pl

from saeembed.errors import InputError

UTF8_BOM = b"\xef\xbb\xbf"
_BLOCK = 1 << 20  # bytes decoded at a time; a longer line is read whole
_JSON_KINDS = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "array",
    dict: "object",
}


@dataclass
class StreamedRows:
    """The rows of a line-oriented file: a frame with one `text` column (``fmt`` "txt") or a list
    of records ("jsonl"). When repeats were folded, ``row_idx`` gives each row's position in the
    input, ``weights`` how many input rows it stands for (itself and its later repeats; None: one
    each) and ``kinds`` maps each record key to the JSON kinds of its non-null values over every
    record read, folded ones included."""

    fmt: str
    rows: pl.DataFrame | list[dict]
    row_idx: pl.Series | None = None
    weights: pl.Series | None = None
    kinds: dict[str, set[str]] | None = None


def utf8_error(source: str, offset: int) -> InputError:
    return InputError(
        f"{source} is not valid UTF-8 (first bad byte at offset {offset}); "
        "re-save it as UTF-8, e.g. iconv -f latin1 -t utf-8"
    )


def read_txt(stream: BinaryIO, source: str, fold: bool) -> StreamedRows:
    """One text per line; a final newline ends the last line rather than starting a new (empty)
    one, and a CR before each LF is part of the line ending. With ``fold``, repeated lines are
    kept once (at their first position) with their count."""
    texts: list[str] = []
    if not fold:
        for block in _line_blocks(stream, source, crlf=True):
            texts += block
        return StreamedRows("txt", _text_frame(texts or [""]))
    seen: set[str] = set()
    repeats: dict[str, int] = {}  # text -> later occurrences
    row_idx = array("q")  # no int object per text
    row = 0
    for block in _line_blocks(stream, source, crlf=True):
        for line in block:
            if line in seen:
                repeats[line] = repeats.get(line, 0) + 1
            else:
                seen.add(line)
                texts.append(line)
                row_idx.append(row)
            row += 1
    del seen
    if not texts:
        texts, row_idx = [""], array("q", [0])  # an empty file (but for a BOM): one empty line
    weights = _weights(texts, repeats)
    return StreamedRows("txt", _text_frame(texts), _int64(row_idx), weights)


def read_jsonl(stream: BinaryIO, source: str, fold_key: str | None) -> StreamedRows:
    """One JSON object per line; blank lines are ignored (they are not records). With
    ``fold_key``, a record whose value there is a string or null seen there before is dropped
    (after its keys and kinds are noted) and counted on the first such record."""
    lines = _numbered_lines(stream, source)
    try:
        return _records(lines, source, fold_key)
    except InputError:
        for _ in lines:  # the rest is still decoded: a damaged file is reported as that first
            pass
        raise


def _records(lines: Iterator[tuple[int, str]], source: str, fold_key: str | None) -> StreamedRows:
    records: list[dict] = []
    if fold_key is None:
        for lineno, line in lines:
            records.append(_record(line, lineno, source))
        return StreamedRows("jsonl", records)
    kinds: dict[str, set[str]] = {}
    seen: set[str | None] = set()  # the values at fold_key kept so far
    repeats: dict[str | None, int] = {}  # value -> records dropped as its repeats
    row_idx = array("q")
    for row, (lineno, line) in enumerate(lines):
        record = _record(line, lineno, source)
        for key, value in record.items():
            known = kinds.setdefault(key, set())
            if value is not None:
                known.add(json_kind(value))
        value = _foldable(record, fold_key)
        if value is not _NOT_FOLDED:
            if value in seen:
                repeats[value] = repeats.get(value, 0) + 1
                continue
            seen.add(value)
        records.append(record)
        row_idx.append(row)
    del seen
    weights = _weights([_foldable(r, fold_key) for r in records], repeats) if repeats else None
    return StreamedRows("jsonl", records, _int64(row_idx), weights, kinds)


_NOT_FOLDED = object()


def _foldable(record: dict, key: str):
    """The record's value at ``key`` if it is a string or null, else `_NOT_FOLDED` (a record
    without the key, or with another kind of value there, is never folded)."""
    value = record.get(key, _NOT_FOLDED)
    return value if value is None or isinstance(value, str) else _NOT_FOLDED


def _weights(values: list, repeats: dict) -> pl.Series | None:
    """How many input rows each kept row (by its folded value) stands for: 1, plus the repeats
    folded into it; None when nothing was folded."""
    if not repeats:
        return None
    return pl.Series([1 + repeats.get(v, 0) for v in values], dtype=pl.Int64)


def _text_frame(texts: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"text": texts}, schema={"text": pl.String})


def _int64(values: array) -> pl.Series:
    return pl.Series(values, dtype=pl.Int64)


def _numbered_lines(stream: BinaryIO, source: str) -> Iterator[tuple[int, str]]:
    """(line number, line) for the lines that are not blank."""
    lineno = 0
    for block in _line_blocks(stream, source):
        for line in block:
            lineno += 1
            if line.strip():
                yield lineno, line


def _record(line: str, lineno: int, source: str) -> dict:
    try:
        value = json_value(line, f"line {lineno} of {source}")
    except json.JSONDecodeError as e:
        raise InputError(
            f"line {lineno} of {source} is not valid JSON ({e.msg} at column {e.colno}); "
            "fix or remove that line"
        ) from None
    if not isinstance(value, dict):
        raise InputError(
            f"line {lineno} of {source} is a JSON {json_kind(value)}, not an object; "
            'each line must be one object such as {"text": "..."}'
        )
    return value


def _line_blocks(stream: BinaryIO, source: str, crlf: bool = False) -> Iterator[list[str]]:
    """The stream's lines (split at "\\n" only, without it; with ``crlf`` also without a CR
    before it) about a megabyte at a time, decoded as UTF-8 after dropping a leading BOM. Only
    the current block (or one line longer than a block) is held."""
    head = stream.read(len(UTF8_BOM))
    offset = len(head) if head == UTF8_BOM else 0  # of pending[0] in the stream, for errors
    pending = bytearray() if offset else bytearray(head)
    while True:
        chunk = stream.read(_BLOCK)
        pending += chunk
        cut = pending.rfind(b"\n") + 1 if chunk else len(pending)
        if cut:
            with memoryview(pending) as view:
                try:
                    text = str(view[:cut], "utf-8")
                except UnicodeDecodeError as e:
                    error = utf8_error(source, offset + e.start)
                else:
                    error = None
            if error:
                while stream.read(_BLOCK):  # damaged compressed data is reported first
                    pass
                raise error
            del pending[:cut]
            offset += cut
            lines = text.split("\n")
            if text.endswith("\n"):
                lines.pop()  # a "\n" ends a line rather than starting one
            if crlf and "\r" in text:
                lines = [line[:-1] if line.endswith("\r") else line for line in lines]
            del text
            yield lines
        if not chunk:
            return


# ------------------------------------------------------------------------------------- JSON

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def json_value(text: str, where: str):
    """``json.loads`` with one-line errors for what the parser itself lets through or dies on:
    nesting deeper than Python's recursion limit, and escapes of lone surrogates (``\\ud800``),
    which are not text and cannot be stored."""
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise InputError(
            f"{where} nests JSON arrays or objects too deeply to read; flatten the records"
        ) from None
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(value):
        raise InputError(
            f"{where} holds a lone UTF-16 surrogate escape (such as \\ud800), which is not "
            "text; fix or remove that escape"
        )
    return value


def _has_lone_surrogate(value) -> bool:
    if isinstance(value, str):
        return bool(_LONE_SURROGATE.search(value))
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


def _no_constant(name: str) -> None:
    """NaN/Infinity are not JSON; Python accepts them, so read them as null (as polars does)."""
    return None


def json_kind(value: object) -> str:
    return "null" if value is None else _JSON_KINDS.get(type(value), type(value).__name__)
