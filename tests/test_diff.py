"""Diffing: the statistics against published and hand-computed values, and the diff table on a
constructed store whose counts are known exactly."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from saeembed.analysis import stats
from saeembed.analysis.diff import DIFF_COLUMNS, diff_corpora, paired_diff
from saeembed.analysis.examples import add_examples
from saeembed.errors import InputError, StoreError
from tests.count_store import build_count_store


def test_newcombe_interval_matches_the_published_example():
    # Newcombe (1998), Stat Med 17:873, example (a): 56/70 vs 48/80, method 10: 0.0524 to 0.3339
    low, high = stats.newcombe_interval(
        np.array([56]), np.array([70]), np.array([48]), np.array([80])
    )
    assert (round(low[0], 4), round(high[0], 4)) == (0.0524, 0.3339)


def test_wilson_interval_matches_the_published_example():
    # Newcombe (1998b), Stat Med 17:857, 81/263: Wilson score interval 0.2553 to 0.3662
    low, high = stats.wilson_interval(np.array([81]), np.array([263]))
    assert (round(low[0], 4), round(high[0], 4)) == (0.2553, 0.3662)


def test_tests_and_qvalues_by_hand():
    # z-test: 30/100 vs 15/100; pooled p = 0.225, se = sqrt(.225*.775*.02) = 0.059055
    p = stats.two_proportion_p(np.array([30]), np.array([100]), np.array([15]), np.array([100]))
    assert p[0] == pytest.approx(2 * sps.norm.sf(0.15 / np.sqrt(0.225 * 0.775 * 0.02)))
    p, test = stats.proportion_test(
        np.array([30, 1]), np.array([100, 20]), np.array([15, 4]), np.array([100, 20])
    )
    assert test.tolist() == ["z", "fisher"]
    assert p[1] == pytest.approx(sps.fisher_exact([[1, 19], [4, 16]]).pvalue)
    assert stats.bh_qvalues(np.array([0.01, 0.04, 0.03, 0.005])) == pytest.approx(
        [0.02, 0.04, 0.04, 0.02]
    )
    # McNemar exact: 10 vs 2 discordant pairs -> 2 * P(X <= 2 | 12, 1/2) = 158 / 4096
    assert stats.mcnemar_p(np.array([10]), np.array([2]))[0] == pytest.approx(158 / 4096)
    lor, low, high = stats.log_odds_ratio(
        np.array([0]), np.array([10]), np.array([5]), np.array([10])
    )
    assert lor[0] == pytest.approx(np.log(0.5 * 5.5 / (10.5 * 5.5)))
    assert low[0] < lor[0] < high[0]


SIZES = {"A": 40, "B": 60, "C": 20}
COUNTS = {
    1: {"A": 24, "B": 6},  # enriched in A
    2: {"A": 2, "B": 2},  # rare: below the support floor
    3: {"A": 4, "B": 42, "C": 10},  # enriched in B
    4: {"A": 10, "B": 15},  # equal frequency (0.25 both)
}


@pytest.fixture
def store(tmp_path):
    store = build_count_store(tmp_path / "c.duckdb", SIZES, COUNTS)
    store.con.execute(
        "INSERT INTO features (encoder_id, feature, label) VALUES (1, 1, 'one'), (1, 3, 'three')"
    ).fetchall()
    yield store
    store.close()


def test_diff_table_numbers(store):
    table = diff_corpora(store, ["A"], ["B"])
    assert table.columns == [*DIFF_COLUMNS, "same_as"]
    assert table["feature"].to_list() == [
        3,
        1,
        4,
    ]  # significant by |diff|, then the rest; 2 untested
    row = {r["feature"]: r for r in table.iter_rows(named=True)}
    one = row[1]
    assert (one["n_a"], one["n_b"], one["size_a"], one["size_b"]) == (24, 6, 40, 60)
    assert (one["freq_a"], one["freq_b"], one["diff"]) == (0.6, 0.1, pytest.approx(0.5))
    low, high = stats.newcombe_interval(
        np.array([24]), np.array([40]), np.array([6]), np.array([60])
    )
    assert (one["ci_low"], one["ci_high"]) == (pytest.approx(low[0]), pytest.approx(high[0]))
    assert one["log_odds"] == pytest.approx(np.log(24.5 * 54.5 / (16.5 * 6.5)))
    assert one["relative_risk"] == pytest.approx(6.0)
    assert one["test"] == "z" and one["label"] == "one"
    assert row[3]["diff"] == pytest.approx(0.1 - 0.7) and row[3]["label"] == "three"
    assert row[4]["diff"] == 0 and row[4]["p"] == pytest.approx(1.0) and row[4]["label"] is None
    p = np.array([row[f]["p"] for f in (1, 3, 4)])
    assert [row[f]["q"] for f in (1, 3, 4)] == pytest.approx(stats.bh_qvalues(p))


def test_support_floor_threshold_and_top(store):
    assert 2 in diff_corpora(store, ["A"], ["B"], min_support=4)["feature"].to_list()
    assert diff_corpora(store, ["A"], ["B"], top=1)["feature"].to_list() == [3]
    # values are 1 + f/10 (+ < 0.01): a threshold of 1.25 keeps features 3 and 4 only
    high = diff_corpora(store, ["A"], ["B"], threshold=1.25, min_support=1)
    assert sorted(high["feature"]) == [3, 4]


def test_one_vs_rest_pools_the_other_side(store):
    row = diff_corpora(store, ["A"], ["B", "C"]).filter(feature=3).row(0, named=True)
    assert (row["n_b"], row["size_b"]) == (52, 80)


def test_paired_diff_counts_discordant_pairs(store):
    # ext ids 0..39 pair A's and B's first 40 documents
    table = paired_diff(store, "A", "B", pair_on="id", min_support=1)
    row = {r["feature"]: r for r in table.iter_rows(named=True)}
    one = row[1]  # A has it in docs 0..23, B in 0..5: both 6, only A 18, only B 0
    assert (one["n_pairs"], one["both"], one["only_a"], one["only_b"]) == (40, 6, 18, 0)
    assert one["p"] == pytest.approx(2 * 0.5**18)
    three = row[3]  # A 0..3, B 0..41: all 40 pairs
    assert (three["both"], three["only_a"], three["only_b"]) == (4, 0, 36)
    assert three["diff"] == pytest.approx(-36 / 40)


def test_examples_come_from_the_richer_side(store):
    table = diff_corpora(store, ["A"], ["B"])
    with_examples = add_examples(store, store.resolve_encoder(None), table, ["A"], ["B"], 2)
    examples = {r["feature"]: r["examples"] for r in with_examples.iter_rows(named=True)}
    assert examples[1] == ["«A» document 0", "«A» document 1"]
    assert examples[3] == ["«B» document 0", "«B» document 1"]


def test_bad_sides(store):
    with pytest.raises(InputError, match="corpus 'A' is on both sides"):
        diff_corpora(store, ["A"], ["A", "B"])
    with pytest.raises(StoreError, match="no corpus 'Z'"):
        diff_corpora(store, ["A"], ["Z"])


def test_python_api_on_corpora_in_a_store(tmp_path):
    import saeembed
    from saeembed import DiffSettings

    db = tmp_path / "api.duckdb"
    build_count_store(db, SIZES, COUNTS).close()
    result = saeembed.diff("A", ["B", "C"], db=db, settings=DiffSettings(top=2))
    table = result.table
    assert table["feature"].to_list() == [1, 3]  # significant ones by p
    assert table["p"][0] < table["p"][1] and abs(table["diff"][0]) < abs(table["diff"][1])
    by_effect = saeembed.diff("A", ["B", "C"], db=db, settings=DiffSettings(top=2, sort="effect"))
    assert by_effect.table["feature"].to_list() == [3, 1]
    assert (result.tested, result.significant, result.a, result.b, result.encoder) == (
        3, 2, "A", ["B", "C"], "m-L1"
    )  # fmt: skip
    assert (result.test, result.sizes, result.weak, result.report) == ("proportion", [40, 80],
                                                                        None, None)  # fmt: skip
    assert result.settings == DiffSettings(top=2) and result.method is None
    paired = saeembed.diff("A", "B", db=db, settings=DiffSettings(paired=True, pair_on="id"))
    assert paired.table.filter(feature=1)["only_a"][0] == 18 and paired.test == "paired"
    with pytest.raises(saeembed.errors.SaeembedError, match="paired mode compares exactly two"):
        saeembed.diff("A", ["B", "C"], db=db, settings=DiffSettings(paired=True))


def test_settings_refuse_bad_values_and_combinations():
    from saeembed import DiffSettings

    for changes, message in [
        ({"measure": "loud"}, "unknown --measure 'loud'; use one of presence, strong"),
        ({"by": "topics"}, "unknown --by 'topics'; use one of concepts, themes"),
        ({"top": 0}, "--top must be >= 1"),
        ({"themes": 1}, "--themes must be >= 2"),
        ({"measure": "count", "test": "proportion"}, "test 'proportion' does not fit"),
        ({"measure": "count", "sort": "logodds"}, "sort 'logodds' needs document counts"),
        ({"paired": True, "by": "themes"}, "does not take --paired"),
        ({"alpha": 1.5}, "--alpha must be between 0 and 1"),
    ]:
        with pytest.raises(InputError, match=message):
            DiffSettings(**changes).check()
    assert DiffSettings().but(measure="count").test is None  # the measure's default test


def test_relative_risk_is_null_when_b_never_has_it():
    from saeembed.analysis.diff import compare_counts

    frame = compare_counts(np.array([7]), np.array([12]), np.array([0]), 40, 60)
    assert frame["relative_risk"].to_list() == [None]
    assert frame["log_odds"][0] == pytest.approx(np.log(12.5 * 60.5 / (28.5 * 0.5)))


def test_paired_diff_says_how_many_documents_had_no_partner(store, caplog):
    with caplog.at_level("WARNING", logger="saeembed.analysis.diff"):
        table = paired_diff(store, "A", "B", pair_on="id", min_support=1)
    assert table["n_pairs"][0] == 40
    (message,) = [r.getMessage() for r in caplog.records]
    assert "paired 40 of 40 documents of 'A' with 40 of 60 of 'B'" in message


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"alpha": 0.0}, "--alpha must be between 0 and 1"),
        ({"alpha": 5}, "--alpha must be between 0 and 1"),
        ({"threshold": float("nan")}, "--threshold must be a number >= 0"),
        ({"threshold": -1.0}, "--threshold must be a number >= 0"),
        ({"min_support": -3}, "--min-support must be >= 0"),
    ],
)
def test_unusable_diff_options_are_refused(store, options, message):
    with pytest.raises(InputError, match=message):
        diff_corpora(store, ["A"], ["B"], **options)
    with pytest.raises(InputError, match=message):
        paired_diff(store, "A", "B", **options)


def test_a_diff_of_two_files_reads_the_reader_and_sae_once(
    tmp_path, tiny_model, tiny_sae, monkeypatch
):
    import saeembed.reader
    from saeembed import api

    loads = []
    real = saeembed.reader.load_reader

    def counting(*args, **kwargs):
        loads.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(saeembed.reader, "load_reader", counting)
    for name, word in (("a", "film"), ("b", "soup")):
        (tmp_path / f"{name}.txt").write_text(
            "\n".join(f"the {word} number {i} was fine" for i in range(12)) + "\n"
        )
    one = api.DiffSettings(min_support=1)
    result = api.diff(tmp_path / "a.txt", tmp_path / "b.txt", db=tmp_path / "s.duckdb",
                      encoding=api.EncodingOptions(model=str(tiny_model), sae=str(tiny_sae)),
                      settings=one, progress=False)  # fmt: skip
    assert result.table.height > 0
    assert len(loads) == 1  # both inputs encoded with one loaded stack
    # the same diff again: everything is stored, nothing is loaded
    loads.clear()
    api.diff("a", "b", db=tmp_path / "s.duckdb", settings=one, progress=False)
    assert loads == []


def test_the_terminal_table_fits_and_names_the_sides(tmp_path):
    """`diff` on a 100-column terminal: no line wider than 100, one column per side named
    after it, the examples one per line under the label; a weak diff says so on stderr."""
    import polars as pl
    from click.testing import CliRunner

    from saeembed.cli import main
    from saeembed.labels.table import write_labels

    db = tmp_path / "wide.duckdb"
    with build_count_store(db, SIZES, COUNTS) as store:
        long = "a label long enough to need wrapping on a narrow terminal / and more words"
        write_labels(store, store.resolve_encoder(None),
                     pl.DataFrame({"feature": [1, 3], "label": [long, "short"]}))  # fmt: skip
    runner = CliRunner(env={"COLUMNS": "100"})
    out = runner.invoke(
        main, ["diff", "A", "B", "--db", str(db), "--format", "table", "--examples", "2"]
    )
    assert out.exit_code == 0, out.output
    lines = out.stdout.splitlines()
    assert max(len(line) for line in lines) <= 100
    header = next(line for line in lines if "feature" in line)
    assert [c.strip() for c in header.strip("│").split("┆")] == [
        "feature", "label", "A", "B", "diff (95% CI)", "q",
    ]  # fmt: skip
    assert "24 (60.0%)" in out.stdout and "6 (10.0%)" in out.stdout  # feature 1: A 24/40, B 6/60
    labels = [line.split("┆")[1].strip() for line in lines if line.count("┆") == 5]
    assert "› «A» document 0" in labels and "› «A» document 1" in labels
    assert "weak evidence" not in out.stderr
    rest = runner.invoke(main, ["diff", "A", "B", "C", "--db", str(db), "--format", "table"])
    assert "┆ A " in rest.stdout and "┆ rest " in rest.stdout  # one against the pooled rest
    # two sides that differ in nothing: feature 1 in 10 of 30 and in 12 of 30
    even = tmp_path / "even.duckdb"
    build_count_store(even, {"X": 30, "Y": 30}, {1: {"X": 10, "Y": 12}}).close()
    weak = runner.invoke(main, ["diff", "X", "Y", "--db", str(even), "--format", "json"])
    assert weak.exit_code == 0, weak.output
    warnings = [line for line in weak.stderr.splitlines() if "weak evidence" in line]
    assert warnings == [
        "saeembed: weak evidence: no concept differs at q < 0.05; nothing here is a finding; "
        "more documents per side can show smaller differences"
    ]
