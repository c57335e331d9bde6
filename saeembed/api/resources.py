"""The API for what saeembed works with besides stores: named datasets (list, fetch), reader
models (fetch, describe) and SAEs (describe, list the shipped ones, convert, train). The
`saeembed data`, `models` and `sae` commands are thin shells over these functions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import polars as pl

__all__ = [
    "convert_sae",
    "dataset_table",
    "describe_default_model",
    "describe_sae",
    "get_dataset",
    "pull_model",
    "shipped_sae_table",
    "train_sae_from_sources",
]


# ---- named datasets ---------------------------------------------------------------------------


def dataset_table() -> pl.DataFrame:
    """One row per named dataset: its card without the column list."""
    from saeembed.data import list_datasets

    rows = [{k: v for k, v in asdict(card).items() if k != "columns"} for card in list_datasets()]
    return pl.DataFrame(rows)


def get_dataset(
    ref: str,
    *,
    split_passages: str | None = None,
    max_tokens: int = 256,
    output: str | Path | None = None,
) -> tuple[pl.DataFrame, Path | None]:
    """The rows of a named dataset: ``ref`` is ``NAME`` or ``NAME?column=value,value`` (with or
    without ``data:``), split into passages when asked; with ``output``, also written there
    (`saeembed.inputs.frames.write_dataset`). Returns the rows and the path written, if any."""
    from saeembed.data import DATA_PREFIX, read_dataset_ref
    from saeembed.inputs.frames import write_dataset

    ref = ref if ref.startswith(DATA_PREFIX) else DATA_PREFIX + ref
    _, frame = read_dataset_ref(ref, split_passages=split_passages, max_tokens=max_tokens)
    return frame, (write_dataset(frame, output) if output else None)


# ---- reader models ----------------------------------------------------------------------------


def pull_model(model: str = "default"):
    """Fetch a reader model now (on the CPU); returns the loaded `saeembed.reader.Reader`."""
    from saeembed.reader import load_reader

    return load_reader(model, device="cpu")


def describe_default_model() -> dict:
    """The embedded default reader and whether it has been fetched."""
    from saeembed.reader import describe_default_model as describe

    return describe()


# ---- SAEs -------------------------------------------------------------------------------------


def describe_sae(spec: str | Path) -> dict:
    """A one-row summary of a dictionary: its kind (SAE, transcoder, semi-NMF), where it reads
    (and writes), shape, activation, model, layer, hash, and its figures where it carries them
    (held-out FVU, loss recovered; a semi-NMF's fit: explained variance of the activations,
    neurons per feature)."""
    from saeembed.sae import load_sae

    sae = load_sae(spec)
    cfg = sae.cfg
    kind = "snmf" if cfg.activation == "snmf" else "transcoder" if cfg.output_site else "sae"
    row = {
        "kind": kind,
        "site": cfg.site if cfg.output_site is None else f"{cfg.site} -> {cfg.output_site}",
        "d_in": cfg.d_in,
        "d_sae": cfg.d_sae,
        "activation": cfg.activation,
        "k": cfg.k,
        "model": cfg.model,
        "layer": cfg.layer,
        "source": cfg.source,
        "sha256": sae.content_hash()[:16],
    }
    for key in ("fvu", "l0", "dead_fraction", "loss_recovered"):
        if key in cfg.extra:
            row[key] = cfg.extra[key]
    fit = cfg.extra.get("fit") or {}
    for key in ("explained_variance", "neurons_per_feature"):
        if key in fit:
            row[key] = fit[key]
    return row


def shipped_sae_table() -> pl.DataFrame:
    """One row per SAE shipped with saeembed: its name, directory and `describe_sae`."""
    from saeembed.pretrained import shipped_saes

    rows = [
        {"name": name, "path": str(path), **describe_sae(str(path))}
        for name, path in shipped_saes().items()
    ]
    return pl.DataFrame(rows) if rows else pl.DataFrame({"name": []})


def convert_sae(spec: str | Path, dest: str | Path, *, dtype: str = "float32") -> Path:
    """Write the SAE at ``spec`` (any supported format or Hub id) in saeembed's own directory
    format at ``dest``, with weights in ``dtype`` (float32, float16 or bfloat16)."""
    import torch

    from saeembed.sae import load_sae
    from saeembed.sae.formats import TRAINED_SOURCE

    sae = load_sae(spec)
    # the copy is reloaded from its own directory (a store encoded with it must not point at the
    # original, whose weights hash differently); where it came from stays in the record
    sae.cfg.extra = {**sae.cfg.extra, "converted_from": sae.cfg.source}
    sae.cfg.source = TRAINED_SOURCE
    return sae.save(dest, dtype=getattr(torch, dtype))


def train_sae_from_sources(
    out_dir: str | Path, sources: Sequence[str], *, config=None, **options
) -> dict:
    """Train an SAE on a reader's activations over ``sources`` (``[assistant:|user:]REF[#N]``
    strings, `saeembed.train.recipe.SourceSpec`) with ``config`` (a
    `saeembed.train.TrainConfig`; None: its defaults) and write it to ``out_dir``; ``options``
    (model, layer, max_tokens, passages, device, activations_dir, ...) and the returned
    evaluation figures are those of `saeembed.train.recipe.train_from_sources`."""
    from saeembed.train import TrainConfig
    from saeembed.train.recipe import SourceSpec, train_from_sources

    specs = [SourceSpec.parse(s) for s in sources]
    return train_from_sources(out_dir, specs, config=config or TrainConfig(), **options)


def compare_saes(
    specs: Sequence[str], source: str, *, model: str = "default", max_tokens: int = 256,
    docs: int = 100, device: str = "auto",
) -> pl.DataFrame:  # fmt: skip
    """`saeembed.train.compare.compare_dictionaries` of ``specs`` (``default``: the model's
    shipped SAE) on up to ``docs`` documents of ``source`` (``REF[#N]``, a file or
    ``data:NAME``, as `saeembed sae train --source` reads it; a seeded sample)."""
    from saeembed.train.compare import compare_dictionaries
    from saeembed.train.recipe import SourceSpec, source_texts

    spec = SourceSpec.parse(source)
    if spec.max_docs is None or spec.max_docs > docs:
        spec = SourceSpec(spec.ref, spec.chat, docs)
    texts = source_texts(spec, passages=None)
    resolved = [None if s in ("default", "") else s for s in specs]
    return compare_dictionaries(resolved, texts, model=model, max_tokens=max_tokens,
                                device=device)  # fmt: skip
