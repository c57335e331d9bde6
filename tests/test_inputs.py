"""Tests for saeembed.inputs: formats, compression, column choice, skipping, ids, errors."""

from __future__ import annotations

import bz2
import datetime as dt
import gzip
import json
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import zstandard
from polars.testing import assert_frame_equal

from saeembed.errors import InputError
from saeembed.inputs import (
    DOCUMENT_COLUMNS,
    ReadReport,
    doc_id_for,
    doc_ids_for,
    documents_from_frame,
    documents_from_texts,
    read_documents,
)

HELLO_WORLD_ID = -8681194425623006896  # blake2b-64 of b"hello world", computed once

ROWS = [
    {"id": "a1", "text": "Hello world", "label": 1, "score": 0.5},
    {"id": "a2", "text": "", "label": 2, "score": 1.5},
    {"id": "a3", "text": 'Second doc, with "quotes"', "label": 3, "score": 2.5},
    {"id": "a4", "text": "Hello world", "label": 4, "score": 3.5},
    {"id": "a5", "text": "   ", "label": 5, "score": 4.5},
    {"id": "a6", "text": "Café ünïcode", "label": 6, "score": 5.5},
]


def expected_frame(with_id: bool = True) -> pl.DataFrame:
    """The documents of ROWS: rows 1 (empty), 3 (repeats row 0) and 4 (blank) are skipped."""
    if with_id:
        meta = ['{"label":1,"score":0.5}', '{"label":3,"score":2.5}', '{"label":6,"score":5.5}']
    else:
        meta = [
            '{"id":"a1","label":1,"score":0.5}',
            '{"id":"a3","label":3,"score":2.5}',
            '{"id":"a6","label":6,"score":5.5}',
        ]
    texts = ["Hello world", 'Second doc, with "quotes"', "Café ünïcode"]
    return pl.DataFrame(
        {
            "row_idx": [0, 2, 5],
            "doc_id": [doc_id_for(t) for t in texts],
            "ext_id": ["a1", "a3", "a6"] if with_id else [None] * 3,
            "text": texts,
            "meta": meta,
        },
        schema=dict.fromkeys(["row_idx", "doc_id"], pl.Int64)
        | dict.fromkeys(["ext_id", "text", "meta"], pl.String),
    )


def encode(fmt: str, rows: list[dict]) -> bytes:
    """The bytes of `rows` written in format `fmt`."""
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    if fmt == "json":
        return json.dumps(rows, ensure_ascii=False, indent=2).encode()
    if fmt == "json-wrapped":
        return json.dumps({"version": 1, "tags": ["x"], "data": rows}).encode()
    frame = pl.DataFrame(rows)
    if fmt in ("csv", "tsv"):
        return frame.write_csv(separator="\t" if fmt == "tsv" else ",").encode()
    raise AssertionError(fmt)


SUFFIX = {"jsonl": ".jsonl", "json": ".json", "json-wrapped": ".json", "csv": ".csv", "tsv": ".tsv"}

COMPRESS = {
    ".gz": gzip.compress,
    ".zst": lambda b: zstandard.ZstdCompressor().compress(b),
    ".zstd": lambda b: zstandard.ZstdCompressor().compress(b),
    ".bz2": bz2.compress,
}


