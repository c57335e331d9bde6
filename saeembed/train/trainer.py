"""Training TopK and BatchTopK SAEs (Gao et al. 2024; Bussmann et al. 2024) on collected
activations, on the CPU or a GPU, with exact resume from atomic checkpoints, and export to
saeembed's own `SAE` format.

Recipe: inputs scaled to unit mean norm; ``b_dec`` initialised to the geometric median of a
sample of scaled inputs (of the scaled targets for a transcoder); unit-norm decoder rows (gradient component parallel to each row removed
before the step, rows renormalised after it); ``W_enc`` initialised as ``W_dec.T``; loss = FVU +
``aux_coef`` x the AuxK loss (the top ``aux_k`` dead latents reconstruct the residual error); Adam
with linear warm-up and a linear decay to zero at the end.

A collection with a target site (``collect_activations(..., site="mlp_in",
target_site="mlp_out")``) trains a transcoder: the loss is the FVU of the target (scaled by the
input's scale) reconstructed from the input, and the export reads ``mlp_in`` and writes ``mlp_out``.

The model itself (sparse forward and backward, AuxK, export) is `saeembed.train.model`.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Literal

import torch

from saeembed.errors import SaeembedError
from saeembed.files import atomic_path
from saeembed.sae import SAE
from saeembed.train.activations import load_manifest
from saeembed.train.loader import ActivationLoader, iter_split
from saeembed.train.model import TrainableSAE, geometric_median

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
METRICS = "metrics.jsonl"
_RESUME_FREE = ("steps", "checkpoint_every", "log_every", "device")  # may change between resumes


@dataclass
class TrainConfig:
    """How to train an SAE. Fields left as None get the documented default for the run."""

    d_sae: int = 8192
    """Number of latents."""
    k: int = 32
    """Active latents per token (TopK), or per token on average over a batch (BatchTopK)."""
    architecture: Literal["topk", "batchtopk"] = "topk"
    """`topk` exports as a topk SAE; `batchtopk` exports as jumprelu with one global threshold."""
    steps: int = 1000
    """Optimizer steps."""
    batch_size: int = 4096
    """Tokens per step."""
    lr: float | None = None
    """Adam learning rate; None: ``2e-4 / sqrt(d_sae / 16384)`` (sparsify's scaling)."""
    warmup_steps: int | None = None
    """Linear warm-up steps; None: 5% of `steps`, at most 1000."""
    decay_fraction: float = 0.2
    """The learning rate decays linearly to zero over this final fraction of the steps."""
    aux_k: int | None = None
    """Dead latents used by the AuxK loss; None: ``d_in // 2``."""
    aux_coef: float = 1 / 32
    """Weight of the AuxK loss."""
    dead_after_tokens: int | None = None
    """A latent is dead once it has not fired for this many tokens; None: 10M, or a tenth of the
    run's tokens (``steps * batch_size / 10``) when that is smaller, so short runs see dead latents."""
    seed: int = 0
    """Seeds the initialisation and the order of the training tokens."""
    checkpoint_every: int = 200
    """Steps between checkpoints (one is always written at the end)."""
    log_every: int = 10
    """Steps between log lines and `metrics.jsonl` rows."""
    device: str = "auto"
    """`auto` (cuda if available, else cpu), `cpu`, `cuda`, `cuda:N`."""
    buffer_tokens: int = 1 << 18
    """Tokens shuffled together (several shards), see `ActivationLoader`."""
    median_tokens: int = 16384
    """Sample size for the geometric-median initialisation of ``b_dec``."""
    max_norm_ratio: float | None = 10.0
    """Tokens whose norm exceeds this multiple of the mean norm are left out of training (and of
    the validation FVU): a few tokens with massive activations (SmolLM2 layer 15: the first token
    of ~2% of documents, 6-110x the mean norm) would otherwise dominate the loss. None keeps all."""

    def __post_init__(self) -> None:
        checks = {
            "architecture must be topk or batchtopk": self.architecture in ("topk", "batchtopk"),
            "d_sae, k, steps, batch_size must be positive": min(
                self.d_sae, self.k, self.steps, self.batch_size
            )
            > 0,
            "k must be smaller than d_sae": self.k < self.d_sae,
            "lr must be positive": self.lr is None or self.lr > 0,
            "decay_fraction must lie in [0, 1]": 0 <= self.decay_fraction <= 1,
            "aux_k and dead_after_tokens must be positive": min(
                self.aux_k or 1, self.dead_after_tokens or 1
            )
            > 0,
            "aux_coef must be >= 0": self.aux_coef >= 0,
            "max_norm_ratio must be > 1": self.max_norm_ratio is None or self.max_norm_ratio > 1,
            "checkpoint_every and log_every must be positive": min(
                self.checkpoint_every, self.log_every
            )
            > 0,
        }
        for message, ok in checks.items():
            if not ok:
                raise SaeembedError(f"invalid TrainConfig: {message}")

    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else 2e-4 / math.sqrt(self.d_sae / 16384)

    def warmup(self) -> int:
        return self.warmup_steps if self.warmup_steps is not None else min(1000, self.steps // 20)

    def dead_window(self) -> int:
        if self.dead_after_tokens is not None:
            return self.dead_after_tokens
        return max(self.batch_size, min(10_000_000, self.steps * self.batch_size // 10))

    def lr_factor(self, step: int) -> float:
        """Multiplier of the learning rate at ``step`` (0-based)."""
        warm = min(1.0, (step + 1) / self.warmup()) if self.warmup() else 1.0
        decay_steps = int(self.steps * self.decay_fraction)
        left = self.steps - step
        return warm * (min(1.0, left / decay_steps) if decay_steps else 1.0)


@dataclass
class TrainResult:
    """What `train_sae` produced: the exported SAE (also saved in ``path``) and its figures."""

    sae: SAE
    path: Path
    summary: dict


def training_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SaeembedError(
            "device cuda was asked for but no CUDA GPU is visible; use device='cpu'"
        )
    return torch.device(name)


def _checkpoints(out: Path) -> list[Path]:
    return sorted((out / CHECKPOINTS).glob("step-*[0-9]"))


def _save_checkpoint(out: Path, state: dict) -> None:
    """Write to a hidden directory, then rename it: a kill never leaves a half checkpoint."""
    final = out / CHECKPOINTS / f"step-{state['step']:08d}"
    with atomic_path(final, directory=True) as tmp:
        torch.save(state, tmp / "state.pt")
    for old in _checkpoints(out):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)


def _check_resumable(saved: dict, config: TrainConfig) -> None:
    now = asdict(config)
    changed = [
        f.name
        for f in fields(TrainConfig)
        if f.name not in _RESUME_FREE and saved.get(f.name) != now[f.name]
    ]
    if changed:
        raise SaeembedError(
            f"the checkpoint was trained with other {', '.join(changed)}; "
            "pass resume=False or another out_dir"
        )


def _keep_metrics_until(out: Path, step: int) -> None:
    """Drop metric rows written after the checkpoint we resume from, so none is duplicated."""
    path = out / METRICS
    if path.exists():
        rows = []
        for line in path.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= step:
                    rows.append(line)
            except (json.JSONDecodeError, KeyError):  # a line cut short by a kill
                continue
        path.write_text("".join(r + "\n" for r in rows))


def _next_batch(stream, model: TrainableSAE, max_norm: float | None):
    """(x, target or None, tokens before filtering) of the loader's next batch, scaled by the
    model's input and output scales, without the rows whose input norm exceeds ``max_norm``
    (inputs are scaled to mean norm 1)."""
    batch = next(stream)
    x, target = batch if isinstance(batch, tuple) else (batch, None)
    x, n = x * model.input_scale, len(x)
    target = None if target is None else target * model.output_scale
    if max_norm is not None:
        keep = x.norm(dim=1) <= max_norm
        x, target = x[keep], None if target is None else target[keep]
    return x, target, n


def _transcodes(manifest: dict) -> bool:
    """Whether the collection trains a transcoder (it has targets); refuses targets that are not
    a transcoder's (``mlp_out`` for ``mlp_in``, at the same width)."""
    target_site = manifest.get("target_site")
    if target_site is None:
        return False
    if (manifest.get("site"), target_site) != ("mlp_in", "mlp_out"):
        raise SaeembedError(
            f"activations from {manifest.get('site', 'resid')} with targets at {target_site} "
            "cannot train a transcoder; collect with site='mlp_in', target_site='mlp_out'"
        )
    if manifest.get("d_target", manifest["d_model"]) != manifest["d_model"]:
        raise SaeembedError("the targets are not as wide as the inputs; collect them again")
    return True


def _new_model(manifest: dict, config: TrainConfig, device) -> TrainableSAE:
    """The freshly initialised SAE (or transcoder) for a collection: inputs scaled by
    ``1 / mean_norm`` (a transcoder's targets by ``1 / target_mean_norm``)."""
    scale, transcode = 1.0 / manifest["mean_norm"], _transcodes(manifest)
    out_scale = 1.0 / manifest["target_mean_norm"] if transcode else None
    return TrainableSAE(manifest["d_model"], config, scale, transcode, out_scale).to(device)


def _init_b_dec(model: TrainableSAE, activations_dir, config: TrainConfig, device) -> None:
    loader = ActivationLoader(
        activations_dir,
        config.batch_size,
        device=device,
        seed=config.seed + 1,
        buffer_tokens=config.buffer_tokens,
    )
    sample, n, stream = [], 0, iter(loader)
    while n < min(config.median_tokens, loader.n_tokens):
        x, target, size = _next_batch(stream, model, config.max_norm_ratio)
        sample.append(x if target is None else target)
        n += size
    points = torch.cat(sample)[: config.median_tokens]
    with torch.no_grad():
        model.b_dec.copy_(geometric_median(points))


class _Meter:
    """Sums of the per-step figures between two log lines, kept on the device (no syncs)."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.steps, self.start = 0, time.perf_counter()

    def add(self, **values: torch.Tensor) -> None:
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0) + value.detach().float()
        self.steps += 1

    def flush(self, step: int, n_tokens: int, extra: dict) -> dict:
        row = {
            "step": step,
            **{k: round(float(v) / self.steps, 6) for k, v in self.sums.items()},
            **extra,
        }
        row["tokens_per_s"] = round(n_tokens * self.steps / (time.perf_counter() - self.start), 1)
        self.reset()
        return row


def train_sae(
    config: TrainConfig,
    activations_dir: str | Path,
    out_dir: str | Path,
    *,
    resume: bool = True,
    on_step=None,
) -> TrainResult:
    """Train an SAE on the train split of ``activations_dir``; write checkpoints, ``metrics.jsonl``
    and the exported SAE (``cfg.json`` + ``sae.safetensors``) to ``out_dir``.

    With ``resume`` the latest checkpoint in ``out_dir`` is continued exactly (same weights as an
    uninterrupted run on the CPU; CUDA's atomic adds make GPU runs equal only up to rounding).
    Only ``steps``, ``checkpoint_every``, ``log_every`` and ``device`` may differ from the
    checkpoint's config (more ``steps`` continue a finished run; the schedule follows the new
    total). ``on_step(step)`` is called after every step (progress, or tests)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = load_manifest(activations_dir)
    device = training_device(config.device)
    loader = ActivationLoader(
        activations_dir,
        config.batch_size,
        device=device,
        seed=config.seed,
        buffer_tokens=config.buffer_tokens,
    )
    model = _new_model(manifest, config, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate())
    step = _restore(out, config, model, optimizer, loader) if resume else 0
    if step == 0:
        shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
        (out / METRICS).unlink(missing_ok=True)
        _init_b_dec(model, activations_dir, config, device)
    window = config.dead_window()
    meter, stream = _Meter(), iter(loader)
    while step < config.steps:
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate() * config.lr_factor(step)
        x, target, n_batch = _next_batch(stream, model, config.max_norm_ratio)
        result = model(x, model.since_fired >= window, target)
        optimizer.zero_grad(set_to_none=True)
        result["loss"].backward()
        model.after_backward()
        optimizer.step()
        model.after_step(result, len(x))
        step += 1
        meter.add(
            loss=result["loss"],
            fvu=result["fvu"],
            aux=result["aux"],
            l0=(result["acts"] > 0).sum() / len(x),
            outliers=torch.tensor(1 - len(x) / n_batch),
        )
        if step % config.log_every == 0 or step == config.steps:
            dead = float((model.since_fired >= window).float().mean())
            row = meter.flush(
                step,
                len(x),
                {"dead_fraction": round(dead, 6), "lr": optimizer.param_groups[0]["lr"]},
            )
            with open(out / METRICS, "a") as f:
                f.write(json.dumps(row) + "\n")
            log.info(
                "step %d/%d  loss %.4f  fvu %.4f  l0 %.1f  dead %.3f  %.0f tok/s",
                step,
                config.steps,
                row["loss"],
                row["fvu"],
                row["l0"],
                dead,
                row["tokens_per_s"],
            )
        if step % config.checkpoint_every == 0 or step == config.steps:
            _save_checkpoint(
                out,
                {
                    "step": step,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "loader": loader.state_dict(),
                    "rng": torch.get_rng_state(),
                    "config": asdict(config),
                },
            )
        if on_step is not None:
            on_step(step)
    return _finish(model, manifest, activations_dir, out, config)


def _restore(out: Path, config: TrainConfig, model, optimizer, loader) -> int:
    found = _checkpoints(out)
    if not found:
        return 0
    state = torch.load(found[-1] / "state.pt", map_location=model.W_dec.device, weights_only=True)
    _check_resumable(state["config"], config)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    loader.load_state_dict(state["loader"])
    torch.set_rng_state(state["rng"])
    _keep_metrics_until(out, state["step"])
    log.info("resuming from %s", found[-1])
    return int(state["step"])


def _finish(
    model: TrainableSAE, manifest: dict, activations_dir, out: Path, config: TrainConfig
) -> TrainResult:
    """Export, evaluate on the validation split, and save the SAE with its training record."""
    from saeembed.train.evaluate import activation_metrics

    window = config.dead_window()
    rows = [json.loads(line) for line in (out / METRICS).read_text().splitlines() if line]
    summary = {
        "recipe": "saeembed.train",
        "config": asdict(config),
        "lr": config.learning_rate(),
        "tokens": config.steps * config.batch_size,
        "b_dec_init": "geometric_median",
        "dead_window_tokens": window,
        "dead_fraction_window": float((model.since_fired >= window).float().mean()),
        "final": rows[-1] if rows else None,
        "activations": {
            k: manifest.get(k)
            for k in (
                "model",
                "revision",
                "layer",
                "max_tokens",
                "sources",
                "train_tokens",
                "val_tokens",
                "mean_norm",
                "site",
                "target_site",
                "target_mean_norm",
            )
        },
    }
    # the cfg keeps a reference to `summary`, so the validation figures added below are saved too
    sae = model.export(
        model=manifest.get("model"),
        layer=manifest.get("layer"),
        extra={"training": summary},
        site=manifest.get("site", "resid"),
        output_site=manifest.get("target_site"),
    )
    if manifest.get("val_tokens"):
        batches = iter_split(
            activations_dir, "val", batch_size=config.batch_size, device=model.W_dec.device
        )
        ratio = config.max_norm_ratio
        max_norm = ratio / model.input_scale if ratio is not None else None
        summary["val"] = activation_metrics(sae.to(model.W_dec.device), batches, max_norm=max_norm)
    sae = sae.cpu()
    sae.save(out)
    log.info("saved the SAE to %s (val: %s)", out, summary.get("val"))
    return TrainResult(sae, out, summary)
