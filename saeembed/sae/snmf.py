"""Semi-NMF dictionaries: coding a token against a fixed dictionary.

A semi-NMF dictionary of a site (usually the MLP's hidden activations, `saeembed.sites`)
factorises activations as ``A - b ≈ Y Z``: the features ``Z [K, d]`` (the SAE's ``W_dec``) are
free in sign and each is a sparse combination of neurons; a token's coefficients ``y`` are
nonnegative (Shafran, Geiger and Geva, "Decomposing MLP Activations into Interpretable Features
via Semi-Nonnegative Matrix Factorization", 2025). saeembed also keeps each token's code
k-sparse, so that a feature is present on a token or not, as with a TopK SAE.

`code` finds each token's ``y``: start from the token's correlations with the features
(``(a - b) Zᵀ``, which the SAE's ``W_enc = Zᵀ`` and ``b_enc = -b Zᵀ`` compute), keep the 2k
largest positive, then take ``steps`` projected gradient steps on ``||a - b - y Z||²`` with
step ``1 / L`` (``L`` the largest eigenvalue of ``Z Zᵀ``), projecting after each onto the
nonnegative vectors with 2k nonzeros (the first half of the steps), then k. All tokens of a
batch move together (a weighted sum of a few rows of the Gram matrix and a top-k per step);
there is no per-token loop. Fitting the dictionary
(`saeembed.train.snmf`) uses this same function, so a fitted dictionary encodes its own training
tokens exactly as the fit coded them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def coding_of(cfg) -> dict:
    """How a semi-NMF dictionary of config ``cfg`` codes a token: ``steps`` projected gradient
    steps (``cfg.extra["coding"]``; 6 when it says nothing)."""
    coding = dict(cfg.extra.get("coding") or {})
    return {"steps": int(coding.get("steps", 6))}


POWER_STEPS = 50  # power iterations for the largest eigenvalue of the Gram matrix
SAFETY = 1.05  # the eigenvalue estimate is raised by this much: a slightly shorter step is safe


def gram(W_dec: torch.Tensor) -> tuple[torch.Tensor, float]:
    """``Z Zᵀ`` and (an upper estimate of) its largest eigenvalue, the gradient's Lipschitz
    constant: power iteration from a fixed start, raised by `SAFETY` (an eigendecomposition
    of a 2,048-feature Gram matrix costs more than coding a batch)."""
    g = W_dec @ W_dec.T
    v = torch.ones(g.shape[0], dtype=g.dtype, device=g.device)
    top = 0.0
    for _ in range(POWER_STEPS):
        w = g @ v
        top = float(w.norm())
        if top == 0.0:
            break
        v = w / top
    return g, max(top * SAFETY, 1e-12)


def _cached_gram(sae) -> tuple[torch.Tensor, float]:
    """`gram` of an SAE's decoder, kept until its weights change or move."""
    w = sae.W_dec
    key = (w.data_ptr(), w.device, w.dtype, w._version)
    cached = getattr(sae, "_snmf_gram", None)
    if cached is None or cached[0] != key:
        cached = (key, *gram(w))
        sae._snmf_gram = cached
    return cached[1], cached[2]


def project(y: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest entries of each row of ``y``, clipped at zero: (values, indices)."""
    values, index = torch.topk(y, k, dim=1, sorted=False)
    return values.clamp_min(0), index


def solve(
    c: torch.Tensor, k: int, steps: int, g: torch.Tensor, lipschitz: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """k-sparse nonnegative codes against a dictionary ``Z [K, d]`` of tokens whose correlations
    with its features are ``c = (x - b) Zᵀ [n, K]`` (``g = Z Zᵀ``): (values ``[n, k]``, feature
    indices ``[n, k]``). The correlations are also the first guess. The first half of the steps
    keep 2k coefficients, the rest k: a token whose first k were not its best ones can still
    change them (with k throughout, a tenth of the tokens of a constructed problem stayed
    with a wrong support)."""
    width = min(2 * k, c.shape[1]) if steps > 1 else k
    values, index = project(c, width)
    step = 1.0 / lipschitz
    for i in range(steps):
        if i == steps // 2:
            width = k
        # the gradient of 1/2 ||a - b - y Z||^2 is y Z Zᵀ - (a - b) Zᵀ; y has few entries per
        # row, so y Z Zᵀ is a weighted sum of a few rows of the Gram matrix
        yg = F.embedding_bag(index, g, per_sample_weights=values, mode="sum")
        moved = (c - yg).mul_(step)
        moved.scatter_add_(1, index, values)
        values, index = project(moved, width)
    return values, index


def code(sae, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A semi-NMF `SAE`'s codes of ``x [n, d_in]`` (see the module docstring): (values, indices),
    each ``[n, k]``; values may be zero (fewer than k features used)."""
    dtype = x.dtype
    g, lipschitz = _cached_gram(sae)
    c = sae.pre_activations(x.to(sae.W_dec.dtype))
    values, index = solve(c, sae.cfg.k, coding_of(sae.cfg)["steps"], g, lipschitz)
    return values.to(dtype), index
