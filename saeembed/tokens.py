"""Turning documents into model inputs: the document's own tokens (with character offsets),
truncated to a token limit, between a prefix and a suffix that are not the document's own
(the BOS token, or the chat template's scaffolding) and never take part in pooling."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

ChatMode = Literal["none", "user", "assistant"]
CHAT_MODES: tuple[str, ...] = ("none", "user", "assistant")
_SENTINEL = "\ue000saeembed-document\ue001"
_CHARS_PER_TOKEN_CAP = 32  # texts are clipped to max_tokens * this many chars before tokenising


@dataclass
class Tokenized:
    """One document's own tokens."""

    ids: np.ndarray  # int64 [n]
    offsets: np.ndarray  # int32 [n, 2]: character span of each token in the document text
    truncated: bool


@dataclass(frozen=True)
class Wrapping:
    """Token ids placed before and after every document, and how they were chosen."""

    prefix: tuple[int, ...]
    suffix: tuple[int, ...]
    chat: ChatMode
    description: str  # recorded in the encoder fingerprint, e.g. "bos" or "chat:user"


def wrapping_for(tokenizer, chat: ChatMode = "none") -> Wrapping:
    """Plain text gets the tokenizer's BOS token (or its EOS token, GPT-2 style) as a prefix so the
    document's first token is not the attention sink; chat modes get the chat template's scaffolding."""
    if chat not in CHAT_MODES:
        raise ValueError(f"unknown chat mode {chat!r}; use one of {', '.join(CHAT_MODES)}")
    if chat == "none":
        start = (
            tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        )
        prefix = (start,) if start is not None else ()
        return Wrapping(prefix, (), "none", "bos" if prefix else "none")
    if not getattr(tokenizer, "chat_template", None):
        from saeembed.errors import ModelError

        raise ModelError("this model's tokenizer has no chat template; drop --as-chat")
    messages = [{"role": "user", "content": _SENTINEL}]
    if chat == "assistant":
        messages = [{"role": "user", "content": ""}, {"role": "assistant", "content": _SENTINEL}]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False)
    before, found, after = rendered.partition(_SENTINEL)
    if not found:
        from saeembed.errors import ModelError

        raise ModelError(
            "the chat template does not show the message content verbatim; drop --as-chat"
        )
    prefix = tuple(tokenizer(before, add_special_tokens=False)["input_ids"])
    suffix = tuple(tokenizer(after, add_special_tokens=False)["input_ids"])
    return Wrapping(prefix, suffix, chat, f"chat:{chat}")


def tokenize_documents(tokenizer, texts: list[str], max_tokens: int) -> list[Tokenized]:
    """The documents' own tokens, keeping the first ``max_tokens`` of each.

    Special-token strings inside a document (say a literal ``<|im_end|>``) are split as ordinary
    text, so a document can never inject control tokens."""
    clipped = [t[: max_tokens * _CHARS_PER_TOKEN_CAP] for t in texts]
    kwargs = {"add_special_tokens": False, "return_offsets_mapping": True}
    try:
        enc = tokenizer(clipped, split_special_tokens=True, **kwargs)
    except TypeError:  # tokenizers without split_special_tokens
        enc = tokenizer(clipped, **kwargs)
    out = []
    for text, full, ids, offsets in zip(
        clipped, texts, enc["input_ids"], enc["offset_mapping"], strict=True
    ):
        truncated = len(ids) > max_tokens or (len(full) > len(text))
        ids = np.asarray(ids[:max_tokens], dtype=np.int64)
        offsets = np.asarray(offsets[:max_tokens], dtype=np.int32).reshape(-1, 2)
        out.append(Tokenized(ids, offsets, truncated))
    return out


def plan_batches(lengths: list[int], batch_tokens: int) -> list[list[int]]:
    """Group documents into batches of similar length whose padded size (rows x longest row)
    stays under ``batch_tokens``; a document longer than the budget gets a batch of its own.
    Longest first, so a batch that does not fit in memory fails at the start, not the end."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = lengths[current[0]] if current else lengths[i]
        if current and (len(current) + 1) * longest > batch_tokens:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def assemble_batch(
    docs: list[Tokenized], wrapping: Wrapping, tokenizer, device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded input ids ``prefix + document + suffix`` and the mask of the documents' own
    tokens. No attention mask is needed: with right padding, a causal model's real tokens never
    attend to a pad (see `Reader.residual_stream`)."""
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id or 0
    pre, suf = len(wrapping.prefix), len(wrapping.suffix)
    lengths = torch.tensor([len(d.ids) for d in docs])
    width = int(lengths.max()) + pre + suf
    ids = torch.full((len(docs), width), pad_id, dtype=torch.long)
    for row, doc in enumerate(docs):
        n = len(doc.ids)
        ids[row, :pre] = torch.tensor(wrapping.prefix, dtype=torch.long)
        ids[row, pre : pre + n] = torch.from_numpy(doc.ids)
        ids[row, pre + n : pre + n + suf] = torch.tensor(wrapping.suffix, dtype=torch.long)
    positions = torch.arange(width)
    own = (positions >= pre) & (positions < pre + lengths.unsqueeze(1))
    return ids.to(device), own.to(device)
