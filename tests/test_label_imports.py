"""Tests for saeembed.labels.published: Neuronpedia, Goodfire and generic label files, gzip,
de-duplication by score, format detection and the one-line errors."""

from __future__ import annotations

import gzip
import json
import re
import sqlite3
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from saeembed.errors import InputError
from saeembed.labels.published import LABEL_COLUMNS, LABEL_SCHEMA, check_fits, read_label_file


def expected(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=LABEL_SCHEMA, orient="row")


def write_json(path, value) -> str:
    path.write_text(json.dumps(value))
    return str(path)


def write_jsonl(path, records) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# --- Neuronpedia ---------------------------------------------------------------------------------


def np_explanation(index, description, *, layer="7-res-jb", model="gpt-4o-mini", **extra):
    """One object of a Neuronpedia explanation export (fields as in its ``Explanation`` table)."""
    return {
        "id": f"cm{index}x{len(description)}",
        "modelId": "gpt2-small",
        "layer": layer,
        "index": str(index),
        "description": description,
        "explanationModelName": model,
        "typeName": "oai_token-act-pair",
        **extra,
    }


NP_EXPORT = [
    np_explanation(12, " references to the Bible"),
    np_explanation(3, "the word 'not'", model=None),
    np_explanation(0, "capitalised names"),
]
NP_EXPECTED = expected(
    [
        (0, "capitalised names", None, "neuronpedia:gpt-4o-mini", None),
        (3, "the word 'not'", None, "neuronpedia:oai_token-act-pair", None),
        (12, "references to the Bible", None, "neuronpedia:gpt-4o-mini", None),
    ]
)


def test_neuronpedia_json_export(tmp_path):
    frame = read_label_file(write_json(tmp_path / "explanations.json", NP_EXPORT))
    assert frame.columns == list(LABEL_COLUMNS)
    assert frame.schema == pl.Schema(LABEL_SCHEMA)
    assert_frame_equal(frame, NP_EXPECTED)


def test_neuronpedia_s3_batch_is_gzipped_jsonl(tmp_path):
    # The bulk dumps add authorId, embedding and umap_* fields to each explanation.
    extra = {"authorId": "clsxqq2xd0000vvp2k5itlhqj", "embedding": None, "umap_x": 0.0}
    lines = "".join(json.dumps({**e, **extra}) + "\n" for e in NP_EXPORT)
    path = tmp_path / "batch-0.jsonl.gz"
    path.write_bytes(gzip.compress(lines.encode()))
    assert_frame_equal(read_label_file(path), NP_EXPECTED)


def test_neuronpedia_explanations_wrapper_and_gzip_without_suffix(tmp_path):
    path = tmp_path / "export.bin"
    path.write_bytes(gzip.compress(json.dumps({"explanations": NP_EXPORT}).encode()))
    assert_frame_equal(read_label_file(path), NP_EXPECTED)


def test_neuronpedia_keeps_best_scored_explanation(tmp_path):
    records = [
        np_explanation(5, "unscored first"),
        np_explanation(5, "scored low", scores=[{"value": 0.2}]),
        np_explanation(5, "scored high", model="claude-3-5-haiku", scores=[{"value": 0.7}]),
        np_explanation(5, "tied with the high one", scores=[{"value": 0.7}]),
        np_explanation(6, "first of two unscored"),
        np_explanation(6, "second of two unscored"),
        np_explanation(7, "score field", score=0.4),
        np_explanation(7, "scoreV2 field", scoreV2=0.5, scoreV1=0.9),
    ]
    frame = read_label_file(write_json(tmp_path / "e.json", records))
    assert_frame_equal(
        frame,
        expected(
            [
                (5, "scored high", None, "neuronpedia:claude-3-5-haiku", 0.7),
                (6, "first of two unscored", None, "neuronpedia:gpt-4o-mini", None),
                (7, "scoreV2 field", None, "neuronpedia:gpt-4o-mini", 0.5),
            ]
        ),
    )


