"""The SAE in its training parametrisation (`TrainableSAE`): TopK or BatchTopK latent selection,
the AuxK loss on dead latents, unit-norm decoder rows, and export to saeembed's own `SAE` format;
plus `geometric_median` for initialising ``b_dec``. A transcoder (``transcode=True``) reconstructs
a target (the MLP's output) from its input: its encoder reads the input as it is (``b_dec`` lives
in the target's space) and its losses measure the error against the target.

Only the active latents take part in the backward pass: the encoder's weight gradient is a
sparse x dense product and the decoder is an ``embedding_bag``, so a step on 2 CPU cores costs
about one dense ``[batch, d_in] x [d_in, d_sae]`` matmul plus a top-k.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from saeembed.sae import SAE, SAEConfig
from saeembed.sae.formats import TRAINED_SOURCE

if TYPE_CHECKING:
    from saeembed.train.trainer import TrainConfig


class _SparseEncoder(torch.autograd.Function):
    """Pre-activations at chosen (row, col) pairs, already computed densely without autograd;
    the backward pass touches only those pairs (sparse x dense products)."""

    @staticmethod
    def forward(ctx, values, x, W_enc, b_enc, rows, cols):  # noqa: ARG004 - W_enc/b_enc only for grads
        ctx.save_for_backward(x, W_enc, rows, cols)
        return values.clone()

    @staticmethod
    def backward(ctx, grad):
        x, W_enc, rows, cols = ctx.saved_tensors
        index = torch.stack([cols, rows])
        by_latent = torch.sparse_coo_tensor(
            index, grad, (W_enc.shape[0], x.shape[0]), check_invariants=False
        )
        grad_W = torch.sparse.mm(by_latent, x)
        grad_b = torch.zeros(W_enc.shape[0], device=grad.device, dtype=grad.dtype).index_add_(
            0, cols, grad
        )
        grad_x = torch.sparse.mm(by_latent.t(), W_enc) if ctx.needs_input_grad[1] else None
        return None, grad_x, grad_W, grad_b, None, None


def _decode(rows, cols, acts, W_dec, n: int) -> torch.Tensor:
    """``sum acts * W_dec[cols]`` per row (rows sorted), without a dense ``[n, d_sae]`` matrix."""
    counts = torch.bincount(rows, minlength=n)
    offsets = torch.cumsum(counts, 0) - counts
    return F.embedding_bag(cols, W_dec, offsets, mode="sum", per_sample_weights=acts)


def geometric_median(points: torch.Tensor, iters: int = 100, eps: float = 1e-6) -> torch.Tensor:
    """Weiszfeld's algorithm, started at the coordinate mean."""
    guess = points.mean(0)
    for _ in range(iters):
        weights = 1 / (points - guess).norm(dim=1).clamp_min(eps)
        new = (weights[:, None] * points).sum(0) / weights.sum()
        if (new - guess).norm() < eps * max(1.0, guess.norm().item()):
            return new
        guess = new
    return guess


