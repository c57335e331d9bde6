"""Sparse preference models and their held-out evaluation.

A k-concept model: L1-penalised logistic regression of the label on the standardised concept
differences, with the controls (e.g. length difference) left unpenalised, the penalty chosen by
bisection so that exactly k concepts stay in, then refitted without penalty on those k concepts
and the controls. The L1 path runs on the few hundred concepts most correlated with what the
controls leave unexplained (`screen`), which makes it fast on thousands of concepts and keeps
the same first concepts in practice. Held-out AUC is measured by cross-validation over folds that keep pairs sharing
a prompt together (`saeembed.prefs.pairs.assign_folds`); the concepts are chosen inside each
training fold, never on the held-out pairs. The all-concepts baseline is L2-regularised (C = 1):
thousands of concepts on a few thousand pairs would separate without a penalty.

Controls are kept out of the penalty by scaling their columns up by `CONTROL_SCALE` before the L1
fit (the penalty on a coefficient shrinks with the column's scale), a standard device with
solvers that penalise every column."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

CONTROL_SCALE = 1e4


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, std = train.mean(axis=0), train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return (train - mean) / std, (test - mean) / std


def screen(delta: np.ndarray, y: np.ndarray, controls: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` columns of standardised ``delta`` most correlated with what the
    controls leave unexplained (y minus a controls-only logistic fit): a cheap first cut before
    the L1 path, made on the same (training) pairs."""
    if delta.shape[1] <= n:
        return np.arange(delta.shape[1])
    if controls.shape[1]:
        residual = y - refit(controls, y).predict_proba(controls)[:, 1]
    else:
        residual = y - y.mean()
    score = np.abs(residual @ delta)
    return np.sort(np.argsort(-score, kind="stable")[:n])


def select_k(
    delta: np.ndarray,
    y: np.ndarray,
    controls: np.ndarray,
    k: int,
    *,
    steps: int = 40,
    screen_to: int | None = None,
) -> np.ndarray:
    """Indices of the k concepts an L1 path keeps first (bisection on the penalty), among the
    ``screen_to`` (default ``max(25 k, 500)``) concepts that pass `screen`."""
    candidates = screen(delta, y, controls, screen_to or max(25 * k, 500))
    x = np.hstack([delta[:, candidates], controls * CONTROL_SCALE])
    n_concepts = len(candidates)
    low, high = -6.0, 2.0  # log10 of C (inverse penalty)
    for _ in range(steps):
        mid = (low + high) / 2
        model = LogisticRegression(
            l1_ratio=1.0, C=10**mid, solver="liblinear", max_iter=500, tol=1e-5
        ).fit(x, y)
        chosen = np.flatnonzero(np.abs(model.coef_[0][:n_concepts]) > 1e-8)
        if len(chosen) == k:
            return candidates[chosen]
        if len(chosen) < k:
            low = mid
        else:
            high = mid
    # no penalty gives exactly k (ties): the k largest coefficients at the last overshoot
    model = LogisticRegression(l1_ratio=1.0, C=10**high, solver="liblinear", max_iter=500).fit(x, y)
    weights = np.abs(model.coef_[0][:n_concepts])
    return np.sort(candidates[np.argsort(-weights)[:k]])


def refit(x: np.ndarray, y: np.ndarray) -> LogisticRegression:
    return LogisticRegression(C=np.inf, max_iter=2000).fit(x, y)


def fit_sparse_model(
    delta: np.ndarray, y: np.ndarray, controls: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The k-concept model on all pairs: the chosen columns of ``delta`` and their unpenalised
    coefficients (per standard deviation of Δ, with the controls in the model)."""
    d, _ = _standardise(delta, delta[:1])
    c, _ = _standardise(controls, controls[:1])
    chosen = select_k(d, y, c, k)
    model = refit(np.hstack([d[:, chosen], c]), y)
    return chosen, model.coef_[0][: len(chosen)]


@dataclass
class FoldModel:
    """A model fitted on the training pairs of one fold, on standardised inputs."""

    concepts: np.ndarray  # columns of delta in the model
    coef: np.ndarray  # per standard deviation of each concept's Δ
    mean: np.ndarray  # training mean of those columns
    std: np.ndarray  # training standard deviation of those columns


def out_of_fold(
    delta: np.ndarray,
    y: np.ndarray,
    controls: np.ndarray,
    folds: np.ndarray,
    *,
    k: int | None,
    use_concepts: bool = True,
) -> tuple[np.ndarray, dict[int, FoldModel]]:
    """Out-of-fold decision scores (log-odds that A is preferred) of: the controls only
    (``use_concepts=False``), all concepts and the controls (``k=None``, L2), or k concepts
    chosen in each training fold plus the controls; and each fold's model."""
    scores = np.empty(len(y))
    models: dict[int, FoldModel] = {}
    for fold in np.unique(folds):
        train, test = folds != fold, folds == fold
        c_train, c_test = _standardise(controls[train], controls[test])
        keep = np.arange(delta.shape[1]) if use_concepts else np.arange(0)
        if use_concepts and k is not None:
            d_train, _ = _standardise(delta[train], delta[test])
            keep = select_k(d_train, y[train], c_train, k)
        mean = delta[train][:, keep].mean(axis=0)
        std = delta[train][:, keep].std(axis=0)
        std = np.where(std > 0, std, 1.0)
        x_train = np.hstack([(delta[train][:, keep] - mean) / std, c_train])
        x_test = np.hstack([(delta[test][:, keep] - mean) / std, c_test])
        if k is None and use_concepts:
            model = LogisticRegression(C=1.0, max_iter=2000).fit(x_train, y[train])
        else:
            model = refit(x_train, y[train])
        scores[test] = model.decision_function(x_test)
        models[int(fold)] = FoldModel(keep, model.coef_[0][: len(keep)], mean, std)
    return scores, models


def cross_validated_auc(
    delta: np.ndarray,
    y: np.ndarray,
    controls: np.ndarray,
    folds: np.ndarray,
    *,
    k: int | None,
    use_concepts: bool = True,
) -> float:
    """Pooled out-of-fold AUC of a model `out_of_fold` fits."""
    scores, _ = out_of_fold(delta, y, controls, folds, k=k, use_concepts=use_concepts)
    return float(roc_auc_score(y, scores))
