"""Per-concept preference regressions, fitted for all concepts at once.

For each concept j, a logistic regression of the label (1 = A preferred) on the standardised
difference Δ_j = x_j(A) − x_j(B) and the controls (e.g. the standardised length difference):

    logit P(A preferred) = b0 + b1 · z(Δ_j) + c · controls

fitted by Newton's method batched over concepts (a 2 + n_controls system per concept). Reported:
the coefficient and its odds ratio, a Wald p-value, and the Δwin-rate: the average over pairs of
the change in P(A preferred) when the concept is present in A only (Δ = +1) rather than in
neither response (Δ = 0), controls at their observed values — the average marginal effect that
WIMHF (Movva et al. 2025) reports as Δwin-rate. Concepts whose fit diverges (|b1| beyond
`SEPARATION_LIMIT`, or no convergence) are quasi-separated: reported as such, without p-value."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy import stats as sps
from scipy.special import expit

SEPARATION_LIMIT = 10.0
MAX_ITER = 50


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return (x - mean) / std, mean, std


def _dense(block) -> np.ndarray:
    return np.asarray(block.toarray() if sp.issparse(block) else block, dtype=float)


def fit_per_concept(
    delta: np.ndarray,
    y: np.ndarray,
    controls: np.ndarray | None = None,
    *,
    chunk: int = 512,
    tol: float = 1e-8,
) -> dict[str, np.ndarray]:
    """Fit one logistic regression per column of ``delta`` ([pairs, concepts], dense or scipy
    sparse); ``y`` in {0, 1}.

    Returns arrays over concepts: ``coef``, ``se``, ``p``, ``win_rate_delta``, ``separated``,
    ``prevalence`` (share of pairs where Δ != 0). Concepts are fitted ``chunk`` at a time."""
    parts = [
        _fit_chunk(_dense(delta[:, i : i + chunk]), y, controls, tol)
        for i in range(0, delta.shape[1], chunk)
    ]
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def _fit_chunk(
    delta: np.ndarray, y: np.ndarray, controls: np.ndarray | None, tol: float
) -> dict[str, np.ndarray]:
    n, f = delta.shape
    c = np.zeros((n, 0)) if controls is None else np.asarray(controls, float).reshape(n, -1)
    zc, _, _ = _standardise(c) if c.shape[1] else (c, None, None)
    zd, mean_d, std_d = _standardise(np.asarray(delta, float))
    k = 2 + zc.shape[1]
    beta = np.zeros((f, k))
    y = np.asarray(y, float)
    converged = np.zeros(f, dtype=bool)
    for _ in range(MAX_ITER):
        eta = beta[:, 0][None, :] + beta[:, 1][None, :] * zd
        if zc.shape[1]:
            eta = eta + zc @ beta[:, 2:].T
        p = expit(eta)  # [n, f]
        w = p * (1 - p)
        r = y[:, None] - p
        # gradient and Hessian per concept, X_j = [1, zd_j, controls...]
        grad = np.empty((f, k))
        hess = np.empty((f, k, k))
        ones = np.ones((n, 1))
        xs = [ones, zd, *[zc[:, [i]] for i in range(zc.shape[1])]]
        for a in range(k):
            grad[:, a] = (xs[a] * r).sum(axis=0)
            for b in range(a, k):
                hess[:, a, b] = hess[:, b, a] = (xs[a] * xs[b] * w).sum(axis=0)
        step = np.linalg.solve(hess + 1e-10 * np.eye(k), grad[..., None])[..., 0]
        beta = beta + np.where(converged[:, None], 0.0, step)
        converged |= np.abs(step).max(axis=1) < tol
        if converged.all():
            break
    cov = np.linalg.inv(hess + 1e-10 * np.eye(k))
    se = np.sqrt(np.maximum(cov[:, 1, 1], 0))
    coef = beta[:, 1]
    separated = (~converged) | (np.abs(coef) > SEPARATION_LIMIT)
    p_value = np.where(
        separated, np.nan, 2 * sps.norm.sf(np.abs(coef / np.where(se > 0, se, np.inf)))
    )
    # Δwin-rate: Δ = +1 vs Δ = 0 in raw units, through the standardisation
    base = beta[:, 0][None, :] + (zc @ beta[:, 2:].T if zc.shape[1] else 0.0)
    z_plus = (1 - mean_d) / std_d
    z_zero = (0 - mean_d) / std_d
    win = (expit(base + coef * z_plus) - expit(base + coef * z_zero)).mean(axis=0)
    return {
        "coef": coef,
        "se": se,
        "p": p_value,
        "win_rate_delta": np.where(separated, np.nan, win),
        "separated": separated,
        "prevalence": (np.asarray(delta) != 0).mean(axis=0),
    }
