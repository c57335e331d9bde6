"""Goodfire ``.pt``/``.pth`` state dicts (``encoder_linear``/``decoder_linear``): ReLU SAEs
that encode without subtracting a decoder bias, converted into saeembed's `SAE`, with the layer and
model taken from the file name. Checkpoints are read with ``torch.load(weights_only=True)`` only."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from saeembed.errors import SAEError
from saeembed.sae._common import name_list, read_tensor, read_tensors, torch_files
from saeembed.sae.model import SAE, SAEConfig

_GOODFIRE_LAYER = re.compile(r"[-_]l(\d+)(?=\D|$)")
_GOODFIRE_PREFIX = re.compile(r"^(.+?)[-_]SAE(?:[-_]|$)", re.IGNORECASE)


def load_goodfire(path: Path) -> SAE:
    """The Goodfire checkpoint ``path`` (or the only one in directory ``path``) as saeembed's `SAE`."""
    if path.is_dir():
        checkpoints = torch_files(path)
        if len(checkpoints) != 1:
            raise SAEError(f"{path} should hold exactly one .pt/.pth checkpoint")
        path = checkpoints[0]
    state = _torch_state_dict(path)
    needed = (
        "encoder_linear.weight",
        "encoder_linear.bias",
        "decoder_linear.weight",
        "decoder_linear.bias",
    )
    if not all(key in state for key in needed):
        raise SAEError(
            f"{path} is not a Goodfire SAE checkpoint: expected {', '.join(needed)}; "
            f"found {name_list(sorted(state))}"
        )
    enc_w = read_tensor(state, "encoder_linear.weight", path)
    if enc_w.ndim != 2:
        raise SAEError(f"{path}: encoder_linear.weight should be 2-D, got {tuple(enc_w.shape)}")
    d_sae, d_in = enc_w.shape
    enc_b, dec_w, dec_b = read_tensors(
        state,
        path,
        {
            "encoder_linear.bias": (d_sae,),
            "decoder_linear.weight": (d_in, d_sae),
            "decoder_linear.bias": (d_in,),
        },
    )

    stem = path.stem
    matches = _GOODFIRE_LAYER.findall(stem)
    layer = int(matches[-1]) if matches else None
    extra: dict = {"source_format": "goodfire", "checkpoint": path.name}
    if layer is None:
        extra["layer_note"] = "layer not in the file name (…-l<N>.pt); choose the layer yourself"
    else:
        extra["hook_name"] = f"model.layers.{layer}"
    model = None
    if m := _GOODFIRE_PREFIX.match(stem):
        prefix = m.group(1)
        if re.match(r"^(Meta-)?Llama-", prefix):
            model = f"meta-llama/{prefix}"
        else:
            extra["model_hint"] = prefix
    cfg = SAEConfig(
        d_in=int(d_in), d_sae=int(d_sae), activation="relu", model=model, layer=layer, extra=extra
    )
    # Goodfire encodes relu(x @ W_e.T + b_e) with no decoder-bias subtraction
    return SAE(cfg, {"W_enc": enc_w.T, "b_enc": enc_b, "W_dec": dec_w.T, "b_dec": dec_b})


def _torch_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a .pt/.pth state dict with ``weights_only=True``: never unpickles other objects."""
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SAEError(
            f"{path} is not a plain tensor checkpoint, so saeembed will not load it (it only "
            f"reads .pt/.pth with torch.load(weights_only=True) and never unpickles other "
            f"objects); re-save it as a state dict of tensors or as safetensors ({detail[:200]})"
        ) from exc
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise SAEError(f"{path} does not hold a state dict of tensors")
    return obj
