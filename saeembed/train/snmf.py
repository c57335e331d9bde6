"""Fitting a semi-NMF dictionary to a corpus's activations (`saeembed.sae.snmf` codes with it).

The activations ``A`` of one site (the MLP's hidden activations, usually: collected by
`saeembed.train.activations` with ``site="mlp_hidden"``) are factorised as ``A - b ≈ Y Z`` with
nonnegative, k-sparse token codes ``Y`` and features ``Z`` that each combine a few neurons
(Shafran, Geiger and Geva 2025 fit the same model with multiplicative updates on a matrix held
in memory; here it streams, so a million tokens fit on a CPU):

1. Inputs are scaled to mean norm 1 (as the SAE trainer does); tokens with a norm over
   ``max_norm_ratio`` are left out. ``b`` is fitted with ``Z`` as a feature every token uses
   once (not the mean of ``A``, which would make the codes of centred activations change sign).
2. ``Z`` starts as K random training tokens (cut to their strongest neurons, unit norm).
3. Each batch is coded against the current ``Z`` (`saeembed.sae.snmf.solve`, the encoder's own
   function); the sufficient statistics ``C = YᵀY``, ``B = YᵀA``, ``m = mean(Y)`` and
   ``a = mean(A)`` are averaged over recent batches, and every feature is updated once from
   them by block coordinate descent (online dictionary learning, Mairal et al. 2010):
   ``z_j ← z_j + (B_j - m_j b - C_j Z) / C_jj``, keeping its ``neuron_share`` largest neurons
   and at most unit norm; then ``b ← a - m Z``.
4. A feature unused for ``dead_tokens`` tokens restarts at a badly reconstructed token.

Checkpoints every ``checkpoint_every`` batches make a killed fit resume exactly where it stopped
(the same result as an uninterrupted fit); the fit is deterministic for a seed on one machine.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from saeembed.errors import SaeembedError
from saeembed.sae import SAE, SAEConfig
from saeembed.sae.formats import TRAINED_SOURCE
from saeembed.sae.snmf import gram, solve
from saeembed.train.activations import load_manifest
from saeembed.train.loader import ActivationLoader, iter_split
from saeembed.train.trainer import training_device

log = logging.getLogger(__name__)

CHECKPOINT = "snmf-checkpoint.pt"
# fields that may change between a fit and its resumption
_RESUME_FREE = {"checkpoint_every", "device", "log_every"}


@dataclass
class SNMFConfig:
    """How a semi-NMF dictionary is fitted (see the module docstring)."""

    latents: int = 2048
    k: int = 32  # nonzero coefficients per token
    steps: int = 6  # projected gradient steps per token, in fitting and in encoding
    neuron_share: float = 0.1  # share of the site's neurons a feature keeps (1.0: all)
    batch_size: int = 4096
    epochs: float = 1.0  # passes over the training tokens
    memory: int = 50  # batches the statistics average over, once past the first ones
    dead_tokens: int = 1_000_000  # a feature unused this long restarts
    max_norm_ratio: float | None = 10.0
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 25
    log_every: int = 10

    def __post_init__(self) -> None:
        if self.latents < 2 or not 1 <= self.k <= self.latents:
            raise SaeembedError(
                f"a semi-NMF needs at least 2 latents and 1 <= k <= latents (got "
                f"{self.latents}, k={self.k})"
            )
        if not 0 < self.neuron_share <= 1:
            raise SaeembedError(f"neuron_share must be in (0, 1], not {self.neuron_share}")
        if self.steps < 0 or self.batch_size < 1 or self.epochs <= 0:
            raise SaeembedError("steps must be >= 0, batch_size >= 1 and epochs > 0")


@dataclass
class _State:
    Z: torch.Tensor  # [K, d] features
    C: torch.Tensor  # [K, K] average YᵀY
    B: torch.Tensor  # [K, d] average YᵀA
    m: torch.Tensor  # [K] average Y
    a: torch.Tensor  # [d] average A
    b: torch.Tensor  # [d] the bias, a - m Z
    unused: torch.Tensor  # [K] tokens since each feature was last used
    batch: int = 0


def keep_strongest(Z: torch.Tensor, share: float) -> torch.Tensor:
    """Each row of ``Z`` with only its ``share`` largest entries by magnitude (in place)."""
    keep = max(1, math.ceil(share * Z.shape[1]))
    if keep < Z.shape[1]:
        cut = torch.topk(Z.abs(), keep, dim=1).values[:, -1:]
        Z.mul_(Z.abs() >= cut)
    return Z


def _unit_ball(Z: torch.Tensor) -> torch.Tensor:
    return Z.div_(Z.norm(dim=1, keepdim=True).clamp_min(1.0))


def _dense(values: torch.Tensor, index: torch.Tensor, width: int) -> torch.Tensor:
    return torch.zeros(len(values), width, dtype=values.dtype, device=values.device).scatter_(
        1, index, values
    )


BLOCK = 32  # features updated together (a Python loop over single features costs more)


def update_features(state: _State, share: float) -> None:
    """One sweep of block coordinate descent over the features (step 3 of the module
    docstring), `BLOCK` features at a time: each block moves to the least-squares optimum of
    its features given the others (a small linear solve with their ``C`` block; updating them
    one by one in Python costs more, and moving them together by their diagonal alone
    overshoots where features share tokens), then keeps its strongest neurons and unit norm."""
    Z, C, B, m, b = state.Z, state.C, state.B, state.m, state.b
    ridge = 1e-6 * float(torch.diagonal(C).mean().clamp_min(1e-12))
    for start in range(0, Z.shape[0], BLOCK):
        rows = slice(start, start + BLOCK)
        block = C[rows, rows]
        live = torch.diagonal(block) > 1e-12
        if not bool(live.any()):
            continue
        gradient = B[rows] - m[rows, None] * b - C[rows] @ Z
        eye = torch.eye(block.shape[0], dtype=block.dtype, device=block.device)
        step = torch.linalg.solve(block + ridge * eye, gradient)
        z = _unit_ball(keep_strongest(Z[rows] + step, share))
        Z[rows] = torch.where(live[:, None], z, Z[rows])
    state.b = state.a - m @ Z


def _restart_dead(state: _State, x: torch.Tensor, error: torch.Tensor, config: SNMFConfig) -> int:
    """Restart the features unused for ``config.dead_tokens`` tokens at the batch's worst
    reconstructed tokens (step 4); returns how many."""
    dead = torch.nonzero(state.unused >= config.dead_tokens).squeeze(1)
    if len(dead) == 0:
        return 0
    worst = torch.topk(error, min(len(dead), len(error))).indices
    dead = dead[: len(worst)]
    fresh = keep_strongest(x[worst] - state.b, config.neuron_share)
    state.Z[dead] = fresh / fresh.norm(dim=1, keepdim=True).clamp_min(1e-12)
    state.C[dead], state.C[:, dead], state.B[dead], state.m[dead] = 0.0, 0.0, 0.0, 0.0
    state.unused[dead] = 0
    return len(dead)


def _start(loader_batches, d: int, config: SNMFConfig, device) -> _State:
    """The first features: K random tokens of the first batches."""
    seen, n = [], 0
    while n < max(config.latents, config.batch_size):
        x = next(loader_batches)
        seen.append(x)
        n += len(x)
    x = torch.cat(seen)
    b = torch.zeros(d, device=device)
    g = torch.Generator(device="cpu").manual_seed(config.seed)
    picked = torch.randperm(len(x), generator=g)[: config.latents].to(device)
    Z = keep_strongest(x[picked].clone(), config.neuron_share)
    Z /= Z.norm(dim=1, keepdim=True).clamp_min(1e-12)
    K = config.latents
    return _State(
        Z=Z,
        C=torch.zeros(K, K, device=device),
        B=torch.zeros(K, d, device=device),
        m=torch.zeros(K, device=device),
        a=torch.zeros(d, device=device),
        b=b,
        unused=torch.zeros(K, dtype=torch.long, device=device),
    )


def _fit_batch(state: _State, x: torch.Tensor, config: SNMFConfig) -> dict:
    """Code one batch, fold it into the statistics, update the features."""
    g, lipschitz = gram(state.Z)
    centred = x - state.b
    values, index = solve(centred @ state.Z.T, config.k, config.steps, g, lipschitz)
    Y = _dense(values, index, config.latents)
    # Yᵀ as a sparse matrix: the products with it cost k, not K, per token
    tokens = torch.arange(len(x), device=x.device).repeat_interleave(config.k)
    Yt = torch.sparse_coo_tensor(
        torch.stack([index.reshape(-1), tokens]),
        values.reshape(-1),
        (config.latents, len(x)),
        check_invariants=False,
    )
    state.batch += 1
    # an average over batches that forgets the early ones, coded with poor features, over
    # about `memory` batches
    rate = max(1.0 / state.batch, 1.0 / config.memory)
    state.C.mul_(1.0 - rate).add_(torch.sparse.mm(Yt, Y), alpha=rate / len(x))
    state.B.mul_(1.0 - rate).add_(torch.sparse.mm(Yt, x), alpha=rate / len(x))
    state.m.mul_(1.0 - rate).add_(Y.mean(0), alpha=rate)
    state.a.mul_(1.0 - rate).add_(x.mean(0), alpha=rate)
    used = (Y > 0).any(0)
    state.unused += len(x)
    state.unused[used] = 0
    recon = F.embedding_bag(index, state.Z, per_sample_weights=values, mode="sum")
    error = (centred - recon).pow(2).sum(1)
    restarted = _restart_dead(state, x, error, config)
    update_features(state, config.neuron_share)
    return {
        "fvu": float(error.sum() / centred.pow(2).sum().clamp_min(1e-12)),
        "l0": float((values > 0).sum(1).float().mean()),
        "restarted": restarted,
    }


def fit_snmf(
    config: SNMFConfig,
    activations_dir: str | Path,
    out_dir: str | Path,
    *,
    resume: bool = True,
    on_batch=None,
) -> SAE:
    """Fit a semi-NMF dictionary on the train split of ``activations_dir`` and write it to
    ``out_dir`` in saeembed's format (activation ``snmf``, the collection's site and layer),
    with its fit on the validation split in ``cfg.extra["fit"]``. A checkpoint in ``out_dir``
    is continued when ``resume``. ``on_batch(i)`` is called after batch i (progress, tests)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = load_manifest(activations_dir)
    device = training_device(config.device)
    torch.manual_seed(config.seed)
    scale = 1.0 / manifest["mean_norm"]
    loader = ActivationLoader(activations_dir, config.batch_size, device=device, seed=config.seed)
    total = max(1, int(config.epochs * manifest["train_tokens"] // config.batch_size))
    started = time.perf_counter()
    state = _restore(out, config, loader, device) if resume else None
    stream = iter(_typical_batches(loader, scale, config.max_norm_ratio))
    if state is None:
        (out / CHECKPOINT).unlink(missing_ok=True)
        state = _start(stream, manifest["d_model"], config, device)
    while state.batch < total:
        figures = _fit_batch(state, next(stream), config)
        if state.batch % config.log_every == 0 or state.batch == total:
            log.info(
                "batch %d/%d  fvu %.4f  l0 %.1f  restarted %d  %.0f s",
                state.batch, total, figures["fvu"], figures["l0"], figures["restarted"],
                time.perf_counter() - started,
            )  # fmt: skip
        if state.batch % config.checkpoint_every == 0 or state.batch == total:
            _save(out, state, loader, config)
        if on_batch is not None:
            on_batch(state.batch)
    sae = export(state, config, manifest, scale)
    sae.cfg.extra["fit"] = _fit_figures(sae, activations_dir, config, device)
    sae.cfg.extra["fit"]["seconds"] = round(time.perf_counter() - started, 1)
    sae.cpu().save(out)
    log.info("saved the semi-NMF to %s (fit: %s)", out, sae.cfg.extra["fit"])
    return sae


def _typical_batches(loader: ActivationLoader, scale: float, max_norm_ratio: float | None):
    for x in loader:
        x = x * scale
        yield x if max_norm_ratio is None else x[x.norm(dim=1) <= max_norm_ratio]


def _save(out: Path, state: _State, loader: ActivationLoader, config: SNMFConfig) -> None:
    """Write the checkpoint beside, then rename it over the old one: a kill leaves one whole."""
    partial = out / f".{CHECKPOINT}.partial"
    torch.save(
        {"state": asdict(state), "loader": loader.state_dict(), "config": asdict(config)},
        partial,
    )
    partial.replace(out / CHECKPOINT)


def _restore(out: Path, config: SNMFConfig, loader: ActivationLoader, device) -> _State | None:
    path = out / CHECKPOINT
    if not path.exists():
        return None
    saved = torch.load(path, map_location=device, weights_only=True)
    now = asdict(config)
    changed = [k for k, v in saved["config"].items() if k not in _RESUME_FREE and now.get(k) != v]
    if changed:
        raise SaeembedError(
            f"{out} holds a semi-NMF fit with other {', '.join(sorted(changed))}; use another "
            "output directory, or the same settings to resume it"
        )
    loader.load_state_dict(saved["loader"])
    log.info("resuming the semi-NMF fit at batch %d", saved["state"]["batch"])
    return _State(**saved["state"])


def export(state: _State, config: SNMFConfig, manifest: dict, scale: float) -> SAE:
    """The fitted dictionary as saeembed's `SAE` (activation ``snmf``): ``W_dec = Z``,
    ``b_dec = b``, and the encoder's first guess ``W_enc = Zᵀ``, ``b_enc = -b Zᵀ``."""
    Z = state.Z.detach().float().cpu()
    b = state.b.detach().float().cpu()
    cfg = SAEConfig(
        d_in=Z.shape[1],
        d_sae=Z.shape[0],
        activation="snmf",
        k=config.k,
        model=manifest.get("model"),
        layer=manifest.get("layer"),
        site=manifest.get("site", "resid"),
        input_scale=scale,
        source=TRAINED_SOURCE,
        extra={
            "kind": "snmf",
            "coding": {"steps": config.steps},
            "training": {
                "recipe": "saeembed.train.snmf",
                "config": asdict(config),
                "tokens": state.batch * config.batch_size,
                "activations": {
                    k: manifest.get(k)
                    for k in (
                        "model",
                        "revision",
                        "layer",
                        "site",
                        "max_tokens",
                        "train_tokens",
                        "val_tokens",
                        "mean_norm",
                    )
                },  # fmt: skip
            },
        },
    )
    return SAE(cfg, {"W_enc": Z.T.contiguous(), "b_enc": -(b @ Z.T), "W_dec": Z, "b_dec": b})


def _fit_figures(sae: SAE, activations_dir, config: SNMFConfig, device) -> dict:
    """Explained variance, L0, dead features and neurons per feature on the validation split
    (the train split when there is none)."""
    from saeembed.train.evaluate import activation_metrics

    manifest = load_manifest(activations_dir)
    split = "val" if manifest.get("val_tokens") else "train"
    batches = iter_split(activations_dir, split, batch_size=config.batch_size, device=device)
    ratio = config.max_norm_ratio
    max_norm = ratio / sae.cfg.input_scale if ratio is not None else None
    figures = activation_metrics(sae.to(device), batches, max_norm=max_norm)
    figures["explained_variance"] = 1.0 - figures["fvu"]
    figures["neurons_per_feature"] = float((sae.W_dec != 0).sum(1).float().mean())
    figures["split"] = split
    return figures
