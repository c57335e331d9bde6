"""Where in a decoder block a dictionary reads (and writes): the **sites**.

- ``resid``: the residual stream after the block (the output of decoder block ``layer``), where
  residual SAEs read; the default.
- ``mlp_in``: what the block's MLP reads (after its normalisation), where transcoders read.
- ``mlp_hidden``: the MLP's hidden activations, the input of its down projection
  (``d_mlp`` wide), which semi-NMF dictionaries factorise.
- ``mlp_out``: what the MLP adds to the residual stream, what transcoders reconstruct.

`hook_site` runs a function on a site's activations during a forward pass, reading them or
replacing them (for loss recovered). It finds the MLP and its down projection by the names the
common Hugging Face architectures use (Llama-style ``mlp.down_proj``, GPT-2's ``mlp.c_proj``,
``fc2``, ``dense_4h_to_h``, ``w2``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from torch import nn

from saeembed.errors import ModelError, SAEError

SITES: dict[str, str] = {
    "resid": "the residual stream after the block",
    "mlp_in": "the MLP's input (after its normalisation)",
    "mlp_hidden": "the MLP's hidden activations (the input of its down projection)",
    "mlp_out": "the MLP's output (what it adds to the residual stream)",
}
DEFAULT_SITE = "resid"
_MLP_NAMES = ("mlp", "feed_forward", "ffn", "mlp_block")
_DOWN_NAMES = ("down_proj", "c_proj", "fc2", "dense_4h_to_h", "w2", "fc_out", "wo")


def check_site(site: str, what: str = "site") -> str:
    """``site`` if it is one of `SITES`, else a one-line error naming them."""
    if site not in SITES:
        raise SAEError(f"unknown {what} {site!r}; use one of {', '.join(SITES)}")
    return site


def mlp_of(block: nn.Module) -> nn.Module:
    """The MLP of a decoder block."""
    for name in _MLP_NAMES:
        module = getattr(block, name, None)
        if isinstance(module, nn.Module):
            return module
    raise ModelError(
        f"cannot find the MLP of {type(block).__name__} (looked for {', '.join(_MLP_NAMES)}); "
        "this reader's MLP sites are not supported"
    )


def down_projection(mlp: nn.Module) -> nn.Module:
    """The MLP's down projection (hidden activations to the residual stream)."""
    for name in _DOWN_NAMES:
        module = getattr(mlp, name, None)
        if isinstance(module, nn.Module):
            return module
    raise ModelError(
        f"cannot find the down projection of {type(mlp).__name__} (looked for "
        f"{', '.join(_DOWN_NAMES)}); the mlp_hidden site is not supported for this reader"
    )


def down_weight(mlp: nn.Module):
    """The down projection's weight as ``[d_model, d_mlp]`` (GPT-2's Conv1D stores it
    transposed)."""
    down = down_projection(mlp)
    weight = down.weight
    if type(down).__name__ == "Conv1D":
        return weight.T
    return weight


def site_width(config, site: str) -> int:
    """How wide a site is for a reader of this Hugging Face config."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    if site == "mlp_hidden":
        for name in ("intermediate_size", "n_inner", "ffn_dim", "d_ff"):
            value = getattr(text, name, None)
            if value:
                return int(value)
        return 4 * int(text.hidden_size)  # GPT-2's n_inner None means 4 x d_model
    return int(text.hidden_size)


Read = Callable[..., object]


def hook_site(block: nn.Module, site: str, fn: Read, *, output_site: str | None = None):
    """Register ``fn`` at ``site`` of decoder block ``block``; returns the hook handle.

    ``fn(x, target)`` receives the site's activations ``x [batch, seq, width]`` and what its
    result replaces: ``x`` itself, or, with ``output_site`` (``mlp_out`` for a transcoder reading
    ``mlp_in``), the MLP's output. What it returns (unless None) replaces ``target``. It may
    raise to stop the forward pass."""
    if output_site not in (None, site):
        if (site, output_site) != ("mlp_in", "mlp_out"):
            raise SAEError(f"a dictionary from {site} to {output_site} is not supported")

        def transcode(_module, inputs, output):
            new = fn(inputs[0], output)
            return output if new is None else new

        return mlp_of(block).register_forward_hook(transcode)
    if site == "resid":

        def after_block(_module, _inputs, output):
            hidden = output[0] if isinstance(output, tuple) else output
            new = fn(hidden, hidden)
            if new is None:
                return None
            return (new, *output[1:]) if isinstance(output, tuple) else new

        return block.register_forward_hook(after_block)
    if site == "mlp_out":

        def after_mlp(_module, _inputs, output):
            return fn(output, output)

        return mlp_of(block).register_forward_hook(after_mlp)
    module = mlp_of(block) if site == "mlp_in" else down_projection(mlp_of(block))

    def before(_module, inputs):
        new = fn(inputs[0], inputs[0])
        return None if new is None else (new, *inputs[1:])

    return module.register_forward_pre_hook(before)


# ---- sites from the hook names published dictionaries carry -------------------------------
_PREFIX = r"^(?:(?:model|transformer|gpt_neox|base_model|language_model|decoder)\.)*"
_HOOKS = [
    (re.compile(r"^blocks\.(\d+)\.ln2\.hook_normalized$"), "mlp_in"),
    # (TransformerLens' hook_mlp_in is the residual stream before ln2: not the MLP's input here)
    (re.compile(r"^blocks\.(\d+)\.mlp\.hook_post$"), "mlp_hidden"),
    (re.compile(r"^blocks\.(\d+)\.hook_mlp_out$"), "mlp_out"),
    (re.compile(_PREFIX + r"(?:layers|h|blocks|layer)\.(\d+)\.(?:mlp|feed_forward)$"), "mlp"),
    (
        re.compile(
            _PREFIX + r"(?:layers|h|blocks|layer)\.(\d+)\.(?:mlp|feed_forward)\."
            r"(?:down_proj|c_proj|fc2|w2)$"
        ),
        "mlp_hidden",
    ),  # fmt: skip
]


def site_from_hook(hook: str | None) -> tuple[int | None, str | None]:
    """(layer, site) a non-residual hook or module name stands for; (None, None) when it is
    not one of the MLP sites (the residual names are `saeembed.sae._common.layer_from_hook`'s).
    A module name such as ``layers.6.mlp`` is returned with site ``mlp``: its input when a
    dictionary reads it, its output when one writes it."""
    for pattern, site in _HOOKS:
        if m := pattern.match(str(hook or "")):
            return int(m.group(1)), site
    return None, None
