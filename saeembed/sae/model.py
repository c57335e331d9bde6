"""The SAE itself: one module for the activation functions people publish (TopK, ReLU, JumpReLU),
and saeembed's own directory format (`cfg.json` + `sae.safetensors`, see docs/sae-format.md).

Every other published format is converted into this representation on load (`saeembed.sae.formats`).
The encoder is always ``pre = (x * input_scale) @ W_enc + b_enc``; formats that subtract ``b_dec``
before encoding have it folded into ``b_enc`` when they are converted. A transcoder (``site``
``mlp_in``, ``output_site`` ``mlp_out``) may carry a skip connection ``W_skip``: its
reconstruction adds ``x @ W_skip`` (model units) to the decoder's output; its latents ignore it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from saeembed.errors import SAEError
from saeembed.sae.snmf import code, coding_of
from saeembed.sites import check_site

Activation = Literal["topk", "relu", "jumprelu", "snmf"]
ACTIVATIONS: tuple[str, ...] = ("topk", "relu", "jumprelu", "snmf")
CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae.safetensors"
FORMAT_VERSION = 1


#: Tokens whose residual norm exceeds this multiple of the SAE's training mean norm are not
#: encoded: see `SAE.typical`.
MAX_NORM_RATIO = 10.0


@dataclass
class SAEConfig:
    """Configuration of an SAE in saeembed's own format (the fields of `cfg.json`)."""

    d_in: int
    """Width of the residual stream the SAE reads."""
    d_sae: int
    """Number of latents (features)."""
    activation: Activation
    """`topk`: keep the k largest pre-activations per token (after ReLU); `relu`; `jumprelu`:
    keep pre-activations above a per-latent `threshold`; `snmf`: a semi-NMF dictionary, each
    token's k nonnegative coefficients against the decoder found by projected gradient steps
    (`saeembed.sae.snmf`)."""
    k: int | None = None
    """Active latents per token for `topk`; for the others, informational (may be None)."""
    model: str | None = None
    """The reader model the SAE was trained on (hub id or saeembed's default name)."""
    layer: int | None = None
    """Residual stream after decoder block `layer` (0-based), i.e. `hidden_states[layer + 1]`."""
    input_scale: float = 1.0
    """Inputs are multiplied by this before encoding (e.g. 1/mean-norm for unit-norm training)."""
    site: str = "resid"
    """Where in block `layer` it reads (`saeembed.sites`): `resid`, `mlp_in`, `mlp_hidden`,
    `mlp_out`."""
    output_site: str | None = None
    """Where its decoder writes when that is not where it reads: `mlp_out` for a transcoder."""
    skip: bool = False
    """Whether it has a linear skip connection ``W_skip [d_in, d_in]`` (skip transcoders): the
    reconstruction is ``decode(encode(x)) + x @ W_skip``."""
    source: str | None = None
    """Where the weights came from (format and path or hub id), for provenance."""
    format_version: int = FORMAT_VERSION
    extra: dict = field(default_factory=dict)
    """Anything else worth keeping from the original configuration (hook name, training stats)."""

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise SAEError(
                f"unknown SAE activation {self.activation!r}; use one of {', '.join(ACTIVATIONS)}"
            )
        if self.activation in ("topk", "snmf") and (self.k is None or self.k < 1):
            raise SAEError(f"a {self.activation} dictionary needs a positive `k` in its cfg.json")
        check_site(self.site)
        if self.output_site is not None:
            check_site(self.output_site, "output site")
        if self.d_in < 1 or self.d_sae < 1:
            raise SAEError(
                f"SAE dimensions must be positive (d_in={self.d_in}, d_sae={self.d_sae})"
            )
        if self.activation in ("topk", "snmf") and self.k > self.d_sae:
            raise SAEError(
                f"a topk SAE cannot keep k={self.k:,} of its {self.d_sae:,} latents; fix `k` in "
                "its cfg.json"
            )

    @classmethod
    def from_dict(cls, raw: dict) -> SAEConfig:
        known = {f for f in cls.__dataclass_fields__}
        missing = [f for f in ("d_in", "d_sae", "activation") if f not in raw]
        if missing:
            raise SAEError(f"SAE cfg.json lacks {', '.join(missing)}; see docs/sae-format.md")
        extra = dict(raw.get("extra") or {})
        extra.update({k: v for k, v in raw.items() if k not in known})
        kwargs = {k: v for k, v in raw.items() if k in known and k != "extra"}
        return cls(**kwargs, extra=extra)


class SparseActivations(NamedTuple):
    """Non-zero SAE activations of a batch of tokens as parallel 1-D tensors."""

    token: torch.Tensor
    """Row index of the token in the encoded batch (int64)."""
    feature: torch.Tensor
    """Latent index (int64)."""
    value: torch.Tensor
    """Activation (> 0)."""


