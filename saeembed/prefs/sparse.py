"""Sparse preference models and their held-out evaluation.

A k-concept model: L1-penalised logistic regression of the label on the standardised concept
differences, with the controls (e.g. length difference) left unpenalised, the penalty chosen by
bisection so that exactly k concepts stay in, then refitted without penalty on those k concepts
and the controls. Held-out AUC is measured by cross-validation over folds that keep pairs sharing
a prompt together (`saeembed.prefs.pairs.assign_folds`); the concepts are chosen inside each
training fold, never on the held-out pairs. The all-concepts baseline is L2-regularised (C = 1):
thousands of concepts on a few thousand pairs would separate without a penalty.

Controls are kept out of the penalty by scaling their columns up by `CONTROL_SCALE` before the L1
fit (the penalty on a coefficient shrinks with the column's scale), a standard device with
solvers that penalise every column."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

CONTROL_SCALE = 1e4


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, std = train.mean(axis=0), train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return (train - mean) / std, (test - mean) / std


def select_k(
    delta: np.ndarray, y: np.ndarray, controls: np.ndarray, k: int, *, steps: int = 40
) -> np.ndarray:
    """Indices of the k concepts an L1 path keeps first (bisection on the penalty)."""
    x = np.hstack([delta, controls * CONTROL_SCALE])
    n_concepts = delta.shape[1]
    low, high = -6.0, 2.0  # log10 of C (inverse penalty)
    best: np.ndarray | None = None
    for _ in range(steps):
        mid = (low + high) / 2
        model = LogisticRegression(
            l1_ratio=1.0, C=10**mid, solver="liblinear", max_iter=500, tol=1e-5
        ).fit(x, y)
        chosen = np.flatnonzero(np.abs(model.coef_[0][:n_concepts]) > 1e-8)
        if len(chosen) == k:
            return chosen
        if len(chosen) < k:
            low = mid
            if best is None or len(chosen) > len(best):
                best = chosen
        else:
            high = mid
    # no penalty gives exactly k (ties): the k largest coefficients at the last overshoot
    model = LogisticRegression(l1_ratio=1.0, C=10**high, solver="liblinear", max_iter=500).fit(x, y)
    weights = np.abs(model.coef_[0][:n_concepts])
    return np.sort(np.argsort(-weights)[:k])


def refit(x: np.ndarray, y: np.ndarray) -> LogisticRegression:
    return LogisticRegression(C=np.inf, max_iter=2000).fit(x, y)


def cross_validated_auc(
    delta: np.ndarray,
    y: np.ndarray,
    controls: np.ndarray,
    folds: np.ndarray,
    *,
    k: int | None,
    use_concepts: bool = True,
) -> float:
    """Pooled out-of-fold AUC of: the controls only (``use_concepts=False``), all concepts and
    the controls (``k=None``), or k concepts chosen in each training fold plus the controls."""
    scores = np.empty(len(y))
    for fold in np.unique(folds):
        train, test = folds != fold, folds == fold
        c_train, c_test = _standardise(controls[train], controls[test])
        if not use_concepts:
            x_train, x_test = c_train, c_test
        else:
            d_train, d_test = _standardise(delta[train], delta[test])
            if k is not None:
                keep = select_k(d_train, y[train], c_train, k)
                d_train, d_test = d_train[:, keep], d_test[:, keep]
            x_train, x_test = np.hstack([d_train, c_train]), np.hstack([d_test, c_test])
        if k is None and use_concepts:
            model = LogisticRegression(C=1.0, max_iter=2000).fit(x_train, y[train])
        else:
            model = refit(x_train, y[train])
        scores[test] = model.decision_function(x_test)
    return float(roc_auc_score(y, scores))
