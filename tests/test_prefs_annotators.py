"""Per-annotator preferences: DerSimonian–Laird pooling against hand computations, and the whole
analysis on simulated annotators with planted agreement, disagreement and one contrarian."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import stats as sps
from scipy.optimize import minimize
from scipy.special import expit

from saeembed.errors import InputError
from saeembed.prefs.annotators import (
    annotator_effects,
    dersimonian_laird,
    fit_on_common_scale,
    leave_one_out_residuals,
)
from saeembed.prefs.regression import fit_per_concept

# --------------------------------------------------------------------------------------------
# pooling by hand


def test_dersimonian_laird_matches_hand_computation():
    nan = np.nan
    # studies x concepts; concept 1 has a missing study, concept 2 a single estimate
    b = np.array([[1.0, 1.0, 0.3, 0.0], [2.0, 1.2, nan, 1.0], [4.0, nan, nan, 3.0]])
    se = np.array([[1.0, 0.5, 0.2, 0.5], [1.0, 1.0, nan, 1.0], [1.0, nan, nan, 1.0]])
    out = dersimonian_laird(b, se)

    # concept 0: equal weights 1; fixed mean 7/3; Q = (16 + 1 + 25) / 9; C = 3 - 3/3 = 2
    q0 = 42 / 9
    tau2 = (q0 - 2) / 2  # 4/3
    se0 = math.sqrt(1 / (3 / (1 + tau2)))  # sqrt(7/9)
    assert out["k"][0] == 3
    assert out["q_stat"][0] == pytest.approx(q0)
    assert out["tau2"][0] == pytest.approx(4 / 3)
    assert out["tau"][0] == pytest.approx(math.sqrt(4 / 3))
    assert out["coef"][0] == pytest.approx(7 / 3)
    assert out["se"][0] == pytest.approx(se0)
    assert out["ci_low"][0] == pytest.approx(7 / 3 - 1.959964 * se0, abs=1e-5)
    assert out["ci_high"][0] == pytest.approx(7 / 3 + 1.959964 * se0, abs=1e-5)
    assert out["p"][0] == pytest.approx(2 * sps.norm.cdf(-math.sqrt(7)))  # z = sqrt(7)
    assert out["i2"][0] == pytest.approx(4 / 7)  # (Q - 2) / Q
    assert out["p_heterogeneity"][0] == pytest.approx(math.exp(-7 / 3))  # chi2(2) sf = e^(-x/2)

    # concept 1: weights 4 and 1, fixed mean 1.04, Q = 0.032 < df = 1 -> tau² truncated at 0
    assert out["k"][1] == 2
    assert out["q_stat"][1] == pytest.approx(4 * 0.04**2 + 0.16**2)
    assert out["tau2"][1] == 0.0 and out["i2"][1] == 0.0
    assert out["coef"][1] == pytest.approx(1.04)
    assert out["se"][1] == pytest.approx(math.sqrt(1 / 5))
    assert out["p_heterogeneity"][1] == pytest.approx(sps.chi2.sf(0.032, 1))

    # concept 2: one estimate -> nothing pooled
    assert out["k"][2] == 1
    assert all(np.isnan(out[key][2]) for key in out if key != "k")

    # concept 3: unequal weights 4, 1, 1; fixed 2/3; Q = 22/3; C = 6 - 18/6 = 3; tau² = 16/9
    assert out["q_stat"][3] == pytest.approx(22 / 3)
    assert out["tau2"][3] == pytest.approx(16 / 9)
    w = np.array([1 / (0.25 + 16 / 9), 1 / (1 + 16 / 9), 1 / (1 + 16 / 9)])
    assert out["coef"][3] == pytest.approx((w * [0, 1, 3]).sum() / w.sum())
    assert out["se"][3] == pytest.approx(math.sqrt(1 / w.sum()))
    assert out["i2"][3] == pytest.approx(8 / 11)
    assert out["p_heterogeneity"][3] == pytest.approx(math.exp(-11 / 3))


def test_leave_one_out_residuals_match_hand_computation():
    b = np.array([[0.0], [0.0], [5.0]])
    se = np.ones((3, 1))
    r = leave_one_out_residuals(b, se)[:, 0]
    # study 2 against studies 0 and 1: pooled 0, tau² 0, se² of the pool 1/2
    assert r[2] == pytest.approx(5 / math.sqrt(1 + 0 + 0.5))
    # study 0 against 0 and 5: Q = 12.5, C = 1, tau² = 11.5, pooled 2.5 with se² = 6.25
    assert r[0] == pytest.approx(-2.5 / math.sqrt(1 + 11.5 + 6.25))
    assert r[1] == pytest.approx(r[0])


# --------------------------------------------------------------------------------------------
# simulated annotators


def simulate(effects, n=400, prevalence=0.4, seed=0):
    """Pairs of ``len(effects)`` annotators, ``n`` each; presence of each concept in A and in B
    is independent with probability ``prevalence`` (one per annotator, or shared); annotator a
    prefers A with log-odds Δ · effects[a] per unit of Δ."""
    rng = np.random.default_rng(seed)
    effects = np.asarray(effects, float)
    prevalence = np.broadcast_to(np.asarray(prevalence, float), (len(effects),))
    deltas, labels, ids = [], [], []
    for a, (beta, prev) in enumerate(zip(effects, prevalence, strict=True)):
        delta = (rng.random((n, len(beta))) < prev).astype(float)
        delta -= rng.random((n, len(beta))) < prev
        deltas.append(delta)
        labels.append((rng.random(n) < expit(delta @ beta)).astype(float))
        ids += [f"a{a}"] * n
    return np.vstack(deltas), np.concatenate(labels), np.array(ids, dtype=object)


def split_population():
    """Concept 0: +1.5 for everyone; concept 1: +2 for a0-a2, -2 for a3-a5; 2-4: no effect."""
    effects = np.zeros((6, 5))
    effects[:, 0] = 1.5
    effects[:, 1] = [2, 2, 2, -2, -2, -2]
    return simulate(effects, seed=11)


@pytest.fixture(scope="module")
def split_report():
    delta, y, ids = split_population()
    return annotator_effects(delta, y, ids, features=np.arange(100, 105))


def row(frame, feature):
    return frame.filter(frame["feature"] == feature).row(0, named=True)


def test_disputed_concept_ranks_first_with_pooled_effect_near_zero(split_report):
    concepts = split_report.concepts
    assert concepts.columns == [
        "feature",
        "n_annotators",
        "pooled_coef",
        "pooled_se",
        "ci_low",
        "ci_high",
        "p",
        "q",
        "tau",
        "tau2",
        "i2",
        "q_stat",
        "p_heterogeneity",
        "q_heterogeneity",
    ]
    top = concepts.row(0, named=True)
    assert top["feature"] == 101
    assert top["n_annotators"] == 6
    assert top["q_heterogeneity"] < 1e-6 and top["i2"] > 0.9
    assert abs(top["pooled_coef"]) < 0.3 < top["tau"]
    assert top["ci_low"] < 0 < top["ci_high"] and top["p"] > 0.05


def test_shared_concept_is_pooled_positive_without_heterogeneity(split_report):
    shared = row(split_report.concepts, 100)
    assert shared["pooled_coef"] > 0.5 and shared["q"] < 1e-10
    assert shared["p_heterogeneity"] > 0.01 and shared["tau2"] < 0.05
    for null in (102, 103, 104):
        assert row(split_report.concepts, null)["p_heterogeneity"] > 0.01
        assert abs(row(split_report.concepts, null)["pooled_coef"]) < 0.2  # ~5 standard errors


def test_legitimate_disagreement_flags_no_annotator(split_report):
    annotators = split_report.annotators
    assert annotators.columns == [
        "annotator",
        "n_pairs",
        "deviation",
        "df",
        "p",
        "q",
        "deviates",
        "top_concepts",
        "top_residuals",
    ]
    assert sorted(annotators["annotator"]) == [f"a{a}" for a in range(6)]
    assert annotators["n_pairs"].to_list() == [400] * 6
    assert annotators["df"].to_list() == [5] * 6
    assert not annotators["deviates"].any()
    assert annotators["p"].is_sorted()


def test_coefficients_table_is_long_and_consistent(split_report):
    coefs = split_report.coefficients
    assert coefs.columns == ["annotator", "feature", "coef", "se"]
    assert coefs.height == 30
    disputed = coefs.filter(coefs["feature"] == 101).sort("annotator")
    assert (disputed["coef"].to_numpy()[:3] > 0).all() and (
        disputed["coef"].to_numpy()[3:] < 0
    ).all()
    assert split_report.n_excluded_annotators == 0 and split_report.n_excluded_pairs == 0


def test_contrarian_annotator_deviates_and_comes_first():
    """Everyone rewards concept 0, punishes 1, rewards 2; a4 does the opposite on all three."""
    effects = np.tile([1.5, -1.0, 1.0, 0.0, 0.0], (6, 1))
    effects[4] *= -1
    delta, y, ids = simulate(effects, seed=5)
    report = annotator_effects(delta, y, ids)
    first = report.annotators.row(0, named=True)
    assert first["annotator"] == "a4" and first["deviates"] and first["q"] < 1e-6
    assert report.annotators["deviates"].sum() == 1
    assert set(first["top_concepts"]) == {0, 1, 2}
    # signed residuals: a4 sits below the others where they reward, above where they punish
    signs = dict(zip(first["top_concepts"], np.sign(first["top_residuals"]), strict=True))
    assert signs == {0: -1, 1: 1, 2: -1}
    assert abs(first["top_residuals"][0]) >= abs(first["top_residuals"][-1])


def test_coefficients_share_one_scale_across_annotators():
    """Two annotators see concept 0 rarely (Δ spread small), two often; all value it equally per
    unit of Δ. Per-annotator standardisation would make them disagree; the common scale not."""
    effects = np.tile([1.5, 0.0], (4, 1))
    delta, y, ids = simulate(effects, n=600, prevalence=[0.08, 0.08, 0.5, 0.5], seed=3)
    report = annotator_effects(delta, y, ids)
    assert row(report.concepts, 0)["p_heterogeneity"] > 0.05

    # the per-annotator coefficient is a plain logistic fit on Δ / sd(Δ over all pairs)
    sd = delta.std(axis=0)
    rows = np.flatnonzero(ids == "a0")
    z = delta[rows, 0] / sd[0]
    x = np.column_stack([np.ones_like(z), z])

    def nll(beta):
        eta = x @ beta
        return np.sum(np.logaddexp(0, eta) - y[rows] * eta)

    ref = minimize(nll, np.zeros(2), method="BFGS", options={"gtol": 1e-10}).x
    coef, _ = fit_on_common_scale(delta, y, None, rows, sd)
    assert coef[0] == pytest.approx(ref[1], abs=1e-4)
    got = report.coefficients.filter(report.coefficients["annotator"] == "a0")
    assert got.filter(got["feature"] == 0)["coef"][0] == pytest.approx(ref[1], abs=1e-4)

    # the same data on each annotator's own scale are heterogeneous: the test has teeth
    fits = [fit_per_concept(delta[ids == f"a{a}"], y[ids == f"a{a}"]) for a in range(4)]
    naive = dersimonian_laird(
        np.stack([f["coef"] for f in fits]), np.stack([f["se"] for f in fits])
    )
    assert naive["p_heterogeneity"][0] < 0.01


def test_sparse_delta_gives_the_same_report(split_report):
    delta, y, ids = split_population()
    report = annotator_effects(sp.csr_matrix(delta), y, ids, features=np.arange(100, 105))
    for name in ("concepts", "annotators", "coefficients"):
        dense, sparse = getattr(split_report, name), getattr(report, name)
        assert sparse.columns == dense.columns
        assert sparse["annotator" if name != "concepts" else "feature"].equals(
            dense["annotator" if name != "concepts" else "feature"]
        )
    got = report.concepts.select("pooled_coef", "tau2", "p_heterogeneity").to_numpy()
    want = split_report.concepts.select("pooled_coef", "tau2", "p_heterogeneity").to_numpy()
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_constant_delta_gives_no_estimate_for_that_annotator():
    effects = np.tile([1.0, 0.0], (3, 1))
    delta, y, ids = simulate(effects, n=200, seed=4)
    delta[ids == "a1", 1] = 0.0
    report = annotator_effects(delta, y, ids)
    assert row(report.concepts, 1)["n_annotators"] == 2
    assert row(report.concepts, 0)["n_annotators"] == 3
    coefs = report.coefficients
    assert coefs.filter((coefs["annotator"] == "a1") & (coefs["feature"] == 1)).height == 0
    assert report.annotators.filter(report.annotators["annotator"] == "a1")["df"][0] == 1


def test_controls_are_used_per_annotator():
    # label driven by a control that is correlated with Δ: without it Δ looks rewarded
    rng = np.random.default_rng(8)
    n = 1200
    delta = rng.integers(-1, 2, size=(n, 1)).astype(float)
    length = delta[:, 0] + rng.normal(size=n)
    y = (rng.random(n) < expit(1.5 * length)).astype(float)
    ids = np.array(["x", "y", "z"] * (n // 3), dtype=object)
    without = annotator_effects(delta, y, ids)
    with_length = annotator_effects(delta, y, ids, length[:, None])
    assert row(without.concepts, 0)["pooled_coef"] > 0.5
    assert abs(row(with_length.concepts, 0)["pooled_coef"]) < 0.2


# --------------------------------------------------------------------------------------------
# exclusions and errors


def test_unknown_and_small_annotators_are_excluded_and_counted():
    effects = np.tile([1.0, 0.0, -1.0], (4, 1))
    delta, y, ids = simulate(effects, n=100, seed=6)
    ids = ids.copy()
    ids[:7] = None  # a0: 7 pairs without annotator
    ids[7:10] = np.nan
    ids[100:180] = "tiny"  # a1 keeps 20 pairs, "tiny" gets 80 -> a1 is left out at min_pairs=30
    report = annotator_effects(delta, y, ids, min_pairs=30)
    assert report.n_unknown_pairs == 10
    assert report.n_excluded_annotators == 1
    assert report.n_excluded_pairs == 10 + 20
    assert sorted(report.annotators["annotator"]) == ["a0", "a2", "a3", "tiny"]
    counts = dict(report.annotators.select("annotator", "n_pairs").iter_rows())
    assert counts == {"a0": 90, "a2": 100, "a3": 100, "tiny": 80}

    # the excluded pairs play no part, not even in the common scale
    keep = np.array([v not in (None, "a1") and v == v for v in ids])
    alone = annotator_effects(delta[keep], y[keep], ids[keep], min_pairs=30)
    assert alone.concepts.equals(report.concepts)
    assert alone.coefficients.equals(report.coefficients)


def test_fewer_than_two_annotators_is_an_input_error():
    delta, y, ids = simulate(np.tile([1.0, 0.0], (2, 1)), n=50, seed=7)
    with pytest.raises(
        InputError, match=r"at least 2 annotators with >= 60 pairs each \(found 0\)"
    ):
        annotator_effects(delta, y, ids, min_pairs=60)
    ids = ids.copy()
    ids[50:] = None
    with pytest.raises(InputError, match=r"\(found 1\); lower --min-pairs"):
        annotator_effects(delta, y, ids)


def test_bad_inputs_are_input_errors():
    delta, y, ids = simulate(np.tile([1.0], (2, 1)), n=40, seed=9)
    with pytest.raises(InputError, match="drop ties"):
        annotator_effects(delta, np.where(np.arange(len(y)) == 0, 0.5, y), ids)
    with pytest.raises(InputError, match="one annotator id per pair"):
        annotator_effects(delta, y, ids[:-1])
    with pytest.raises(InputError, match="one label per pair"):
        annotator_effects(delta, y[:-1], ids)
