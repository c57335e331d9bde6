"""Per-annotator preferences: does each annotator reward the same concepts?

This module owns the annotator-level analysis of preference pairs. For every annotator with
enough pairs it fits the per-concept logistic regressions of `saeembed.prefs.regression` on that
annotator's pairs, with Δ put on one common scale (per standard deviation of Δ over all the pairs
analysed, not per annotator),
and then, per concept, pools the annotators' coefficients with the DerSimonian–Laird
random-effects estimator (DerSimonian & Laird 1986):

- the pooled coefficient with its standard error, 95% interval and z-test p-value;
- Cochran's Q with its chi-square p-value (df = k − 1): do the annotators' weights differ?
- the between-annotator variance tau² (truncated at 0), tau, and I² = (Q − df) / Q.

Per annotator it asks the converse question, which annotators depart from the others: for each
concept, the annotator's coefficient against the random-effects pool of the *other* annotators
(a leave-one-out, externally standardised residual, as ``rstudent`` in metafor), summed in squares
over concepts into a chi-square statistic. Leaving the annotator out matters: an annotator who
reverses every preference inflates tau² of the pool that includes it, and would hide behind it.

Benjamini–Hochberg q-values are taken over concepts (pooled effect, heterogeneity) and over
annotators (deviation)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse as sp
from scipy import stats as sps

from saeembed.analysis.stats import Z95, bh_qvalues
from saeembed.errors import InputError
from saeembed.prefs.regression import fit_per_concept

TOP_CONCEPTS = 3
# Δ whose per-annotator standard deviation is below this share of the overall one is constant
CONSTANT_SHARE = 1e-9


@dataclass
class AnnotatorReport:
    """What `annotator_effects` found.

    ``concepts``: one row per concept, the concepts whose weights vary most across annotators
    first; ``annotators``: one row per kept annotator, the most deviant first; ``coefficients``:
    the per-annotator estimates (long form, per standard deviation of Δ over the pairs analysed)."""

    concepts: pl.DataFrame
    annotators: pl.DataFrame
    coefficients: pl.DataFrame
    n_excluded_annotators: int
    n_excluded_pairs: int
    n_unknown_pairs: int


# --------------------------------------------------------------------------------------------
# pooling


def dersimonian_laird(b: np.ndarray, se: np.ndarray) -> dict[str, np.ndarray]:
    """DerSimonian–Laird random-effects pooling of ``b`` ([studies, concepts], NaN = missing)
    with standard errors ``se`` (same shape; non-finite or non-positive = missing).

    Returns arrays over concepts: ``k`` (number of estimates), ``coef``, ``se``, ``ci_low``,
    ``ci_high``, ``p`` (two-sided z-test of the pooled coefficient), ``q_stat`` (Cochran's Q),
    ``p_heterogeneity`` (chi-square, df = k − 1), ``tau2``, ``tau``, ``i2``. Concepts with fewer
    than 2 estimates get NaN everywhere but ``k``."""
    b, se = np.atleast_2d(np.asarray(b, float)), np.atleast_2d(np.asarray(se, float))
    ok = np.isfinite(b) & np.isfinite(se) & (se > 0)
    k = ok.sum(axis=0)
    w = np.where(ok, 1.0 / np.where(ok, se, 1.0) ** 2, 0.0)
    b0 = np.where(ok, b, 0.0)
    valid = k >= 2
    with np.errstate(divide="ignore", invalid="ignore"):
        sw = w.sum(axis=0)
        fixed = (w * b0).sum(axis=0) / sw
        q_stat = (w * (b0 - fixed) ** 2).sum(axis=0)
        df = k - 1.0
        c = sw - (w**2).sum(axis=0) / sw
        tau2 = np.maximum(0.0, (q_stat - df) / c)
        w_star = np.where(ok, 1.0 / (np.where(ok, se, 1.0) ** 2 + tau2), 0.0)
        coef = (w_star * b0).sum(axis=0) / w_star.sum(axis=0)
        pooled_se = np.sqrt(1.0 / w_star.sum(axis=0))
        i2 = np.where(q_stat > 0, np.maximum(0.0, (q_stat - df) / q_stat), 0.0)
    out = {
        "coef": coef,
        "se": pooled_se,
        "ci_low": coef - Z95 * pooled_se,
        "ci_high": coef + Z95 * pooled_se,
        "p": 2 * sps.norm.sf(np.abs(coef / pooled_se)),
        "q_stat": q_stat,
        "p_heterogeneity": sps.chi2.sf(q_stat, np.maximum(df, 1.0)),
        "tau2": tau2,
        "tau": np.sqrt(tau2),
        "i2": i2,
    }
    out = {key: np.where(valid, value, np.nan) for key, value in out.items()}
    out["k"] = k
    return out


def leave_one_out_residuals(b: np.ndarray, se: np.ndarray) -> np.ndarray:
    """Externally standardised residuals ([studies, concepts]): each estimate against the
    random-effects pool of the other studies, (b_a − pooled_−a) / sqrt(se_a² + tau²_−a +
    se(pooled_−a)²), approximately standard normal when study a agrees with the others. NaN where
    the study has no estimate or no other study has one."""
    b, se = np.asarray(b, float), np.asarray(se, float)
    out = np.full(b.shape, np.nan)
    for a in range(b.shape[0]):
        others = np.ones(b.shape[0], dtype=bool)
        others[a] = False
        bo, so = b[others], se[others]
        pool = dersimonian_laird(bo, so)
        # a single other estimate: compare with it directly (tau² = 0, nothing to estimate)
        single = pool["k"] == 1
        if single.any():
            okay = np.isfinite(bo) & np.isfinite(so) & (so > 0)
            first = okay.argmax(axis=0)
            cols = np.arange(b.shape[1])
            pool["coef"] = np.where(single, bo[first, cols], pool["coef"])
            pool["se"] = np.where(single, so[first, cols], pool["se"])
            pool["tau2"] = np.where(single, 0.0, pool["tau2"])
        with np.errstate(invalid="ignore"):
            scale = np.sqrt(se[a] ** 2 + pool["tau2"] + pool["se"] ** 2)
            out[a] = np.where(se[a] > 0, (b[a] - pool["coef"]) / scale, np.nan)
    return out


# --------------------------------------------------------------------------------------------
# per-annotator fits


def _annotator_ids(annotators: np.ndarray | list, n: int) -> np.ndarray:
    """Annotator ids as an object array of str, None where unknown (None, NaN or empty)."""
    ids = list(annotators)
    if len(ids) != n:
        raise InputError(
            f"got {len(ids)} annotator ids for {n} pairs; give one annotator id per pair"
        )

    def clean(value: object) -> str | None:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return None
        text = str(value).strip()
        return text or None

    return np.array([clean(v) for v in ids], dtype=object)


def column_sd(x) -> np.ndarray:
    """Standard deviation (ddof 0) of each column of a dense array or a scipy sparse matrix."""
    if not sp.issparse(x):
        return np.asarray(x, float).std(axis=0)
    mean = np.asarray(x.mean(axis=0)).ravel()
    square = np.asarray(x.multiply(x).mean(axis=0)).ravel()
    return np.sqrt(np.maximum(square - mean**2, 0.0))


def fit_on_common_scale(
    delta: np.ndarray, y: np.ndarray, controls: np.ndarray | None, rows: np.ndarray, sd: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients and standard errors of the per-concept regressions on the pairs ``rows``,
    per ``sd`` (the standard deviation of Δ over all pairs) rather than per standard deviation
    within ``rows`` as `fit_per_concept` reports them. NaN where Δ is constant within ``rows``
    or the fit is separated."""
    d = delta[rows]
    c = None
    if controls is not None:
        c = np.asarray(controls, float).reshape(delta.shape[0], -1)[rows]
        c = c[:, c.std(axis=0) > 0]  # a control constant here would duplicate the intercept
        c = c if c.shape[1] else None
    fit = fit_per_concept(d, y[rows], c)
    sd_here = column_sd(d)
    usable = (sd_here > CONSTANT_SHARE * sd) & ~fit["separated"] & (fit["se"] > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = sd / sd_here  # per within-annotator sd -> per overall sd
        coef = np.where(usable, fit["coef"] * ratio, np.nan)
        se = np.where(usable, fit["se"] * ratio, np.nan)
    return coef, se


# --------------------------------------------------------------------------------------------
# tables


def _nullable(values: np.ndarray) -> pl.Series:
    return pl.Series(np.asarray(values, float)).fill_nan(None)


def _bh(p: np.ndarray) -> np.ndarray:
    """BH q-values over the finite entries of ``p``; NaN elsewhere."""
    q = np.full(len(p), np.nan)
    ok = np.isfinite(p)
    q[ok] = bh_qvalues(p[ok])
    return q


def _concept_table(features: np.ndarray, pool: dict[str, np.ndarray]) -> pl.DataFrame:
    columns = {
        "pooled_coef": pool["coef"],
        "pooled_se": pool["se"],
        "ci_low": pool["ci_low"],
        "ci_high": pool["ci_high"],
        "p": pool["p"],
        "q": _bh(pool["p"]),
        "tau": pool["tau"],
        "tau2": pool["tau2"],
        "i2": pool["i2"],
        "q_stat": pool["q_stat"],
        "p_heterogeneity": pool["p_heterogeneity"],
        "q_heterogeneity": _bh(pool["p_heterogeneity"]),
    }
    frame = pl.DataFrame(
        {
            "feature": features,
            "n_annotators": pool["k"].astype(np.int64),
            **{name: _nullable(v) for name, v in columns.items()},
        }
    )
    return frame.sort(["p_heterogeneity", "tau"], descending=[False, True], nulls_last=True)


def _annotator_table(
    names: list[str],
    n_pairs: list[int],
    residuals: np.ndarray,
    features: np.ndarray,
    alpha: float,
) -> pl.DataFrame:
    finite = np.isfinite(residuals)
    deviation = np.where(finite, residuals, 0.0) ** 2
    deviation = deviation.sum(axis=1)
    df = finite.sum(axis=1)
    p = np.where(df > 0, sps.chi2.sf(deviation, np.maximum(df, 1)), np.nan)
    q = _bh(p)
    magnitude = np.where(finite, np.abs(residuals), -np.inf)
    order = np.argsort(-magnitude, axis=1, kind="stable")[:, :TOP_CONCEPTS]
    top_concepts, top_residuals = [], []
    for a in range(len(names)):
        picked = [j for j in order[a] if finite[a, j]]
        top_concepts.append([features[j].item() for j in picked])
        top_residuals.append([float(residuals[a, j]) for j in picked])
    frame = pl.DataFrame(
        {
            "annotator": names,
            "n_pairs": np.asarray(n_pairs, np.int64),
            "deviation": np.where(df > 0, deviation, np.nan),
            "df": df.astype(np.int64),
            "p": _nullable(p),
            "q": _nullable(q),
            "deviates": np.where(np.isfinite(q), q < alpha, False),
            "top_concepts": top_concepts,
            "top_residuals": pl.Series(top_residuals, dtype=pl.List(pl.Float64)),
        }
    ).with_columns(pl.col("deviation").fill_nan(None))
    return frame.sort(["p", "deviation"], descending=[False, True], nulls_last=True)


# --------------------------------------------------------------------------------------------
# entry point


def annotator_effects(
    delta: np.ndarray,
    y: np.ndarray,
    annotators: np.ndarray | list,
    controls: np.ndarray | None = None,
    *,
    features: np.ndarray | None = None,
    min_pairs: int = 30,
    alpha: float = 0.05,
) -> AnnotatorReport:
    """Per-annotator concept preferences and how much they vary across annotators.

    ``delta``: [pairs, concepts] Δ = x(A) − x(B), dense or scipy sparse; ``y``: 1 = A
    preferred, 0 = B preferred; ``annotators``: one id per pair (None = unknown, left out);
    ``controls``: [pairs, c] extra regressors (e.g. length difference); ``features``: the
    concept ids of ``delta``'s columns.
    Annotators with fewer than ``min_pairs`` pairs are left out; ``alpha`` is the q-value level
    at which an annotator is flagged as deviating."""
    delta = delta.tocsr() if sp.issparse(delta) else np.asarray(delta, float)
    if delta.ndim != 2:
        raise InputError(f"delta must be [pairs, concepts], got shape {delta.shape}")
    n, m = delta.shape
    y = np.asarray(y, float).reshape(-1)
    if len(y) != n:
        raise InputError(f"got {len(y)} labels for {n} pairs; give one label per pair")
    if not np.isin(y, (0.0, 1.0)).all():
        raise InputError("labels must be 1 (A preferred) or 0 (B preferred); drop ties first")
    features = np.arange(m) if features is None else np.asarray(features)
    if len(features) != m:
        raise InputError(f"got {len(features)} feature ids for {m} columns of delta")
    ids = _annotator_ids(annotators, n)

    known = np.array([v is not None for v in ids], dtype=bool)
    names, counts = np.unique(ids[known].astype(str), return_counts=True)
    kept = [str(a) for a, c in zip(names, counts, strict=True) if c >= min_pairs]
    if len(kept) < 2:
        raise InputError(
            f"per-annotator analysis needs at least 2 annotators with >= {min_pairs} pairs each "
            f"(found {len(kept)}); lower --min-pairs or add pairs with annotator ids"
        )
    rows = [np.flatnonzero(ids == a) for a in kept]
    n_used = sum(len(r) for r in rows)

    sd = column_sd(delta[np.concatenate(rows)])  # one scale: all the pairs analysed
    fits = [fit_on_common_scale(delta, y, controls, r, sd) for r in rows]
    b = np.stack([f[0] for f in fits])  # [annotators, concepts]
    se = np.stack([f[1] for f in fits])

    pool = dersimonian_laird(b, se)
    residuals = leave_one_out_residuals(b, se)

    estimated = np.isfinite(b)
    coefficients = pl.DataFrame(
        {
            "annotator": np.repeat(kept, m)[estimated.ravel()],
            "feature": np.tile(features, len(kept))[estimated.ravel()],
            "coef": b[estimated],
            "se": se[estimated],
        }
    )
    return AnnotatorReport(
        concepts=_concept_table(features, pool),
        annotators=_annotator_table(kept, [len(r) for r in rows], residuals, features, alpha),
        coefficients=coefficients,
        n_excluded_annotators=len(names) - len(kept),
        n_excluded_pairs=n - n_used,
        n_unknown_pairs=int((~known).sum()),
    )
