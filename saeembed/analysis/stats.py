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


def log_relative_risk(
    k_a, n_a, k_b, n_b, z: float = Z95
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log relative risk log(p_a / p_b) of presence in A vs B with its Katz log 95% interval
    (Katz et al. 1978); like `log_odds_ratio`, 0.5 is added to every cell of the 2x2 table, so
    p_a = (k_a + 0.5) / (n_a + 1) and zero counts give finite values."""
    a, c = np.asarray(k_a, float) + 0.5, np.asarray(k_b, float) + 0.5
    m_a, m_b = np.asarray(n_a, float) + 1, np.asarray(n_b, float) + 1
    lrr = np.log(a / m_a) - np.log(c / m_b)
    se = np.sqrt(np.maximum(1 / a - 1 / m_a + 1 / c - 1 / m_b, 0))
    return lrr, lrr - z * se, lrr + z * se


def log_ratio_of_means(
    sum_a, sumsq_a, n_a, sum_b, sumsq_b, n_b, typical, cross=None, z: float = Z95
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log ratio of the two sides' means, log(mean_a / mean_b), with a delta-method 95% interval,
    from per-side sums, sums of squares and sizes (``n_a`` values of A, absent ones 0).

    Half a document at ``typical`` (the concept's mean where present) and half a document
    without it are added to each side, so a side without the concept still has a finite log.
    Variances are ``sumsq / n - mean**2``; the variance of the log ratio is
    ``var_a / (n_a mean_a**2) + var_b / (n_b mean_b**2)``. For values that are 0 or 1 (and
    typical 1) this is exactly `log_relative_risk` (Katz, 0.5 added to every cell).

    Paired sides (``cross``: the sum over pairs of a * b, ``n_a == n_b`` pairs; the half
    documents form a pair at ``typical`` and one without) subtract the covariance:
    ``(var_a / mean_a**2 + var_b / mean_b**2 - 2 cov / (mean_a mean_b)) / n``; for 0/1 values
    that is the matched-pairs interval of the relative risk, variance
    ``(only_a + only_b) / (n_a n_b)`` (Agresti 2002, 10.1) with the half pair added."""
    t = np.asarray(typical, float)
    s_a, s_b = np.asarray(sum_a, float) + t / 2, np.asarray(sum_b, float) + t / 2
    q_a, q_b = np.asarray(sumsq_a, float) + t**2 / 2, np.asarray(sumsq_b, float) + t**2 / 2
    m_a, m_b = np.asarray(n_a, float) + 1, np.asarray(n_b, float) + 1
    mean_a, mean_b = s_a / m_a, s_b / m_b
    var_a = np.maximum(q_a / m_a - mean_a**2, 0)
    var_b = np.maximum(q_b / m_b - mean_b**2, 0)
    if cross is None:
        var = var_a / (m_a * mean_a**2) + var_b / (m_b * mean_b**2)
    else:
        cov = (np.asarray(cross, float) + t**2 / 2) / m_a - mean_a * mean_b
        var = (var_a / mean_a**2 + var_b / mean_b**2 - 2 * cov / (mean_a * mean_b)) / m_a
    lr = np.log(mean_a / mean_b)
    se = np.sqrt(np.maximum(var, 0))
    return lr, lr - z * se, lr + z * se


def nearest_zero(low, high) -> np.ndarray:
    """The bound of each interval [low, high] nearest zero, signed (0 where the interval holds
    zero): the smallest effect the interval vouches for, the conservative estimate."""
    low, high = np.asarray(low, float), np.asarray(high, float)
    return np.where(low > 0, low, np.where(high < 0, high, 0.0))


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


# ---- numeric measures (token counts, shares, mean activations) -----------------------------------
def welch_from_moments(sum_a, sumsq_a, n_a, sum_b, sumsq_b, n_b) -> tuple[np.ndarray, ...]:
    """Welch's unequal-variance t-test from per-side sums and sums of squares (the documents
    without the concept contribute zeros, so sums over the sparse rows suffice).

    Returns (mean_a, mean_b, diff, ci_low, ci_high, p): the difference of means with its Welch
    95% interval (Welch-Satterthwaite degrees of freedom) and the two-sided p-value. Where both
    variances are zero the difference is exact: p is 1 if it is 0, else 0."""
    sum_a, sumsq_a, sum_b, sumsq_b = (
        np.asarray(x, float) for x in (sum_a, sumsq_a, sum_b, sumsq_b)
    )
    n_a, n_b = np.asarray(n_a, float), np.asarray(n_b, float)
    mean_a, mean_b = sum_a / n_a, sum_b / n_b
    var_a = np.maximum(sumsq_a - n_a * mean_a**2, 0) / (n_a - 1)
    var_b = np.maximum(sumsq_b - n_b * mean_b**2, 0) / (n_b - 1)
    va, vb = var_a / n_a, var_b / n_b
    se = np.sqrt(va + vb)
    diff = mean_a - mean_b
    with np.errstate(divide="ignore", invalid="ignore"):
        df = (va + vb) ** 2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1))
        t = diff / se
    p = np.where(
        se > 0, 2 * stats.t.sf(np.abs(t), np.where(se > 0, df, 1)), np.where(diff == 0, 1.0, 0.0)
    )
    crit = stats.t.ppf(0.975, np.where(se > 0, df, 1))
    return mean_a, mean_b, diff, diff - crit * se, diff + crit * se, p


