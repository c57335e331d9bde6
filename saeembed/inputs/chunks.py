"""Chunks as units of analysis: splitting each document into consecutive windows of N tokens of
the reader's tokenizer before it is stored.

This module owns the split and the chunk rows. A chunk's text is an exact substring of its parent's
text, cut at token boundaries (from the start of its first token to the end of its last, never past
the start of the next chunk: the whitespace between two chunks belongs to neither). Each chunk is an
ordinary `documents` row with the parent's `row_idx`, `ext_id` and `meta`, plus `parent_id` (the
`doc_id` the whole document would have had) and `chunk_idx` (0-based). Its own `doc_id` hashes the
parent id, the index and the text (`chunk_id_for`), so identical chunk texts of different parents
(or at different places in one parent) are different documents. A document shorter than N tokens
is a single chunk, index 0.
"""

from __future__ import annotations

import hashlib
from numbers import Integral

import polars as pl

from saeembed.errors import InputError

_TOKENIZE_BATCH = 256  # documents tokenised at a time, bounding the offsets held in memory
CHUNK_COLUMNS = ("row_idx", "doc_id", "ext_id", "text", "meta", "parent_id", "chunk_idx")


def check_chunk_tokens(chunk_tokens: object, max_tokens: int) -> int | None:
    """``chunk_tokens`` as a positive int (None: no chunking), refused in one line otherwise,
    and when a chunk could not fit into ``max_tokens``."""
    if chunk_tokens is None:
        return None
    if isinstance(chunk_tokens, bool) or not isinstance(chunk_tokens, Integral) or chunk_tokens < 1:
        raise InputError(
            f"--chunk-tokens must be a positive number of tokens, got {chunk_tokens!r}; "
            "pass N >= 1, or leave it out to store whole documents"
        )
    if chunk_tokens > max_tokens:
        raise InputError(
            f"--chunk-tokens {chunk_tokens} exceeds --max-tokens {max_tokens}, so chunks would be "
            f"truncated; lower --chunk-tokens or pass --max-tokens {chunk_tokens}"
        )
    return int(chunk_tokens)


def chunk_id_for(parent_id: int, chunk_idx: int, text: str) -> int:
    """Stable signed 64-bit id of chunk ``chunk_idx`` of document ``parent_id``: blake2b (8-byte
    digest) of ``chunk:``, the parent id (8 bytes), the index (4 bytes), then the UTF-8 text."""
    data = (
        b"chunk:"
        + parent_id.to_bytes(8, "big", signed=True)
        + chunk_idx.to_bytes(4, "big")
        + text.encode("utf-8")
    )
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big", signed=True)


def chunk_spans(offsets: list[tuple[int, int]], chunk_tokens: int) -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of the chunks of a text whose tokens have ``offsets``.

    Chunk k holds tokens ``k*N .. (k+1)*N - 1``; it ends at its last token's end or at the next
    chunk's start, whichever comes first, since byte-level tokenizers give the pieces of one
    character overlapping spans. A chunk left empty by that (all its tokens are pieces of the
    next chunk's first character; only possible for N < 4) is dropped."""
    starts = [offsets[i][0] for i in range(0, len(offsets), chunk_tokens)]
    spans = []
    for k, start in enumerate(starts):
        last = min((k + 1) * chunk_tokens, len(offsets)) - 1
        end = offsets[last][1]
        if k + 1 < len(starts):
            end = min(end, starts[k + 1])
        if end > start:
            spans.append((start, end))
    return spans


def _offsets(tokenizer, texts: list[str]) -> list[list[tuple[int, int]]]:
    """Token character offsets of each text, tokenised as the encoder does (no special tokens
    added, special-token strings split as ordinary text)."""
    kwargs = {"add_special_tokens": False, "return_offsets_mapping": True}
    try:
        enc = tokenizer(texts, split_special_tokens=True, **kwargs)
    except TypeError:  # tokenizers without split_special_tokens
        enc = tokenizer(texts, **kwargs)
    return [[tuple(o) for o in offsets] for offsets in enc["offset_mapping"]]


def chunk_documents(docs: pl.DataFrame, tokenizer, chunk_tokens: int) -> pl.DataFrame:
    """The chunks of ``docs`` (a `saeembed.inputs` document table), in document then chunk order,
    with the columns of `CHUNK_COLUMNS`."""
    rows = []
    for first in range(0, docs.height, _TOKENIZE_BATCH):
        batch = docs.slice(first, _TOKENIZE_BATCH)
        texts = batch["text"].to_list()
        for doc, offsets in zip(
            batch.iter_rows(named=True), _offsets(tokenizer, texts), strict=True
        ):
            text = doc["text"]
            spans = chunk_spans(offsets, chunk_tokens) or [(0, len(text))]  # no tokens: one chunk
            for idx, (start, end) in enumerate(spans):
                piece = text[start:end]
                rows.append(
                    (doc["row_idx"], chunk_id_for(doc["doc_id"], idx, piece), doc["ext_id"], piece,
                     doc["meta"], doc["doc_id"], idx)
                )  # fmt: skip
    types = (pl.Int64, pl.Int64, pl.String, pl.String, pl.String, pl.Int64, pl.Int32)
    schema = dict(zip(CHUNK_COLUMNS, types, strict=True))
    return pl.DataFrame(rows, schema=schema, orient="row")
