"""Vectorised statistics for comparing concept frequencies between document sets: Wilson and
Newcombe confidence intervals, the two-proportion z-test, Fisher's exact test where counts are
small, log odds ratios, McNemar's test for paired presence, and Benjamini-Hochberg q-values.

All functions take numpy arrays of counts (one entry per concept) and return arrays."""

from __future__ import annotations

import numpy as np
from scipy import stats

Z95 = float(stats.norm.ppf(0.975))


def wilson_interval(k: np.ndarray, n: np.ndarray, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a proportion k/n (Wilson 1927)."""
    k, n = np.asarray(k, float), np.asarray(n, float)
    p = k / n
    denom = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


def newcombe_interval(
    k_a: np.ndarray, n_a: np.ndarray, k_b: np.ndarray, n_b: np.ndarray, z: float = Z95
) -> tuple[np.ndarray, np.ndarray]:
    """Confidence interval for p_a - p_b by Newcombe's hybrid score method (Newcombe 1998,
    method 10): good coverage with small counts and near 0 or 1, unlike the Wald interval."""
    p_a, p_b = np.asarray(k_a, float) / n_a, np.asarray(k_b, float) / n_b
    l_a, u_a = wilson_interval(k_a, n_a, z)
    l_b, u_b = wilson_interval(k_b, n_b, z)
    d = p_a - p_b
    low = d - np.sqrt((p_a - l_a) ** 2 + (u_b - p_b) ** 2)
    high = d + np.sqrt((u_a - p_a) ** 2 + (p_b - l_b) ** 2)
    return low, high


def two_proportion_p(k_a, n_a, k_b, n_b) -> np.ndarray:
    """Two-sided p-value of the pooled two-proportion z-test."""
    k_a, n_a, k_b, n_b = (np.asarray(x, float) for x in (k_a, n_a, k_b, n_b))
    pooled = (k_a + k_b) / (n_a + n_b)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    with np.errstate(divide="ignore", invalid="ignore"):
        zscore = np.where(se > 0, (k_a / n_a - k_b / n_b) / se, 0.0)
    return 2 * stats.norm.sf(np.abs(zscore))


def fisher_p(k_a, n_a, k_b, n_b) -> np.ndarray:
    """Two-sided p-values of Fisher's exact test, one 2x2 table per entry."""
    out = np.empty(len(k_a))
    for i, (a, na, b, nb) in enumerate(zip(k_a, n_a, k_b, n_b, strict=True)):
        out[i] = stats.fisher_exact([[a, na - a], [b, nb - b]]).pvalue
    return out


def proportion_test(k_a, n_a, k_b, n_b, min_expected: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    """p-values, and the test used per entry: Fisher's exact test where an expected cell count is
    below ``min_expected`` (Cochran's rule), the two-proportion z-test otherwise."""
    k_a, n_a, k_b, n_b = (np.asarray(x, np.int64) for x in (k_a, n_a, k_b, n_b))
    total = n_a + n_b
    present = k_a + k_b
    expected = np.minimum.reduce(
        [
            present * n_a / total,
            present * n_b / total,
            (total - present) * n_a / total,
            (total - present) * n_b / total,
        ]
    )
    small = expected < min_expected
    p = two_proportion_p(k_a, n_a, k_b, n_b)
    if small.any():
        p[small] = fisher_p(k_a[small], n_a[small], k_b[small], n_b[small])
    return p, np.where(small, "fisher", "z")


def log_odds_ratio(k_a, n_a, k_b, n_b, z: float = Z95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log odds ratio of presence in A vs B with its Wald 95% interval; 0.5 is added to every cell
    (Haldane-Anscombe) so that zero counts give finite values."""
    a = np.asarray(k_a, float) + 0.5
    b = np.asarray(n_a, float) - k_a + 0.5
    c = np.asarray(k_b, float) + 0.5
    d = np.asarray(n_b, float) - k_b + 0.5
    lor = np.log(a * d / (b * c))
    se = np.sqrt(1 / a + 1 / b + 1 / c + 1 / d)
    return lor, lor - z * se, lor + z * se


def mcnemar_p(only_a: np.ndarray, only_b: np.ndarray) -> np.ndarray:
    """Two-sided exact McNemar p-values from the discordant counts (binomial test on
    only_a of only_a + only_b at 1/2)."""
    out = np.ones(len(only_a))
    for i, (x, y) in enumerate(zip(only_a, only_b, strict=True)):
        if x + y:
            out[i] = stats.binomtest(int(x), int(x + y), 0.5).pvalue
    return out


def bh_qvalues(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values)."""
    p = np.asarray(p, float)
    if len(p) == 0:
        return p
    return stats.false_discovery_control(p, method="bh")