def write(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize("fmt", ["jsonl", "json", "json-wrapped", "csv", "tsv"])
def test_each_text_format_gives_the_same_frame(tmp_path, fmt):
    path = write(tmp_path, "corpus" + SUFFIX[fmt], encode(fmt, ROWS))
    docs, report = read_documents(path, id_col="id")
    assert_frame_equal(docs, expected_frame())
    assert report == ReadReport(str(path), 6, 2, 1, "text", "id")


@pytest.mark.parametrize("suffix", [".parquet", ".pq", ".ndjson"])
def test_other_extensions(tmp_path, suffix):
    path = tmp_path / f"corpus{suffix}"
    if suffix == ".ndjson":
        path.write_bytes(encode("jsonl", ROWS))
    else:
        pl.DataFrame(ROWS).write_parquet(path)
    docs, _ = read_documents(path, id_col="id")
    assert_frame_equal(docs, expected_frame())


def test_without_id_column_the_id_goes_into_meta(tmp_path):
    path = write(tmp_path, "c.csv", encode("csv", ROWS))
    docs, report = read_documents(path)
    assert_frame_equal(docs, expected_frame(with_id=False))
    assert report.id_col is None
    assert docs["meta"][0] == '{"id":"a1","label":1,"score":0.5}'


def test_extension_is_case_insensitive(tmp_path):
    path = write(tmp_path, "CORPUS.JSONL.GZ", gzip.compress(encode("jsonl", ROWS)))
    docs, _ = read_documents(path, id_col="id")
    assert_frame_equal(docs, expected_frame())


@pytest.mark.parametrize("compression", sorted(COMPRESS))
@pytest.mark.parametrize("fmt", ["jsonl", "csv", "tsv", "json"])
def test_each_compression_gives_the_same_frame(tmp_path, fmt, compression):
    data = COMPRESS[compression](encode(fmt, ROWS))
    path = write(tmp_path, "corpus" + SUFFIX[fmt] + compression, data)
    docs, report = read_documents(path, id_col="id")
    assert_frame_equal(docs, expected_frame())
    assert report.path == str(path)


def test_compressed_parquet(tmp_path):
    plain = tmp_path / "c.parquet"
    pl.DataFrame(ROWS).write_parquet(plain)
    path = write(tmp_path, "c.parquet.zst", zstandard.ZstdCompressor().compress(plain.read_bytes()))
    docs, _ = read_documents(path, id_col="id")
    assert_frame_equal(docs, expected_frame())


def test_streamed_zstd_without_content_size(tmp_path):
    compressor = zstandard.ZstdCompressor().compressobj()
    data = compressor.compress(encode("jsonl", ROWS)) + compressor.flush()
    path = write(tmp_path, "c.jsonl.zst", data)
    docs, _ = read_documents(path, id_col="id")
    assert_frame_equal(docs, expected_frame())


def test_txt_one_document_per_line(tmp_path):
    path = write(tmp_path, "c.txt", b"first line\n\nsecond\r\nfirst line\n  \nlast\n")
    docs, report = read_documents(path)
    assert docs["row_idx"].to_list() == [0, 2, 5]
    assert docs["text"].to_list() == ["first line", "second", "last"]
    assert docs["meta"].to_list() == ["{}"] * 3
    assert docs["ext_id"].to_list() == [None] * 3
    assert (report.n_rows, report.n_empty, report.n_duplicate_text) == (6, 2, 1)


def test_txt_without_trailing_newline(tmp_path):
    path = write(tmp_path, "c.txt", b"a\nb")
    docs, report = read_documents(path)
    assert docs["text"].to_list() == ["a", "b"]
    assert report.n_rows == 2


def test_txt_trailing_blank_line_is_an_empty_document(tmp_path):
    _, report = read_documents(write(tmp_path, "c.txt", b"a\nb\n\n"))
    assert (report.n_rows, report.n_empty) == (3, 1)


def test_utf8_bom_is_ignored(tmp_path):
    path = write(tmp_path, "c.csv", b"\xef\xbb\xbftext,n\nhi,1\n")
    docs, _ = read_documents(path)
    assert docs["text"].to_list() == ["hi"]
    assert docs["meta"].to_list() == ['{"n":1}']


def test_jsonl_blank_lines_are_not_records(tmp_path):
    path = write(tmp_path, "c.jsonl", b'\n{"text": "a"}\n\n  \n{"text": "b"}\n\n')
    docs, report = read_documents(path)
    assert docs["row_idx"].to_list() == [0, 1]
    assert report.n_rows == 2


# ------------------------------------------------------------------- skipping and report


def test_report_counts_and_summary(tmp_path):
    path = write(tmp_path, "x.csv", encode("csv", ROWS))
    _, report = read_documents(path)
    assert report.n_rows == 6
    assert report.n_empty == 2
    assert report.n_duplicate_text == 1
    assert report.n_documents == 3
    assert (
        report.summary()
        == f"read 6 rows from {path}; skipped 2 with no text (null, empty or blank), 1 repeating an earlier text"
    )


def test_summary_uses_thousands_separators():
    report = ReadReport("x.csv", 1000, 3, 2, "text", None)
    assert (
        report.summary()
        == "read 1,000 rows from x.csv; skipped 3 with no text (null, empty or blank), 2 repeating an earlier text"
    )


def test_null_and_whitespace_only_texts_are_empty_but_nul_is_kept():
    frame = pl.DataFrame({"text": ["a", None, " \t\n", "\u00a0\u3000", "\x00", "b\x00c"]})
    docs, report = documents_from_frame(frame)
    assert docs["text"].to_list() == ["a", "\x00", "b\x00c"]
    assert docs["row_idx"].to_list() == [0, 4, 5]
    assert report.n_empty == 3


def test_duplicate_texts_keep_the_first_row_exactly_as_given():
    frame = pl.DataFrame({"text": ["x", "y", "x", "x ", "X", "y"], "n": [0, 1, 2, 3, 4, 5]})
    docs, report = documents_from_frame(frame)
    assert docs["text"].to_list() == ["x", "y", "x ", "X"]
    assert docs["meta"].to_list() == ['{"n":0}', '{"n":1}', '{"n":3}', '{"n":4}']
    assert report.n_duplicate_text == 2


def test_output_columns_and_types():
    docs, _ = documents_from_texts(["a"])
    assert tuple(docs.columns) == DOCUMENT_COLUMNS
    assert docs.dtypes == [pl.Int64, pl.Int64, pl.String, pl.String, pl.String]


# ---------------------------------------------------------------------------- doc ids


def test_doc_id_is_stable():
    assert doc_id_for("hello world") == HELLO_WORLD_ID


def test_doc_id_uses_text_exactly():
    ids = {
        doc_id_for(t)
        for t in ["hello world", "hello world ", "Hello world", "héllo", "he\u0301llo"]
    }
    assert len(ids) == 5


def test_doc_ids_for_matches_doc_id_for():
    texts = ["hello world", "", "Café", "\x00", "a" * 10_000, None]
    ids = doc_ids_for(pl.Series(texts))
    assert ids.dtype == pl.Int64
    assert ids.to_list() == [doc_id_for(t) for t in texts[:-1]] + [None]
    assert ids[0] == HELLO_WORLD_ID


def test_doc_ids_in_documents_match(tmp_path):
    docs, _ = read_documents(write(tmp_path, "c.txt", b"hello world\n"))
    assert docs["doc_id"].to_list() == [HELLO_WORLD_ID]


# -------------------------------------------------------------------------------- meta


def test_meta_keys_follow_file_order(tmp_path):
    path = write(tmp_path, "c.csv", b"zeta,text,alpha,mid\n1,hi,x,2.5\n")
    docs, _ = read_documents(path)
    assert docs["meta"].to_list() == ['{"zeta":1,"alpha":"x","mid":2.5}']


def test_meta_of_jsonl_keeps_nested_values_exactly(tmp_path):
    rows = [
        {"text": "a", "tags": [1, 2], "info": {"x": 1, "deep": {"y": [True, None]}}},
        {"info": {"z": "é"}, "text": "b", "tags": []},
        {"text": "c", "nan": float("nan")},
    ]
    path = write(tmp_path, "c.jsonl", "\n".join(json.dumps(r) for r in rows).encode())
    docs, _ = read_documents(path)
    assert docs["meta"].to_list() == [
        '{"tags":[1,2],"info":{"x":1,"deep":{"y":[true,null]}}}',
        '{"info":{"z":"é"},"tags":[]}',
        '{"nan":null}',
    ]
    assert [json.loads(m) for m in docs["meta"]][0]["info"]["deep"] == {"y": [True, None]}


def test_meta_of_parquet_dates_and_binary(tmp_path):
    frame = pl.DataFrame(
        {
            "text": ["a"],
            "day": [dt.date(2024, 1, 2)],
            "at": [dt.datetime(2024, 1, 2, 3, 4, 5)],
            "raw": [b"\x00a"],
            "nums": [[1, 2]],
            "missing": [None],
        }
    )
    path = tmp_path / "c.parquet"
    frame.write_parquet(path)
    docs, _ = read_documents(path)
    assert docs["meta"].to_list() == [
        '{"day":"2024-01-02","at":"2024-01-02T03:04:05","raw":"AGE=","nums":[1,2],"missing":null}'
    ]


def test_meta_is_empty_object_without_other_columns():
    docs, _ = documents_from_frame(pl.DataFrame({"text": ["a"], "id": ["1"]}), id_col="id")
    assert docs["meta"].to_list() == ["{}"]


# --------------------------------------------------------------------- text column choice


def test_text_column_named_text_wins():
    frame = pl.DataFrame({"title": ["t"], "text": ["body"]})
    docs, report = documents_from_frame(frame)
    assert docs["text"].to_list() == ["body"]
    assert report.text_col == "text"
    assert docs["meta"].to_list() == ['{"title":"t"}']


def test_only_string_column_is_inferred(tmp_path):
    path = write(tmp_path, "c.csv", b"n,body,score\n1,hello,0.5\n")
    docs, report = read_documents(path)
    assert report.text_col == "body"
    assert docs["text"].to_list() == ["hello"]
    assert docs["meta"].to_list() == ['{"n":1,"score":0.5}']


def test_explicit_text_column(tmp_path):
    path = write(tmp_path, "c.jsonl", b'{"text": "short", "body": "long body"}\n')
    docs, report = read_documents(path, text_col="body")
    assert docs["text"].to_list() == ["long body"]
    assert docs["meta"].to_list() == ['{"text":"short"}']
    assert report.text_col == "body"


def test_numeric_looking_csv_text_and_ids_stay_strings(tmp_path):
    path = write(tmp_path, "c.csv", b"id,text\n007,42\n010,3.5\n")
    docs, _ = read_documents(path, id_col="id")
    assert docs["text"].to_list() == ["42", "3.5"]
    assert docs["ext_id"].to_list() == ["007", "010"]


def test_categorical_text_column():
    frame = pl.DataFrame({"text": pl.Series(["a", "b"], dtype=pl.Categorical)})
    docs, _ = documents_from_frame(frame)
    assert docs["text"].to_list() == ["a", "b"]


def test_several_string_columns_is_an_error(tmp_path):
    path = write(tmp_path, "x.csv", b"title,body\na,b\n")
    with pytest.raises(
        InputError, match=r"cannot tell which column of .*x\.csv holds the text.*--text-col"
    ):
        read_documents(path)


def test_no_string_column_is_an_error():
    with pytest.raises(
        InputError, match="no column 'text' and no string column; columns are: a, b"
    ):
        documents_from_frame(pl.DataFrame({"a": [1], "b": [2.0]}))


def test_missing_text_column(tmp_path):
    path = write(tmp_path, "x.csv", b"id,text,label\n1,a,b\n")
    message = (
        f"no column 'body' in {path}; columns are: id, text, label (choose one with --text-col)"
    )
    with pytest.raises(InputError, match=re.escape(message)):
        read_documents(path, text_col="body")


def test_non_string_text_column_names_its_dtype():
    with pytest.raises(InputError, match="column 'text' of <frame> holds Int64 values, not text"):
        documents_from_frame(pl.DataFrame({"text": [1, 2]}))


def test_non_string_jsonl_text_names_its_type(tmp_path):
    path = write(tmp_path, "x.jsonl", b'{"text": "a"}\n{"text": 5}\n')
    with pytest.raises(InputError, match="column 'text' of .* holds integer/string values"):
        read_documents(path)


# -------------------------------------------------------------------------------- ids


def test_duplicate_ids_name_first_value_and_count():
    frame = pl.DataFrame({"text": ["a", "b", "c", "d", "e"], "id": ["x", "y", "y", "x", "y"]})
    with pytest.raises(
        InputError, match="is not unique: 3 duplicate ids, first 'y'.*omit --id-col"
    ):
        documents_from_frame(frame, id_col="id")


def test_ids_of_skipped_rows_do_not_count():
    frame = pl.DataFrame({"text": ["a", "", "a", "b", None], "id": ["1", "1", "2", "3", None]})
    docs, report = documents_from_frame(frame, id_col="id")
    assert docs["ext_id"].to_list() == ["1", "3"]
    assert (report.n_empty, report.n_duplicate_text) == (2, 1)


def test_null_ids_are_an_error(tmp_path):
    path = write(tmp_path, "x.csv", b"id,text\n1,a\n,b\n,c\n")
    with pytest.raises(
        InputError,
        match=r"2 rows of .*x\.csv have no value in id column 'id' \(first at row_idx 1\)",
    ):
        read_documents(path, id_col="id")


def test_numeric_ids_become_strings(tmp_path):
    frame_docs, _ = documents_from_frame(pl.DataFrame({"text": ["a"], "n": [7]}), id_col="n")
    path = write(tmp_path, "c.jsonl", b'{"text": "a", "n": 7}\n')
    json_docs, _ = read_documents(path, id_col="n")
    assert frame_docs["ext_id"].to_list() == json_docs["ext_id"].to_list() == ["7"]


def test_missing_id_column(tmp_path):
    path = write(tmp_path, "x.txt", b"a\n")
    with pytest.raises(
        InputError,
        match=r"no column 'id' in .*x\.txt; columns are: text \(choose one with --id-col",
    ):
        read_documents(path, id_col="id")


# ------------------------------------------------------------------------------ errors


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file: .*nope.csv"):
        read_documents(tmp_path / "nope.csv")


def test_directory(tmp_path):
    with pytest.raises(InputError, match="is a directory"):
        read_documents(tmp_path)


def test_unknown_extension(tmp_path):
    path = write(tmp_path, "x.xlsx", b"data")
    with pytest.raises(
        InputError,
        match=r"unsupported file extension '\.xlsx'; supported: \.jsonl, .*\.csv.*\.txt.*\.gz",
    ):
        read_documents(path)


def test_compression_without_format(tmp_path):
    with pytest.raises(InputError, match=r"unsupported file extension \(none\)"):
        read_documents(write(tmp_path, "x.gz", gzip.compress(b"a")))


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("x.jsonl", b""),
        ("x.csv", b""),
        ("x.parquet", b""),
        ("x.jsonl", b"\n\n"),
        ("x.csv", b"text,id\n"),
        ("x.json", b"[]"),
        ("x.json", b'{"data": []}'),
        ("x.jsonl.gz", gzip.compress(b"")),
    ],
)
def test_empty_inputs(tmp_path, name, data):
    path = write(tmp_path, name, data)
    with pytest.raises(InputError, match=re.escape(f"{path} is empty: nothing to encode")):
        read_documents(path)


