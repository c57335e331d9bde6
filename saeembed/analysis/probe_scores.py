"""How well out-of-fold predictions fit a target, with intervals: the AUC of a binary target,
the macro-averaged one-vs-rest AUC of several classes, the R² of a number; 95% intervals and the
paired difference to a reference probe from one document bootstrap (the same resampled documents
for every probe, so differences keep their pairing). Ties in scores count half, as in the
Mann-Whitney statistic. Each score is computed from sorted scores and per-document weights, so a
bootstrap round is a few weighted counts per probe, not a new sort."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from saeembed.analysis.probe_models import Target

#: A probe that learned nothing: AUC 0.5, R² 0.
CHANCE = {"binary": 0.5, "multiclass": 0.5, "numeric": 0.0}
METRIC_NAMES = {"binary": "AUC", "multiclass": "macro-AUC", "numeric": "R²"}
BOOTSTRAP_ROUNDS = 200


class _Ranked:
    """One score vector against one 0/1 outcome, sorted once for weighted AUCs."""

    def __init__(self, positive: np.ndarray, scores: np.ndarray):
        order = np.argsort(scores, kind="mergesort")
        s = scores[order]
        self.order = order
        self.group = np.r_[0, np.cumsum(s[1:] != s[:-1])] if len(s) else np.zeros(0, int)
        self.positive = positive[order].astype(np.float64)

    def auc(self, weights: np.ndarray | None = None) -> float:
        w = np.ones(len(self.order)) if weights is None else weights[self.order]
        w1 = np.bincount(self.group, w * self.positive)
        w0 = np.bincount(self.group, w * (1 - self.positive))
        below = np.cumsum(w0) - w0
        denominator = w1.sum() * w0.sum()
        return float((w1 * (below + 0.5 * w0)).sum() / denominator) if denominator else 0.5


class _Scorer:
    """A probe's predictions, ready to be scored under any document weights."""

    def __init__(self, target: Target, pred: np.ndarray):
        self.kind, self.y, self.pred = target.kind, target.y, pred
        if target.kind == "binary":
            self.ranked = [_Ranked(target.y == 1, pred)]
        elif target.kind == "multiclass":
            self.ranked = [
                _Ranked(target.y == c, pred[:, c])
                for c in range(len(target.classes))
                if 0 < (target.y == c).sum() < len(target.y)
            ]

    def __call__(self, weights: np.ndarray | None = None) -> float:
        if self.kind != "numeric":
            return float(np.mean([r.auc(weights) for r in self.ranked]))
        w = np.ones(len(self.y)) if weights is None else weights
        mean = (w * self.y).sum() / w.sum()
        total = (w * (self.y - mean) ** 2).sum()
        return float(1 - (w * (self.y - self.pred) ** 2).sum() / total) if total else 0.0


def metric(target: Target, pred: np.ndarray) -> float:
    """AUC, macro-AUC or R² of ``pred`` (decision scores, class probabilities or values)."""
    return _Scorer(target, pred)()


def scores_with_intervals(
    target: Target,
    predictions: dict[str, np.ndarray],
    *,
    reference: str | None = None,
    rounds: int = BOOTSTRAP_ROUNDS,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Per probe: ``score``, its 95% bootstrap interval ``low``/``high``; with ``reference``
    (a key of ``predictions``), ``diff`` (score minus the reference's) and its interval
    ``diff_low``/``diff_high`` from the same resamples."""
    scorers = {name: _Scorer(target, pred) for name, pred in predictions.items()}
    n = len(target.y)
    rng = np.random.default_rng(seed)
    draws = {name: np.empty(rounds) for name in scorers}
    for r in range(rounds):
        weights = np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)
        for name, scorer in scorers.items():
            draws[name][r] = scorer(weights)
    out = {}
    for name, scorer in scorers.items():
        low, high = np.percentile(draws[name], [2.5, 97.5])
        row = {"score": scorer(), "low": float(low), "high": float(high)}
        if reference in scorers and name != reference:
            diffs = draws[name] - draws[reference]
            d_low, d_high = np.percentile(diffs, [2.5, 97.5])
            row |= {"diff": row["score"] - scorers[reference](), "diff_low": float(d_low),
                    "diff_high": float(d_high)}  # fmt: skip
        out[name] = row
    return out


def share_of_gain(score: float, dense: float, kind: str) -> float | None:
    """How much of the dense probe's gain over chance ``score`` reaches (1 = all of it)."""
    gain = dense - CHANCE[kind]
    return (score - CHANCE[kind]) / gain if gain > 0 else None
