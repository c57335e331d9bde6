"""Helpers shared by the SAE format loaders (`saeembed.sae.formats` and the per-format modules):
reading JSON, safetensors and checkpoint folders with `SAEError` messages, checking tensor names and
shapes, and the small conversions every format needs (folding ``b_dec`` into ``b_enc``, the layer
from a hook name, JSON-safe config fields)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from saeembed.errors import SAEError

TORCH_SUFFIXES = (".pt", ".pth")


# ---- small readers ----------------------------------------------------------------------------
def name_list(items) -> str:
    items = list(items)
    shown = ", ".join(str(i) for i in items[:8])
    return shown + (f", ... ({len(items)} in all)" if len(items) > 8 else "")


def torch_files(directory: Path) -> list[Path]:
    return sorted(
        p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in TORCH_SUFFIXES
    )


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise SAEError(f"{path} is missing")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SAEError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise SAEError(f"cannot read {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise SAEError(f"{path} should hold a JSON object, not {type(raw).__name__}")
    return raw


def safetensors_keys(path: Path) -> list[str]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return list(f.keys())
    except Exception as exc:  # SafetensorError, OSError: a damaged or foreign file
        raise SAEError(f"{path} is not a readable safetensors file ({exc})") from exc


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise SAEError(f"{path} is missing")
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:
        raise SAEError(f"{path} is not a readable safetensors file ({exc})") from exc


def read_tensor(weights: dict[str, torch.Tensor], name: str, where: Path) -> torch.Tensor:
    if name not in weights:
        raise SAEError(f"{where} lacks tensor {name!r} (has: {name_list(sorted(weights))})")
    return weights[name].detach().to("cpu", torch.float64)


def expect_shape(t: torch.Tensor, shape: tuple[int, ...], name: str, where: Path) -> None:
    if tuple(t.shape) != shape:
        raise SAEError(f"{where}: tensor {name} has shape {tuple(t.shape)}, expected {shape}")


def read_tensors(
    weights: dict[str, torch.Tensor], where: Path, shapes: dict[str, tuple[int, ...]]
) -> list[torch.Tensor]:
    """The tensors named in ``shapes`` (as `read_tensor` gives them), all read before any shape
    is checked against ``shapes``."""
    tensors = [read_tensor(weights, name, where) for name in shapes]
    for t, (name, shape) in zip(tensors, shapes.items(), strict=True):
        expect_shape(t, shape, name, where)
    return tensors


# ---- small conversions ------------------------------------------------------------------------
def jsonable(fields: dict) -> dict:
    out = {}
    for key, value in fields.items():
        if value is None:
            continue
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        out[key] = value
    return out


def fold_b_dec(W_enc: torch.Tensor, b_enc: torch.Tensor, b_dec: torch.Tensor) -> torch.Tensor:
    """``b_enc`` such that ``x @ W_enc + b_enc == (x - b_dec) @ W_enc + old b_enc``."""
    return b_enc - b_dec @ W_enc


# ---- layer from hook names ----------------------------------------------------------------
_RESID_POST = re.compile(r"^blocks\.(\d+)\.hook_resid_post$")
_RESID_PRE = re.compile(r"^blocks\.(\d+)\.hook_resid_pre$")
_BLOCK_OUTPUT = re.compile(
    r"^(?:(?:model|transformer|gpt_neox|base_model|language_model|decoder)\.)*"
    r"(?:layers|h|blocks|layer)\.(\d+)$"
)
_INSIDE_BLOCK = re.compile(
    r"^(?:(?:model|transformer|gpt_neox|base_model|language_model|decoder)\.)*"
    r"(?:layers|h|blocks|layer)\.\d+\..+$"
)
_EMBEDDING = re.compile(r"(^|\.)(hook_embed|hook_pos_embed|embed_tokens|embed_in|wte|embed)$")


def layer_from_hook(hook: str | None) -> tuple[int | None, str | None]:
    """(layer, note) for a hook or module name; refuses hooks that are not the residual stream
    after a decoder block. ``layer`` is None (with a note) when the name is not understood."""
    if not hook:
        return None, "the SAE does not say which layer it reads; choose the layer yourself"
    hook = str(hook)
    if m := _RESID_POST.match(hook):
        return int(m.group(1)), None
    if m := _RESID_PRE.match(hook):
        n = int(m.group(1))
        if n == 0:
            raise SAEError(
                f"this SAE reads {hook} (the token embeddings, before any decoder block); "
                f"saeembed encodes the residual stream after a decoder block, so it cannot use it"
            )
        return n - 1, None
    if m := _BLOCK_OUTPUT.match(hook):
        return int(m.group(1)), None
    if _INSIDE_BLOCK.match(hook) or _EMBEDDING.search(hook):
        raise SAEError(
            f"this SAE reads {hook}, not the residual stream after a decoder block; saeembed "
            f"only encodes residual-stream activations, so it cannot use it"
        )
    return None, f"layer not inferred from hook {hook!r}; choose the layer yourself"
