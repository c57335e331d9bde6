"""Loading readers and SAEs. `shared_stacks` is a block within which
`saeembed.encoding.core.load_encoding_stack` keeps each stack it loads, so a command that encodes
several inputs with one encoder (`saeembed diff a.jsonl b.jsonl`) reads the weights once;
`stored_sae` and `stored_stack` load what a store's encoder was made with (labels, reports and
correlations read them). Kept apart from `saeembed.encoding` so that a command that may not
encode anything does not import torch to open the block."""

from __future__ import annotations

import contextlib
import contextvars
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from saeembed.reader import Reader
    from saeembed.sae import SAE
    from saeembed.store import Encoder

SHARED_STACKS: contextvars.ContextVar[dict | None] = contextvars.ContextVar(
    "saeembed_shared_stacks", default=None
)


@contextlib.contextmanager
def shared_stacks():
    """Within the block, each (model, SAE, layer, device, dtype) stack is loaded once."""
    token = SHARED_STACKS.set({})
    try:
        yield
    finally:
        SHARED_STACKS.reset(token)


def stored_sae(encoder: Encoder) -> SAE:
    """The SAE a store's encoder was made with, refused (`SAEError`) when the weights at its
    path no longer hash as they did, e.g. a shipped SAE a later saeembed replaced."""
    from saeembed.sae import load_sae

    return load_sae(encoder.sae, sha256=encoder.sae_sha256)


def stored_stack(encoder: Encoder, device: str = "cpu") -> tuple[Reader, SAE]:
    """The reader and SAE a store's encoder was made with, on ``device`` (the CPU by default:
    the callers shade or read a few documents). Raises what loading raises."""
    from saeembed.reader import load_reader

    sae = stored_sae(encoder)
    # in the encoder's own precision, so recomputed activations match the stored ones
    return load_reader(encoder.model, device=device, dtype=encoder.dtype), sae
