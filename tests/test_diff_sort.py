"""The orders a diff can show its concepts in (`--sort`), on a constructed store whose counts are
known exactly, and the intervals behind them against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from saeembed.analysis import stats
from saeembed.analysis.diff import compare_counts, diff_corpora, paired_diff, rank
from saeembed.analysis.measures import DIFF_SORTS
from saeembed.cli import main
from saeembed.errors import InputError
from tests.count_store import build_count_store

SIZES = {"A": 200, "B": 200}
COUNTS = {
    1: {"A": 180, "B": 140},  # common on both sides: 0.90 vs 0.70
    2: {"A": 30, "B": 2},  # rare and specific to A: 0.15 vs 0.01
    3: {"A": 100, "B": 40},  # the largest difference: 0.50 vs 0.20
    4: {"A": 196, "B": 150},  # near-universal in A, common in B: 0.98 vs 0.75
    5: {"A": 5, "B": 40},  # specific to B: 0.025 vs 0.20
    6: {"A": 20, "B": 20},  # no difference
    7: {"A": 3, "B": 2},  # below the support floor
}
# every concept but 6 differs at q < 0.05; 6 comes last in every order, 7 is not tested
EXPECTED = {
    "p": [4, 3, 5, 2, 1, 6],  # z = 6.73, 6.29, 5.54, 5.16, 5.00
    "effect": [3, 4, 1, 5, 2, 6],  # |diff| = 0.30, 0.23, 0.20, 0.175, 0.14
    "logodds": [4, 2, 5, 3, 1, 6],  # conservative log odds 1.70, 1.35, 1.28, 0.94, 0.79
    "specific": [2, 5, 3, 4, 1, 6],  # conservative log relative risk 1.23, 1.13, 0.60, 0.18, 0.15
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = build_count_store(tmp_path_factory.mktemp("sort") / "s.duckdb", SIZES, COUNTS)
    yield store
    store.close()


def woolf(a: int, n_a: int, b: int, n_b: int) -> tuple[float, float, float]:
    """Log odds ratio with Woolf's 95% interval, 0.5 added to each cell, by hand."""
    cells = [a + 0.5, n_a - a + 0.5, b + 0.5, n_b - b + 0.5]
    lor = np.log(cells[0] * cells[3] / (cells[1] * cells[2]))
    se = np.sqrt(sum(1 / c for c in cells))
    return lor, lor - 1.959964 * se, lor + 1.959964 * se


def katz(a: int, n_a: int, b: int, n_b: int) -> tuple[float, float, float]:
    """Log relative risk with Katz's 95% interval, 0.5 added to each cell, by hand."""
    pa, pb = (a + 0.5) / (n_a + 1), (b + 0.5) / (n_b + 1)
    lrr = np.log(pa / pb)
    se = np.sqrt(1 / (a + 0.5) - 1 / (n_a + 1) + 1 / (b + 0.5) - 1 / (n_b + 1))
    return lrr, lrr - 1.959964 * se, lrr + 1.959964 * se


def test_sorts_are_offered_with_specific_the_default():
    assert DIFF_SORTS == ("specific", "p", "effect", "logodds")


@pytest.mark.parametrize("sort", sorted(EXPECTED))
def test_each_ordering_gives_the_expected_order(store, sort):
    table = diff_corpora(store, ["A"], ["B"], sort=sort)
    assert table["feature"].to_list() == EXPECTED[sort]
    assert (table["q"] < 0.05).to_list() == [True] * 5 + [False]
    # rank re-orders an already computed table the same way
    assert rank(table.reverse(), 0.05, sort)["feature"].to_list() == EXPECTED[sort]


def test_the_default_ordering_is_specific(store):
    assert diff_corpora(store, ["A"], ["B"])["feature"].to_list() == EXPECTED["specific"]


def test_the_log_odds_interval_is_woolfs_with_half_counts(store):
    table = diff_corpora(store, ["A"], ["B"])
    for row in table.iter_rows(named=True):
        counts = COUNTS[row["feature"]]
        lor, low, high = woolf(counts["A"], 200, counts["B"], 200)
        assert (row["log_odds"], row["log_odds_low"], row["log_odds_high"]) == pytest.approx(
            (lor, low, high), abs=1e-5
        )
    # one worked by hand: 30 of 200 against 2 of 200 -> cells 30.5, 170.5, 2.5, 198.5
    lor, low, high = stats.log_odds_ratio(
        np.array([30]), np.array([200]), np.array([2]), np.array([200])
    )
    se = np.sqrt(1 / 30.5 + 1 / 170.5 + 1 / 2.5 + 1 / 198.5)
    assert lor[0] == pytest.approx(np.log(30.5 * 198.5 / (170.5 * 2.5)))
    assert (low[0], high[0]) == pytest.approx((lor[0] - 1.959964 * se, lor[0] + 1.959964 * se))
    assert round(float(low[0]), 2) == 1.35  # the logodds score of concept 2


