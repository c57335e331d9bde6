"""`diff --where`: a diff of the documents of each side passing a filter, on exactly known counts
(the table, the examples, the themes), the files encoded first and the filter then read on the
store opened read-only, and the refusals."""

from __future__ import annotations

import json

import polars as pl
import pytest
from click.testing import CliRunner

import saeembed
from saeembed import DiffSettings
from saeembed.cli import main
from saeembed.errors import InputError
from saeembed.store import Store
from tests.count_store import build_count_store
from tests.test_diff import COUNTS, SIZES

# feature 4 is active in the first 10 documents of A and the first 15 of B: filtering them out
# leaves A's documents 10..39 (30) and B's 15..59 (45); feature 1 (A 0..23, B 0..5) is then in
# 14 of A's and none of B's, feature 3 (A 0..3, B 0..41) in none of A's and 27 of B's
LATER = "feature:4 = 0"


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "c.duckdb"
    build_count_store(path, SIZES, COUNTS).close()
    return path


def _diff(a, b, db, **settings):
    return saeembed.diff(a, b, db=db, settings=DiffSettings(**settings), progress=False)


def test_a_filtered_diff_counts_only_the_documents_passing_it(db):
    result = _diff("A", "B", db, where=LATER, min_support=1, examples=2)
    rows = {r["feature"]: r for r in result.table.iter_rows(named=True)}
    assert sorted(rows) == [1, 3]  # 2 and 4 are in no document that passes
    assert [rows[1][c] for c in ("n_a", "n_b", "size_a", "size_b")] == [14, 0, 30, 45]
    assert [rows[3][c] for c in ("n_a", "n_b", "size_a", "size_b")] == [0, 27, 30, 45]
    # the examples come from the documents kept: A's strongest kept ones are 10 and 11
    assert rows[1]["examples"] == ["«A» document 10", "«A» document 11"]
    assert rows[3]["examples"] == ["«B» document 15", "«B» document 16"]
    assert result.settings.where == LATER and result.sizes == [30, 45]
    # unfiltered, the same store gives the whole corpora (the kept counts' fast path)
    whole = _diff("A", "B", db, min_support=1).table.filter(feature=1).row(0, named=True)
    assert (whole["n_a"], whole["size_a"]) == (24, 40)


def test_a_filter_on_metadata_and_one_against_the_rest(db):
    with Store(db) as store:  # the documents' ext_id is their row number
        store.con.execute("UPDATE documents SET meta = json_object('n', ext_id)")
    table = _diff("A", ["B", "C"], db, where="CAST(meta.n AS INTEGER) < 20", min_support=1).table
    three = table.filter(feature=3).row(0, named=True)  # A 0..3; B 0..19 and C 0..9 of 20 + 20
    assert (three["n_a"], three["size_a"], three["n_b"], three["size_b"]) == (4, 20, 30, 40)


def test_themes_of_a_filtered_diff_lose_what_the_filter_drops(tmp_path):
    from tests.test_themes import N_SIDE, PLANTED, _store

    path = tmp_path / "t.duckdb"
    _store(path)[0].close()
    planted = _diff("A", "B", path, by="themes", themes=6).table
    assert planted.filter(pl.col("q") < 0.05).height >= 1
    result = _diff("A", "B", path, by="themes", themes=6, where="feature:40 = 0")
    table = result.table
    assert table.filter(pl.col("q") < 0.05).height == 0  # the planted documents are gone
    kept = {d for members in table["doc_ids"] for d in members}
    assert len(kept) == (N_SIDE - PLANTED) + N_SIDE and result.settings.where == "feature:40 = 0"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"where": "feature:4 = 0", "paired": True}, "would break the pairs of --paired"),
        ({"where": "  "}, "--where is empty"),
        ({"where": "feature:999 > 0"}, "feature:999 does not exist"),
        ({"where": "nonsense ((("}, "cannot use --where"),
        ({"where": "1 = 1; DELETE FROM documents"}, "cannot use --where"),
        ({"where": "feature:1 > 0 AND feature:3 = 0"}, "side B has no document passing --where"),
    ],
)
def test_unusable_filters_are_refused_and_the_store_is_untouched(db, options, message):
    with pytest.raises(InputError, match=message):
        _diff("A", "B", db, min_support=1, **options)
    with Store(db, read_only=True) as store:
        assert store.sql("SELECT count(*) AS n FROM documents")["n"][0] == sum(SIZES.values())


def test_files_are_encoded_first_then_filtered_and_the_report_says_so(
    tmp_path, tiny_model, tiny_sae
):
    for name, word in (("a", "film"), ("b", "soup")):
        with open(tmp_path / f"{name}.jsonl", "w") as out:
            for i in range(16):
                lang = "en" if i % 4 else "fr"
                out.write(json.dumps({"text": f"the {word} number {i} was fine", "lang": lang}))
                out.write("\n")
    html = tmp_path / "report.html"
    result = CliRunner().invoke(
        main,
        ["diff", str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl"), "--db",
         str(tmp_path / "s.duckdb"), "--model", str(tiny_model), "--sae", str(tiny_sae),
         "--min-support", "1", "--where", "meta.lang = 'en'", "--format", "json",
         "--html", str(html)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert rows and {(r["size_a"], r["size_b"]) for r in rows} == {(12, 12)}  # 4 of 16 are fr
    assert "(only documents where meta.lang = 'en')" in result.stderr
    page = html.read_text()
    assert "--where" in page and "only documents where" in page
    with Store(tmp_path / "s.duckdb", read_only=True) as store:
        assert store.sql("SELECT count(*) AS n FROM documents")["n"][0] == 32  # all encoded