def test_empty_parquet(tmp_path):
    path = tmp_path / "x.parquet"
    pl.DataFrame({"text": []}, schema={"text": pl.String}).write_parquet(path)
    with pytest.raises(InputError, match="is empty: nothing to encode"):
        read_documents(path)


def test_empty_frame_and_texts():
    with pytest.raises(InputError, match="<frame> is empty"):
        documents_from_frame(pl.DataFrame({"text": []}, schema={"text": pl.String}))
    with pytest.raises(InputError, match="<texts> is empty"):
        documents_from_texts([])


def test_every_text_empty(tmp_path):
    path = write(tmp_path, "x.csv", b"text,n\n,1\n  ,2\n")
    with pytest.raises(
        InputError, match=r"every text in column 'text' of .*x\.csv is empty \(2 rows\).*--text-col"
    ):
        read_documents(path)


NON_UTF8 = {
    "x.csv": b"text\ncaf\xe9\n",
    "x.tsv": b"text\ncaf\xe9\n",
    "x.txt": b"ok\ncaf\xe9\n",
    "x.jsonl": b'{"text": "a"}\n{"text": "caf\xe9"}\n',
    "x.json": b'[{"text": "caf\xe9"}]',
    "x.csv.gz": b"text\ncaf\xe9\n",
}


