"""EleutherAI sparsify hookpoint folders (``cfg.json`` + ``sae.safetensors`` holding
``encoder.weight``): topk SAEs, converted exactly into saeembed's `SAE` (``b_dec`` folded into
``b_enc``, the layer read from the folder's hookpoint name), and topk transcoders
(``transcode: true``, with or without ``W_skip``) of an MLP module (``layers.N.mlp``), which read
the MLP's input unchanged and write its output. Skip connections on autoencoders, signed and
non-topk SAEs are refused."""

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
from saeembed.sae.transcoders import TRANSCODER_SITES, check_d_out, transcoder_layer


def load_sparsify(directory: Path) -> SAE:
    """The sparsify SAE or transcoder in hookpoint folder ``directory`` as saeembed's `SAE`."""
    cfg_path = directory / CFG_FILE
    raw = read_json(cfg_path)
    weights_path = directory / WEIGHTS_FILE
    weights = read_safetensors(weights_path)
    transcode = bool(raw.get("transcode"))
    skip = bool(raw.get("skip_connection")) or "W_skip" in weights
    if skip and not transcode:
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
    tensors = _weights(raw, weights, weights_path, skip)
    d_sae, d_in = tensors["W_enc"].shape
    k = raw.get("k", 32)  # sparsify's default
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise SAEError(f"{cfg_path}: k must be a positive integer, got {k!r}")
    tensors["W_enc"] = tensors["W_enc"].T
    if transcode:  # a transcoder's input keeps b_dec (which lives in the output space)
        layer, note = transcoder_layer(directory.name, None, directory), None
    else:  # sparsify encodes x - b_dec
        tensors["b_enc"] = fold_b_dec(tensors["W_enc"], tensors["b_enc"], tensors["b_dec"])
        layer, note = layer_from_hook(directory.name)
    kept = {
        key: raw.get(key)
        for key in (
            "expansion_factor",
            "num_latents",
            "k",
            "multi_topk",
            "normalize_decoder",
            "transcode",
            "skip_connection",
        )
    }
    extra = {"source_format": "sparsify", "hookpoint": directory.name, **jsonable(kept)}
    if note:
        extra["layer_note"] = note
    cfg = SAEConfig(
        d_in=int(d_in),
        d_sae=int(d_sae),
        activation="topk",
        k=k,
        model=_run_model(directory),
        layer=layer,
        skip=skip,
        **(TRANSCODER_SITES if transcode else {}),
        extra=extra,
    )
    return SAE(cfg, tensors)


def _weights(raw: dict, weights: dict, weights_path: Path, skip: bool) -> dict:
    """The folder's tensors under saeembed's names (``W_enc`` still ``[d_sae, d_in]``)."""
    enc_w = read_tensor(weights, "encoder.weight", weights_path)
    if enc_w.ndim != 2:
        raise SAEError(f"{weights_path}: encoder.weight should be 2-D, got {tuple(enc_w.shape)}")
    d_sae, d_in = enc_w.shape
    if raw.get("d_in") is not None and int(raw["d_in"]) != d_in:
        raise SAEError(
            f"{weights_path.parent / CFG_FILE} says d_in={raw['d_in']} but encoder.weight is "
            f"{tuple(enc_w.shape)}"
        )
    if raw.get("transcode"):
        W_dec = read_tensor(weights, "W_dec", weights_path)
        check_d_out(d_in, int(W_dec.shape[-1]), weights_path.parent)
    shapes = {"encoder.bias": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
    if skip:
        shapes["W_skip"] = (d_in, d_in)
    tensors = dict(zip(shapes, read_tensors(weights, weights_path, shapes), strict=True))
    out = {"W_enc": enc_w, "b_enc": tensors["encoder.bias"], "W_dec": tensors["W_dec"]}
    out["b_dec"] = tensors["b_dec"]
    if skip:  # sparsify adds x @ W_skip.T
        out["W_skip"] = tensors["W_skip"].T
    return out


def _run_model(directory: Path) -> str | None:
    """The model named in the run's ``config.json`` one level up, if any."""
    run_cfg = directory.parent / "config.json"
    if not run_cfg.is_file():
        return None
    try:
        model = json.loads(run_cfg.read_text()).get("model")
    except (json.JSONDecodeError, OSError, UnicodeDecodeError, AttributeError):
        return None
    return model if isinstance(model, str) else None
