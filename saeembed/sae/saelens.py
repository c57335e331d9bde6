"""SAELens directories (``cfg.json`` + ``sae_weights.safetensors``): standard (ReLU), topk,
jumprelu and gated SAEs, converted exactly into saeembed's `SAE` (gated becomes an equivalent
jumprelu; ``b_dec`` subtraction, decoder-norm rescaling and constant input normalisation are folded
in); transcoders (``transcoder``, ``skip_transcoder``, ``jumprelu_transcoder``,
``jumprelu_skip_transcoder``) of one MLP become ``mlp_in`` -> ``mlp_out`` SAEs (`_transcoder`).
Cross-layer transcoders, training-only checkpoints and per-token normalisations are refused."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from saeembed.errors import SAEError
from saeembed.sae._common import (
    expect_shape,
    fold_b_dec,
    jsonable,
    layer_from_hook,
    read_json,
    read_safetensors,
    read_tensor,
    read_tensors,
)
from saeembed.sae.model import CFG_FILE, SAE, SAEConfig
from saeembed.sae.transcoders import TRANSCODER_SITES, check_d_out, transcoder_layer

SAELENS_WEIGHTS = "sae_weights.safetensors"
SAELENS_SCALER = "activation_scaler.json"

_SAELENS_KEEP = (
    "hook_name",
    "hook_layer",
    "model_name",
    "architecture",
    "activation_fn",
    "apply_b_dec_to_input",
    "normalize_activations",
    "context_size",
    "prepend_bos",
    "dataset_path",
    "neuronpedia_id",
    "model_from_pretrained_kwargs",
    "sae_lens_version",
    "sae_lens_training_version",
    "model_class_name",
    "exclude_special_tokens",
    "rescale_acts_by_decoder_norm",
    "dtype",
)
_TRANSCODER_KEEP = ("hook_name_out", "hook_layer_out", "d_out", "hf_hook_name", "hf_hook_name_out")
#: SAELens transcoder architectures and the activation each converts to.
_TRANSCODERS = {
    "transcoder": "relu",
    "skip_transcoder": "relu",
    "jumprelu_transcoder": "jumprelu",
    "jumprelu_skip_transcoder": "jumprelu",
}
_TRAINING_ONLY = ("batchtopk", "matryoshka_batchtopk")


def load_saelens(directory: Path) -> SAE:
    """The SAELens SAE in ``directory`` as saeembed's `SAE`."""
    cfg_path = directory / CFG_FILE
    raw = read_json(cfg_path)
    meta = raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {}

    def get(*keys, default=None):
        for source in (raw, meta):
            for key in keys:
                if source.get(key) is not None:
                    return source[key]
        return default

    arch = str(raw.get("architecture") or "standard")
    act_fn = get("activation_fn", "activation_fn_str")
    fn_kwargs = get("activation_fn_kwargs", default={}) or {}
    hook = get("hook_name", "hook_point")
    if arch in _TRANSCODERS or "transcoder" in arch or arch == "clt":
        return _transcoder(directory, raw, get, arch)
    if arch in _TRAINING_ONLY:
        raise SAEError(
            f"{directory} is a SAELens training checkpoint ({arch}); SAELens exports these as "
            f"'jumprelu' SAEs for inference: load it in SAELens and save_model() it first"
        )
    if arch == "standard" and act_fn == "topk":
        arch = "topk"
    if arch not in ("standard", "gated", "jumprelu", "topk"):
        raise SAEError(
            f"{directory}: unknown SAELens architecture {arch!r}; saeembed reads standard, "
            f"gated, jumprelu and topk"
        )
    if arch == "standard" and act_fn not in (None, "relu"):
        raise SAEError(
            f"{directory}: SAELens activation_fn {act_fn!r} is not supported (only relu, topk, "
            f"jumprelu and gated SAEs convert exactly)"
        )
    if (
        get("reshape_activations") == "hook_z"
        or get("hook_head_index", "hook_point_head_index") is not None
    ):
        raise SAEError(
            f"this SAE reads attention-head outputs ({hook}), not the residual stream; "
            f"saeembed cannot use it"
        )
    layer, note = layer_from_hook(hook)

    weights_path = directory / SAELENS_WEIGHTS
    weights = read_safetensors(weights_path)
    input_scale = _saelens_input_scale(directory, raw, meta, weights)

    W_enc = read_tensor(weights, "W_enc", weights_path)
    if W_enc.ndim != 2:
        raise SAEError(
            f"{weights_path}: W_enc should be 2-D [d_in, d_sae], got {tuple(W_enc.shape)}"
        )
    d_in, d_sae = W_enc.shape
    for key, actual in (("d_in", d_in), ("d_sae", d_sae)):
        if raw.get(key) is not None and int(raw[key]) != actual:
            raise SAEError(
                f"{cfg_path} says {key}={raw[key]} but W_enc in {weights_path.name} has "
                f"shape {tuple(W_enc.shape)}"
            )
    W_dec, b_dec = read_tensors(weights, weights_path, {"W_dec": (d_sae, d_in), "b_dec": (d_in,)})

    threshold = None
    if arch == "gated":
        # gate: (x' @ W + b_gate) > 0; magnitude: relu(x' @ (W * exp(r_mag)) + b_mag).
        # As magnitude = exp(r_mag) * (gate - b_gate) + b_mag, the gate opens exactly when the
        # magnitude exceeds b_mag - exp(r_mag) * b_gate: a JumpReLU on the magnitude path.
        b_gate, b_mag, r_mag = read_tensors(
            weights, weights_path, {"b_gate": (d_sae,), "b_mag": (d_sae,), "r_mag": (d_sae,)}
        )
        gain = torch.exp(r_mag)
        W_enc = W_enc * gain
        b_enc = b_mag
        threshold = b_mag - gain * b_gate
    else:
        b_enc = read_tensor(weights, "b_enc", weights_path)
        expect_shape(b_enc, (d_sae,), "b_enc", weights_path)
    if arch == "jumprelu":
        if "threshold" in weights:
            threshold = read_tensor(weights, "threshold", weights_path)
        elif "log_threshold" in weights:
            threshold = torch.exp(read_tensor(weights, "log_threshold", weights_path))
        else:
            raise SAEError(f"{weights_path} is a jumprelu SAE without threshold or log_threshold")
        expect_shape(threshold, (d_sae,), "threshold", weights_path)

    apply_b_dec = bool(get("apply_b_dec_to_input", default=True))
    if apply_b_dec:
        b_enc = fold_b_dec(W_enc, b_enc, b_dec)

    k = None
    if arch == "topk":
        k = get("k", default=fn_kwargs.get("k") if isinstance(fn_kwargs, dict) else None)
        if isinstance(k, bool) or not isinstance(k, (int, float)) or k < 1 or int(k) != k:
            raise SAEError(f"{cfg_path}: a topk SAE needs a positive integer k, got {k!r}")
        k = int(k)
        if get("rescale_acts_by_decoder_norm", default=False):
            # pre-activations are multiplied by each latent's decoder norm and the decoder is
            # divided by it: fold both into the weights (a no-op if already folded on export)
            norms = W_dec.norm(dim=1)
            W_enc, b_enc = W_enc * norms, b_enc * norms
            W_dec = W_dec / torch.where(norms > 0, norms, torch.ones_like(norms)).unsqueeze(1)

    extra_notes = {}
    finetune = weights.get("scaling_factor", weights.get("finetuning_scaling_factor"))
    if finetune is not None and finetune.numel() == d_sae and d_sae > 1:
        finetune = finetune.detach().to(torch.float64).reshape(d_sae)
        if not torch.allclose(finetune, torch.ones_like(finetune)):
            # older SAELens multiplied activations by this before decoding only
            W_dec = W_dec * finetune.unsqueeze(1)
            extra_notes["finetuning_scaling_factor"] = "folded into W_dec"

    activation = {"standard": "relu", "topk": "topk", "jumprelu": "jumprelu", "gated": "jumprelu"}[
        arch
    ]
    kept = {key: get(key) for key in _SAELENS_KEEP}
    kept["architecture"] = str(raw.get("architecture") or "standard")
    extra = {"source_format": "saelens", **jsonable(kept), **extra_notes}
    if arch == "gated":
        extra["converted"] = "gated SAE rewritten as an equivalent jumprelu"
    if note:
        extra["layer_note"] = note
    cfg = SAEConfig(
        d_in=int(d_in),
        d_sae=int(d_sae),
        activation=activation,
        k=k,
        model=get("model_name"),
        layer=layer,
        input_scale=input_scale,
        extra=extra,
    )
    tensors = {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec}
    if threshold is not None:
        tensors["threshold"] = threshold
    return SAE(cfg, tensors)