@pytest.mark.parametrize("name", sorted(NON_UTF8))
def test_non_utf8(tmp_path, name):
    data = NON_UTF8[name]
    offset = data.find(b"\xe9")  # in the decompressed bytes
    path = write(tmp_path, name, gzip.compress(data) if name.endswith(".gz") else data)
    message = (
        f"{path} is not valid UTF-8 (first bad byte at offset {offset}); "
        "re-save it as UTF-8, e.g. iconv -f latin1 -t utf-8"
    )
    with pytest.raises(InputError, match=re.escape(message)):
        read_documents(path)


def test_malformed_jsonl_reports_line_number(tmp_path):
    path = write(tmp_path, "x.jsonl", b'{"text": "a"}\n{"text": "b"}\n{"text": oops}\n')
    with pytest.raises(InputError, match=r"line 3 of .*x\.jsonl is not valid JSON"):
        read_documents(path)


def test_jsonl_line_that_is_not_an_object(tmp_path):
    path = write(tmp_path, "x.jsonl", b'{"text": "a"}\n["b"]\n')
    with pytest.raises(InputError, match=r"line 2 of .*x\.jsonl is a JSON array, not an object"):
        read_documents(path)


def test_malformed_json(tmp_path):
    path = write(tmp_path, "x.json", b'[\n{"text": "a"},\n{"text" "b"}\n]')
    with pytest.raises(InputError, match=r"x\.json is not valid JSON \(line 3, column 9"):
        read_documents(path)


