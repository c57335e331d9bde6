"""When a result's evidence is weak, one sentence that says so: nothing passes the
multiple-testing correction, a side has too few documents for any but large differences to show,
or a model predicts held-out labels no better than chance. Commands print it on stderr, reports
show it above everything else, and the summaries of the Python API carry it as ``weak``."""

from __future__ import annotations

# Below this many documents on a side, only large differences can pass the correction.
FEW_DOCUMENTS = 20


def weak_diff(
    sides: list[str], sizes: list[int], significant: int, alpha: float, what: str = "concept"
) -> str | None:
    """Why a diff of ``sides`` (with ``sizes`` documents) whose ``significant`` rows (concepts
    or themes, ``what``) passed q < ``alpha`` is weak, or None when it is not."""
    small = [f"{name} has {size:,}" for name, size in zip(sides, sizes, strict=True)
             if size < FEW_DOCUMENTS]  # fmt: skip
    if significant and not small:
        return None
    reasons = []
    if not significant:
        reasons.append(f"no {what} differs at q < {alpha}")
    if small:
        reasons.append(f"few documents ({' and '.join(small)})")
    advice = (
        "nothing here is a finding; more documents per side can show smaller differences"
        if not significant
        else "only large differences can show, and their intervals are wide"
    )
    return f"weak evidence: {' and '.join(reasons)}; {advice}"


def weak_fit(summary: dict, metrics: dict[str, float]) -> str | None:
    """Why a preference fit is weak (its ``summary`` holds n_significant, alpha, n_pairs and
    auc_ci), or None: no concept passes the correction, or the best concept model's held-out
    AUC interval reaches 0.5 (no better than chance)."""
    reasons = []
    if not summary["n_significant"]:
        reasons.append(f"no concept is significant at q < {summary['alpha']}")
    models = [name for name in metrics if name not in ("length", "dense")]
    best = max(models, key=lambda name: metrics[name]) if models else None
    if best is not None and summary["auc_ci"][best][0] <= 0.5:
        low, high = summary["auc_ci"][best]
        reasons.append(
            f"the best concept model predicts held-out labels no better than chance "
            f"(AUC {metrics[best]:.2f}, 95% CI {low:.2f}-{high:.2f})"
        )
    if not reasons:
        return None
    return (
        f"weak evidence: {' and '.join(reasons)} on {summary['n_pairs']:,} pairs; read the "
        "table as exploration, not findings (more pairs narrow it)"
    )
