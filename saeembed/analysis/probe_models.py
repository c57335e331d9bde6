"""The models of a probe, on arrays only (no store): what a column of metadata is as a target,
the cross-fitting folds, the sparse concept probe and the dense probes, each scored on documents
its model never saw.

- **Target**: binary or multi-class (integer codes of the classes) or numeric. Folds are
  stratified by class (by quantile for a number), fixed by a seed.
- **Concept probe (top-k)**: the concepts are ranked, on the training documents only, by how
  far their means lie apart between the classes in units of their pooled standard deviation
  (for several classes, one-vs-rest, each class's best taken in turn; the absolute correlation
  for a number), computed on the sparse matrix without densifying it; the first k columns are
  standardised and fitted by ridge regression to the label (one column per class; the number),
  so every k and penalty is one solve of a part of one Gram matrix. k (from `KS`) and the
  penalty (from `ALPHAS`) are chosen by inner cross-validation inside each training fold (3 folds below
  `INNER_SPLIT_ABOVE` training documents, one held-out third above), with the ranking redone
  on each inner training part, so no label of a scored document ever reaches its model.
- **Dense probe**: an L2 logistic regression (ridge for a number) on standardised dense
  vectors, C chosen from `C_GRID` by the same inner validation, warm-started along the grid.
- **Union**: the dense vectors and the fold's k chosen concepts together, at the dense probe's C.

Every probe leaves out-of-fold predictions: a score (binary), a score per class (multi-class:
class probabilities from the dense probes) or a value (numeric), scored by `saeembed.analysis.probe_scores`."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold, StratifiedKFold

from saeembed.analysis.probe_scores import metric

log = logging.getLogger(__name__)

#: The concept counts the inner validation chooses among (and the held-out curve shows).
KS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
#: The dense probes' inverse penalties (ridge: alpha = 1 / C).
C_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
#: The concept probe's ridge penalties, per training document, strongest first.
ALPHAS = (10.0, 1.0, 1e-1, 1e-2, 1e-3, 1e-4)
#: Above this many training documents, the inner validation is one held-out third.
INNER_SPLIT_ABOVE = 5_000
#: A concept active in fewer training documents than this is not ranked.
MIN_SUPPORT = 3


@dataclass
class Target:
    """What a probe predicts: ``y`` holds class codes 0..C-1 (``classes`` names them) or numbers."""

    kind: str  # binary | multiclass | numeric
    y: np.ndarray
    classes: list[str] = field(default_factory=list)

    def subset(self, rows: np.ndarray) -> Target:
        return Target(self.kind, self.y[rows], self.classes)

    @property
    def categorical(self) -> bool:
        return self.kind != "numeric"

    def onehot(self) -> np.ndarray:
        return np.eye(len(self.classes))[self.y] if self.categorical else self.y[:, None]


def make_folds(target: Target, n_folds: int, seed: int) -> np.ndarray:
    """Fold of each document (0..n_folds-1), stratified by class, or by quintile of a number."""
    strata = target.y if target.categorical else _quantile_bins(target.y, 5)
    splitter = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
    folds = np.empty(len(target.y), dtype=np.int64)
    for fold, (_, test) in enumerate(splitter.split(np.zeros(len(strata)), strata)):
        folds[test] = fold
    return folds


def _quantile_bins(y: np.ndarray, n: int) -> np.ndarray:
    edges = np.quantile(y, np.linspace(0, 1, n + 1)[1:-1])
    return np.searchsorted(edges, y, side="right")


def inner_splits(target: Target, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, validation) index pairs inside a training fold: 3 folds, or one held-out third
    above `INNER_SPLIT_ABOVE` documents."""
    n = len(target.y)
    strata = target.y if target.categorical else _quantile_bins(target.y, 3)
    smallest = np.bincount(strata).min() if len(strata) else 0
    splitter = (
        StratifiedKFold(3, shuffle=True, random_state=seed)
        if smallest >= 3
        else KFold(3, shuffle=True, random_state=seed)
    )
    splits = list(splitter.split(np.zeros(n), strata if smallest >= 3 else None))
    return splits[:1] if n > INNER_SPLIT_ABOVE else splits