def test_json_with_non_object_item(tmp_path):
    path = write(tmp_path, "x.json", b'[{"text": "a"}, "b"]')
    with pytest.raises(
        InputError, match="item 1 of the records in .* is a JSON string, not an object"
    ):
        read_documents(path)


def test_json_object_with_several_record_lists(tmp_path):
    path = write(tmp_path, "x.json", b'{"train": [{"text": "a"}], "test": [{"text": "b"}]}')
    with pytest.raises(InputError, match=r"not exactly one list of records \(found: train, test\)"):
        read_documents(path)


def test_json_scalar(tmp_path):
    with pytest.raises(InputError, match="holds a JSON string; expected an array of objects"):
        read_documents(write(tmp_path, "x.json", b'"hello"'))


def test_unreadable_parquet(tmp_path):
    path = write(tmp_path, "x.parquet", b"this is not parquet")
    with pytest.raises(InputError, match=r"x\.parquet is not a readable Parquet file"):
        read_documents(path)


def test_bad_compressed_data(tmp_path):
    path = write(tmp_path, "x.csv.gz", b"not gzip at all")
    with pytest.raises(InputError, match=r"x\.csv\.gz is not valid gzip data"):
        read_documents(path)
    path = write(tmp_path, "x.csv.zst", b"not zstd at all")
    with pytest.raises(InputError, match=r"x\.csv\.zst is not valid zstd data"):
        read_documents(path)


