"""Themes in the diff (`saeembed.analysis.themes`): a planted kind of document recovered exactly
on a constructed store, the null, the split's bookkeeping, the outputs, one against the rest, and
the real default model on shipped data."""

from __future__ import annotations

import json
import re

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
TOPIC = 30  # documents of side A carrying four of the topic concepts 300..305


def _add_corpus(store: Store, corpus: str, n: int) -> list[int]:
    """``n`` placeholder documents in ``corpus``; their ids in row order."""
    docs, _ = documents_from_texts([f"{corpus} document {i}" for i in range(n)])
    store.add_documents(corpus, docs)
    return store.sql("SELECT doc_id FROM documents WHERE corpus = ? ORDER BY row_idx", [corpus])[
        "doc_id"
    ].to_list()


def _store(path, seed: int = 0, planted: int = PLANTED) -> tuple[Store, dict]:
    """Sides A and B of ``N_SIDE`` documents (plus a corpus C like B), each with six background
    concepts drawn from 0..29; the first ``planted`` documents of A also carry 40, 41 and 42."""
    rng = np.random.default_rng(seed)
    store = Store(path)
    encoder, _ = store.get_or_create_encoder("fp-themes", {**ENCODER_FIELDS, "d_sae": 64})
    rows, ids = [], {}
    for corpus in ("A", "B", "C"):
        ids[corpus] = _add_corpus(store, corpus, N_SIDE)
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
    # the planted kind is found both ways: as alike documents, and as the documents carrying
    # its concepts together (a rule); no other theme differs; the documents the sides share
    # come last, shown but not tested
    both_ways = table.filter(pl.col("q") < 0.05)
    assert sorted(both_ways["kind"]) == ["concepts", "region"]
    assert all(set(m) == set(ids["A"][:PLANTED]) for m in both_ways["doc_ids"])
    rule = both_ways.filter(pl.col("kind") == "concepts").row(0, named=True)
    assert rule["rule"] == "at least 2 of 3 concepts" and rule["found_in"] == "A"
    assert {c["feature"] for c in rule["concepts"]} == {40, 41, 42}
    shared = table.row(-1, named=True)
    assert shared["found_in"] == "both" and shared["q"] is None and shared["p"] is None
    assert shared["kind"] == "rest" and top["found_in"] == "A"
    assert "tested on the other half" in found.method


def _topic_store(path, seed: int = 0) -> tuple[Store, dict]:
    """Sides A and B of 200 documents, each with 40 background concepts of 0..199 and each of
    the topic concepts 300..305 at a rate of 3%; `TOPIC` documents of A also carry four of the
    six topic concepts, drawn at random: a topic each document shows by a few concepts among
    many."""
    rng = np.random.default_rng(seed)
    store = Store(path)
    encoder, _ = store.get_or_create_encoder("fp-topics", {**ENCODER_FIELDS, "d_sae": 320})
    rows, ids = [], {}
    for corpus in ("A", "B"):
        ids[corpus] = _add_corpus(store, corpus, 200)
        for i, doc_id in enumerate(ids[corpus]):
            concepts = set(rng.choice(200, 40, replace=False).tolist())
            concepts |= {300 + t for t in range(6) if rng.random() < 0.03}
            if corpus == "A" and i < TOPIC:
                concepts |= set((300 + rng.choice(6, 4, replace=False)).tolist())
            rows.extend((doc_id, int(f), 1.0, 0, 1) for f in sorted(concepts))
    write_constructed(store, encoder.encoder_id, [d for v in ids.values() for d in v], rows, 4)
    return store, ids


