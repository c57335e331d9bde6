"""Quality figures of an SAE on held-out data: FVU, L0, dead latents (on validation activations
or on texts run through the reader), and loss recovered (the reader's next-token cross-entropy
with the residual stream at the SAE's layer replaced by the reconstruction, versus clean and
versus zero-ablation, at the documents' own token positions only).

For a transcoder (an SAE with an ``output_site``) the FVU compares its reconstruction with the
MLP's output: read in the same forward pass as its input from texts, or from the target shards
of a collection made with ``target_site``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from saeembed.errors import SaeembedError
from saeembed.inputs.tokens import (
    ChatMode,
    assemble_batch,
    plan_batches,
    tokenize_documents,
    wrapping_for,
)
from saeembed.sae import SAE
from saeembed.sites import hook_site
from saeembed.train.activations import load_manifest
from saeembed.train.loader import iter_split

Replace = Callable[[torch.Tensor], torch.Tensor]
Capture = Callable[[torch.Tensor, torch.Tensor | None], None]


class _Stats:
    """Streaming FVU / L0 / firing counts over batches of tokens (float64 sums)."""

    def __init__(self, sae: SAE, max_norm: float | None = None):
        self.sae, self.n, self.sq_err, self.sq_sum, self.l0 = sae, 0, 0.0, 0.0, 0
        self.max_norm, self.outliers = max_norm, 0
        self.sum = torch.zeros(sae.cfg.d_in, dtype=torch.float64)
        self.fired = torch.zeros(sae.cfg.d_sae, dtype=torch.bool)

    @torch.no_grad()
    def add(self, x: torch.Tensor, target: torch.Tensor | None = None) -> None:
        """Add the tokens ``x`` (the SAE's input) and what it should reconstruct of them: ``x``
        itself, or ``target`` (a transcoder's MLP output, row for row)."""
        x = x.to(self.sae.W_enc.device, torch.float32)
        y = x if target is None else target.to(x.device, torch.float32)
        if self.max_norm is not None:
            typical = x.norm(dim=1) <= self.max_norm
            self.outliers += int((~typical).sum())
            x, y = x[typical], y[typical]
        acts = self.sae.encode(x)
        y_hat = self.sae.reconstruct(x, acts)
        self.n += len(x)
        self.sq_err += float((y - y_hat).double().pow(2).sum())
        self.sq_sum += float(y.double().pow(2).sum())
        self.sum += y.double().sum(0).cpu()
        active = acts > 0
        self.l0 += int(active.sum())
        self.fired |= active.any(0).cpu()

    def result(self) -> dict:
        if self.n == 0:
            raise SaeembedError("no evaluation tokens: the validation split or the texts are empty")
        variance = self.sq_sum - float(self.sum.pow(2).sum()) / self.n  # sum ||x - mean(x)||^2
        return {
            "n_tokens": self.n,
            "n_outliers": self.outliers,
            "fvu": self.sq_err / variance,
            "l0": self.l0 / self.n,
            "dead_fraction": float((~self.fired).float().mean()),
        }


def activation_metrics(
    sae: SAE,
    batches: Iterable[torch.Tensor | tuple[torch.Tensor, torch.Tensor]],
    *,
    max_norm: float | None = None,
) -> dict:
    """FVU (``sum ||x - x_hat||^2 / sum ||x - mean(x)||^2``), L0 (mean active latents per token)
    and the fraction of latents that never fire, over batches of residual-stream vectors, or of
    ``(x, target)`` pairs (a transcoder: its reconstruction of ``x`` against ``target``).
    Tokens with a norm above ``max_norm`` are left out and counted as ``n_outliers`` (a handful
    of massive-activation tokens would otherwise decide the FVU alone)."""
    stats = _Stats(sae, max_norm)
    for batch in batches:
        stats.add(*batch) if isinstance(batch, tuple) else stats.add(batch)
    return stats.result()


def _hook(own: torch.Tensor, replace: Replace | None, capture: Capture | None):
    """The `saeembed.sites.hook_site` function that hands the documents' own activations to
    ``capture`` (with the target's, or None when the target is the site itself) and puts
    ``replace(x)`` in their place (in the target: the same site, or the MLP's output for a
    transcoder)."""

    def hook(x, target):
        if capture is not None:
            capture(x[own], None if target is x else target[own])
        if replace is None:
            return None
        new = target.clone()
        new[own] = replace(x[own].float()).to(target.dtype)
        return new

    return hook


@torch.inference_mode()
def _cross_entropy(
    reader, layer: int, ids, own, replace: Replace | None, capture=None, site=("resid", None)
) -> tuple[float, int]:
    """Summed next-token cross-entropy over predictions made at a document token of the next
    document token (the first token's prediction comes from the prefix, which no condition
    changes, so it is left out)."""
    hook = _hook(own, replace, capture)
    handle = hook_site(reader.layers[layer], site[0], hook, output_site=site[1])
    try:
        # right padding: own tokens never attend to pads, so no attention mask (see `assemble_batch`)
        logits = reader.model(input_ids=ids, use_cache=False).logits
    finally:
        handle.remove()
    predicts = own[:, :-1] & own[:, 1:]
    loss = F.cross_entropy(logits[:, :-1][predicts].float(), ids[:, 1:][predicts], reduction="sum")
    return float(loss), int(predicts.sum())


class _Captured(Exception):
    """Raised by the capture hook once the layer's activations are read: nothing after runs."""


@torch.inference_mode()
def _residuals(reader, layer: int, ids, own, capture: Capture | None, site=("resid", None)):
    """Hand the documents' own activations at ``site`` of block ``layer`` to ``capture``,
    running the reader only up to there (``site`` is (site, output site), as in
    `loss_recovered`)."""

    read = _hook(own, None, capture)

    def hook(x, target):
        read(x, target)
        raise _Captured

    handle = hook_site(reader.layers[layer], site[0], hook, output_site=site[1])
    try:
        reader.model(input_ids=ids, use_cache=False)
    except _Captured:
        pass
    finally:
        handle.remove()


def _batches(
    reader, texts: Sequence[str], max_tokens: int, batch_tokens: int | None, chat: ChatMode
):
    if len(reader.layers) != reader.n_layers:
        raise SaeembedError(
            "loss recovered needs the full reader; load one without drop_layers_after"
        )
    wrapping = wrapping_for(reader.tokenizer, chat)
    docs = [d for d in tokenize_documents(reader.tokenizer, list(texts), max_tokens) if len(d.ids)]
    budget = batch_tokens or (
        16384 if reader.device.type == "cuda" else 2048
    )  # logits are [tokens, vocab]
    for batch in plan_batches([len(d.ids) for d in docs], budget):
        yield assemble_batch([docs[i] for i in batch], wrapping, reader.tokenizer, reader.device)


def loss_recovered(
    reader,
    layer: int,
    texts: Sequence[str],
    replace: Replace,
    *,
    max_tokens: int = 256,
    batch_tokens: int | None = None,
    chat: ChatMode = "none",
    capture: Capture | None = None,
    site: tuple[str, str | None] = ("resid", None),
) -> dict:
    """Cross-entropy of the reader on ``texts`` clean, with the documents' own activations at
    ``site`` of block ``layer`` replaced by ``replace(h)`` (float32 in and out), and with them
    zeroed; ``loss_recovered = (ce_zero - ce_replaced) / (ce_zero - ce_clean)``. ``capture(x,
    target)`` receives the clean activations of each batch, and those of the output site (None
    when it is the site itself). ``site`` is (where the dictionary reads,
    where its result goes: None for the same place, ``mlp_out`` for a transcoder)."""
    sums = {"clean": 0.0, "replaced": 0.0, "zero": 0.0}
    n = 0
    for ids, own in _batches(reader, texts, max_tokens, batch_tokens, chat):
        clean, n_batch = _cross_entropy(reader, layer, ids, own, None, capture, site)
        sums["clean"] += clean
        sums["replaced"] += _cross_entropy(reader, layer, ids, own, replace, site=site)[0]
        # zero-ablation of the target (a transcoder's input and output are both d_model wide)
        sums["zero"] += _cross_entropy(reader, layer, ids, own, torch.zeros_like, site=site)[0]
        n += n_batch
    if n == 0:
        raise SaeembedError("no next-token predictions: the texts need at least two tokens each")
    ce = {name: value / n for name, value in sums.items()}
    return {
        "ce_clean": ce["clean"],
        "ce_replaced": ce["replaced"],
        "ce_zero": ce["zero"],
        "loss_recovered": (ce["zero"] - ce["replaced"]) / (ce["zero"] - ce["clean"]),
        "n_predictions": n,
    }


def reconstruct_typical(sae: SAE) -> Replace:
    """The replacement for loss recovered: the reconstruction of the tokens the encoder pools
    (`SAE.typical`), and the massive-norm tokens it leaves out as they were."""

    def replace(h: torch.Tensor) -> torch.Tensor:
        typical = sae.typical(h)
        out = h.clone()
        out[typical] = sae.reconstruct(h[typical]).to(h.dtype)
        return out

    return replace


def evaluate_sae(
    sae: SAE,
    reader=None,
    layer: int | None = None,
    texts: Sequence[str] | None = None,
    *,
    activations_dir: str | Path | None = None,
    max_tokens: int = 256,
    batch_tokens: int | None = None,
    chat: ChatMode = "none",
    max_eval_tokens: int | None = None,
    max_norm_ratio: float | None = 10.0,
    train_dead_fraction: float | None = None,
    pooled_only: bool = True,
    with_loss: bool = True,
) -> dict:
    """Standard quality figures of ``sae`` on held-out data.

    FVU, L0 and ``dead_fraction`` (latents that never fire on the evaluation tokens) come from the
    validation split of ``activations_dir`` when given, else from the texts' residuals; tokens
    whose norm exceeds ``max_norm_ratio`` x the training mean norm (``1 / cfg.input_scale``; no
    filter when the SAE records no scale) are left out of them, as in training. With ``reader``
    and ``texts`` (the full reader, not one cut by ``drop_layers_after``), loss recovered is added
    (``ce_clean``, ``ce_sae``, ``ce_zero``, ``loss_recovered``), replacing exactly the document
    tokens the encoder pools (massive-norm ones are kept as they are; zero-ablation zeroes all);
    ``pooled_only=False`` replaces every document token instead; ``with_loss=False`` skips loss
    recovered (one pass through the reader up to ``layer`` instead of three whole ones).
    ``train_dead_fraction`` (dead during the trainer's last window) is passed through as
    ``dead_fraction_training``. The SAE is moved to the reader's device."""
    if activations_dir is None and (reader is None or texts is None):
        raise SaeembedError("evaluate_sae needs activations_dir, or a reader and texts")
    scaled = max_norm_ratio is not None and sae.cfg.input_scale != 1.0
    stats = _Stats(sae, max_norm_ratio / sae.cfg.input_scale if scaled else None)
    result: dict = {}
    if activations_dir is not None:
        device = reader.device if reader is not None else sae.W_enc.device
        stats.sae = sae = sae.to(device)
        target_site = load_manifest(activations_dir).get("target_site")
        if target_site != sae.cfg.output_site:
            raise SaeembedError(
                f"{activations_dir} holds targets at {target_site or 'no site'} but the SAE "
                f"writes {sae.cfg.output_site or 'where it reads'}; collect its activations with "
                f"target_site={sae.cfg.output_site!r}"
            )
        for batch in iter_split(activations_dir, "val", device=device, max_tokens=max_eval_tokens):
            stats.add(*batch) if isinstance(batch, tuple) else stats.add(batch)
    if reader is not None and texts is not None:
        layer = sae.cfg.layer if layer is None else layer
        if layer is None:
            raise SaeembedError("the SAE's cfg names no layer; pass layer=")
        stats.sae = sae = sae.to(reader.device)
        capture = stats.add if activations_dir is None else None
        if with_loss:
            losses = loss_recovered(
                reader,
                layer,
                texts,
                reconstruct_typical(sae) if pooled_only else sae.reconstruct,
                max_tokens=max_tokens,
                batch_tokens=batch_tokens,
                chat=chat,
                capture=capture,
                site=(sae.cfg.site, sae.cfg.output_site),
            )
            losses["ce_sae"] = losses.pop("ce_replaced")
            result.update(losses)
        else:
            for ids, own in _batches(reader, texts, max_tokens, batch_tokens, chat):
                _residuals(reader, layer, ids, own, capture, (sae.cfg.site, sae.cfg.output_site))
    result.update(stats.result())
    if train_dead_fraction is not None:
        result["dead_fraction_training"] = train_dead_fraction
    return result
