"""A whole dictionary fit from named sources: pick texts from datasets or files, collect the
reader's activations at the dictionary's site, fit (a TopK SAE, a transcoder or a semi-NMF),
evaluate on held-out documents (FVU, L0, dead latents, loss recovered), and write the
dictionary with its figures. `saeembed sae train` is a thin shell over it."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from saeembed.errors import InputError
from saeembed.sites import check_site
from saeembed.train.activations import TextSource, collect_activations, document_key
from saeembed.train.evaluate import evaluate_sae
from saeembed.train.snmf import SNMFConfig, fit_snmf
from saeembed.train.trainer import train_sae

log = logging.getLogger(__name__)
CHAT_PREFIXES = ("assistant:", "user:")


@dataclass(frozen=True)
class SourceSpec:
    """``[assistant:|user:]REF[#N]``: a file or ``data:NAME[?filters]``, wrapped as that chat turn,
    capped at N documents (a seeded random sample)."""

    ref: str
    chat: str = "none"
    max_docs: int | None = None

    @classmethod
    def parse(cls, text: str) -> SourceSpec:
        chat = "none"
        for prefix in CHAT_PREFIXES:
            if text.startswith(prefix):
                chat, text = prefix[:-1], text[len(prefix) :]
        ref, _, cap = text.partition("#")
        if cap and not cap.isdigit():
            raise InputError(f"bad document cap {cap!r} in source {text!r}; write REF#1000")
        return cls(ref, chat, int(cap) if cap else None)


def source_texts(spec: SourceSpec, *, passages: str | None = None, seed: int = 0) -> list[str]:
    """The texts of one source. Preference pairs contribute both final responses."""
    from saeembed.data import dataset_card, is_dataset_ref, read_dataset_ref
    from saeembed.inputs import read_documents

    if is_dataset_ref(spec.ref):
        if dataset_card(spec.ref).kind == "pairs":
            _, frame = read_dataset_ref(spec.ref)
            texts = frame["chosen"].to_list() + frame["rejected"].to_list()
        else:
            _, frame = read_dataset_ref(spec.ref, split_passages=passages)
            texts = frame["text"].to_list()
    else:
        texts = read_documents(spec.ref)[0]["text"].to_list()
    texts = [t for t in dict.fromkeys(texts) if t and t.strip()]
    if spec.max_docs is not None and len(texts) > spec.max_docs:
        picked = np.random.default_rng(seed).choice(len(texts), spec.max_docs, replace=False)
        texts = [texts[i] for i in sorted(picked)]
    return texts


KINDS = {
    "sae": ("resid", None),  # a TopK SAE of the residual stream
    "snmf": ("mlp_hidden", None),  # a semi-NMF of the MLP's hidden activations
    "transcoder": ("mlp_in", "mlp_out"),  # reads the MLP's input, reconstructs its output
}


def train_from_sources(
    out_dir: str | Path,
    sources: list[SourceSpec],
    *,
    config,
    model: str = "default",
    layer: int = 15,
    max_tokens: int = 256,
    passages: str | None = "paragraph",
    eval_docs: int = 400,
    device: str = "auto",
    activations_dir: str | Path | None = None,
    site: str | None = None,
    kind: str | None = None,
) -> dict:
    """Collect, fit, evaluate; returns the evaluation figures (also written into the
    dictionary's cfg.json under ``extra`` and to ``evaluation.json``). Every stage resumes
    where it stopped. ``kind`` (`KINDS`; by default what ``config`` fits) and ``config``: a
    `TrainConfig` trains a TopK SAE (of the residual stream, or of ``site``) or, with
    ``kind="transcoder"``, a transcoder from the MLP's input to its output; an `SNMFConfig` fits
    a semi-NMF (of the MLP's hidden activations unless ``site`` says otherwise)."""
    from saeembed.reader import load_reader

    kind = kind_of(config, kind)
    site = site or KINDS[kind][0]
    check_site(site)
    out = Path(out_dir)
    acts = Path(activations_dir) if activations_dir else out / "activations"
    reader = load_reader(model, device=device)
    named = [
        TextSource(
            f"{s.chat}:{s.ref}", source_texts(s, passages=passages, seed=config.seed), s.chat
        )
        for s in sources
    ]
    started = time.perf_counter()
    collect = {"site": site}
    if KINDS[kind][1] is not None:
        collect["target_site"] = KINDS[kind][1]
    manifest = collect_activations(reader, named, layer, acts, max_tokens=max_tokens, **collect)
    collected = time.perf_counter() - started
    if kind == "snmf":
        sae, dead_in_training = fit_snmf(config, acts, out), None
    else:
        result = train_sae(config, acts, out)
        sae, dead_in_training = result.sae, result.summary.get("dead_fraction_window")
    trained = time.perf_counter() - started - collected
    held_out = _held_out_texts(named, manifest.get("val_every", 20), eval_docs, config.seed)
    figures = {}
    for chat, texts in held_out.items():
        figures[chat] = evaluate_sae(
            sae, reader, layer, texts, max_tokens=max_tokens, chat=chat,
            activations_dir=acts if chat == "none" else None,
            train_dead_fraction=dead_in_training,
        )  # fmt: skip
    keys = ("fvu", "l0", "dead_fraction", "loss_recovered")
    evaluation = {
        "kind": kind,
        "site": site,
        **{k: figures["none"][k] for k in keys if "none" in figures},
        "by_chat": figures,
        "collect_seconds": round(collected, 1),
        "train_seconds": round(trained, 1),
        "machine": f"{torch.get_num_threads()} threads, {reader.device.type}",
        "sources": [asdict(s) for s in sources],
        "tokens": {"train": manifest.get("train_tokens"), "val": manifest.get("val_tokens")},
    }
    sae.cfg.extra.update({k: evaluation[k] for k in keys if k in evaluation})
    sae.cfg.extra["evaluation"] = evaluation
    sae.cpu().save(out)
    (out / "evaluation.json").write_text(json.dumps(evaluation, indent=2, default=str) + "\n")
    return evaluation


def kind_of(config, kind: str | None = None) -> str:
    """What is fitted with ``config``: ``kind`` when given (checked against the config), else
    ``snmf`` for an `SNMFConfig` and ``sae`` for a `TrainConfig`."""
    natural = "snmf" if isinstance(config, SNMFConfig) else "sae"
    kind = kind or natural
    if kind not in KINDS:
        raise InputError(f"unknown dictionary kind {kind!r}; use one of {', '.join(KINDS)}")
    if (kind == "snmf") != (natural == "snmf"):
        wanted = "SNMFConfig" if kind == "snmf" else "TrainConfig"
        raise InputError(f"a {kind} is fitted with a {wanted}, not a {type(config).__name__}")
    return kind


def _held_out_texts(
    sources: list[TextSource], val_every: int, limit: int, seed: int
) -> dict[str, list[str]]:
    """Documents of the validation split (never trained on), per chat mode, at most ``limit`` each."""
    by_chat: dict[str, list[str]] = {}
    for source in sources:
        by_chat.setdefault(source.chat, []).extend(
            t for t in source.texts if document_key(t, source.chat) % val_every == 0
        )
    rng = np.random.default_rng(seed)
    return {
        chat: [
            texts[i] for i in sorted(rng.choice(len(texts), min(limit, len(texts)), replace=False))
        ]
        for chat, texts in by_chat.items()
        if texts
    }
