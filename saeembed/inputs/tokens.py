"""Turning documents into model inputs: the document's own tokens (with character offsets),
truncated to a token limit, between a prefix and a suffix that are not the document's own
(the BOS token, or the chat template's scaffolding) and never take part in pooling.

A document may carry a context (a response's prompt, say): it is rendered into that document's
own prefix (before the text in plain mode, as the preceding conversation in assistant mode), read
by the model and never pooled."""

from __future__ import annotations

import re
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
    prefix: np.ndarray | None = None  # int64: this document's own prefix (its context), if any

    @property
    def width(self) -> int:
        """Positions the document takes in a batch, its context included (not the suffix)."""
        return len(self.ids) + (0 if self.prefix is None else len(self.prefix))


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


_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):")
CONTEXT_SEPARATOR = "\n\n"  # between a context and the document in plain mode


def context_messages(context: str) -> list[dict]:
    """Chat messages of a context: HH-RLHF style ``Human:``/``Assistant:`` dialogues become their
    turns (a trailing empty assistant turn is dropped); any other text is one user message."""
    parts = _TURN.split(context)
    if len(parts) < 3 or parts[0].strip():
        return [{"role": "user", "content": context}]
    roles = {"Human": "user", "Assistant": "assistant"}
    messages = [
        {"role": roles[who], "content": said.strip()}
        for who, said in zip(parts[1::2], parts[2::2], strict=True)
    ]
    if messages[-1]["role"] == "assistant" and not messages[-1]["content"]:
        messages.pop()
    return messages


def context_prefix(tokenizer, wrapping: Wrapping, context: str, max_tokens: int) -> np.ndarray:
    """The prefix of a document read after ``context``: plain mode, the start token then the
    context and a blank line; assistant mode, the chat template rendered with the context's
    conversation before the document's assistant turn. A context longer than ``max_tokens``
    tokens keeps its last ``max_tokens`` (plain mode keeps the start token too)."""
    if wrapping.chat == "none":
        ids = tokenizer(context + CONTEXT_SEPARATOR, add_special_tokens=False)["input_ids"]
        return np.asarray(list(wrapping.prefix) + ids[-max_tokens:], dtype=np.int64)
    if wrapping.chat != "assistant":
        from saeembed.errors import ModelError

        raise ModelError("a context can precede assistant turns only; use --as-chat assistant")
    messages = [*context_messages(context), {"role": "assistant", "content": _SENTINEL}]
    before = tokenizer.apply_chat_template(messages, tokenize=False).partition(_SENTINEL)[0]
    ids = tokenizer(before, add_special_tokens=False)["input_ids"]
    return np.asarray(ids[-max_tokens:], dtype=np.int64)


def tokenize_documents(
    tokenizer,
    texts: list[str],
    max_tokens: int,
    contexts: list[str | None] | None = None,
    wrapping: Wrapping | None = None,
) -> list[Tokenized]:
    """The documents' own tokens, keeping the first ``max_tokens`` of each.

    Special-token strings inside a document (say a literal ``<|im_end|>``) are split as ordinary
    text, so a document can never inject control tokens. Documents with a context (``contexts``,
    one per text, None for none) get their own prefix from `context_prefix` under ``wrapping``."""
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
    for doc, context in zip(out, contexts or [], strict=False):
        if context is not None:
            if wrapping is None:
                raise ValueError("documents with a context need the wrapping to render it")
            doc.prefix = context_prefix(tokenizer, wrapping, context, max_tokens)
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
    prefixes = [
        torch.tensor(wrapping.prefix if d.prefix is None else d.prefix, dtype=torch.long)
        for d in docs
    ]
    pre = torch.tensor([len(p) for p in prefixes])
    suf = len(wrapping.suffix)
    lengths = torch.tensor([len(d.ids) for d in docs])
    width = int((pre + lengths).max()) + suf
    ids = torch.full((len(docs), width), pad_id, dtype=torch.long)
    for row, (doc, prefix) in enumerate(zip(docs, prefixes, strict=True)):
        start, n = len(prefix), len(doc.ids)
        ids[row, :start] = prefix
        ids[row, start : start + n] = torch.from_numpy(doc.ids)
        ids[row, start + n : start + n + suf] = torch.tensor(wrapping.suffix, dtype=torch.long)
    positions = torch.arange(width)
    own = (positions >= pre.unsqueeze(1)) & (positions < (pre + lengths).unsqueeze(1))
    if torch.device(device).type == "cuda":  # from page-locked memory, without blocking
        return ids.pin_memory().to(device, non_blocking=True), own.to(device, non_blocking=True)
    return ids.to(device), own.to(device)
