"""Themes in the diff (`saeembed.analysis.themes`): a planted kind of document recovered exactly
on a constructed store, the null, the split's bookkeeping, the outputs, one against the rest, and
the real default model on shipped data."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from saeembed import api
from saeembed.analysis.themes import THEME_COLUMNS, diff_themes, split_halves
from saeembed.cli import main
from saeembed.errors import InputError
from saeembed.inputs import documents_from_texts
from saeembed.store import Store
from tests.fakes import ENCODER_FIELDS, write_constructed

N_SIDE = 120
PLANTED = 24  # documents of side A carrying the planted concepts 40, 41, 42


def _store(path, seed: int = 0, planted: int = PLANTED) -> tuple[Store, dict]:
    """Sides A and B of ``N_SIDE`` documents (plus a corpus C like B), each with six background
    concepts drawn from 0..29; the first ``planted`` documents of A also carry 40, 41 and 42."""
    rng = np.random.default_rng(seed)
    store = Store(path)
    encoder, _ = store.get_or_create_encoder("fp-themes", {**ENCODER_FIELDS, "d_sae": 64})
    rows, ids = [], {}
    for corpus in ("A", "B", "C"):
        docs, _ = documents_from_texts([f"{corpus} document {i}" for i in range(N_SIDE)])
        store.add_documents(corpus, docs)
        ids[corpus] = store.sql(
            "SELECT doc_id FROM documents WHERE corpus = ? ORDER BY row_idx", [corpus]
        )["doc_id"].to_list()
        for i, doc_id in enumerate(ids[corpus]):
            concepts = set(rng.choice(30, 6, replace=False).tolist())
            if corpus == "A" and i < planted:
                concepts |= {40, 41, 42}
            rows.extend((doc_id, int(f), 1.0, 0, 1) for f in sorted(concepts))
    write_constructed(store, encoder.encoder_id, [d for v in ids.values() for d in v], rows, 4)
    return store, ids


def test_a_planted_kind_of_document_is_one_theme_and_differs(tmp_path):
    store, ids = _store(tmp_path / "t.duckdb")
    with store:
        found = diff_themes(store, ids["A"], ids["B"], k=6, measure="presence", seed=0)
    table = found.table
    assert table.columns == THEME_COLUMNS and 2 <= table.height <= 6
    top = table.row(0, named=True)  # most significant first
    assert set(top["doc_ids"]) == set(ids["A"][:PLANTED])  # exactly the planted documents
    assert top["q"] < 0.05 and top["diff"] > 0 and top["n_b"] == 0
    assert {c["feature"] for c in top["concepts"][:3]} == {40, 41, 42}
    assert {e["side"] for e in top["examples"]} == {"A"}  # B has none to show
    # no other theme differs; the documents the sides share come last, shown but not tested
    assert (table["q"][1:].fill_null(1.0) >= 0.05).all()
    shared = table.row(-1, named=True)
    assert shared["found_in"] == "both" and shared["q"] is None and shared["p"] is None
    assert top["found_in"] == "A"
    assert "tested on the other half" in found.method


def test_random_halves_give_no_significant_theme(tmp_path):
    store, ids = _store(tmp_path / "null.duckdb", planted=0)
    pooled = np.array(ids["A"] + ids["B"])
    significant = 0
    with store:
        for seed in range(10):
            half = np.random.default_rng(seed).permutation(pooled)
            found = diff_themes(store, half[:N_SIDE], half[N_SIDE:], k=6, measure="presence",
                                seed=seed)  # fmt: skip
            significant += int((found.table["q"] < 0.05).sum())
    # the test half is independent of the split that formed the themes: false themes come at the
    # test's error rate (one in these ten seeds, q = 0.027), not from fitting
    assert significant <= 1


def test_no_document_is_tested_in_the_half_that_formed_its_theme(tmp_path):
    store, ids = _store(tmp_path / "split.duckdb")
    a, b = np.array(ids["A"]), np.array(ids["B"])
    discovery = split_halves(a, b, seed=3)
    assert np.isin(discovery, a).sum() == N_SIDE // 2 == np.isin(discovery, b).sum()
    with store:
        found = diff_themes(store, a, b, k=5, measure="presence", seed=3)
    assert found.n_discovery == len(discovery) and found.n_test == (N_SIDE // 2, N_SIDE // 2)
    tested = set(np.setdiff1d(np.concatenate([a, b]), discovery).tolist())
    for row in found.table.iter_rows(named=True):
        members = set(row["doc_ids"])
        # the counts tested are the members outside the discovery half, per side
        assert row["n_a"] == len(members & tested & set(a.tolist()))
        assert row["n_b"] == len(members & tested & set(b.tolist()))
    assert found.table["n_a"].sum() + found.table["n_b"].sum() == len(tested)  # all assigned
    assert found.table["size"].sum() == 2 * N_SIDE


def test_themes_refuse_what_they_cannot_do(tmp_path):
    store, ids = _store(tmp_path / "bad.duckdb")
    with store:
        with pytest.raises(InputError, match="at least 4 documents per side"):
            diff_themes(store, ids["A"][:3], ids["B"], measure="presence")
        with pytest.raises(InputError, match="binary measure"):
            diff_themes(store, ids["A"], ids["B"], measure="mean")
        with pytest.raises(InputError, match="at least 2"):
            diff_themes(store, ids["A"], ids["B"], k=1)
        with pytest.raises(InputError, match="unknown themes method"):
            diff_themes(store, ids["A"], ids["B"], method="dbscan")


def test_the_cli_and_api_give_themes_as_json_csv_html_and_one_against_the_rest(tmp_path):
    path = tmp_path / "cli.duckdb"
    store, ids = _store(path)
    store.close()
    # one against the rest: A against B and C pooled
    table = api.diff("A", ["B", "C"], db=path, by="themes", themes=6, progress=False)
    assert table.columns == THEME_COLUMNS
    lead = table.row(0, named=True)
    assert lead["test_b"] == N_SIDE and lead["n_b"] == 0 and lead["q"] < 0.05
    html = tmp_path / "themes.html"
    result = CliRunner().invoke(
        main, ["-q", "diff", "A", "B", "--db", str(path), "--by", "themes", "--themes", "6",
               "--format", "json", "--html", str(html)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    first = rows[0]
    expected = {"theme", "name", "n_a", "n_b", "share_a", "share_b", "diff", "ci_low",
                "ci_high", "p", "q", "concepts", "examples", "doc_ids"}  # fmt: skip
    assert expected <= set(first)
    assert sorted(first["doc_ids"]) == sorted(ids["A"][:PLANTED])
    page = html.read_text()
    assert '"kind": "themes"' in page or '"kind":"themes"' in page
    csv = CliRunner().invoke(
        main, ["-q", "diff", "A", "B", "--db", str(path), "--by", "themes", "--themes", "6",
               "--format", "csv"],
    )  # fmt: skip
    header = csv.output.splitlines()[0].split(",")
    assert header[:4] == ["theme", "name", "found_in", "size"] and "doc_ids" in header
    paired = CliRunner().invoke(
        main, ["diff", "A", "B", "--db", str(path), "--by", "themes", "--paired"]
    )
    assert paired.exit_code != 0 and "does not take --paired" in paired.output


@pytest.mark.slow
def test_real_model_finds_plot_summaries_planted_among_reviews(saeembed_home, tmp_path):
    """Side A: 160 review snippets and 40 plot summaries; side B: 200 other review snippets, all
    real Rotten Tomatoes text through the default reader and SAE."""
    from saeembed.data import load_dataset

    data = load_dataset("rotten-tomatoes").sample(fraction=1.0, seed=4, shuffle=True)
    reviews = data.filter(pl.col("category") != "plot")["text"].head(360).to_list()
    plots = data.filter(pl.col("category") == "plot")["text"].head(40).to_list()
    db = tmp_path / "real.duckdb"
    api.encode(reviews[:160] + plots, db, corpus="mixed", progress=False)
    api.encode(reviews[160:], db, corpus="reviews", progress=False)
    with Store(db, read_only=True) as store:
        plot_ids = set(
            store.sql("SELECT doc_id FROM documents WHERE corpus = 'mixed' AND row_idx >= 160")[
                "doc_id"
            ].to_list()
        )
    table = api.diff("mixed", "reviews", db=db, by="themes", progress=False)
    enriched = table.filter((pl.col("q") < 0.05) & (pl.col("diff") > 0))
    assert enriched.height >= 1
    best = max(enriched["doc_ids"].to_list(), key=lambda m: len(plot_ids & set(m)))
    assert len(plot_ids & set(best)) >= 0.6 * len(plot_ids)  # most plot summaries, in one theme
    assert len(plot_ids & set(best)) >= 0.6 * len(best)  # which is mostly plot summaries
