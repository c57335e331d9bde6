"""The `models` (reader LLMs) and `sae` (sparse autoencoders: describe, list, convert, train)
commands. Each is a thin shell over one call of `saeembed.api.resources`."""

from __future__ import annotations

import json
from pathlib import Path

import click
import polars as pl

from saeembed.api import resources as api
from saeembed.api.defaults import SNMFConfig, TrainConfig, train_from_sources
from saeembed.cli.options import default_of, domain_errors, format_option, note
from saeembed.cli.render import render


# ---- reader models ----------------------------------------------------------------------------
@click.group()
def models() -> None:
    """The reader LLMs."""


@models.command("pull")
@click.argument("model", default=default_of(api.pull_model, "model"))
@domain_errors
def models_pull(model):
    """Fetch a reader model now (the embedded default unless MODEL is given)."""
    reader = api.pull_model(model)
    note(
        f"{reader.model_id} ({reader.revision}): {reader.n_layers} layers, d_model {reader.d_model}",
    )


@models.command("list")
@format_option
def models_list(fmt):
    """Show the embedded default reader and whether it has been fetched."""
    render(pl.DataFrame([api.describe_default_model()]), fmt)


# ---- SAEs -------------------------------------------------------------------------------------
@click.group()
def sae() -> None:
    """Sparse autoencoders."""


@sae.command("info")
@click.argument("spec")
@format_option
@domain_errors
def sae_info(spec, fmt):
    """Describe the SAE at SPEC (any supported format or Hub id)."""
    render(pl.DataFrame([api.describe_sae(spec)]), fmt)


@sae.command("convert")
@click.argument("spec")
@click.argument("dest", type=click.Path(path_type=Path))
@click.option(
    "--dtype",
    type=click.Choice(["float32", "float16", "bfloat16"]),
    default=default_of(api.convert_sae, "dtype"),
    show_default=True,
)
@domain_errors
def sae_convert(spec, dest, dtype):
    """Convert the SAE at SPEC into saeembed's own directory format at DEST."""
    api.convert_sae(spec, dest, dtype=dtype)
    note(f"wrote {dest}")


