"""Readers for the SAE formats people publish, each converted into saeembed's canonical `SAE`.

Supported: saeembed's own directory (`cfg.json` + `sae.safetensors`), SAELens directories
(`cfg.json` + `sae_weights.safetensors`), EleutherAI sparsify hookpoint folders (`cfg.json` +
`sae.safetensors` with `encoder.weight`), and Goodfire `.pt`/`.pth` state dicts. See
docs/sae-format.md for what each conversion does.

Conversions are exact: encoders that subtract ``b_dec`` from the input have it folded into
``b_enc``, constant input scales go into ``cfg.input_scale``, and anything saeembed's encoder
cannot reproduce is refused with an `SAEError` instead of being approximated.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from saeembed.errors import SAEError
from saeembed.sae.model import CFG_FILE, SAE, WEIGHTS_FILE, SAEConfig

FORMATS: tuple[str, ...] = ("saeembed", "saelens", "sparsify", "goodfire")
SAELENS_WEIGHTS = "sae_weights.safetensors"
SAELENS_SCALER = "activation_scaler.json"
TORCH_SUFFIXES = (".pt", ".pth")

_HUB_PREFIX = "hf://"
_HUB_PART = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_HUB_RE = re.compile(rf"^{_HUB_PART}/{_HUB_PART}(/[^\s\\]+)?$")


# ---- public API ---------------------------------------------------------------------------
def load_sae(spec: str | os.PathLike) -> SAE:
    """Load an SAE from a local directory or checkpoint file, or a Hub id
    ``owner/repo[/folder]`` (optionally prefixed with ``hf://``), in any supported format."""
    path, where = _resolve(spec)
    path = _sae_root(path)
    fmt = detect_format(path)
    if fmt == "saeembed":
        sae = _load_saeembed(path)
        if sae.cfg.source in (None, f"saeembed:{path}"):
            sae.cfg.source = f"saeembed:{where}"
        return sae
    sae = _LOADERS[fmt](path)
    sae.cfg.source = f"{fmt}:{where}"
    return sae


def detect_format(path: Path) -> str:
    """Name the on-disk format at ``path``: "saeembed", "saelens", "sparsify" or "goodfire"."""
    path = _sae_root(Path(path))
    if path.is_file():
        if path.suffix.lower() in TORCH_SUFFIXES:
            return "goodfire"
        raise SAEError(
            f"{path} is not an SAE checkpoint saeembed can read: give a directory with "
            f"cfg.json, or a Goodfire .pt/.pth file"
        )
    if not path.is_dir():
        raise SAEError(f"no SAE at {path}: it does not exist")
    has_cfg = (path / CFG_FILE).is_file()
    if has_cfg and (path / SAELENS_WEIGHTS).is_file():
        return "saelens"
    if has_cfg and (path / WEIGHTS_FILE).is_file():
        keys = _safetensors_keys(path / WEIGHTS_FILE)
        if "W_enc" in keys:
            return "saeembed"
        if "encoder.weight" in keys:
            return "sparsify"
        raise SAEError(
            f"{path / WEIGHTS_FILE} has neither saeembed tensors (W_enc, ...) nor sparsify "
            f"tensors (encoder.weight, ...); found: {_names(keys)}"
        )
    checkpoints = _torch_files(path)
    if not has_cfg and len(checkpoints) == 1:
        return "goodfire"
    if len(checkpoints) > 1:
        raise SAEError(
            f"{path} holds several checkpoints ({_names(p.name for p in checkpoints)}); "
            f"give the path of the one to use"
        )
    if has_cfg:
        raise SAEError(
            f"{path} has cfg.json but no weights: expected {WEIGHTS_FILE} (saeembed or "
            f"sparsify) or {SAELENS_WEIGHTS} (SAELens) next to it"
        )
    children = sorted(c.name for c in path.iterdir() if c.is_dir() and (c / CFG_FILE).is_file())
    if children:
        raise SAEError(
            f"{path} holds several SAEs ({_names(children)}); pick one, e.g. {path / children[0]}"
        )
    raise SAEError(
        f"no SAE found in {path}: expected cfg.json with sae.safetensors or "
        f"sae_weights.safetensors, or a single .pt/.pth checkpoint"
    )


def check_sae_fits(sae: SAE, d_model: int, n_layers: int, layer: int) -> None:
    """Raise `SAEError` unless ``sae`` can read the residual stream after block ``layer`` of a
    model with hidden size ``d_model`` and ``n_layers`` decoder blocks."""
    if sae.cfg.d_in != d_model:
        raise SAEError(
            f"SAE d_in={sae.cfg.d_in} does not match the model's hidden size {d_model} at "
            f"layer {layer}; pick an SAE trained on this model"
        )
    if not 0 <= layer < n_layers:
        raise SAEError(
            f"layer {layer} is outside 0..{n_layers - 1}: the model has {n_layers} decoder blocks"
        )


# ---- resolving a spec -----------------------------------------------------------------------
def _resolve(spec: str | os.PathLike) -> tuple[Path, str]:
    """Turn ``spec`` into a local path (downloading from the Hub when needed) and a label."""
    text = os.fspath(spec)
    if isinstance(spec, str) and text.startswith(_HUB_PREFIX):
        return _from_hub(text[len(_HUB_PREFIX) :])
    path = Path(text).expanduser()
    if path.exists():
        return path, str(path)
    if isinstance(spec, str) and _looks_like_hub_id(text):
        return _from_hub(text)
    raise SAEError(
        f"no SAE at {text}: give a directory, a checkpoint file, or a Hub id owner/repo[/folder]"
    )


def _looks_like_hub_id(text: str) -> bool:
    if text.startswith(("/", ".", "~")) or "//" in text:
        return False
    if any(part in ("", ".", "..") for part in text.split("/")):
        return False
    return bool(_HUB_RE.match(text))


def _snapshot_download(repo_id: str, **kwargs) -> str:
    from huggingface_hub import snapshot_download

    return snapshot_download(repo_id, **kwargs)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _from_hub(ref: str) -> tuple[Path, str]:
    parts = [p for p in ref.strip("/").split("/") if p]
    if len(parts) < 2:
        raise SAEError(f"{ref!r} is not a Hub id: use owner/repo or owner/repo/folder")
    repo_id, sub = "/".join(parts[:2]), "/".join(parts[2:])
    label = f"{_HUB_PREFIX}{repo_id}" + (f"/{sub}" if sub else "")
    try:
        root = _snapshot_download(
            repo_id,
            allow_patterns=[sub, f"{sub}/*"] if sub else None,
            # read at call time, so that setting it after import still works
            local_files_only=_env_flag("HF_HUB_OFFLINE"),
        )
    except Exception as exc:  # huggingface_hub raises many types; all become one message
        raise _hub_error(repo_id, label, exc) from exc
    target = Path(root) / sub if sub else Path(root)
    if not target.exists():
        raise SAEError(f"Hub repo {repo_id} has no {sub!r}; check the folder name on its page")
    return target, label


def _hub_error(repo_id: str, label: str, exc: Exception) -> SAEError:
    kinds = {cls.__name__ for cls in type(exc).__mro__}
    local = "give a local directory or checkpoint path instead"
    if "GatedRepoError" in kinds:
        why = f"Hub repo {repo_id} is gated: accept its terms on the Hub and set HF_TOKEN"
    elif "RepositoryNotFoundError" in kinds:
        why = (
            f"Hub repo {repo_id} was not found (private repos need HF_TOKEN); if {label} was "
            f"meant as a local path, it does not exist"
        )
    elif "RevisionNotFoundError" in kinds:
        why = f"Hub repo {repo_id} has no such revision"
    elif "HFValidationError" in kinds:
        why = f"{label} is not a valid Hub id (owner/repo[/folder])"
    elif kinds & {"LocalEntryNotFoundError", "OfflineModeIsEnabled"} or _is_network_error(exc):
        offline = " (HF_HUB_OFFLINE is set)" if _env_flag("HF_HUB_OFFLINE") else ""
        why = (
            f"the Hugging Face Hub could not be reached for {label}{offline} and it is not "
            f"in the local cache; {local}"
        )
        return SAEError(why)
    else:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        why = (
            f"could not download {label} from the Hugging Face Hub ({type(exc).__name__}: {detail})"
        )
    return SAEError(f"{why}; {local}")


def _is_network_error(exc: BaseException) -> bool:
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(
        names
        & {
            "ConnectionError",
            "ConnectError",
            "Timeout",
            "TimeoutException",
            "NetworkError",
            "ProxyError",
            "SSLError",
        }
    )


def _sae_root(path: Path) -> Path:
    """A file inside an SAE directory (cfg.json, the weights) stands for the directory."""
    if path.is_file() and path.name in (CFG_FILE, WEIGHTS_FILE, SAELENS_WEIGHTS):
        return path.parent
    return path


# ---- small readers ----------------------------------------------------------------------------
def _names(items) -> str:
    items = list(items)
    shown = ", ".join(str(i) for i in items[:8])
    return shown + (f", ... ({len(items)} in all)" if len(items) > 8 else "")


def _torch_files(directory: Path) -> list[Path]:
    return sorted(
        p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in TORCH_SUFFIXES
    )


def _read_json(path: Path) -> dict:
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


def _safetensors_keys(path: Path) -> list[str]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return list(f.keys())
    except Exception as exc:  # SafetensorError, OSError: a damaged or foreign file
        raise SAEError(f"{path} is not a readable safetensors file ({exc})") from exc


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise SAEError(f"{path} is missing")
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:
        raise SAEError(f"{path} is not a readable safetensors file ({exc})") from exc


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


def _tensor(weights: dict[str, torch.Tensor], name: str, where: Path) -> torch.Tensor:
    if name not in weights:
        raise SAEError(f"{where} lacks tensor {name!r} (has: {_names(sorted(weights))})")
    return weights[name].detach().to("cpu", torch.float64)


def _expect_shape(t: torch.Tensor, shape: tuple[int, ...], name: str, where: Path) -> None:
    if tuple(t.shape) != shape:
        raise SAEError(f"{where}: tensor {name} has shape {tuple(t.shape)}, expected {shape}")


def _jsonable(fields: dict) -> dict:
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


def _fold_b_dec(W_enc: torch.Tensor, b_enc: torch.Tensor, b_dec: torch.Tensor) -> torch.Tensor:
    """``b_enc`` such that ``x @ W_enc + b_enc == (x - b_dec) @ W_enc + old b_enc``."""
    return b_enc - b_dec @ W_enc


def _positive_float(value, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SAEError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise SAEError(f"{what} must be a positive finite number, got {value!r}")
    return number


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


def _layer_from_hook(hook: str | None) -> tuple[int | None, str | None]:
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


# ---- saeembed ------------------------------------------------------------------------------------
def _load_saeembed(directory: Path) -> SAE:
    try:
        return SAE.load(directory)
    except SAEError:
        raise
    except (TypeError, ValueError, OSError) as exc:
        raise SAEError(f"{directory} is not a valid saeembed SAE ({exc})") from exc
    except Exception as exc:  # safetensors errors
        raise SAEError(f"{directory / WEIGHTS_FILE} is not readable ({exc})") from exc


# ---- SAELens ---------------------------------------------------------------------------------
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
_TRANSCODERS = ("transcoder", "skip_transcoder", "jumprelu_transcoder", "clt")
_TRAINING_ONLY = ("batchtopk", "matryoshka_batchtopk")


def _load_saelens(directory: Path) -> SAE:
    cfg_path = directory / CFG_FILE
    raw = _read_json(cfg_path)
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
    if arch in _TRANSCODERS or "transcoder" in arch:
        raise SAEError(
            f"{directory} is a SAELens {arch}: it maps one hook to another, not an "
            f"autoencoder of the residual stream; saeembed cannot use it"
        )
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
    layer, note = _layer_from_hook(hook)

    weights_path = directory / SAELENS_WEIGHTS
    weights = _read_safetensors(weights_path)
    input_scale = _saelens_input_scale(directory, raw, meta, weights)

    W_enc = _tensor(weights, "W_enc", weights_path)
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
    W_dec = _tensor(weights, "W_dec", weights_path)
    b_dec = _tensor(weights, "b_dec", weights_path)
    _expect_shape(W_dec, (d_sae, d_in), "W_dec", weights_path)
    _expect_shape(b_dec, (d_in,), "b_dec", weights_path)

    threshold = None
    if arch == "gated":
        # gate: (x' @ W + b_gate) > 0; magnitude: relu(x' @ (W * exp(r_mag)) + b_mag).
        # As magnitude = exp(r_mag) * (gate - b_gate) + b_mag, the gate opens exactly when the
        # magnitude exceeds b_mag - exp(r_mag) * b_gate: a JumpReLU on the magnitude path.
        b_gate = _tensor(weights, "b_gate", weights_path)
        b_mag = _tensor(weights, "b_mag", weights_path)
        r_mag = _tensor(weights, "r_mag", weights_path)
        for name, t in (("b_gate", b_gate), ("b_mag", b_mag), ("r_mag", r_mag)):
            _expect_shape(t, (d_sae,), name, weights_path)
        gain = torch.exp(r_mag)
        W_enc = W_enc * gain
        b_enc = b_mag
        threshold = b_mag - gain * b_gate
    else:
        b_enc = _tensor(weights, "b_enc", weights_path)
        _expect_shape(b_enc, (d_sae,), "b_enc", weights_path)
    if arch == "jumprelu":
        if "threshold" in weights:
            threshold = _tensor(weights, "threshold", weights_path)
        elif "log_threshold" in weights:
            threshold = torch.exp(_tensor(weights, "log_threshold", weights_path))
        else:
            raise SAEError(f"{weights_path} is a jumprelu SAE without threshold or log_threshold")
        _expect_shape(threshold, (d_sae,), "threshold", weights_path)

    apply_b_dec = bool(get("apply_b_dec_to_input", default=True))
    if apply_b_dec:
        b_enc = _fold_b_dec(W_enc, b_enc, b_dec)

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
    extra = {"source_format": "saelens", **_jsonable(kept), **extra_notes}
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
            value = _read_json(scaler).get("scaling_factor")
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


# ---- EleutherAI sparsify ------------------------------------------------------------------------
def _load_sparsify(directory: Path) -> SAE:
    cfg_path = directory / CFG_FILE
    raw = _read_json(cfg_path)
    weights_path = directory / WEIGHTS_FILE
    if raw.get("transcode"):
        raise SAEError(
            f"{directory} is a sparsify transcoder (transcode=true): it predicts a module's "
            f"output from its input, so it is not an autoencoder saeembed can use"
        )
    weights = _read_safetensors(weights_path)
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
    enc_w = _tensor(weights, "encoder.weight", weights_path)
    if enc_w.ndim != 2:
        raise SAEError(f"{weights_path}: encoder.weight should be 2-D, got {tuple(enc_w.shape)}")
    d_sae, d_in = enc_w.shape
    if raw.get("d_in") is not None and int(raw["d_in"]) != d_in:
        raise SAEError(
            f"{cfg_path} says d_in={raw['d_in']} but encoder.weight is {tuple(enc_w.shape)}"
        )
    enc_b = _tensor(weights, "encoder.bias", weights_path)
    W_dec = _tensor(weights, "W_dec", weights_path)
    b_dec = _tensor(weights, "b_dec", weights_path)
    _expect_shape(enc_b, (d_sae,), "encoder.bias", weights_path)
    _expect_shape(W_dec, (d_sae, d_in), "W_dec", weights_path)
    _expect_shape(b_dec, (d_in,), "b_dec", weights_path)
    k = raw.get("k", 32)  # sparsify's default
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise SAEError(f"{cfg_path}: k must be a positive integer, got {k!r}")

    W_enc = enc_w.T
    b_enc = _fold_b_dec(W_enc, enc_b, b_dec)  # sparsify always encodes x - b_dec
    layer, note = _layer_from_hook(directory.name)
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
    extra = {"source_format": "sparsify", "hookpoint": directory.name, **_jsonable(kept)}
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


# ---- Goodfire ---------------------------------------------------------------------------------------
_GOODFIRE_LAYER = re.compile(r"[-_]l(\d+)(?=\D|$)")
_GOODFIRE_PREFIX = re.compile(r"^(.+?)[-_]SAE(?:[-_]|$)", re.IGNORECASE)


def _load_goodfire(path: Path) -> SAE:
    if path.is_dir():
        checkpoints = _torch_files(path)
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
            f"found {_names(sorted(state))}"
        )
    enc_w = _tensor(state, "encoder_linear.weight", path)
    if enc_w.ndim != 2:
        raise SAEError(f"{path}: encoder_linear.weight should be 2-D, got {tuple(enc_w.shape)}")
    d_sae, d_in = enc_w.shape
    enc_b = _tensor(state, "encoder_linear.bias", path)
    dec_w = _tensor(state, "decoder_linear.weight", path)
    dec_b = _tensor(state, "decoder_linear.bias", path)
    _expect_shape(enc_b, (d_sae,), "encoder_linear.bias", path)
    _expect_shape(dec_w, (d_in, d_sae), "decoder_linear.weight", path)
    _expect_shape(dec_b, (d_in,), "decoder_linear.bias", path)

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


_LOADERS: dict[str, Callable[[Path], SAE]] = {
    "saeembed": _load_saeembed,
    "saelens": _load_saelens,
    "sparsify": _load_sparsify,
    "goodfire": _load_goodfire,
}