def test_ragged_csv(tmp_path):
    path = write(tmp_path, "x.csv", b"text,n\na,1\nb,2,3\n")
    with pytest.raises(InputError, match=r"x\.csv row 3 \(the header is row 1\) has 3 fields"):
        read_documents(path)
    path = write(tmp_path, "short.csv", b"text,n\na,1\nb\nc,3\n")  # would be padded with null
    with pytest.raises(InputError, match=r"short\.csv row 3 .* has 1 fields, the header 2"):
        read_documents(path)
    path = write(tmp_path, "cut.tsv", b'text\tn\na\t1\n"quoted\nacross lines"\t2\nc')
    with pytest.raises(InputError, match=r"cut\.tsv row 4 .* fix the TSV row"):
        read_documents(path)
    ok = write(tmp_path, "ok.csv", b'text,n\n"a, with comma",1\n"two\nlines",2\n\nc,3\n')
    docs, _ = read_documents(ok)
    assert docs["text"].to_list() == ["a, with comma", "two\nlines", "c"]


def test_errors_are_one_line(tmp_path):
    path = write(tmp_path, "x.csv", b"text,n\na,1\nb,2,3\n")
    with pytest.raises(InputError) as info:
        read_documents(path)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------- documents_from_texts


def test_documents_from_texts():
    docs, report = documents_from_texts(["hello world", " ", "b", "hello world"])
    assert docs["row_idx"].to_list() == [0, 2]
    assert docs["doc_id"].to_list() == [HELLO_WORLD_ID, doc_id_for("b")]
    assert docs["ext_id"].to_list() == [None, None]
    assert docs["meta"].to_list() == ["{}", "{}"]
    assert report == ReadReport("<texts>", 4, 1, 1, "text", None)


def test_documents_from_texts_with_ids():
    docs, report = documents_from_texts(iter(["a", "b"]), ids=iter(["x", 2]))
    assert docs["ext_id"].to_list() == ["x", "2"]
    assert report.id_col == "id"


def test_documents_from_texts_rejects_bad_input():
    with pytest.raises(InputError, match="got 2 texts but 1 ids"):
        documents_from_texts(["a", "b"], ids=["x"])
    with pytest.raises(InputError, match="item 1 is a int"):
        documents_from_texts(["a", 1])


