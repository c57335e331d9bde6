"""The concepts a probe selects, as hypotheses tested on documents that played no part in
selecting them.

The documents are split in two halves, stratified by class (`discovery_split`). On the discovery
half the concept probe chooses its k by inner cross-validation (`probe_models.fit_concepts`) and its
concepts by rank; each concept gets what it *marks*: the class whose documents it is most
enriched in (for two classes, the class its coefficient favours), or a higher or lower number.
At most `MAX_HYPOTHESES` are kept, the strongest in the discovery model, taken in turn from
each class marked. On the validation half
the same concepts are refitted together (a logistic regression of "is the marked class", one per
marked class, or least squares for a number; columns standardised on that half) and each gets
a Wald coefficient per standard deviation toward what it marks (an odds ratio for classes) with a
95% interval and a p-value. The direction was fixed before the test, so the test is one-sided:
p is small only where the held-out half agrees (a concept whose held-out odds ratio is below 1
is contradicted, with p near 1). q is Benjamini-Hochberg over the hypotheses. A hypothesis holds where
its odds ratio stays above 1 (coefficient above 0) at small q. Being tested given the others, a
concept that only repeats another is not significant — read the pair together."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import stats as sps
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from saeembed.analysis import stats
from saeembed.analysis.probe_models import KS, Concepts, Target, fit_concepts, standardised

MAX_HYPOTHESES = 20
#: A held-out coefficient beyond this (per standard deviation) means separation: no Wald p.
SEPARATION_LIMIT = 10.0


def discovery_split(target: Target, seed: int) -> np.ndarray:
    """True for the documents of the discovery half (stratified by class or quintile)."""
    from saeembed.analysis.probe_models import _quantile_bins

    strata = target.y if target.categorical else _quantile_bins(target.y, 5)
    _, first = next(
        StratifiedKFold(2, shuffle=True, random_state=seed + 1).split(np.zeros(len(strata)), strata)
    )
    mask = np.zeros(len(strata), dtype=bool)
    mask[first] = True
    return mask


@dataclass
class Selection:
    """What the discovery half chose: concepts (strongest first), what each marks (a class code,
    or +1 / -1 for a number) and the k of the discovery model."""

    concepts: np.ndarray
    marks: np.ndarray
    k: int


def select(
    x: Concepts, target: Target, *, ks: tuple[int, ...] = KS, seed: int = 0,
    limit: int = MAX_HYPOTHESES,
) -> Selection:  # fmt: skip
    """The discovery model's concepts and what each marks (see the module doc)."""
    fitted = fit_concepts(x, target, ks=ks, seed=seed)
    k = fitted.k
    order = fitted.order[:k]
    block = fitted.block(x)[:, :k]
    if target.kind == "multiclass":
        onehot = target.onehot()
        means = (block.T @ onehot) / np.maximum(onehot.sum(axis=0), 1)  # [k, C], column means 0
        marks = means.argmax(axis=1)
        strength = means.max(axis=1)
    else:
        coef = fitted.coef()[:, 0]
        marks = np.where(coef > 0, 1, 0) if target.kind == "binary" else np.where(coef > 0, 1, -1)
        strength = np.abs(coef)
    keep = _balanced(strength, marks, limit)
    return Selection(order[keep], marks[keep], k)


def _balanced(strength: np.ndarray, marks: np.ndarray, limit: int) -> np.ndarray:
    """The ``limit`` strongest, taken in turn from each mark (class), so one easy class does
    not fill the list."""
    queues = [
        [i for i in np.argsort(-strength, kind="stable") if marks[i] == m] for m in np.unique(marks)
    ]
    picked: list[int] = []
    while len(picked) < min(limit, len(strength)):
        for queue in queues:
            if queue and len(picked) < limit:
                picked.append(queue.pop(0))
    return np.asarray(picked, dtype=np.int64)


