"""Chunks as units of analysis (`encode --chunk-tokens N`) on tiny real components: exact
substrings cut at token boundaries, parent ids, distinct ids for identical chunk texts,
idempotence, resumability, the one-line refusal of bad sizes, and the chunk_parents query."""

from __future__ import annotations

import json
import re

import polars as pl
import pytest
from click.testing import CliRunner

from saeembed.api import EncodingOptions, encode, open_store, run_query
from saeembed.cli import main
from saeembed.errors import InputError
from saeembed.inputs import doc_id_for, documents_from_frame
from saeembed.inputs.chunks import chunk_documents, chunk_id_for, chunk_spans
from saeembed.reader import load_reader
from tests.fakes import encode_until_killed

N = 4
TEXTS = [
    "the movie was great . i love this film and the acting was very good",
    "the movie was great the movie was great",  # two identical chunks in one parent
    "it fell",  # shorter than N: one chunk
    "the news was not good but the market was fun , stocks rallied on tuesday !",
    "the movie was great . awful plot , boring acting",  # shares its first chunk with the above
]
FRAME = pl.DataFrame(
    {"text": TEXTS, "id": [f"d{i}" for i in range(len(TEXTS))], "year": list(range(len(TEXTS)))}
)


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    return load_reader(str(tiny_model), device="cpu").tokenizer


def own_ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def encode_kwargs(tiny_model, tiny_sae, **extra) -> dict:
    return dict(
        corpus="c", encoding=EncodingOptions(model=str(tiny_model), sae=str(tiny_sae), **extra),
        id_col="id", chunk_tokens=N, progress=False,
    )  # fmt: skip


def test_chunk_spans_cut_at_token_boundaries_without_overlap():
    words = [(0, 3), (4, 9), (10, 13), (14, 19), (20, 21)]  # "the movie was great ."
    assert chunk_spans(words, 2) == [(0, 9), (10, 19), (20, 21)]
    assert chunk_spans(words, 5) == chunk_spans(words, 50) == [(0, 21)]
    # byte-level pieces of one character share its span: a chunk stops where the next starts
    pieces = [(0, 2), (2, 4), (3, 4), (3, 4), (4, 5)]
    assert chunk_spans(pieces, 2) == [(0, 3), (3, 4), (4, 5)]
    assert chunk_spans(pieces, 1) == [(0, 2), (2, 3), (3, 4), (4, 5)]  # (3, 3) dropped: empty


def test_chunks_are_exact_substrings_covering_the_tokens_in_order(tokenizer):
    docs, _ = documents_from_frame(FRAME, id_col="id")
    chunks = chunk_documents(docs, tokenizer, N)
    assert chunks.columns == [
        "row_idx", "doc_id", "ext_id", "text", "meta", "parent_id", "chunk_idx",
    ]  # fmt: skip
    for parent in docs.iter_rows(named=True):
        mine = chunks.filter(pl.col("parent_id") == parent["doc_id"])
        assert parent["doc_id"] == doc_id_for(parent["text"])
        assert mine["chunk_idx"].to_list() == list(range(mine.height))
        assert set(mine["ext_id"]) == {parent["ext_id"]} and set(mine["meta"]) == {parent["meta"]}
        assert set(mine["row_idx"]) == {parent["row_idx"]}
        position, tokens = 0, []
        for text in mine["text"]:
            found = parent["text"].find(text, position)
            assert found >= position and text.strip() == text  # in order, cut at tokens
            position = found + len(text)
            tokens.append(own_ids(tokenizer, text))
        # re-tokenised alone, each chunk gives exactly its window (a word-level tokenizer never
        # merges across a cut): N tokens each, the last one N or fewer
        assert sum(tokens, []) == own_ids(tokenizer, parent["text"])
        assert all(len(t) == N for t in tokens[:-1]) and 1 <= len(tokens[-1]) <= N
    short = chunks.filter(pl.col("parent_id") == doc_id_for("it fell"))
    assert short.select("text", "chunk_idx").rows() == [("it fell", 0)]


def test_identical_chunk_texts_get_distinct_ids(tokenizer):
    docs, _ = documents_from_frame(FRAME, id_col="id")
    chunks = chunk_documents(docs, tokenizer, N)
    same = chunks.filter(pl.col("text") == "the movie was great")
    assert same.height == 4 and same["doc_id"].n_unique() == 4
    assert chunks["doc_id"].n_unique() == chunks.height
    row = same.row(0, named=True)
    assert row["doc_id"] == chunk_id_for(row["parent_id"], row["chunk_idx"], row["text"])
    assert row["doc_id"] != doc_id_for(row["text"])


def test_encode_stores_chunks_as_documents_and_twice_adds_nothing(tmp_path, tiny_model, tiny_sae):
    db = tmp_path / "s.duckdb"
    first = encode(FRAME, db, **encode_kwargs(tiny_model, tiny_sae))
    assert "new chunks of up to 4 tokens (from 5 documents)" in first.summary()
    encode(["the movie was great"], db, corpus="whole", progress=False, encoding=EncodingOptions(model=str(tiny_model), sae=str(tiny_sae)))  # fmt: skip
    with open_store(db) as store:
        stored = store.sql(
            "SELECT d.doc_id, d.parent_id, d.chunk_idx, d.ext_id, d.text, d.meta, e.n_tokens "
            "FROM documents d JOIN encoded_documents e USING (doc_id) WHERE d.corpus = 'c' "
            "ORDER BY d.row_idx, d.chunk_idx"
        )
        whole = store.sql("SELECT parent_id, chunk_idx FROM documents WHERE corpus = 'whole'")
    assert first.n_new_documents == first.encoding.n_encoded == stored.height
    assert stored["doc_id"].n_unique() == stored.height
    assert stored.filter(pl.col("text") == "the movie was great").height == 4
    assert set(stored["parent_id"]) == {doc_id_for(t) for t in TEXTS}
    assert whole.rows() == [(None, None)]  # not chunked: NULL in both columns
    for _, group in stored.group_by("parent_id", maintain_order=True):
        tokens = group["n_tokens"].to_list()
        assert all(n == N for n in tokens[:-1]) and 1 <= tokens[-1] <= N
        assert group["chunk_idx"].to_list() == list(range(group.height))
    first_row = stored.row(0, named=True)
    assert first_row["ext_id"] == "d0" and json.loads(first_row["meta"]) == {"year": 0}

    again = encode(FRAME, db, **encode_kwargs(tiny_model, tiny_sae))
    assert again.n_new_documents == 0 and again.encoding.n_encoded == 0
    with open_store(db) as store:
        assert store.count_documents("c") == stored.height


