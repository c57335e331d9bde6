"""What makes a published transcoder usable by saeembed, shared by the SAELens and sparsify
loaders: it must read an MLP's input and write the same MLP's output (`transcoder_layer`, from
the hook or module names it carries, see `saeembed.sites.site_from_hook`), at the same width
(`check_d_out`); converted, it is an `SAE` with ``site="mlp_in"``, ``output_site="mlp_out"``
(`TRANSCODER_SITES`) and, with a skip connection, ``W_skip``.

Neither library subtracts ``b_dec`` from a transcoder's input (``b_dec`` lives in the output
space), so nothing is folded into ``b_enc``.
"""

from __future__ import annotations

from pathlib import Path

from saeembed.errors import SAEError
from saeembed.sites import site_from_hook

#: (site, output_site) of every transcoder saeembed converts.
TRANSCODER_SITES = {"site": "mlp_in", "output_site": "mlp_out"}
_READS = ("mlp_in", "mlp")  # an MLP's input, or an MLP module (read its input)
_WRITES = ("mlp_out", "mlp")  # an MLP's output, or an MLP module (write its output)
_EXAMPLES = "blocks.L.ln2.hook_normalized -> blocks.L.hook_mlp_out, or the module layers.L.mlp"


def transcoder_layer(hook_in: str | None, hook_out: str | None, where: Path | str) -> int:
    """The block whose MLP a transcoder reading ``hook_in`` and writing ``hook_out`` stands in
    for. ``hook_out`` None means the transcoder's output goes where ``hook_in``'s module writes
    (sparsify names one module, read at its input and written at its output)."""
    layer_in, site_in = site_from_hook(hook_in)
    if site_in not in _READS:
        raise SAEError(
            f"{where} is a transcoder reading {hook_in!r}, not an MLP's input; saeembed uses "
            f"transcoders from an MLP's input to its output ({_EXAMPLES})"
        )
    if hook_out is None:
        if site_in != "mlp":
            raise SAEError(
                f"{where} is a transcoder reading {hook_in!r} that names no output hook; add "
                f"hook_name_out (e.g. blocks.{layer_in}.hook_mlp_out) to its cfg.json"
            )
        return int(layer_in)
    layer_out, site_out = site_from_hook(hook_out)
    if site_out not in _WRITES:
        raise SAEError(
            f"{where} is a transcoder writing {hook_out!r}, not an MLP's output; saeembed uses "
            f"transcoders from an MLP's input to its output ({_EXAMPLES})"
        )
    if layer_in != layer_out:
        raise SAEError(
            f"{where} is a transcoder from layer {layer_in}'s MLP input ({hook_in}) to layer "
            f"{layer_out}'s MLP output ({hook_out}); saeembed uses transcoders of one MLP only"
        )
    return int(layer_in)


def check_d_out(d_in: int, d_out: int, where: Path | str) -> None:
    """Refuse a transcoder whose output is not as wide as its input (an MLP's input and output
    are both the residual width)."""
    if d_out != d_in:
        raise SAEError(
            f"{where} is a transcoder from width {d_in} to width {d_out}; an MLP's input and "
            f"output are both the residual width, so its hooks or weights are not an MLP's"
        )