def paired_t_from_moments(sum_d, sumsq_d, n: int) -> tuple[np.ndarray, ...]:
    """Paired t-test from the sum and sum of squares of the per-pair differences over ``n``
    pairs: (mean difference, its 95% interval, two-sided p)."""
    sum_d, sumsq_d = np.asarray(sum_d, float), np.asarray(sumsq_d, float)
    mean = sum_d / n
    se = np.sqrt(np.maximum(sumsq_d - n * mean**2, 0) / (n - 1) / n)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = mean / se
    p = np.where(se > 0, 2 * stats.t.sf(np.abs(t), n - 1), np.where(mean == 0, 1.0, 0.0))
    half = stats.t.ppf(0.975, n - 1) * se
    return mean, mean - half, mean + half, p


def mann_whitney_sparse(
    feature: np.ndarray,
    value: np.ndarray,
    k_a: np.ndarray,
    k_b: np.ndarray,
    features: np.ndarray,
    n_a: int,
    n_b: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two-sided Mann-Whitney U tests, one per concept, from sparse tie groups.

    Each row ``(feature, value, k_a, k_b)`` says how many documents of A and of B have that
    (positive) value of the concept; documents not listed have 0. Ranks are mid-ranks; the
    p-value is the normal approximation with tie correction and continuity correction (as
    `scipy.stats.mannwhitneyu(method="asymptotic")`). The effect is the rank-biserial
    correlation r = 2 U_A / (n_a n_b) - 1 (the probability that a document of A has more of the
    concept than one of B, minus the reverse), with a 95% interval from the Hanley-McNeil (1982)
    standard error of the AUC (r + 1) / 2.

    Returns (r, r_low, r_high, p) aligned with ``features`` (sorted ids)."""
    feature, value = np.asarray(feature, np.int64), np.asarray(value, float)
    k_a, k_b = np.asarray(k_a, np.int64), np.asarray(k_b, np.int64)
    order = np.lexsort((value, feature))
    feature, value, k_a, k_b = feature[order], value[order], k_a[order], k_b[order]
    where = np.searchsorted(features, feature)
    m = len(features)
    nz_a = np.bincount(where, weights=k_a, minlength=m)
    nz_b = np.bincount(where, weights=k_b, minlength=m)
    zeros = (n_a - nz_a) + (n_b - nz_b)
    size = k_a + k_b
    # documents before each tie group within its concept: the zeros, then the smaller values
    before = np.cumsum(size) - size
    start = np.searchsorted(feature, features)  # first row of each concept
    first_cum = np.where(start < len(before), before[np.minimum(start, len(before) - 1)], 0)
    below = before - first_cum[where] + zeros[where]
    mid_rank = below + (size + 1) / 2
    rank_sum_a = (n_a - nz_a) * (zeros + 1) / 2 + np.bincount(
        where, weights=k_a * mid_rank, minlength=m
    )
    u_a = rank_sum_a - n_a * (n_a + 1) / 2
    n = n_a + n_b
    ties = (
        zeros**3 - zeros + np.bincount(where, weights=size.astype(float) ** 3 - size, minlength=m)
    )
    sigma = np.sqrt(n_a * n_b / 12 * ((n + 1) - ties / (n * (n - 1))))
    u = np.maximum(u_a, n_a * n_b - u_a)
    with np.errstate(divide="ignore", invalid="ignore"):
        zscore = (u - n_a * n_b / 2 - 0.5) / sigma
    p = np.clip(np.where(sigma > 0, 2 * stats.norm.sf(zscore), 1.0), 0, 1)
    auc = u_a / (n_a * n_b)
    a = np.maximum(auc, 1 - auc)  # the formula's exponential model is stated for AUC >= 1/2
    q1, q2 = a / (2 - a), 2 * a**2 / (1 + a)
    var = (a * (1 - a) + (n_a - 1) * (q1 - a**2) + (n_b - 1) * (q2 - a**2)) / (n_a * n_b)
    half = Z95 * np.sqrt(np.maximum(var, 0))
    r = 2 * auc - 1
    return r, np.maximum(r - 2 * half, -1), np.minimum(r + 2 * half, 1), p


def auc_interval(auc: float, n_pos: int, n_neg: int, z: float = Z95) -> tuple[float, float]:
    """The 95% interval of an AUC measured on ``n_pos`` positives and ``n_neg`` negatives, from
    the standard error of Hanley & McNeil (Radiology 1982, eq. 2; exponential approximation),
    clipped to [0, 1]."""
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    variance = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / max(
        n_pos * n_neg, 1
    )
    half = z * float(np.sqrt(max(variance, 0.0)))
    return max(auc - half, 0.0), min(auc + half, 1.0)