def wald_logistic(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients and Wald standard errors of a logistic regression of 0/1 ``y`` on ``x``
    (a nearly unpenalised fit, C = 1000, so a separable column stays finite)."""
    model = LogisticRegression(C=1000.0, max_iter=5000).fit(x, y)
    p = model.predict_proba(x)[:, 1]
    design = np.hstack([np.ones((len(x), 1)), x])
    hessian = design.T @ (design * (p * (1 - p))[:, None])
    cov = np.linalg.pinv(hessian)
    return model.coef_[0], np.sqrt(np.maximum(np.diag(cov)[1:], 0))


def least_squares(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """OLS coefficients, standard errors and residual degrees of freedom of ``y`` on ``x``."""
    design = np.hstack([np.ones((len(x), 1)), x])
    beta, *_ = np.linalg.lstsq(design, y, rcond=None)
    dof = max(len(y) - design.shape[1], 1)
    sigma2 = ((y - design @ beta) ** 2).sum() / dof
    cov = sigma2 * np.linalg.pinv(design.T @ design)
    return beta[1:], np.sqrt(np.maximum(np.diag(cov)[1:], 0)), dof


def held_out_test(x: Concepts, target: Target, selection: Selection) -> pl.DataFrame:
    """``coef`` (toward what each concept marks, per standard deviation), ``se``, ``low``,
    ``high`` (of the odds ratio for classes, of the coefficient for a number), ``p`` (one-sided,
    toward the mark), ``q``."""
    concepts, marks = selection.concepts, selection.marks
    block = standardised(Concepts.of(x).columns(concepts))[0]
    coef, se = np.zeros(len(concepts)), np.zeros(len(concepts))
    if target.kind == "numeric":
        beta, se, dof = least_squares(block, target.y.astype(float))
        coef = beta * marks
        critical = sps.t.ppf(0.975, dof)
        p = sps.t.sf(coef / np.where(se > 0, se, np.inf), dof)
        low, high = coef - critical * se, coef + critical * se
    else:
        for mark in np.unique(marks):
            outcome = target.y == mark
            if target.kind == "binary":
                outcome = target.y == 1
            if outcome.all() or not outcome.any():
                continue
            beta, errors = wald_logistic(block, outcome.astype(int))
            mine = marks == mark
            sign = -1.0 if (target.kind == "binary" and mark == 0) else 1.0
            coef[mine], se[mine] = sign * beta[mine], errors[mine]
        separated = np.abs(coef) > SEPARATION_LIMIT
        p = np.where(separated, np.nan, sps.norm.sf(coef / np.where(se > 0, se, np.inf)))
        low, high = np.exp(coef - stats.Z95 * se), np.exp(coef + stats.Z95 * se)
    tested = ~np.isnan(p)
    q = np.full(len(p), np.nan)
    q[tested] = stats.bh_qvalues(p[tested])
    return pl.DataFrame(
        {
            "feature": concepts.astype(np.int64),
            "coef": coef,
            "se": se,
            "low": low,
            "high": high,
            "p": p,
            "q": q,
        }  # fmt: skip
    ).with_columns(pl.col("p", "q").fill_nan(None))


def describe(x: Concepts, target: Target, selection: Selection) -> pl.DataFrame:
    """On all documents: for classes, the share of the marked class's documents where each
    concept is active and the share of the others'; for a number, its mean where the concept is
    active and where not."""
    active = Concepts.of(x).columns(selection.concepts) > 0
    rows = []
    for j, mark in enumerate(selection.marks):
        on = active[:, j]
        if target.categorical:
            inside = target.y == mark
            rows.append((_share(on, inside), _share(on, ~inside)))
        else:
            rows.append((_mean(target.y, on), _mean(target.y, ~on)))
    first, second = ("share_in", "share_rest") if target.categorical else ("mean_with", "mean_without")  # fmt: skip
    values = np.asarray(rows, dtype=float).reshape(-1, 2)
    return pl.DataFrame({first: values[:, 0], second: values[:, 1]})


def _share(on: np.ndarray, where: np.ndarray) -> float:
    return float(on[where].mean()) if where.any() else float("nan")


def _mean(y: np.ndarray, where: np.ndarray) -> float:
    return float(y[where].mean()) if where.any() else float("nan")


def mark_names(target: Target, marks: np.ndarray) -> list[str]:
    """What each concept marks, in words: its class, or ``higher`` / ``lower``."""
    if target.categorical:
        return [target.classes[int(m)] for m in marks]
    return ["higher" if m > 0 else "lower" for m in marks]