def test_neuronpedia_per_feature_objects(tmp_path):
    # Shape of GET /api/feature/<model>/<sae>/<index>: explanations carry no index of their own.
    feature = {
        "modelId": "gemma-2-2b",
        "layer": "20-gemmascope-res-16k",
        "index": "1234",
        "maxActApprox": 41.5,
        "activations": [],
        "explanations": [
            {
                "id": "a",
                "description": "legal contracts",
                "explanationModelName": "gpt-4o-mini",
                "typeName": "oai_token-act-pair",
                "scores": [
                    {
                        "value": 0.12,
                        "explanationScoreTypeName": "recall_alt",
                        "explanationScoreModelName": "gpt-4o-mini",
                    },
                    {"value": 0.31, "explanationScoreTypeName": "eleuther_fuzz"},
                ],
            },
            {
                "id": "b",
                "description": "contract clauses",
                "explanationModelName": "claude-3-5-haiku",
                "scores": [{"value": 0.25}],
            },
        ],
    }
    no_explanations = {**feature, "index": "1235", "explanations": []}
    other = {**feature, "index": 7, "explanations": [{"description": "dates", "typeName": "np"}]}
    path = write_jsonl(tmp_path / "features.jsonl", [feature, no_explanations, other])
    assert_frame_equal(
        read_label_file(path),
        expected(
            [
                (7, "dates", None, "neuronpedia:np", None),
                (1234, "legal contracts", None, "neuronpedia:gpt-4o-mini", 0.31),
            ]
        ),
    )


def test_neuronpedia_export_saved_as_csv(tmp_path):
    # The SAELens tutorial loads the export into a DataFrame; saved as CSV it must still read.
    path = tmp_path / "explanations.csv"
    pl.DataFrame(NP_EXPORT).write_csv(path)
    assert_frame_equal(read_label_file(path), NP_EXPECTED)
    assert_frame_equal(read_label_file(path, format="neuronpedia"), NP_EXPECTED)


MIXED = [
    np_explanation(1, "six", layer="6-res-jb"),
    np_explanation(1, "seven", layer="7-res-jb"),
    np_explanation(2, "seven two", layer="7-res-jb"),
]


def test_neuronpedia_mixed_saes_need_sae_id(tmp_path):
    path = write_json(tmp_path / "mixed.json", MIXED)
    with pytest.raises(InputError) as excinfo:
        read_label_file(path)
    message = one_line_error(excinfo)
    assert "mixes explanations of 2 SAEs" in message
    assert "gpt2-small/6-res-jb, gpt2-small/7-res-jb" in message
    assert "sae_id" in message

    frame = read_label_file(path, sae_id="7-res-jb")
    assert frame["label"].to_list() == ["seven", "seven two"]
    # SAELens's neuronpedia_id form, <modelId>/<layer>, works too.
    frame = read_label_file(path, sae_id="gpt2-small/6-res-jb")
    assert frame.select("feature", "label").rows() == [(1, "six")]


def test_neuronpedia_unknown_sae_id_lists_the_saes(tmp_path):
    path = write_json(tmp_path / "mixed.json", MIXED)
    with pytest.raises(InputError, match=r"no explanations for SAE '8-res-jb'.*6-res-jb"):
        read_label_file(path, sae_id="8-res-jb")