def test_interrupted_chunked_encode_stores_each_chunk_once(tmp_path, tiny_model, tiny_sae):
    reference_db, db = tmp_path / "ref.duckdb", tmp_path / "s.duckdb"
    kwargs = encode_kwargs(tiny_model, tiny_sae, batch_tokens=8)
    encode(FRAME, reference_db, **kwargs)

    encode_until_killed(FRAME, db, **kwargs)
    with open_store(db) as store:
        n_chunks = store.count_documents("c")
        partial = store.sql("SELECT count(*) AS n FROM encoded_documents")["n"][0]
    assert 0 < partial < n_chunks
    resumed = encode(FRAME, db, **kwargs)
    assert resumed.n_new_documents == 0 and resumed.encoding.n_encoded == n_chunks - partial
    query = (
        "SELECT doc_id, feature, value, n_tokens, peak_start, peak_end FROM activations "
        "ORDER BY doc_id, feature"
    )
    with open_store(db) as store, open_store(reference_db) as reference:
        assert store.sql(
            "SELECT count(*) AS n, count(DISTINCT doc_id) AS d FROM encoded_documents"
        ).row(0) == (n_chunks, n_chunks)
        assert store.sql(query).equals(reference.sql(query))


def test_chunk_parents_query(tmp_path, tiny_model, tiny_sae):
    db = tmp_path / "s.duckdb"
    encode(FRAME, db, **encode_kwargs(tiny_model, tiny_sae))
    with open_store(db) as store:
        feature = store.sql(
            "SELECT feature FROM activations GROUP BY feature ORDER BY count(*) DESC LIMIT 1"
        )["feature"][0]
        want = store.sql(
            """
            SELECT d.parent_id, count(*) AS n_chunks, count(a.feature) AS active_chunks
            FROM documents d LEFT JOIN activations a ON a.doc_id = d.doc_id AND a.feature = $f
            GROUP BY d.parent_id ORDER BY d.parent_id
            """,
            {"f": feature},
        )
        got = run_query(store, "chunk_parents", feature=feature)
    assert got.height == len(TEXTS)
    assert got["active_chunks"].to_list() == sorted(got["active_chunks"], reverse=True)
    assert got.select("parent_id", "n_chunks", "active_chunks").sort("parent_id").equals(want)
    assert (got["encoded_chunks"] == got["n_chunks"]).all()
    assert got["share"].to_list() == pytest.approx(
        (got["active_chunks"] / got["n_chunks"]).to_list()
    )
    assert set(got["ext_id"]) == set(FRAME["id"])


@pytest.mark.parametrize("bad", [0, -3, 1.5, True])
def test_bad_chunk_sizes_are_refused_before_anything_is_written(tmp_path, bad):
    db = tmp_path / "s.duckdb"
    with pytest.raises(InputError, match="--chunk-tokens must be a positive number"):
        encode(["it fell"], db, corpus="c", chunk_tokens=bad, progress=False)
    assert not db.exists()


def test_chunks_longer_than_max_tokens_are_refused(tmp_path):
    db = tmp_path / "s.duckdb"
    with pytest.raises(InputError, match="exceeds --max-tokens 8"):
        encode(
            ["it fell"],
            db,
            corpus="c",
            chunk_tokens=9,
            progress=False,
            encoding=EncodingOptions(max_tokens=8),
        )
    assert not db.exists()


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def corpus_file(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text(
        "".join(json.dumps({"text": t, "id": f"d{i}"}) + "\n" for i, t in enumerate(TEXTS))
    )
    return path


def test_cli_chunk_tokens(tmp_path, corpus_file, tiny_model, tiny_sae):
    db = tmp_path / "s.duckdb"
    common = ("--db", db, "--id-col", "id", "--model", tiny_model, "--sae", tiny_sae)
    result = run("encode", corpus_file, *common, "--chunk-tokens", 0)
    assert result.exit_code == 1
    error = result.stderr.strip()
    assert error.startswith("Error: ") and "\n" not in error, error
    assert re.search(r"--chunk-tokens must be a positive number of tokens, got 0", error)
    assert not db.exists()

    result = run("-q", "encode", corpus_file, *common, "--chunk-tokens", N)
    assert result.exit_code == 0, result.output + result.stderr
    out = run(
        "sql", db, "SELECT count(*) AS n, count(DISTINCT parent_id) AS parents, "
        "max(chunk_idx) AS last FROM documents", "--format", "json",
    ).stdout  # fmt: skip
    assert json.loads(out) == [{"n": 14, "parents": 5, "last": 3}]
    out = run("sql", db, "chunk_parents", "-p", "feature", 0, "--format", "json").stdout
    assert sorted(r["n_chunks"] for r in json.loads(out)) == [1, 2, 3, 4, 4]
