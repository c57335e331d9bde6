"""Per-concept preference regressions on constructed pairs with a planted preference."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from saeembed.prefs.regression import fit_per_concept


def planted(n=4000, seed=0):
    """Concept 0 is rewarded (true log-odds +1.2 per unit of Δ), concept 1 punished (-0.8),
    concept 2 irrelevant; length difference matters too (+0.5 per standard deviation)."""
    rng = np.random.default_rng(seed)
    presence_a = rng.random((n, 3)) < [0.3, 0.4, 0.5]
    presence_b = rng.random((n, 3)) < [0.3, 0.4, 0.5]
    delta = presence_a.astype(float) - presence_b
    length = rng.normal(size=n)
    eta = 1.2 * delta[:, 0] - 0.8 * delta[:, 1] + 0.5 * length
    y = (rng.random(n) < expit(eta)).astype(float)
    return delta, y, length


def test_planted_preference_is_recovered_with_the_right_sign():
    delta, y, length = planted()
    fit = fit_per_concept(delta, y, length[:, None])
    assert fit["coef"][0] > 0 and fit["coef"][1] < 0
    assert fit["p"][0] < 1e-10 and fit["p"][1] < 1e-10 and fit["p"][2] > 0.001
    assert not fit["separated"].any()
    assert fit["prevalence"] == pytest.approx([(delta[:, j] != 0).mean() for j in range(3)])


def test_coefficients_match_a_reference_fit():
    """Same model fitted by scipy's general-purpose optimiser on the log-likelihood."""
    from scipy.optimize import minimize

    delta, y, length = planted(n=1500, seed=1)
    fit = fit_per_concept(delta, y, length[:, None])
    zd = (delta[:, 0] - delta[:, 0].mean()) / delta[:, 0].std()
    zl = (length - length.mean()) / length.std()
    x = np.column_stack([np.ones_like(zd), zd, zl])

    def nll(beta):
        eta = x @ beta
        return np.sum(np.logaddexp(0, eta) - y * eta)

    ref = minimize(nll, np.zeros(3), method="BFGS", options={"gtol": 1e-10}).x
    assert fit["coef"][0] == pytest.approx(ref[1], abs=1e-4)


def test_win_rate_delta_is_the_average_marginal_effect():
    # without controls and with the true model's effect, Δwin-rate is close to the true AME
    delta, y, length = planted(n=20000, seed=2)
    fit = fit_per_concept(delta[:, :1], y)
    # the model y ~ Δ_0 alone: its AME from Δ=0 to Δ=+1, computed directly from a 2-parameter fit
    mean0 = y[delta[:, 0] == 0].mean()
    mean1 = y[delta[:, 0] == 1].mean()
    assert fit["win_rate_delta"][0] == pytest.approx(mean1 - mean0, abs=0.01)


def test_quasi_separation_is_reported_not_fitted():
    rng = np.random.default_rng(0)
    delta = rng.integers(-1, 2, size=(300, 2)).astype(float)
    y = (delta[:, 0] > 0).astype(float)  # concept 0 decides every pair with Δ != 0 ... almost
    y[delta[:, 0] == 0] = rng.integers(0, 2, size=int((delta[:, 0] == 0).sum()))
    fit = fit_per_concept(delta, y)
    assert fit["separated"][0] and np.isnan(fit["p"][0]) and np.isnan(fit["win_rate_delta"][0])
    assert not fit["separated"][1]


def test_chunking_does_not_change_results():
    delta, y, length = planted(n=800, seed=3)
    whole = fit_per_concept(delta, y, length[:, None], chunk=512)
    split = fit_per_concept(delta, y, length[:, None], chunk=1)
    for key in ("coef", "se", "p", "win_rate_delta"):
        assert whole[key] == pytest.approx(split[key])