class SAE(nn.Module):
    """A sparse autoencoder in saeembed's canonical form.

    Shapes: ``W_enc [d_in, d_sae]``, ``b_enc [d_sae]``, ``W_dec [d_sae, d_in]``, ``b_dec [d_in]``,
    ``threshold [d_sae]`` for JumpReLU, and ``W_skip [d_in, d_in]`` when ``cfg.skip``.
    """

    def __init__(self, cfg: SAEConfig, weights: dict[str, torch.Tensor] | None = None):
        super().__init__()
        self.cfg = cfg
        d_in, d_sae = cfg.d_in, cfg.d_sae
        self.W_enc = nn.Parameter(torch.zeros(d_in, d_sae), requires_grad=False)
        self.b_enc = nn.Parameter(torch.zeros(d_sae), requires_grad=False)
        self.W_dec = nn.Parameter(torch.zeros(d_sae, d_in), requires_grad=False)
        self.b_dec = nn.Parameter(torch.zeros(d_in), requires_grad=False)
        if cfg.activation == "jumprelu":
            self.threshold = nn.Parameter(torch.zeros(d_sae), requires_grad=False)
        else:
            self.threshold = None
        if cfg.skip:
            self.W_skip = nn.Parameter(torch.zeros(d_in, d_in), requires_grad=False)
        else:
            self.W_skip = None
        if weights is not None:
            self.load_weights(weights)

    # ---- weights -------------------------------------------------------------------------
    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        d_in, d_sae = self.cfg.d_in, self.cfg.d_sae
        shapes = {
            "W_enc": (d_in, d_sae),
            "b_enc": (d_sae,),
            "W_dec": (d_sae, d_in),
            "b_dec": (d_in,),
        }
        if self.cfg.activation == "jumprelu":
            shapes["threshold"] = (d_sae,)
        if self.cfg.skip:
            shapes["W_skip"] = (d_in, d_in)
        return shapes

    def load_weights(self, weights: dict[str, torch.Tensor]) -> None:
        """Copy canonical tensors in, checking every name and shape."""
        for name, shape in self.expected_shapes().items():
            if name not in weights:
                raise SAEError(
                    f"SAE weights lack tensor {name!r} (have: {', '.join(sorted(weights))})"
                )
            tensor = weights[name]
            if tuple(tensor.shape) != shape:
                raise SAEError(
                    f"SAE tensor {name} has shape {tuple(tensor.shape)}, expected {shape} "
                    f"for d_in={self.cfg.d_in}, d_sae={self.cfg.d_sae}"
                )
            data = tensor.detach().to(torch.float32).contiguous().clone()
            bad = int((~torch.isfinite(data)).sum())
            if bad:
                raise SAEError(
                    f"SAE tensor {name} has {bad:,} NaN or infinite values; the weights are "
                    "damaged: download, convert or train the SAE again"
                )
            getattr(self, name).data = data

    def canonical_state(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name).data for name in self.expected_shapes()}

    def content_hash(self) -> str:
        """sha256 over the canonical tensors (fp32 bytes) and the fields that change encoding.

        Two copies of the same SAE hash the same whatever format they were read from."""
        h = hashlib.sha256()
        fields = {
            "activation": self.cfg.activation,
            "k": self.cfg.k if self.cfg.activation in ("topk", "snmf") else None,
            "input_scale": float(self.cfg.input_scale),
        }
        # added only where they are not the residual SAE's, so older hashes stay as they were
        if self.cfg.site != "resid" or self.cfg.output_site is not None:
            fields.update(site=self.cfg.site, output_site=self.cfg.output_site)
        if self.cfg.activation == "snmf":
            fields["coding"] = coding_of(self.cfg)
        h.update(json.dumps(fields, sort_keys=True).encode())
        for name, tensor in sorted(self.canonical_state().items()):
            t = tensor.detach().to("cpu", torch.float32).contiguous()
            h.update(f"{name}:{tuple(t.shape)}".encode())
            h.update(t.numpy().tobytes())
        return h.hexdigest()

    def rounding_mismatch(self, other: SAE, *, tolerance: float = 1e-2) -> str | None:
        """Why ``other`` is not this SAE stored at another precision (fp16, bf16), or None if
        it is: same shape, activation, k and input scale, and every tensor within ``tolerance``
        relative (Frobenius) error of this one's. Labels made with one describe the other."""
        mine, theirs = self.cfg, other.cfg
        for name in ("d_in", "d_sae", "activation", "k", "site", "output_site", "skip"):
            if getattr(mine, name) != getattr(theirs, name):
                return f"{name} differs ({getattr(mine, name)} vs {getattr(theirs, name)})"
        if abs(mine.input_scale - theirs.input_scale) > tolerance * abs(mine.input_scale):
            return f"input_scale differs ({mine.input_scale:g} vs {theirs.input_scale:g})"
        theirs_state = other.canonical_state()
        for name, tensor in self.canonical_state().items():
            if name not in theirs_state:
                return f"it has no {name}"
            scale = float(tensor.norm())
            error = float((tensor - theirs_state[name].to(tensor.dtype)).norm())
            if error > tolerance * max(scale, 1e-12):
                return f"{name} differs by {error / max(scale, 1e-12):.1%} (more than rounding)"
        return None

    # ---- forward -------------------------------------------------------------------------
    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.input_scale != 1.0:
            x = x * self.cfg.input_scale
        return torch.addmm(self.b_enc.to(x.dtype), x, self.W_enc.to(x.dtype))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Dense latent activations ``[n, d_sae]`` (for tests, training and small inputs)."""
        sparse = self.encode_sparse(x)
        out = x.new_zeros(x.shape[0], self.cfg.d_sae)
        out[sparse.token, sparse.feature] = sparse.value
        return out

    def typical(self, x: torch.Tensor) -> torch.Tensor:
        """Mask of the rows of ``x [n, d_in]`` whose norm is at most `MAX_NORM_RATIO` x the
        training mean norm (``1 / input_scale``); every row when the SAE records no scale.

        Readers such as SmolLM2 put "massive activations" (attention sinks, norms 10-100x the
        rest) on a few tokens; saeembed's trainer leaves them out, so they are outside what the
        SAE reconstructs, and the encoder does not pool them (saeembed.encoding)."""
        if self.cfg.input_scale == 1.0:
            return torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        return x.float().norm(dim=1) * self.cfg.input_scale <= MAX_NORM_RATIO

    def encode_sparse(self, x: torch.Tensor) -> SparseActivations:
        """Non-zero activations of ``x [n, d_in]``, without a dense ``[n, d_sae]`` result for TopK."""
        if self.cfg.activation == "snmf":
            values, features = code(self, x)
            tokens = torch.arange(x.shape[0], device=x.device).unsqueeze(1).expand_as(features)
            keep = values > 0
            return SparseActivations(tokens[keep], features[keep], values[keep])
        pre = self.pre_activations(x)
        if self.cfg.activation == "topk":
            values, features = torch.topk(pre, self.cfg.k, dim=-1, sorted=False)
            tokens = torch.arange(x.shape[0], device=x.device).unsqueeze(1).expand_as(features)
            keep = values > 0
            return SparseActivations(tokens[keep], features[keep], values[keep])
        if self.cfg.activation == "jumprelu":
            keep = (pre > self.threshold.to(pre.dtype)) & (pre > 0)
        else:
            keep = pre > 0
        tokens, features = keep.nonzero(as_tuple=True)
        return SparseActivations(tokens, features, pre[tokens, features])

    def decode(self, acts: torch.Tensor) -> torch.Tensor:
        """Reconstruction in the model's units (undoes `input_scale`)."""
        x_hat = acts @ self.W_dec.to(acts.dtype) + self.b_dec.to(acts.dtype)
        if self.cfg.input_scale != 1.0:
            x_hat = x_hat / self.cfg.input_scale
        return x_hat

    def reconstruct(self, x: torch.Tensor, acts: torch.Tensor | None = None) -> torch.Tensor:
        """What the dictionary puts back for ``x``: its input again for an SAE or a semi-NMF,
        the MLP's output for a transcoder (plus ``x @ W_skip`` with a skip connection).
        ``acts`` are ``encode(x)`` when the caller has them already."""
        out = self.decode(self.encode(x) if acts is None else acts)
        if self.W_skip is not None:
            out = out + x @ self.W_skip.to(x.dtype)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reconstruct(x)

    # ---- saeembed's own directory format -------------------------------------------------
    def save(self, directory: str | Path, dtype: torch.dtype = torch.float32) -> Path:
        """Write ``cfg.json`` and ``sae.safetensors`` (``dtype`` e.g. float16 to ship small)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {
            n: t.detach().to("cpu", dtype).contiguous() for n, t in self.canonical_state().items()
        }
        save_file(tensors, str(directory / WEIGHTS_FILE), metadata={"format": "saeembed"})
        (directory / CFG_FILE).write_text(json.dumps(asdict(self.cfg), indent=2) + "\n")
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> SAE:
        """Read an SAE saved in saeembed's own format."""
        directory = Path(directory)
        cfg_path, weights_path = directory / CFG_FILE, directory / WEIGHTS_FILE
        if not cfg_path.is_file() or not weights_path.is_file():
            raise SAEError(
                f"{directory} is not a saeembed SAE directory (needs {CFG_FILE} and {WEIGHTS_FILE})"
            )
        try:
            raw = json.loads(cfg_path.read_text())
        except json.JSONDecodeError as exc:
            raise SAEError(
                f"{cfg_path} is not valid JSON ({exc.msg} at line {exc.lineno})"
            ) from exc
        cfg = SAEConfig.from_dict(raw)
        if cfg.source is None:
            cfg.source = f"saeembed:{directory}"
        return cls(cfg, load_file(str(weights_path)))
