"""Dense site vectors (`saeembed encode --keep-dense`): per document, the reader's activations at
the SAE's site mean-pooled over the tokens the SAE pools (the document's own tokens, less the
massive-norm ones `SAE.typical` leaves out), as float32: the dense baseline beside the sparse
concept vector. `saeembed.encoding.core.encode_batch` computes them on the device with the
concepts when asked; `fill_dense_vectors` computes them afterwards for documents encoded without
them (the reader run to the site, no SAE encoding). Stored by `saeembed.store.dense`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch
from tqdm.auto import tqdm

from saeembed.inputs.tokens import (
    Tokenized,
    Wrapping,
    assemble_batch,
    plan_batches,
    tokenize_documents,
)
from saeembed.reader import Reader
from saeembed.sae import SAE
from saeembed.store import Store
from saeembed.store.dense import DENSE_SCHEMA, count_missing_dense, missing_dense, write_dense

log = logging.getLogger(__name__)


@dataclass
class OwnTokens:
    """A batch's own tokens at the SAE's site, on the device."""

    hidden: torch.Tensor  # [n_tokens, width] in the reader's dtype, documents' own tokens in order
    doc_of_token: torch.Tensor  # [n_tokens] index of each token's document in the batch
    lengths: torch.Tensor  # [n_docs] own tokens per document (on the host)


def own_tokens_at_site(
    reader: Reader, sae: SAE, layer: int, docs: list[Tokenized], wrapping: Wrapping
) -> OwnTokens:
    """Run the reader on a right-padded batch up to the SAE's site of block ``layer`` and keep
    the documents' own tokens (no prefix, context, suffix or padding)."""
    ids, own = assemble_batch(docs, wrapping, reader.tokenizer, reader.device)
    lengths = torch.tensor([len(d.ids) for d in docs])
    # right padding: see Reader.residual_stream
    hidden = reader.site_activations(ids, None, layer, sae.cfg.site)[own]
    doc_of_token = torch.repeat_interleave(
        torch.arange(len(docs), device=hidden.device), lengths.to(hidden.device)
    )
    return OwnTokens(hidden, doc_of_token, lengths)


def mean_pool(
    hidden: torch.Tensor, pooled: torch.Tensor, doc_of_token: torch.Tensor, n_docs: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per document, the float32 mean of the rows ``pooled`` (indices) of ``hidden``, and how
    many rows it averages; a document with none gets zeros (as its sparse vector is empty)."""
    docs = doc_of_token[pooled]
    sums = torch.zeros(n_docs, hidden.shape[1], dtype=torch.float32, device=hidden.device)
    sums.index_add_(0, docs, hidden[pooled].float())
    counts = torch.bincount(docs, minlength=n_docs)
    return sums / counts.clamp(min=1).unsqueeze(1).to(torch.float32), counts


@torch.inference_mode()
def dense_batch(
    reader: Reader, sae: SAE, layer: int, docs: list[Tokenized], wrapping: Wrapping
) -> tuple[np.ndarray, np.ndarray]:
    """The dense vectors ``[n_docs, width]`` of a batch and the tokens each averages, on the
    host: what `encode_batch` gives with ``dense=True``, without the SAE's encoding."""
    own = own_tokens_at_site(reader, sae, layer, docs, wrapping)
    typical = sae.typical(own.hidden.to(sae.W_enc.dtype)).nonzero().squeeze(1)
    means, counts = mean_pool(own.hidden, typical, own.doc_of_token, len(docs))
    return means.cpu().numpy(), counts.cpu().numpy()


def dense_table(doc_ids: np.ndarray, means: np.ndarray, counts: np.ndarray) -> pa.Table:
    """Rows of `dense_vectors` (without the encoder): ``doc_id``, ``n_tokens``, ``vector``."""
    n, width = means.shape
    offsets = pa.array(np.arange(0, (n + 1) * width, width, dtype=np.int32))
    values = pa.array(np.ascontiguousarray(means, dtype=np.float32).reshape(-1))
    return pa.table(
        [
            pa.array(np.asarray(doc_ids, dtype=np.int64)),
            pa.array(np.asarray(counts, dtype=np.int32)),
            pa.ListArray.from_arrays(offsets, values),
        ],
        schema=DENSE_SCHEMA,
    )


def fill_dense_vectors(
    store: Store,
    corpus: str,
    reader: Reader,
    sae: SAE,
    *,
    layer: int,
    wrapping: Wrapping,
    encoder_id: int,
    max_tokens: int,
    batch_tokens: int,
    chunk_docs: int,
    progress: bool = True,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Compute and store the dense vectors of the documents of ``corpus`` that ``encoder_id``
    encoded without them, tokenised as the encoder tokenised them (its ``max_tokens`` and
    ``wrapping``). One transaction per batch: a killed run loses at most the batch in flight and
    the next picks up what is still missing. ``on_batch(n)`` is called after the n-th batch is
    committed. Returns how many vectors were stored."""
    total = count_missing_dense(store, encoder_id, corpus)
    if total == 0:
        return 0
    log.info("filling in the dense vectors of %d documents of %s encoded before", total, corpus)
    bar = tqdm(
        total=total, disable=not progress, desc=f"dense vectors of {corpus}",
        dynamic_ncols=True, unit="doc",
    )  # fmt: skip
    filled = n_batches = 0
    try:
        while not (chunk := missing_dense(store, encoder_id, corpus, chunk_docs)).is_empty():
            doc_ids = chunk["doc_id"].to_numpy()
            tokenized = tokenize_documents(
                reader.tokenizer, chunk["text"].to_list(), max_tokens,
                chunk["context"].to_list(), wrapping,
            )  # fmt: skip
            stored = 0
            for batch in plan_batches([t.width for t in tokenized], batch_tokens):
                docs = [tokenized[i] for i in batch]
                means, counts = dense_batch(reader, sae, layer, docs, wrapping)
                stored += write_dense(store, encoder_id, dense_table(doc_ids[batch], means, counts))
                n_batches += 1
                bar.update(len(batch))
                if on_batch is not None:
                    on_batch(n_batches)
            filled += stored
            if stored == 0:  # another run stores these very documents: leave them to it
                break
    finally:
        bar.close()
    log.info("filled in %d dense vectors of %s", filled, corpus)
    return filled