@pytest.mark.parametrize("compression", [".gz", ".zst", ".bz2"])
@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "tsv", "txt"])
def test_truncated_compressed_input_is_an_error(tmp_path, compression, fmt):
    """Half of a compressed file is refused, never read as a shorter corpus."""
    kind = {".gz": "gzip", ".zst": "zstd", ".bz2": "bzip2"}[compression]
    for n in (3, 3000):  # a small file used to be reported as "empty"
        rows = [{"id": str(i), "text": f"document number {i} with some words"} for i in range(n)]
        plain = "\n".join(r["text"] for r in rows).encode() if fmt == "txt" else encode(fmt, rows)
        whole = COMPRESS[compression](plain)
        path = write(tmp_path, f"t.{fmt}{compression}", whole[: len(whole) // 2])
        with pytest.raises(InputError, match=rf"t\.{fmt}\{compression} is not valid {kind} data"):
            read_documents(path)


# ----------------------------------------------------------- streaming and bounded memory


def test_repeats_folded_while_streaming_count_as_before(tmp_path):
    """JSONL repeats are dropped as they stream; the table and report are as if read whole:
    repeats of a blank or null text count as empty, the first occurrence keeps its row."""
    rows = [
        {"text": "a", "id": "1", "n": 1},
        {"text": "a", "id": "9", "n": 2},
        {"text": " "},
        {"text": " ", "id": "2"},
        {"text": None},
        {"text": None, "n": 3},
        {"n": 4},
        {"text": "b", "id": "3"},
        {"text": "a"},
    ]
    path = write(tmp_path, "c.jsonl.zst", COMPRESS[".zst"](encode("jsonl", rows)))
    docs, report = read_documents(path, id_col="id")
    assert docs["row_idx"].to_list() == [0, 7]
    assert docs["ext_id"].to_list() == ["1", "3"]
    assert docs["meta"].to_list() == ['{"n":1}', "{}"]
    assert report == ReadReport(str(path), 9, 5, 2, "text", "id")


def test_a_dropped_repeat_still_counts_for_the_columns(tmp_path):
    """The id column appears only on a repeat, dropped as it streams: it is still a column (the
    kept row lacks an id), as when the whole file was read."""
    path = write(tmp_path, "c.jsonl", b'{"text": "a"}\n{"text": "a", "id": "x"}\n')
    with pytest.raises(
        InputError,
        match=r"1 rows of .*c\.jsonl have no value in id column 'id' \(first at row_idx 0",
    ):
        read_documents(path, id_col="id")


def test_lines_across_read_blocks(tmp_path, monkeypatch):
    """Lines, CRLF endings, multi-byte characters, a BOM and the offset of a bad byte come out
    the same when every read is a few bytes (as they cross block boundaries in large files)."""
    import saeembed.compression
    import saeembed.inputs.lines

    data = "\ufeffcafé one\r\nnaïve ✓ two\r\ncafé one\r\n\r\nlast ✓".encode()
    names = {".txt": data, ".jsonl": encode("jsonl", [{"text": t} for t in ["é ✓", "b", "é ✓"]])}
    expected = {}
    for size in (1 << 20, 3, 1):
        monkeypatch.setattr(saeembed.inputs.lines, "_BLOCK", size)
        monkeypatch.setattr(saeembed.compression, "_ZSTD_STEP", size)
        for suffix, plain in names.items():
            for compression in ("", ".zst", ".gz"):
                raw = COMPRESS[compression](plain) if compression else plain
                path = write(tmp_path, f"c{suffix}{compression}", raw)
                got = read_documents(path)
                assert_frame_equal(got[0], expected.setdefault(suffix, got)[0])
                assert got[1].n_duplicate_text == 1
        bad = write(tmp_path, "bad.txt", "✓ fine\n".encode() * 5 + b"caf\xe9\n")
        with pytest.raises(InputError, match=r"first bad byte at offset 48\)"):
            read_documents(bad)
    assert expected[".txt"][0]["text"].to_list() == ["café one", "naïve ✓ two", "last ✓"]
    assert expected[".txt"][1] == ReadReport(str(tmp_path / "c.txt"), 5, 1, 1, "text", None)


def test_damaged_compression_is_reported_before_a_bad_line(tmp_path):
    """As when the file was read whole: a truncated archive is named, not a bad line before the
    cut (nor bad UTF-8)."""
    lines = [json.dumps({"text": f"document {i}"}) for i in range(3000)]
    lines[1] = "{oops"
    lines[2] = '{"text": "caf\xe9"}'
    for compression, kind in ((".gz", "gzip"), (".zst", "zstd"), (".bz2", "bzip2")):
        for plain in ("\n".join(lines).encode(), "\n".join(lines).encode("latin-1")):
            whole = COMPRESS[compression](plain)
            path = write(tmp_path, f"t.jsonl{compression}", whole[: len(whole) // 2])
            with pytest.raises(InputError, match=rf"is not valid {kind} data"):
                read_documents(path)
    path = write(tmp_path, "t.jsonl", "\n".join(lines).encode("latin-1"))
    with pytest.raises(InputError, match="is not valid UTF-8"):
        read_documents(path)  # bad UTF-8 anywhere comes before a bad line


def test_corrupt_deflate_data_is_an_input_error(tmp_path):
    whole = gzip.compress(b"some text\n" * 100)
    path = write(tmp_path, "x.txt.gz", whole[:10] + b"\xff" * 20 + whole[30:])
    with pytest.raises(InputError, match=r"x\.txt\.gz is not valid gzip data"):
        read_documents(path)


BOMB_LINE = b"the same sentence over and over\n"  # 32 bytes
BOMB_LINES = 12 * 2**20  # 384 MiB once decompressed


def test_a_decompression_bomb_stays_in_bounded_memory(tmp_path):
    """A .txt.gz of under a megabyte that expands to 384 MiB of one repeated line is read in a
    few hundred megabytes at most (it took 2 GB when the file was read whole): the peak RSS of a
    fresh process that reads it, interpreter and polars included, stays under 1 GB."""
    path = tmp_path / "bomb.txt.gz"
    block = BOMB_LINE * 2**15  # 1 MiB, so the test itself stays small
    with gzip.open(path, "wb", compresslevel=1) as out:
        for _ in range(BOMB_LINES // 2**15):
            out.write(block)
    assert path.stat().st_size < 4 * 2**20
    # the peak is the process's VmHWM: ru_maxrss would start from the parent's (pytest's) peak,
    # which Linux carries over across fork + exec
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from saeembed.inputs import read_documents\n"
        "docs, report = read_documents(sys.argv[1])\n"
        "status = Path('/proc/self/status').read_text().splitlines()\n"
        "peak = int(next(x for x in status if x.startswith('VmHWM')).split()[1]) * 1024\n"
        "print(docs.height, docs['text'][0], report.n_rows, report.n_duplicate_text, peak)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.returncode == 0, done.stderr
    *words, n_rows, n_repeats, peak = done.stdout.split()
    assert " ".join(words) == "1 " + BOMB_LINE.decode().strip()
    assert (int(n_rows), int(n_repeats)) == (BOMB_LINES, BOMB_LINES - 1)
    assert int(peak) < 2**30, f"peak RSS {int(peak) / 2**20:.0f} MiB"


# ------------------------------------------------------------------- inputs named by URL


def test_a_url_is_read_through_fsspec(tmp_path):
    """fsspec's in-memory file system stands in for s3:// or hf://: the same document table
    as the local file, errors that name the URL, and no copy left behind."""
    import fsspec

    data = gzip.compress(b'{"text": "first"}\n{"text": "second"}\n{"text": "first"}\n')
    local = write(tmp_path, "c.jsonl.gz", data)
    with fsspec.open("memory://bucket/c.jsonl.gz", "wb") as f:
        f.write(data)
    docs, report = read_documents("memory://bucket/c.jsonl.gz")
    expected, expected_report = read_documents(local)
    assert_frame_equal(docs, expected)
    assert report.n_duplicate_text == expected_report.n_duplicate_text == 1
    assert report.path == "memory://bucket/c.jsonl.gz"
    with pytest.raises(InputError, match=r"^no such file: memory://bucket/none\.jsonl$"):
        read_documents("memory://bucket/none.jsonl")
    with fsspec.open("memory://bucket/bad.jsonl", "wb") as f:
        f.write(b'{"text": "ok"}\n{"text": \n')
    with pytest.raises(InputError, match=r"^line 2 of memory://bucket/bad\.jsonl is not valid"):
        read_documents("memory://bucket/bad.jsonl")
    with pytest.raises(InputError, match=r"needs s3fs; install it \(pip install s3fs\)"):
        read_documents("s3://bucket/c.jsonl")