def _batch_topk(pre: torch.Tensor, k: int):
    """(rows, cols, values) of the ``k * n`` largest entries of ``pre [n, d_sae]`` (after ReLU),
    rows ascending. Exact, without a top-k over the whole matrix: a row that keeps fewer than
    ``m`` of its own top ``m`` has nothing else above the cut, so only rows keeping all ``m``
    (tokens that take many latents) are searched in full."""
    n, width = pre.shape
    m = min(width, 4 * k)
    cand, cand_cols = pre.topk(m, dim=1, sorted=False)
    _, flat = cand.relu().flatten().topk(k * n, sorted=False)
    full = torch.bincount(flat // m, minlength=n) >= m
    if m == width or not bool(full.any()):
        rows, cols = flat // m, cand_cols.flatten()[flat]
    else:
        full_rows = full.nonzero().squeeze(1)
        part = ~full[torch.arange(n, device=pre.device).repeat_interleave(m)]
        rows = torch.cat(
            [
                torch.arange(n, device=pre.device).repeat_interleave(m)[part],
                full_rows.repeat_interleave(width),
            ]
        )
        cols = torch.cat(
            [
                cand_cols.flatten()[part],
                torch.arange(width, device=pre.device).repeat(len(full_rows)),
            ]
        )
        _, pick = pre[rows, cols].relu().topk(k * n, sorted=False)
        rows, cols = rows[pick], cols[pick]
    order = (rows * width + cols).argsort()  # the decoder wants rows in order
    rows, cols = rows[order], cols[order]
    return rows, cols, pre[rows, cols].relu()


class TrainableSAE(nn.Module):
    """The SAE in its training parametrisation (encoder subtracts ``b_dec``, but for a transcoder;
    inputs and targets pre-scaled)."""

    def __init__(
        self,
        d_in: int,
        cfg: TrainConfig,
        input_scale: float,
        transcode: bool = False,
        output_scale: float | None = None,
    ):
        super().__init__()
        gen = torch.Generator().manual_seed(cfg.seed)
        W_dec = torch.randn(cfg.d_sae, d_in, generator=gen)
        W_dec /= W_dec.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(W_dec)
        self.W_enc = nn.Parameter(W_dec.clone())  # [d_sae, d_in]: W_enc.T in saeembed's layout
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae))
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        self.cfg, self.input_scale, self.transcode = cfg, input_scale, transcode
        # a transcoder's targets are scaled by their own mean norm (an MLP's output is often far
        # smaller than its input); the export folds the ratio into the decoder
        self.output_scale = input_scale if output_scale is None else output_scale
        self.register_buffer("since_fired", torch.zeros(cfg.d_sae, dtype=torch.long))
        self.register_buffer("threshold", torch.zeros(()))  # BatchTopK: running min kept activation
        self.register_buffer("threshold_updates", torch.zeros((), dtype=torch.long))

    def select(self, pre: torch.Tensor):
        """(rows, cols, values) of the kept latents, rows ascending; values after ReLU."""
        n, k = pre.shape[0], self.cfg.k
        if self.cfg.architecture == "topk":
            values, cols = pre.topk(k, dim=1, sorted=False)
            rows = torch.arange(n, device=pre.device).repeat_interleave(k)
            return rows, cols.flatten(), values.flatten().relu()
        return _batch_topk(pre, k)

    def encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the encoder multiplies: ``x - b_dec``, or ``x`` itself for a transcoder."""
        return x if self.transcode else x - self.b_dec

    def forward(
        self, x: torch.Tensor, dead: torch.Tensor | None = None, target: torch.Tensor | None = None
    ) -> dict:
        """Losses and statistics for a batch of scaled inputs ``x [n, d_in]``, reconstructing
        ``x`` or (a transcoder) ``target [n, d_in]``."""
        y = x if target is None else target
        centred = self.encoder_input(x)
        with torch.no_grad():  # dense pre-activations only to choose latents; no [n, d_sae] grads
            pre = torch.addmm(self.b_enc, centred, self.W_enc.T)
        rows, cols, values = self.select(pre)
        acts = _SparseEncoder.apply(values, centred, self.W_enc, self.b_enc, rows, cols).relu()
        x_hat = _decode(rows, cols, acts, self.W_dec, len(x)) + self.b_dec
        error = x_hat - y
        variance = (y - y.mean(0)).pow(2).sum()
        out = {
            "fvu": error.pow(2).sum() / variance,
            "rows": rows,
            "cols": cols,
            "acts": acts.detach(),
        }
        out["aux"] = (
            self._aux_loss(pre, centred, error.detach(), dead)
            if dead is not None
            else y.new_zeros(())
        )
        out["loss"] = out["fvu"] + self.cfg.aux_coef * out["aux"]
        return out

    def _aux_loss(self, pre, centred, error, dead, dense: bool | None = None) -> torch.Tensor:
        """AuxK: the top ``aux_k`` dead latents (by pre-activation) reconstruct the residual error."""
        dead_idx = dead.nonzero().squeeze(1)
        if len(dead_idx) == 0:
            return error.new_zeros(())
        aux_k = min(self.cfg.aux_k or centred.shape[1] // 2, len(dead_idx))
        if dense if dense is not None else len(dead_idx) <= 6 * aux_k:
            e_hat = self._aux_dense(centred, dead_idx, aux_k)
        else:
            e_hat = self._aux_sparse(pre, centred, dead, aux_k)
        target = -error  # what the live latents failed to reconstruct
        scale = min(len(dead_idx) / aux_k, 1.0)
        return scale * (e_hat - target).pow(2).sum() / (target - target.mean(0)).pow(2).sum()

    def _aux_dense(self, centred, dead_idx, aux_k: int) -> torch.Tensor:
        """Few dead latents: dense products over just their columns are the cheapest."""
        pre = torch.addmm(self.b_enc[dead_idx], centred, self.W_enc[dead_idx].T)
        with torch.no_grad():
            keep = torch.zeros_like(pre, dtype=torch.bool)
            keep.scatter_(1, pre.topk(aux_k, dim=1, sorted=False).indices, True)
        return torch.where(keep, pre, 0).relu() @ self.W_dec[dead_idx]

    def _aux_sparse(self, pre, centred, dead, aux_k: int) -> torch.Tensor:
        """Many dead latents: only the chosen (token, latent) pairs take part in the backward."""
        with torch.no_grad():
            values, cols = torch.where(dead, pre, -torch.inf).topk(aux_k, dim=1, sorted=False)
        rows = torch.arange(len(pre), device=pre.device).repeat_interleave(aux_k)
        cols = cols.flatten()
        acts = _SparseEncoder.apply(values.flatten(), centred, self.W_enc, self.b_enc, rows, cols)
        return _decode(rows, cols, acts.relu(), self.W_dec, len(pre))

    @torch.no_grad()
    def after_backward(self) -> None:
        """Drop the gradient component parallel to each (unit) decoder row: it would only change
        the row's norm, which the renormalisation undoes."""
        g, w = self.W_dec.grad, self.W_dec
        g -= (g * w).sum(1, keepdim=True) * w

    @torch.no_grad()
    def after_step(self, out: dict, n_tokens: int) -> None:
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True)
        fired = out["cols"][out["acts"] > 0]
        self.since_fired += n_tokens
        self.since_fired[fired] = 0
        if self.cfg.architecture == "batchtopk" and len(fired):
            # running mean of the smallest kept activation (Bussmann et al.), turning into an EMA
            # over the last 10% of the steps (at most 1000), so early training is forgotten
            self.threshold_updates += 1
            horizon = min(1000, max(1, self.cfg.steps // 10))
            rate = (1.0 / self.threshold_updates).clamp_min(1 / horizon)  # on the device: no sync
            self.threshold += rate * (out["acts"][out["acts"] > 0].min() - self.threshold)

    @torch.no_grad()
    def encode_training(self, x: torch.Tensor) -> torch.Tensor:
        """Dense training-time activations of scaled inputs (BatchTopK: over this whole batch)."""
        pre = torch.addmm(self.b_enc, self.encoder_input(x), self.W_enc.T)
        rows, cols, values = self.select(pre)
        out = torch.zeros_like(pre)
        out[rows, cols] = values
        return out

    @torch.no_grad()
    def export(
        self,
        *,
        model: str | None,
        layer: int | None,
        extra: dict,
        site: str = "resid",
        output_site: str | None = None,
    ) -> SAE:
        """The same SAE in saeembed's format: ``b_dec`` folded into ``b_enc`` (not a
        transcoder's) and ``input_scale`` recorded, so ``SAE.encode(x)`` equals the training-time
        activations of ``x * input_scale`` (and ``SAE.decode`` gives the target in model units,
        the decoder rescaled when the targets had their own scale). BatchTopK becomes JumpReLU with the running threshold
        shared by every latent. ``site`` and ``output_site`` say where it reads and writes."""
        W_enc, b_dec = self.W_enc.detach().cpu(), self.b_dec.detach().cpu()
        b_enc = self.b_enc.detach().cpu()
        weights = {
            "W_enc": W_enc.T.contiguous(),
            "b_enc": b_enc if self.transcode else b_enc - W_enc @ b_dec,
            "W_dec": self.W_dec.detach().cpu() * (self.input_scale / self.output_scale),
            "b_dec": b_dec * (self.input_scale / self.output_scale),
        }
        topk = self.cfg.architecture == "topk"
        if not topk:
            weights["threshold"] = self.threshold.detach().cpu().expand(self.cfg.d_sae).clone()
        cfg = SAEConfig(
            d_in=W_enc.shape[1],
            d_sae=self.cfg.d_sae,
            activation="topk" if topk else "jumprelu",
            k=self.cfg.k,
            model=model,
            layer=layer,
            input_scale=self.input_scale,
            site=site,
            output_site=output_site,
            source=TRAINED_SOURCE,
            extra=extra,
        )
        return SAE(cfg, weights)