def test_sae_id_only_applies_to_neuronpedia(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("feature,label\n0,a\n")
    with pytest.raises(InputError, match="sae_id only selects an SAE in a Neuronpedia export"):
        read_label_file(path, sae_id="7-res-jb")


def test_single_sae_with_matching_sae_id(tmp_path):
    path = write_json(tmp_path / "e.json", NP_EXPORT)
    assert_frame_equal(read_label_file(path, sae_id="7-res-jb"), NP_EXPECTED)


# --- Goodfire ------------------------------------------------------------------------------------


def test_goodfire_sdk_features(tmp_path):
    # Feature.json() of the Ember SDK: uuid, label, index_in_sae.
    features = [
        {
            "uuid": "a16920eb459c4862",
            "label": "The assistant should roleplay as a pirate",
            "index_in_sae": 33234,
        },
        {"uuid": "0b1c", "label": "Formal letter openings", "index_in_sae": 17},
    ]
    frame = read_label_file(write_json(tmp_path / "features.json", features))
    assert_frame_equal(
        frame,
        expected(
            [
                (17, "Formal letter openings", None, "goodfire", None),
                (33234, "The assistant should roleplay as a pirate", None, "goodfire", None),
            ]
        ),
    )


def test_goodfire_api_response_and_variant_edits(tmp_path):
    response = {
        "features": [
            {
                "id": "c0ffee00-0000-0000-0000-000000000001",
                "label": "Pirate speech",
                "index_in_sae": 9,
                "relevance": 0.83,
            },
        ]
    }
    variant = {
        "base_model": "meta-llama/Llama-3.3-70B-Instruct",
        "edits": [
            {
                "feature_id": "a169",
                "feature_label": "Pirate speech",
                "index_in_sae": 9,
                "value": 0.9,
            },
        ],
        "scopes": [],
    }
    want = expected([(9, "Pirate speech", None, "goodfire", None)])
    assert_frame_equal(read_label_file(write_json(tmp_path / "r.json", response)), want)
    assert_frame_equal(read_label_file(write_json(tmp_path / "v.json", variant)), want)


def make_autointerp_db(path, rows) -> str:
    """The shape of Goodfire's published autointerp.db (DeepSeek-R1 SAEs)."""
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE autointerp (feature_id INTEGER, label TEXT, seqs TEXT, indices TEXT, "
        "quality REAL, interestingness REAL, model_name TEXT, prompt_version TEXT)"
    )
    conn.executemany(
        "INSERT INTO autointerp VALUES (?, ?, '[]', '[]', ?, 0.6, 'claude-3-7-sonnet-latest', "
        "'v0-dev')",
        rows,
    )
    conn.commit()
    conn.close()
    return str(path)


AUTOINTERP_ROWS = [
    (1, "Sorting collections and processing sorted data", 0.8),
    (0, "Cycles in graphs and algorithms", 0.9),
    ("3", "Competitive programming input specification", "0.5"),  # text, as sqlite may hold it
]
AUTOINTERP_EXPECTED = expected(
    [
        (0, "Cycles in graphs and algorithms", None, "goodfire", 0.9),
        (1, "Sorting collections and processing sorted data", None, "goodfire", 0.8),
        (3, "Competitive programming input specification", None, "goodfire", 0.5),
    ]
)


def test_goodfire_autointerp_sqlite(tmp_path):
    path = make_autointerp_db(tmp_path / "autointerp.db", AUTOINTERP_ROWS)
    assert_frame_equal(read_label_file(path), AUTOINTERP_EXPECTED)
    assert_frame_equal(read_label_file(path, format="goodfire"), AUTOINTERP_EXPECTED)


def test_goodfire_autointerp_sqlite_gzipped(tmp_path):
    plain = make_autointerp_db(tmp_path / "autointerp.db", AUTOINTERP_ROWS)
    path = tmp_path / "autointerp.db.gz"
    path.write_bytes(gzip.compress(Path(plain).read_bytes()))
    assert_frame_equal(read_label_file(path), AUTOINTERP_EXPECTED)


def test_goodfire_autointerp_exported_as_csv(tmp_path):
    path = tmp_path / "autointerp.csv"
    path.write_text(
        "feature_id,label,quality,interestingness,model_name\n"
        "4,Problem-solving breakthrough confirmation,0.7,0.5,claude-3-7-sonnet-latest\n"
    )
    assert_frame_equal(
        read_label_file(path),
        expected([(4, "Problem-solving breakthrough confirmation", None, "goodfire", 0.7)]),
    )


# --- generic tables ------------------------------------------------------------------------------

TABLE_EXPECTED = expected(
    [
        (0, "dogs", "mentions of dogs, puppies", "table", 0.9),
        (2, "legal text", None, "table", None),
        (10, "code, python", "Python source", "table", 0.25),
    ]
)


def test_table_csv(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text(
        "latent,label,explanation,score\n"
        '10,"code, python",Python source,0.25\n'
        '0,dogs,"mentions of dogs, puppies",0.9\n'
        "2,legal text,,\n"
        "5,,unlabelled rows are dropped,1.0\n"
    )
    assert_frame_equal(read_label_file(path), TABLE_EXPECTED)
    assert_frame_equal(read_label_file(path, format="table"), TABLE_EXPECTED)


def test_table_tsv_gz_with_capitalised_columns(tmp_path):
    text = (
        "Feature\tLabel\tDescription\tScore\n"
        "10\tcode, python\tPython source\t0.25\n"
        "0\tdogs\tmentions of dogs, puppies\t0.9\n"
        "2\tlegal text\t\t\n"
    )
    path = tmp_path / "labels.tsv.gz"
    path.write_bytes(gzip.compress(text.encode()))
    assert_frame_equal(read_label_file(path), TABLE_EXPECTED)


def test_table_json_jsonl_and_parquet(tmp_path):
    records = [
        {"feature_id": 10, "label": "code, python", "description": "Python source", "score": 0.25},
        {
            "feature_id": 0,
            "label": "dogs",
            "description": "mentions of dogs, puppies",
            "score": 0.9,
        },
        {"feature_id": 2, "label": "legal text", "description": None, "score": None},
    ]
    assert_frame_equal(read_label_file(write_json(tmp_path / "l.json", records)), TABLE_EXPECTED)
    assert_frame_equal(read_label_file(write_jsonl(tmp_path / "l.jsonl", records)), TABLE_EXPECTED)
    parquet = tmp_path / "l.parquet"
    pl.DataFrame(records).write_parquet(parquet)
    assert_frame_equal(read_label_file(parquet), TABLE_EXPECTED)


def test_table_description_only_is_the_label(tmp_path):
    path = tmp_path / "l.csv"
    path.write_text("index,description\n1,a description\n0,another\n")
    assert_frame_equal(
        read_label_file(path),
        expected([(0, "another", None, "table", None), (1, "a description", None, "table", None)]),
    )


def test_table_index_to_label_mapping(tmp_path):
    path = write_json(tmp_path / "np_12-res-16k.json", {"7": "loops", "2": "sorting"})
    assert_frame_equal(
        read_label_file(path),
        expected([(2, "sorting", None, "table", None), (7, "loops", None, "table", None)]),
    )


def test_table_dedup_by_score(tmp_path):
    path = tmp_path / "l.csv"
    path.write_text("id,label,score\n1,low,0.1\n1,unscored,\n1,high,0.8\n1,tie,0.8\n0,x,\n")
    assert read_label_file(path).select("feature", "label", "label_score").rows() == [
        (0, "x", None),
        (1, "high", 0.8),
    ]


def test_own_output_reads_back_unchanged(tmp_path):
    frame = read_label_file(write_json(tmp_path / "e.json", NP_EXPORT))
    path = tmp_path / "labels.parquet"
    frame.write_parquet(path)
    assert_frame_equal(read_label_file(path), frame)
    csv = tmp_path / "labels.csv"
    frame.write_csv(csv)
    assert_frame_equal(read_label_file(csv), frame)


def test_source_overrides_label_source(tmp_path):
    frame = read_label_file(write_json(tmp_path / "e.json", NP_EXPORT), source="np-2024")
    assert frame["label_source"].to_list() == ["np-2024"] * 3


def test_whole_number_floats_are_indices(tmp_path):
    path = tmp_path / "l.csv"
    path.write_text("feature,label\n3.0,three\n")
    assert read_label_file(path)["feature"].to_list() == [3]


# --- errors --------------------------------------------------------------------------------------


def test_unknown_format(tmp_path):
    path = write_json(tmp_path / "e.json", NP_EXPORT)
    with pytest.raises(InputError) as excinfo:
        read_label_file(path, format="anthropic")
    assert "unknown label format 'anthropic'; use one of auto, neuronpedia, goodfire, table" in (
        one_line_error(excinfo)
    )


def test_missing_file(tmp_path):
    with pytest.raises(InputError) as excinfo:
        read_label_file(tmp_path / "nope.json")
    assert re.search(r"label file .*nope\.json not found; check the path", one_line_error(excinfo))


@pytest.mark.parametrize("content", [b"", b"  \n\n", gzip.compress(b"")])
def test_empty_file(tmp_path, content):
    path = tmp_path / "labels.csv"
    path.write_bytes(content)
    with pytest.raises(InputError) as excinfo:
        read_label_file(path)
    assert "is empty" in one_line_error(excinfo)


@pytest.mark.parametrize(
    ("name", "content"),
    [("l.csv", "feature,label\n"), ("l.csv", "feature,label\n1,\n"), ("l.json", "[]")],
)
def test_file_without_labels(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputError) as excinfo:
        read_label_file(path)
    assert "no labels" in one_line_error(excinfo)


def test_no_index_column_lists_columns(tmp_path):
    path = tmp_path / "l.csv"
    path.write_text("neuron,label,notes\n1,a,b\n")
    with pytest.raises(InputError) as excinfo:
        read_label_file(path)
    message = one_line_error(excinfo)
    assert "has no feature-index column (feature, index, latent, feature_id, id)" in message
    assert "found neuron, label, notes" in message


def test_no_label_column_lists_columns(tmp_path):
    path = write_jsonl(tmp_path / "l.jsonl", [{"feature": 1, "name": "x"}])
    with pytest.raises(InputError) as excinfo:
        read_label_file(path)
    message = one_line_error(excinfo)
    assert "has no label column (label, description, explanation)" in message
    assert "found feature, name" in message


def test_forced_format_that_does_not_fit(tmp_path):
    path = tmp_path / "l.csv"
    path.write_text("feature,label\n1,a\n")
    with pytest.raises(InputError) as excinfo:
        read_label_file(path, format="neuronpedia")
    assert "not a Neuronpedia export" in one_line_error(excinfo)
    with pytest.raises(InputError) as excinfo:
        read_label_file(path, format="goodfire")
    assert "not a Goodfire label file" in one_line_error(excinfo)
    assert "found feature, label" in str(excinfo.value)


def test_negative_index(tmp_path):
    path = write_json(tmp_path / "e.json", [np_explanation(-1, "x")])
    with pytest.raises(InputError) as excinfo:
        read_label_file(path)
    assert "row 1 has negative feature index -1; latent indices start at 0" in (
        one_line_error(excinfo)
    )


@pytest.mark.parametrize("index", ["3.5", "abc", "", None, 2.5, True])
def test_non_integer_index(tmp_path, index):
    path = write_json(
        tmp_path / "l.json", [{"feature": 0, "label": "ok"}, {"feature": index, "label": "bad"}]
    )
    with pytest.raises(InputError) as excinfo:
        read_label_file(path)
    message = one_line_error(excinfo)
    assert "row 2 has feature index" in message
    assert "not a whole number" in message


def test_non_numeric_score(tmp_path):
    path = tmp_path / "l.csv"
    path.write_text("feature,label,score\n0,a,high\n")
    with pytest.raises(InputError) as excinfo:
        read_label_file(path)
    assert "row 1 has score 'high', not a number" in one_line_error(excinfo)


def test_bad_json_line(tmp_path):
    path = tmp_path / "l.jsonl"
    path.write_text('{"feature": 0, "label": "a"}\n{"feature": 1,\n')
    with pytest.raises(InputError) as excinfo:
        read_label_file(path)
    assert "line 2 is not valid JSON" in one_line_error(excinfo)


def test_not_utf8(tmp_path):
    path = tmp_path / "l.csv"
    path.write_bytes("feature,label\n0,caf\u00e9\n".encode("latin-1"))
    with pytest.raises(InputError) as excinfo:
        read_label_file(path)
    assert "not UTF-8" in one_line_error(excinfo)


def test_sqlite_with_several_tables(tmp_path):
    path = tmp_path / "x.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE a (feature INTEGER, label TEXT)")
    conn.execute("CREATE TABLE b (x INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(InputError) as excinfo:
        read_label_file(path)
    assert "tables a, b" in one_line_error(excinfo)


# --- check_fits ----------------------------------------------------------------------------------


def test_check_fits():
    labels = expected([(0, "a", None, "table", None), (9000, "b", None, "table", None)])
    check_fits(labels, 9001)
    check_fits(expected([]), 1)
    with pytest.raises(InputError) as excinfo:
        check_fits(labels, 8192)
    assert one_line_error(excinfo) == (
        "label file has feature 9000 but the SAE has 8192 latents; is it for another SAE?"
    )