# ---- the concept matrix -----------------------------------------------------------------------
class Concepts:
    """A documents x concepts sparse matrix prepared once for the probes (rows, columns, squares
    and activity in the layouts the probes read), and row subsets of it as views: a subset is
    never copied; sums over its rows are one product with the whole matrix, and only the ranked
    columns of its rows are ever made dense."""

    def __init__(self, x: sp.spmatrix, rows: np.ndarray | None = None, _shared=None):
        if _shared is None:
            csc = sp.csc_matrix(x, dtype=np.float64)
            csc.eliminate_zeros()
            structure = (csc.indices, csc.indptr)
            _shared = (
                csc,
                sp.csc_matrix((csc.data**2, *structure), shape=csc.shape),
                sp.csc_matrix(((csc.data > 0).astype(np.float64), *structure), shape=csc.shape),
            )
        self._csc, self._squares, self._active = _shared
        self._shared = _shared
        n = self._csc.shape[0]
        self.rows = np.arange(n) if rows is None else np.asarray(rows)

    @staticmethod
    def of(x) -> Concepts:
        return x if isinstance(x, Concepts) else Concepts(x)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.rows), self._csc.shape[1]

    def __getitem__(self, rows) -> Concepts:
        return Concepts(None, self.rows[rows], self._shared)

    def _weighted(self, matrix: sp.csc_matrix, weights: np.ndarray) -> np.ndarray:
        full = np.zeros((matrix.shape[0], weights.shape[1]))
        full[self.rows] = weights
        return np.asarray(matrix.T @ full)

    def sums(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per concept: the ``weights``-weighted sums ([concepts, w]) over these rows of the
        values, of their squares, and of their activity (value > 0)."""
        return tuple(self._weighted(m, weights) for m in (self._csc, self._squares, self._active))

    def columns(self, order: np.ndarray) -> np.ndarray:
        """These rows of the ``order`` columns, dense (only these rows are made dense)."""
        return self._csc[:, order].tocsr()[self.rows].toarray()


# ---- ranking concepts -------------------------------------------------------------------------
def rank_scores(x, target: Target, min_support: int = MIN_SUPPORT) -> np.ndarray:
    """Per concept (and, for several classes, per class: ``[concepts, classes]``), how strongly
    it separates the target on these documents: the one-vs-rest standardised mean difference
    (|Cohen's d| with the pooled standard deviation; for two classes, one column), or the
    absolute Pearson correlation with a number; 0 below ``min_support`` active documents."""
    x = Concepts.of(x)
    n = x.shape[0]
    ones = np.ones((n, 1))
    weights = np.hstack([target.onehot() if target.categorical else target.y[:, None], ones])
    sums, sums_sq, active = x.sums(weights)
    total, total_sq, support = sums[:, -1], sums_sq[:, -1], active[:, -1]
    if target.categorical:
        sizes = weights.sum(axis=0)
        columns = [1] if target.kind == "binary" else list(range(len(target.classes)))
        scores = np.zeros((x.shape[1], len(columns)))
        for i, c in enumerate(columns):
            n_in, n_out = sizes[c], n - sizes[c]
            if n_in < 1 or n_out < 1:
                continue
            mean_in, mean_out = sums[:, c] / n_in, (total - sums[:, c]) / n_out
            within = (sums_sq[:, c] - n_in * mean_in**2) + (
                total_sq - sums_sq[:, c] - n_out * mean_out**2
            )
            sd = np.sqrt(np.maximum(within, 0) / max(n - 2, 1))
            with np.errstate(invalid="ignore", divide="ignore"):
                scores[:, i] = np.where(sd > 0, np.abs(mean_in - mean_out) / sd, 0.0)
    else:
        y_mean = target.y.mean()
        sd_y = np.sqrt(((target.y - y_mean) ** 2).mean())
        mean = total / n
        sd_x = np.sqrt(np.maximum(total_sq / n - mean**2, 0))
        cov = sums[:, 0] / n - mean * y_mean
        with np.errstate(invalid="ignore", divide="ignore"):
            scores = np.where((sd_x > 0) & (sd_y > 0), np.abs(cov) / (sd_x * sd_y), 0.0)[:, None]
    scores[support < min_support] = 0.0
    scores = np.nan_to_num(scores)
    return scores[:, 0] if scores.shape[1] == 1 else scores


def ranked(x, target: Target, k: int) -> np.ndarray:
    """The ``k`` best-ranked concepts (`rank_scores`), best first, only those that score. With
    several classes, each class's best concepts are taken in turn (its first, then each one's
    second, ...), so an easy class cannot crowd the concepts of the others out."""
    scores = rank_scores(x, target)
    if scores.ndim == 1:
        order = np.argsort(-scores, kind="stable")[:k]
        return order[scores[order] > 0]
    per_class = np.argsort(-scores, axis=0, kind="stable")[:k]  # [k, C]
    scored = np.take_along_axis(scores, per_class, axis=0) > 0
    turns = per_class.ravel()[scored.ravel()]  # row-major: every class's first, then second...
    _, first = np.unique(turns, return_index=True)
    return turns[np.sort(first)][:k]


def standardised(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mean, std = train.mean(axis=0), train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return [(a - mean) / std for a in (train, *others)]


# ---- fitting and predicting -------------------------------------------------------------------
def fit_model(x: np.ndarray, target: Target, c: float = 1.0, warm=None):
    """An L2 logistic regression (C = ``c``) or a ridge (alpha = 1 / ``c``) on ``x``."""
    if target.kind == "numeric":
        return Ridge(alpha=1.0 / c).fit(x, target.y)
    model = warm or LogisticRegression(max_iter=1000)
    model.set_params(C=c, warm_start=warm is not None)
    return model.fit(x, target.y)


def predict(model, x: np.ndarray, target: Target) -> np.ndarray:
    """The decision score (binary), class probabilities in class order (multi-class) or value."""
    if target.kind == "numeric":
        return model.predict(x)
    if target.kind == "binary":
        return model.decision_function(x)
    proba = np.zeros((len(x), len(target.classes)))
    proba[:, model.classes_] = model.predict_proba(x)
    return proba


def empty_predictions(target: Target, n: int) -> np.ndarray:
    return np.zeros((n, len(target.classes))) if target.kind == "multiclass" else np.zeros(n)


# ---- the concept probe ------------------------------------------------------------------------
@dataclass
class ConceptProbe:
    """Out-of-fold predictions of the concept probe: at the k each fold chose (``chosen``) and
    at every k of the curve (``by_k``); per fold the k chosen and the concepts it used."""

    chosen: np.ndarray
    by_k: dict[int, np.ndarray]
    k_of_fold: dict[int, int]
    concepts_of_fold: dict[int, np.ndarray]
    union: np.ndarray | None = None


def _usable(target: Target) -> bool:
    return len(np.unique(target.y)) > 1


def responses(target: Target) -> np.ndarray:
    """What the ridge fits: the 0/1 label, one column per class, or the number."""
    return target.onehot() if target.kind == "multiclass" else target.y[:, None].astype(float)


class RidgePath:
    """Ridge fits of the responses on the first k columns of a standardised block, for every k
    and penalty, at the cost of one Gram matrix: each is a solve of its leading k x k part."""

    def __init__(self, block: np.ndarray, target: Target):
        y = responses(target)
        self.y_mean = y.mean(axis=0)
        self.gram = block.T @ block
        self.cross = block.T @ (y - self.y_mean)
        self.n = len(block)

    def weights(self, k: int, alpha: float) -> np.ndarray:
        k = min(k, len(self.gram))
        penalty = alpha * self.n * np.eye(k)
        return np.linalg.solve(self.gram[:k, :k] + penalty, self.cross[:k])

    def predict(self, block: np.ndarray, k: int, alpha: float, target: Target) -> np.ndarray:
        raw = block[:, : min(k, len(self.gram))] @ self.weights(k, alpha) + self.y_mean
        return raw if target.kind == "multiclass" else raw[:, 0]


def choose_k(x, target: Target, ks: tuple[int, ...], seed: int) -> tuple[int, dict[int, float]]:
    """The k of ``ks`` with the best mean inner-validation score (the smaller on a tie), and for
    every k its best penalty of `ALPHAS` (the larger on a tie)."""
    x = Concepts.of(x)
    scores = np.zeros((len(ks), len(ALPHAS)))
    counts = 0
    for train, valid in inner_splits(target, seed):
        t_train, t_valid = target.subset(train), target.subset(valid)
        if not (_usable(t_train) and _usable(t_valid)):
            continue
        order = ranked(x[train], t_train, max(ks))
        if len(order) == 0:
            continue
        a, b = standardised(x[train].columns(order), x[valid].columns(order))
        path = RidgePath(a, t_train)
        for i, k in enumerate(ks):
            for j, alpha in enumerate(ALPHAS):
                scores[i, j] += metric(t_valid, path.predict(b, k, alpha, t_valid))
        counts += 1
    if counts == 0:
        return int(ks[0]), dict.fromkeys(ks, ALPHAS[0])
    alpha_of = {k: ALPHAS[int(np.argmax(scores[i]))] for i, k in enumerate(ks)}
    best = scores.max(axis=1)
    return int(ks[int(np.argmax(best >= best.max() - 1e-9))]), alpha_of


@dataclass
class FittedConcepts:
    """A concept probe fitted on training documents: the ranked concepts (best first), their
    training mean and standard deviation, the chosen k, each k's penalty, and the ridge path."""

    order: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    k: int
    alpha_of: dict[int, float]
    path: RidgePath

    def block(self, x) -> np.ndarray:
        return (Concepts.of(x).columns(self.order) - self.mean) / self.std

    def predict(self, x, target: Target, k: int | None = None, block=None) -> np.ndarray:
        """Predictions at ``k`` (the chosen one by default); ``block``: ``self.block(x)``, when
        the caller already has it."""
        k = self.k if k is None else k
        block = self.block(x) if block is None else block
        return self.path.predict(block, k, self.alpha_of[k], target)

    def coef(self) -> np.ndarray:
        """The chosen model's weights ([k, responses]) per standard deviation of each concept."""
        return self.path.weights(self.k, self.alpha_of[self.k])


def fit_concepts(x, target: Target, *, ks: tuple[int, ...] = KS, seed: int = 0) -> FittedConcepts:
    """Choose k (and each k's penalty) by inner validation, rank the concepts on all of these
    documents, and fit the ridge path on them. ``x``: a sparse matrix or `Concepts`."""
    x = Concepts.of(x)
    ks = tuple(k for k in ks if k <= x.shape[1]) or (x.shape[1],)
    best, alpha_of = choose_k(x, target, ks, seed)
    order = ranked(x, target, max(ks))
    block = x.columns(order)
    mean, std = block.mean(axis=0), block.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    path = RidgePath((block - mean) / std, target)
    return FittedConcepts(order, mean, std, best, alpha_of, path)


def cross_fit_concepts(
    x,
    target: Target,
    folds: np.ndarray,
    *,
    ks: tuple[int, ...] = KS,
    seed: int = 0,
    dense: np.ndarray | None = None,
    dense_c: dict[int, float] | None = None,
) -> ConceptProbe:
    """The concept probe fitted on each training fold and scored on its held-out documents;
    with ``dense`` (and the dense probe's C per fold), also the union probe."""
    x = Concepts.of(x)
    ks = tuple(k for k in ks if k <= x.shape[1]) or (x.shape[1],)
    n = x.shape[0]
    by_k = {k: empty_predictions(target, n) for k in ks}
    chosen = empty_predictions(target, n)
    union = empty_predictions(target, n) if dense is not None else None
    k_of_fold, concepts_of_fold = {}, {}
    for fold in np.unique(folds):
        train, test = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
        t_train = target.subset(train)
        fitted = fit_concepts(x[train], t_train, ks=ks, seed=seed + int(fold))
        test_block = fitted.block(x[test])  # once for every k
        for k in ks:
            by_k[k][test] = fitted.predict(None, target, k, block=test_block)
        chosen[test] = by_k[fitted.k][test]
        k_of_fold[int(fold)] = fitted.k
        concepts_of_fold[int(fold)] = fitted.order[: fitted.k]
        if union is not None:
            c = (dense_c or {}).get(int(fold), 1.0)
            fitted_union = fit_dense(
                np.hstack([dense[train], fitted.block(x[train])[:, : fitted.k]]), t_train, c=c
            )
            union[test] = fitted_union.predict(
                np.hstack([dense[test], test_block[:, : fitted.k]]), target
            )
        log.info("fold %d: k=%d of %d ranked concepts", fold, fitted.k, len(fitted.order))
    return ConceptProbe(chosen, by_k, k_of_fold, concepts_of_fold, union)


# ---- dense probes -----------------------------------------------------------------------------
def choose_c(z: np.ndarray, target: Target, seed: int) -> float:
    """The C of `C_GRID` with the best mean inner-validation score (the smaller on a tie)."""
    scores = np.zeros(len(C_GRID))
    for train, valid in inner_splits(target, seed):
        t_train, t_valid = target.subset(train), target.subset(valid)
        if not (_usable(t_train) and _usable(t_valid)):
            continue
        a, b = standardised(z[train], z[valid])
        warm = None
        for i, c in enumerate(C_GRID):
            model = fit_model(a, t_train, c, warm)
            warm = model if target.categorical else None
            scores[i] += metric(t_valid, predict(model, b, t_valid))
    return float(C_GRID[int(np.argmax(scores >= scores.max() - 1e-9))])


@dataclass
class FittedDense:
    """A dense probe fitted on training documents: standardisation, C and model."""

    mean: np.ndarray
    std: np.ndarray
    c: float
    model: object

    def predict(self, z: np.ndarray, target: Target) -> np.ndarray:
        return predict(self.model, (np.asarray(z, np.float64) - self.mean) / self.std, target)


def fit_dense(
    z: np.ndarray, target: Target, *, c: float | None = None, seed: int = 0
) -> FittedDense:
    """Standardise ``z``, choose C by inner validation (unless given) and fit."""
    z = np.asarray(z, dtype=np.float64)
    c = choose_c(z, target, seed) if c is None else c
    mean, std = z.mean(axis=0), z.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return FittedDense(mean, std, c, fit_model((z - mean) / std, target, c))


def cross_fit_dense(
    z: np.ndarray, target: Target, folds: np.ndarray, *, seed: int = 0
) -> tuple[np.ndarray, dict[int, float]]:
    """Out-of-fold predictions of the dense probe on ``z`` and the C each fold chose."""
    out = empty_predictions(target, len(z))
    chosen_c = {}
    for fold in np.unique(folds):
        train, test = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
        fitted = fit_dense(z[train], target.subset(train), seed=seed + int(fold))
        out[test] = fitted.predict(z[test], target)
        chosen_c[int(fold)] = fitted.c
    return out, chosen_c