def test_the_relative_risk_interval_is_katzs_with_half_counts():
    a, n_a, b, n_b = np.array([30, 5, 0]), np.array([200, 200, 50]), np.array([2, 40, 7]), 200
    lrr, low, high = stats.log_relative_risk(a, n_a, b, np.full(3, n_b))
    for i in range(3):
        assert (lrr[i], low[i], high[i]) == pytest.approx(katz(a[i], n_a[i], b[i], n_b), abs=1e-5)
    # the point estimate is the relative risk of the half-corrected shares
    assert np.exp(lrr[0]) == pytest.approx((30.5 / 201) / (2.5 / 201))


def test_the_conservative_bound_is_the_one_nearest_zero():
    got = stats.nearest_zero(np.array([0.5, -2.0, -0.3]), np.array([1.5, -1.0, 0.4]))
    assert got.tolist() == [0.5, -1.0, 0.0]


def test_scores_by_hand():
    # specific: concept 2 (15% vs 1%) is at least exp(1.23) = 3.4 times as frequent in A with
    # 95% confidence; concept 4 (98% vs 75%), though its odds ratio is larger, only 1.2 times
    frame = compare_counts(np.array([2, 4]), np.array([30, 196]), np.array([2, 150]), 200, 200)
    frame = frame.with_columns(q=frame["p"])
    assert katz(30, 200, 2, 200)[1] == pytest.approx(1.227, abs=1e-3)
    assert katz(196, 200, 150, 200)[1] == pytest.approx(0.184, abs=1e-3)
    assert rank(frame, 0.05, "specific")["feature"].to_list() == [2, 4]
    assert rank(frame, 0.05, "logodds")["feature"].to_list() == [4, 2]


def test_below_the_significance_line_rows_go_by_p():
    # 2 differs (q set below alpha); 4 (90% vs 70%: small p, weak ratio) and 3 (12 vs 0: larger
    # p, stronger ratio) do not: every ordering puts 4 before 3, by p
    frame = compare_counts(
        np.array([2, 3, 4]), np.array([60, 12, 180]), np.array([40, 0, 140]), 200, 200
    )
    assert frame["p"][2] < frame["p"][1]
    frame = frame.with_columns(q=np.array([0.01, 0.5, 0.5]))
    for sort in DIFF_SORTS:
        assert rank(frame, 0.05, sort)["feature"].to_list() == [2, 4, 3]
    _, low, _ = stats.log_relative_risk(np.array([12, 180]), 200, np.array([0, 140]), 200)
    assert low[0] > low[1] > 0  # by the score alone 3 would come first


def test_bad_sort_names_are_refused_in_one_line(store):
    with pytest.raises(InputError) as bad:
        diff_corpora(store, ["A"], ["B"], sort="pvalue")
    assert str(bad.value) == "unknown sort 'pvalue'; use one of specific, p, effect, logodds"
    with pytest.raises(
        InputError, match="unknown sort 'odds'; use one of specific, p, effect, logodds$"
    ):
        rank(diff_corpora(store, ["A"], ["B"]), 0.05, "odds")


def test_logodds_needs_counts_in_one_line(store):
    for test in ("welch", "mannwhitney"):
        with pytest.raises(InputError) as bad:
            diff_corpora(store, ["A"], ["B"], measure="count", test=test, sort="logodds")
        assert str(bad.value) == (
            "sort 'logodds' needs document counts (measure presence or strong, not paired); "
            f"under measure 'count' ({test} test) use specific, p or effect"
        )
    with pytest.raises(InputError) as bad:
        paired_diff(store, "A", "B", pair_on="id", sort="logodds")
    assert "\n" not in str(bad.value)
    assert str(bad.value).endswith("under paired mode use specific, p or effect")