@sae.command("train")
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option(
    "--source",
    "sources",
    multiple=True,
    required=True,
    metavar="[assistant:|user:]REF[#N]",
    help="Training texts: a file or data:NAME[?filters]; `assistant:` wraps them as chat turns; #N caps the documents. Repeatable.",
)
@click.option(
    "--kind",
    type=click.Choice(["sae", "snmf", "transcoder"]),
    default="sae",
    show_default=True,
    help="sae: a TopK SAE; snmf: a semi-NMF of the MLP's hidden activations fitted to these "
    "texts; transcoder: reads the MLP's input, reconstructs its output.",
)
@click.option(
    "--site",
    type=click.Choice(["resid", "mlp_in", "mlp_hidden", "mlp_out"]),
    help="Where in the block it reads [default: resid for sae, mlp_hidden for snmf, mlp_in "
    "for transcoder].",
)
@click.option(
    "--model",
    default=default_of(train_from_sources, "model"),
    show_default=True,
    help="Reader LLM (Hub id, path, or `default`).",
)
@click.option(
    "--layer",
    type=int,
    default=default_of(train_from_sources, "layer"),
    show_default=True,
    help="Decoder block whose site is read.",
)
@click.option(
    "--latents",
    "--d-sae",
    "d_sae",
    type=click.IntRange(2),
    help=f"Number of latents [default: {default_of(TrainConfig, 'd_sae')} for sae and "
    f"transcoder, {default_of(SNMFConfig, 'latents')} for snmf].",
)
@click.option(
    "-k",
    "k",
    type=click.IntRange(1),
    default=default_of(TrainConfig, "k"),
    show_default=True,
    help="Active latents per token.",
)
@click.option(
    "--architecture",
    type=click.Choice(["topk", "batchtopk"]),
    default=default_of(TrainConfig, "architecture"),
    show_default=True,
    help="sae and transcoder only.",
)
@click.option(
    "--steps",
    type=click.IntRange(1),
    default=default_of(TrainConfig, "steps"),
    show_default=True,
    help="Optimizer steps (sae and transcoder).",
)
@click.option(
    "--epochs",
    type=click.FloatRange(min=0, min_open=True),
    default=default_of(SNMFConfig, "epochs"),
    show_default=True,
    help="Passes over the tokens (snmf).",
)
@click.option(
    "--neuron-share",
    type=click.FloatRange(min=0, max=1, min_open=True),
    default=default_of(SNMFConfig, "neuron_share"),
    show_default=True,
    help="Share of the MLP's neurons each semi-NMF feature keeps (snmf).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1),
    default=default_of(TrainConfig, "batch_size"),
    show_default=True,
    help="Tokens per step.",
)
@click.option("--lr", type=float, help="Adam learning rate [default: 2e-4 / sqrt(d_sae / 16384)].")
@click.option(
    "--max-tokens",
    type=click.IntRange(1),
    default=default_of(train_from_sources, "max_tokens"),
    show_default=True,
    help="Tokens kept per document.",
)
@click.option(
    "--passages",
    type=click.Choice(["paragraph", "window", "none"]),
    default=default_of(train_from_sources, "passages") or "none",
    show_default=True,
    help="Split long documents of named datasets into passages first.",
)
@click.option("--seed", type=int, default=default_of(TrainConfig, "seed"), show_default=True)
@click.option("--device", default=default_of(TrainConfig, "device"), show_default=True)
@click.option(
    "--activations",
    type=click.Path(path_type=Path),
    help="Where to keep collected activations [default: OUT_DIR/activations].",
)
@domain_errors
def sae_train(out_dir, sources, kind, site, model, layer, d_sae, k, architecture, steps, epochs,
              neuron_share, batch_size, lr, max_tokens, passages, seed, device, activations):  # fmt: skip
    """Fit a dictionary on a reader's activations over your texts and write it to OUT_DIR: a
    TopK SAE, a semi-NMF of the MLP (fitted in minutes on a CPU) or a transcoder.

    Collects the site's activations (fp16 shards, resumable), fits with checkpoints (rerun the
    same command to resume), and evaluates on held-out documents: FVU, L0, dead latents, loss
    recovered. `saeembed sae info OUT_DIR` shows them."""
    if kind == "snmf":
        config = SNMFConfig(
            latents=d_sae or default_of(SNMFConfig, "latents"), k=k, epochs=epochs,
            neuron_share=neuron_share, batch_size=batch_size, seed=seed, device=device,
        )  # fmt: skip
    else:
        config = TrainConfig(
            d_sae=d_sae or default_of(TrainConfig, "d_sae"), k=k, architecture=architecture,
            steps=steps, batch_size=batch_size, lr=lr, seed=seed, device=device,
        )  # fmt: skip
    figures = api.train_sae_from_sources(
        out_dir, sources, config=config, model=model, layer=layer, max_tokens=max_tokens,
        passages=None if passages == "none" else passages, device=device,
        activations_dir=activations, site=site, kind=kind,
    )  # fmt: skip
    keys = ("kind", "site", "fvu", "l0", "dead_fraction", "loss_recovered")
    click.echo(json.dumps({k: figures.get(k) for k in keys}))


@sae.command("compare")
@click.argument("specs", nargs=-1, required=True)
@click.option(
    "--source",
    required=True,
    metavar="REF[#N]",
    help="Your documents: a file or data:NAME[?filters] (a seeded sample of --docs of them).",
)
@click.option("--docs", type=click.IntRange(2), default=100, show_default=True)
@click.option(
    "--model", default="default", show_default=True, help="Reader LLM (Hub id, path, or `default`)."
)
@click.option("--max-tokens", type=click.IntRange(1), default=256, show_default=True)
@click.option("--device", default="auto", show_default=True)
@format_option
@domain_errors
def sae_compare(specs, source, docs, model, max_tokens, device, fmt):
    """Compare dictionaries (SAEs, semi-NMFs, transcoders; `default` for the shipped SAE) on
    your documents: FVU of what each reconstructs, L0, dead features, loss recovered when
    spliced into the reader, and encoding tokens/s.

    Example: saeembed sae compare default runs/news-snmf --source data:news-articles"""
    render(
        api.compare_saes(specs, source, model=model, max_tokens=max_tokens, docs=docs,
                         device=device),
        fmt,
    )  # fmt: skip


@sae.command("list")
@format_option
def sae_list(fmt):
    """List the SAEs shipped with saeembed."""
    render(api.shipped_sae_table(), fmt)


COMMANDS = [models, sae]
