"""Sparse k-concept preference models and their cross-validated AUC on planted pairs."""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from saeembed.prefs.sparse import cross_validated_auc, screen, select_k


def planted(n=1500, n_concepts=60, seed=0):
    """Concepts 3, 17 and 41 drive the label; length difference matters a little."""
    rng = np.random.default_rng(seed)
    delta = (rng.random((n, n_concepts)) < 0.3).astype(float) - (rng.random((n, n_concepts)) < 0.3)
    length = rng.normal(size=(n, 1))
    eta = 1.5 * delta[:, 3] - 1.2 * delta[:, 17] + 1.0 * delta[:, 41] + 0.4 * length[:, 0]
    y = (rng.random(n) < expit(eta)).astype(int)
    folds = np.arange(n) % 5
    return delta, y, length, folds


def test_select_k_finds_the_planted_concepts():
    delta, y, length, _ = planted()
    z = (delta - delta.mean(0)) / delta.std(0)
    assert select_k(z, y, length, 3).tolist() == [3, 17, 41]
    assert len(select_k(z, y, length, 5)) == 5


def test_held_out_auc_orders_the_models():
    delta, y, length, folds = planted()
    length_only = cross_validated_auc(delta, y, length, folds, k=None, use_concepts=False)
    k3 = cross_validated_auc(delta, y, length, folds, k=3)
    everything = cross_validated_auc(delta, y, length, folds, k=None)
    assert 0.5 < length_only < k3
    assert k3 > 0.75 and k3 >= everything - 0.01  # the 3 true concepts are all there is


def test_screening_keeps_the_planted_concepts_among_thousands():
    """With 2,000 concepts the L1 path runs on the 500 screened ones; the planted three are
    still the first chosen."""
    delta, y, length, _ = planted(n=1500, n_concepts=2000, seed=1)
    z = (delta - delta.mean(0)) / delta.std(0)
    assert select_k(z, y, length, 3).tolist() == [3, 17, 41]
    kept = screen(z, y, length, 500)
    assert len(kept) == 500 and {3, 17, 41} <= set(kept.tolist())
    assert np.all(np.diff(kept) > 0)
    assert screen(z[:, :40], y, length, 500).tolist() == list(range(40))