def test_specific_under_numeric_measures_and_pairs(store):
    # the count store's concepts are active on one token: counts are 0 or 1, so the ratio of
    # mean counts is the relative risk and `specific` orders as for the shares
    numeric = diff_corpora(store, ["A"], ["B"], measure="count", sort="specific")
    assert numeric["feature"].to_list() == EXPECTED["specific"]
    assert not any(c.startswith("_") for c in numeric.columns)
    with pytest.raises(InputError, match="needs document counts or the bounds a diff computes"):
        rank(numeric, 0.05, "specific")  # the output keeps no moments to re-rank by
    with pytest.raises(InputError, match="'logodds' needs document counts"):
        rank(numeric, 0.05, "logodds")
    assert diff_corpora(store, ["A"], ["B"], measure="count", sort="effect")["feature"][0] == 3
    # paired (documents i of A and B): the matched-pairs bounds, by hand: 1.31, 1.22, 0.67,
    # 0.19, 0.17 for concepts 2, 5, 3, 4, 1
    paired = paired_diff(store, "A", "B", pair_on="id", sort="specific")
    assert paired["feature"].to_list() == [2, 5, 3, 4, 1, 6]
    assert not any(c.startswith("_") for c in paired.columns)
    counted = paired_diff(store, "A", "B", pair_on="id", measure="count", sort="specific")
    assert counted["feature"].to_list() == [2, 5, 3, 4, 1, 6]


def test_log_ratio_of_means_by_hand():
    # A: values 2, 4, 0, 0, 0; B: 1, 0, 0, 0, 0, 0, 0, 0; typical value (2 + 4 + 1) / 3
    t = 7 / 3
    a = np.array([2.0, 4, 0, 0, 0, t, 0])  # plus half a document at t and half without
    b = np.array([1.0, 0, 0, 0, 0, 0, 0, 0, t, 0])
    wa, wb = np.r_[np.ones(5), 0.5, 0.5], np.r_[np.ones(8), 0.5, 0.5]
    mean_a, mean_b = np.average(a, weights=wa), np.average(b, weights=wb)
    var_a = np.average((a - mean_a) ** 2, weights=wa)
    var_b = np.average((b - mean_b) ** 2, weights=wb)
    se = np.sqrt(var_a / (6 * mean_a**2) + var_b / (9 * mean_b**2))
    lr, low, high = stats.log_ratio_of_means(
        np.array([6.0]), np.array([20.0]), np.array([5]),
        np.array([1.0]), np.array([1.0]), np.array([8]), np.array([t]),
    )  # fmt: skip
    assert lr[0] == pytest.approx(np.log(mean_a / mean_b))
    assert (low[0], high[0]) == pytest.approx((lr[0] - 1.959964 * se, lr[0] + 1.959964 * se))
    # values 0/1 with typical 1: Katz's interval of the log relative risk
    k_a, k_b = np.array([30, 5, 0]), np.array([2, 40, 7])
    n_a, n_b = np.array([200, 200, 50]), np.array([200, 200, 200])
    ones = np.ones(3)
    assert np.allclose(
        stats.log_ratio_of_means(k_a, k_a, n_a, k_b, k_b, n_b, ones),
        stats.log_relative_risk(k_a, n_a, k_b, n_b),
    )
    # paired 0/1: variance (only_a + only_b) / (n_a n_b), half a pair added (Agresti 2002)
    lr, low, high = stats.log_ratio_of_means(
        np.array([30]), np.array([30]), 100, np.array([12]), np.array([12]), 100, np.ones(1),
        cross=np.array([8]),
    )  # fmt: skip
    se = np.sqrt((22 + 4) / (30.5 * 12.5))
    assert lr[0] == pytest.approx(np.log(30.5 / 12.5))
    assert (low[0], high[0]) == pytest.approx((lr[0] - 1.959964 * se, lr[0] + 1.959964 * se))


def test_cli_sort(tmp_path):
    build_count_store(tmp_path / "cli.duckdb", SIZES, COUNTS).close()
    db = str(tmp_path / "cli.duckdb")
    run = CliRunner().invoke
    for sort in [[], ["--sort", "specific"], ["--sort", "logodds"]]:
        out = run(main, ["diff", "A", "B", "--db", db, *sort, "--format", "csv"])
        assert out.exit_code == 0, out.output
        lines = [x for x in out.stdout.splitlines() if x and x[0].isdigit()]
        assert [int(x.split(",")[0]) for x in lines] == EXPECTED[sort[-1] if sort else "specific"]
    bad = run(main, ["diff", "A", "B", "--db", db, "--sort", "odds"])
    assert bad.exit_code == 2
    assert "'odds' is not one of 'specific', 'p', 'effect', 'logodds'" in bad.output
    numeric = run(main, ["diff", "A", "B", "--db", db, "--measure", "count", "--sort", "logodds"])
    assert numeric.exit_code == 1
    assert numeric.output.strip().splitlines() == [
        "Error: sort 'logodds' needs document counts (measure presence or strong, not "
        "paired); under measure 'count' (welch test) use specific, p or effect"
    ]
