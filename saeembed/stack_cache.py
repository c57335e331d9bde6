"""Readers and SAEs loaded once per command: `shared_stacks` is a block within which
`saeembed.encoding.load_encoding_stack` keeps each stack it loads, so a command that encodes
several inputs with one encoder (`saeembed diff a.jsonl b.jsonl`) reads the weights once. Kept
apart from `saeembed.encoding` so that a command that may not encode anything does not import
torch to open the block."""

from __future__ import annotations

import contextlib
import contextvars

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