def _transcoder(directory: Path, raw: dict, get, arch: str) -> SAE:
    """A SAELens transcoder: ``acts = act(x @ W_enc + b_enc)`` (no ``b_dec`` subtracted),
    ``out = acts @ W_dec + b_dec`` (+ ``x @ W_skip.T`` for the skip variants)."""
    if arch not in _TRANSCODERS:
        raise SAEError(
            f"{directory} is a SAELens {arch}: saeembed reads transcoders of one MLP "
            f"({', '.join(_TRANSCODERS)}), not cross-layer or other variants"
        )
    act_fn = get("activation_fn", "activation_fn_str")
    if act_fn not in (None, "relu"):
        raise SAEError(f"{directory}: SAELens transcoder activation_fn {act_fn!r} is not supported")
    norm = get("normalize_activations")
    if norm not in (None, False, "none"):
        raise SAEError(
            f"{directory}: a transcoder with normalize_activations={norm!r} rescales only its input; "
            f"saeembed cannot convert it exactly (fold the scale into W_enc and W_skip first)"
        )
    hooks = get("hook_name", "hook_point"), get("hook_name_out")
    layer = transcoder_layer(*hooks, directory)
    weights_path = directory / SAELENS_WEIGHTS
    weights = read_safetensors(weights_path)
    W_enc = read_tensor(weights, "W_enc", weights_path)
    if W_enc.ndim != 2:
        raise SAEError(
            f"{weights_path}: W_enc should be 2-D [d_in, d_sae], got {tuple(W_enc.shape)}"
        )
    d_in, d_sae = W_enc.shape
    W_dec = read_tensor(weights, "W_dec", weights_path)
    d_out = W_dec.shape[-1]
    check_d_out(d_in, int(raw.get("d_out") or d_out), directory)
    tensors = dict(zip(
        ("b_enc", "W_dec", "b_dec"),
        read_tensors(weights, weights_path, {"b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}),
        strict=True,
    ))  # fmt: skip
    tensors["W_enc"] = W_enc
    activation = _TRANSCODERS[arch]
    if activation == "jumprelu":
        if "threshold" in weights:
            threshold = read_tensor(weights, "threshold", weights_path)
        elif "log_threshold" in weights:
            threshold = torch.exp(read_tensor(weights, "log_threshold", weights_path))
        else:
            raise SAEError(
                f"{weights_path} is a jumprelu transcoder without threshold or log_threshold"
            )
        expect_shape(threshold, (d_sae,), "threshold", weights_path)
        tensors["threshold"] = threshold
    skip = "skip" in arch or "W_skip" in weights
    if skip:  # SAELens stores [d_out, d_in] and adds x @ W_skip.T
        (W_skip,) = read_tensors(weights, weights_path, {"W_skip": (d_in, d_in)})
        tensors["W_skip"] = W_skip.T
    kept = {key: get(key) for key in (*_SAELENS_KEEP, *_TRANSCODER_KEEP)}
    kept["architecture"] = arch
    cfg = SAEConfig(
        d_in=int(d_in),
        d_sae=int(d_sae),
        activation=activation,
        model=get("model_name"),
        layer=layer,
        skip=skip,
        **TRANSCODER_SITES,
        extra={"source_format": "saelens", **jsonable(kept)},
    )
    return SAE(cfg, tensors)


def _saelens_input_scale(directory: Path, raw: dict, meta: dict, weights: dict) -> float:
    norm = raw.get("normalize_activations", meta.get("normalize_activations"))
    if norm in (None, False, "none"):
        return 1.0
    where = directory / CFG_FILE
    if norm is True or norm == "expected_average_only_in":
        # trained on inputs multiplied by a constant sqrt(d_in) / mean norm; SAELens usually
        # folds it into the weights on export (and then writes "none" here)
        for source in (raw, meta):
            for key in ("norm_scaling_factor", "scaling_factor"):
                if source.get(key) is not None:
                    return _positive_float(source[key], f"{key} in {where}")
        scaler = directory / SAELENS_SCALER
        if scaler.is_file():
            value = read_json(scaler).get("scaling_factor")
            if value is not None:
                return _positive_float(value, f"scaling_factor in {scaler}")
        for key in ("norm_scaling_factor", "scaling_factor"):
            t = weights.get(key)
            if t is not None and t.numel() == 1:
                return _positive_float(t.item(), f"tensor {key}")
        raise SAEError(
            f"{where} says normalize_activations='expected_average_only_in' but no scaling "
            f"factor is stored with it (no {SAELENS_SCALER}, no norm_scaling_factor in "
            f'cfg.json); add "norm_scaling_factor": <value> to cfg.json (SAELens lists it '
            f"for its releases in pretrained_saes.yaml)"
        )
    if norm == "layer_norm":
        raise SAEError(
            f"{where} uses normalize_activations='layer_norm' (each token is centred and "
            f"divided by its own standard deviation); saeembed's encoder only has a constant "
            f"input scale, so it cannot use this SAE"
        )
    if norm == "constant_norm_rescale":
        raise SAEError(
            f"{where} uses normalize_activations='constant_norm_rescale' (each token rescaled "
            f"to norm sqrt(d_in)); saeembed's encoder only has a constant input scale, so it "
            f"cannot use this SAE"
        )
    raise SAEError(f"{where}: unknown normalize_activations {norm!r}; saeembed cannot use this SAE")


def _positive_float(value, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SAEError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise SAEError(f"{what} must be a positive finite number, got {value!r}")
    return number