def test_a_topic_of_a_few_concepts_among_many_is_a_concept_theme(tmp_path):
    """The planted documents share no concept: each carries four of six, and each of the six is
    also in 3% of all documents; what marks them is carrying several together."""
    store, ids = _topic_store(tmp_path / "topic.duckdb")
    planted = set(ids["A"][:TOPIC])
    with store:
        table = diff_themes(store, ids["A"], ids["B"], measure="presence", seed=0).table
    found = table.filter((pl.col("q") < 0.05) & (pl.col("kind") == "concepts"))
    assert found.height == 1
    theme = found.row(0, named=True)
    assert theme["found_in"] == "A" and theme["diff"] > 0 and theme["n_b"] <= 1
    members = set(theme["doc_ids"])
    assert len(members & planted) >= 0.7 * TOPIC and len(members & planted) >= 0.8 * len(members)
    assert {c["feature"] for c in theme["concepts"]} <= set(range(300, 306))
    assert theme["rule"] == f"at least 2 of {len(theme['concepts'])} concepts"
    # every member carries at least two of the theme's concepts, and no other document does
    with Store(tmp_path / "topic.duckdb", read_only=True) as store:
        carried = store.sql(
            "SELECT doc_id FROM activations WHERE feature IN (SELECT unnest($1)) "
            "GROUP BY doc_id HAVING count(DISTINCT feature) >= 2",
            [[c["feature"] for c in theme["concepts"]]],
        )["doc_id"].to_list()
    assert members == set(carried)


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
    # every document is in one region theme (concept themes overlap them)
    regions = found.table.filter(pl.col("kind") != "concepts")
    assert regions["n_a"].sum() + regions["n_b"].sum() == len(tested)
    assert regions["size"].sum() == 2 * N_SIDE


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
    table = api.diff(
        "A", ["B", "C"], db=path, settings=api.DiffSettings(by="themes", themes=6), progress=False
    ).table
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
    assert header[:5] == ["theme", "name", "kind", "found_in", "size"] and "doc_ids" in header
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
    table = api.diff(
        "mixed", "reviews", db=db, settings=api.DiffSettings(by="themes"), progress=False
    ).table
    enriched = table.filter((pl.col("q") < 0.05) & (pl.col("diff") > 0))
    assert enriched.height >= 1
    best = max(enriched["doc_ids"].to_list(), key=lambda m: len(plot_ids & set(m)))
    assert len(plot_ids & set(best)) >= 0.6 * len(plot_ids)  # most plot summaries, in one theme
    assert len(plot_ids & set(best)) >= 0.6 * len(best)  # which is mostly plot summaries


def test_concept_themes_find_concepts_one_side_carries_together():
    """On a matrix alone: the first 20 documents of B carry concepts 5, 6 and 7 together (and
    nothing else does); concepts 0..4 are noise on both sides."""
    import scipy.sparse as sp

    from saeembed.analysis.concept_themes import find_concept_themes

    rng = np.random.default_rng(0)
    x = (rng.random((200, 10)) < 0.3).astype(np.float32)
    x[:, 5:] = 0
    x[100:120, 5:8] = 1  # rows 100.. are B
    is_a = np.arange(200) < 100
    found = find_concept_themes(sp.csr_matrix(x), is_a)
    assert len(found) == 1
    theme = found[0]
    assert theme.side == "B" and set(theme.concepts) == {5, 6, 7} and theme.at_least == 2
    assert np.flatnonzero(theme.members(sp.csr_matrix(x))).tolist() == list(range(100, 120))
    assert theme.discovery_p < 1e-3


def test_the_terminal_view_of_themes_fits_and_names_the_sides(tmp_path):
    path = tmp_path / "view.duckdb"
    _store(path)[0].close()
    out = CliRunner(env={"COLUMNS": "110"}).invoke(
        main, ["-q", "diff", "A", "B", "--db", str(path), "--by", "themes", "--themes", "6",
               "--format", "table"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    lines = out.stdout.splitlines()
    assert max(len(line) for line in lines) <= 110
    header = next(line for line in lines if "diff (95% CI)" in line)
    assert [c.strip() for c in header.strip("│").split("┆")] == [
        "#", "theme", "A", "B", "diff (95% CI)", "q",
    ]  # fmt: skip
    text = out.stdout
    assert "alike documents, found in A" in text and "at least 2 of 3 concepts, found in A" in text
    assert re.search(r"9 \(15.0%\) +┆ 0 \(0.0%\)", text) and "not tested" in text  # the rest
    assert "› A: A document" in text


def test_the_page_shows_a_large_rule_by_its_first_concepts_and_a_count():
    from types import SimpleNamespace

    from saeembed.reports.diff_report import PAGE_CONCEPTS, themes_payload

    concepts = [{"feature": f, "label": f"c{f}"} for f in range(PAGE_CONCEPTS + 8)]
    row = {c: None for c in THEME_COLUMNS} | {"theme": 0, "concepts": concepts, "doc_ids": [1]}
    payload = themes_payload(SimpleNamespace(table=pl.DataFrame([row]), method="m"))
    (shown,) = payload["rows"]
    assert [c["feature"] for c in shown["concepts"]] == list(range(PAGE_CONCEPTS))
    assert shown["more_concepts"] == 8 and "doc_ids" not in shown


def test_names_that_do_not_fit_the_store_do_not_name_a_theme():
    from saeembed.analysis.theme_text import _named

    rows = [(1, "? host corden's"), (2, "wife / her husband"), (3, "the"), (4, "prison")]
    name, concepts = _named(iter(rows), {}, 3, 0, doubtful={1})
    assert name == "wife / her husband · prison · the"  # content first, the unfit name last
    assert [c["feature"] for c in concepts] == [2, 4, 3]
    assert _named(iter(rows), {}, 4, 0)[0] == "? host corden's · wife / her husband · prison"
