"""EleutherAI sparsify hookpoint folders (``cfg.json`` + ``sae.safetensors`` holding
``encoder.weight``): topk SAEs, converted exactly into saeembed's `SAE` (``b_dec`` folded into
``b_enc``, the layer read from the folder's hookpoint name). Transcoders, skip connections, signed
and non-topk SAEs are refused."""

from __future__ import annotations

import json
from pathlib import Path

from saeembed.errors import SAEError
from saeembed.sae._common import (
    fold_b_dec,
    jsonable,
    layer_from_hook,
    read_json,
    read_safetensors,
    read_tensor,
    read_tensors,
)
from saeembed.sae.model import CFG_FILE, SAE, WEIGHTS_FILE, SAEConfig


def load_sparsify(directory: Path) -> SAE:
    """The sparsify SAE in hookpoint folder ``directory`` as saeembed's `SAE`."""
    cfg_path = directory / CFG_FILE
    raw = read_json(cfg_path)
    weights_path = directory / WEIGHTS_FILE
    if raw.get("transcode"):
        raise SAEError(
            f"{directory} is a sparsify transcoder (transcode=true): it predicts a module's "
            f"output from its input, so it is not an autoencoder saeembed can use"
        )
    weights = read_safetensors(weights_path)
    if raw.get("skip_connection") or "W_skip" in weights:
        raise SAEError(
            f"{directory} has a skip connection (W_skip); its latents do not explain the whole "
            f"input, so saeembed cannot use it"
        )
    if raw.get("signed"):
        raise SAEError(f"{directory} is a signed sparsify SAE (negative latents); not supported")
    activation = raw.get("activation", "topk")
    if activation != "topk":
        raise SAEError(
            f"{directory} uses sparsify activation {activation!r}; only topk converts exactly"
        )
    enc_w = read_tensor(weights, "encoder.weight", weights_path)
    if enc_w.ndim != 2:
        raise SAEError(f"{weights_path}: encoder.weight should be 2-D, got {tuple(enc_w.shape)}")
    d_sae, d_in = enc_w.shape
    if raw.get("d_in") is not None and int(raw["d_in"]) != d_in:
        raise SAEError(
            f"{cfg_path} says d_in={raw['d_in']} but encoder.weight is {tuple(enc_w.shape)}"
        )
    enc_b, W_dec, b_dec = read_tensors(
        weights,
        weights_path,
        {"encoder.bias": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)},
    )
    k = raw.get("k", 32)  # sparsify's default
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise SAEError(f"{cfg_path}: k must be a positive integer, got {k!r}")

    W_enc = enc_w.T
    b_enc = fold_b_dec(W_enc, enc_b, b_dec)  # sparsify always encodes x - b_dec
    layer, note = layer_from_hook(directory.name)
    model = None
    run_cfg = directory.parent / "config.json"
    if run_cfg.is_file():
        try:
            model = json.loads(run_cfg.read_text()).get("model")
        except (json.JSONDecodeError, OSError, UnicodeDecodeError, AttributeError):
            model = None
    kept = {
        key: raw.get(key)
        for key in ("expansion_factor", "num_latents", "k", "multi_topk", "normalize_decoder")
    }
    extra = {"source_format": "sparsify", "hookpoint": directory.name, **jsonable(kept)}
    if note:
        extra["layer_note"] = note
    cfg = SAEConfig(
        d_in=int(d_in),
        d_sae=int(d_sae),
        activation="topk",
        k=k,
        model=model if isinstance(model, str) else None,
        layer=layer,
        extra=extra,
    )
    return SAE(cfg, {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec})
