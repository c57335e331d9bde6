"""Encoding documents into pooled sparse SAE vectors, fast: length-sorted batches under a token
budget, the reader run only up to the SAE's layer, SAE + top-k + max-pooling on the device, and
only the sparse (document, feature) results moved to the host and written, one transaction per
batch, so an interrupted run resumes without loss or duplication."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import pyarrow as pa
import torch
from tqdm.auto import tqdm

from saeembed.encoding.dense import (
    dense_table,
    fill_dense_vectors,
    mean_pool,
    own_tokens_at_site,
)
from saeembed.encoding.options import DEFAULT_MAX_TOKENS, EncodingOptions
from saeembed.encoding.stack_cache import SHARED_STACKS
from saeembed.errors import InputError, SAEError
from saeembed.inputs.tokens import (
    ChatMode,
    Tokenized,
    Wrapping,
    plan_batches,
    tokenize_documents,
    wrapping_for,
)
from saeembed.reader import Reader, dtype_name
from saeembed.sae import SAE, check_sae_fits, load_sae
from saeembed.store import Encoder, Store
from saeembed.version import __version__

if TYPE_CHECKING:
    from saeembed.labels.naming import NamingReport

log = logging.getLogger(__name__)

# bump when the same inputs would give different stored values (3: massive-norm tokens not pooled)
ENCODING_VERSION = 3
# 2: activations also keep value_sum, the sum of the concept's activations over the tokens
POOLING = "max"
TRUNCATION = "keep_first"
CHUNK_DOCS = 2048  # documents read from the store, tokenised and length-sorted at a time


def default_batch_tokens(device: torch.device) -> int:
    """Token budget per batch. On the CPU small batches win: a 1,024-token batch keeps a layer's
    activations (1,024 x 1,536 fp32 = 6 MB) in cache; measured in docs/benchmarks.md."""
    return 65536 if device.type == "cuda" else 1024


#: how an encoder's name says it was computed at a lower precision than float32
DTYPE_SUFFIX = {"bfloat16": "-bf16", "float16": "-fp16"}


@dataclass
class EncoderSpec:
    """Everything that decides what an encoding produces; hashed into the encoder fingerprint."""

    model: str
    model_revision: str
    layer: int
    sae_sha256: str
    d_sae: int
    activation: str
    k: int | None
    max_tokens: int
    dtype: str
    chat: str
    prefix: str
    pooling: str = POOLING
    truncation: str = TRUNCATION
    encoding_version: int = ENCODING_VERSION

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()

    def name(self) -> str:
        model = self.model.rstrip("/").split("/")[-1]
        chat = "" if self.chat == "none" else f"-chat-{self.chat}"
        precision = DTYPE_SUFFIX.get(self.dtype, "")  # fp32 names stay as they always were
        return f"{model}-L{self.layer}-{self.sae_sha256[:8]}{chat}{precision}"


@dataclass
class EncodeReport:
    """What one `encode_corpus` call did."""

    encoder: Encoder
    n_encoded: int = 0
    n_tokens: int = 0
    n_truncated: int = 0
    n_activations: int = 0
    seconds: float = 0.0
    worker_seconds: float = 0.0  # sharded encodes: the workers' time encoding, summed
    shipped_labels: int = 0  # labels the encoder took from its SAE's label file (a new encoder)
    n_dense_filled: int = 0  # --keep-dense: vectors filled in for documents encoded before
    naming: NamingReport | None = None  # concepts named from the store's documents afterwards
    naming_deferred: bool = False  # inside `naming_deferred`: named once the block ends

    def add(self, docs: list[Tokenized], activations: pa.Table, seconds: float) -> None:
        """Count one written batch; ``seconds`` is the time since the encoding started."""
        self.n_encoded += len(docs)
        self.n_tokens += sum(len(d.ids) for d in docs)
        self.n_truncated += sum(d.truncated for d in docs)
        self.n_activations += activations.num_rows
        self.seconds = seconds

    @property
    def tokens_per_second(self) -> float:
        return self.n_tokens / self.seconds if self.seconds else 0.0

    def describe(self, what: str | None = None) -> str:
        """``encoded N [what] (tokens, speed, truncations) with encoder ID (NAME)``."""
        counted = f"{self.n_encoded:,} {what}" if what else f"{self.n_encoded:,}"
        filled = (
            f"; filled in the dense vectors of {self.n_dense_filled:,} documents encoded before"
            if self.n_dense_filled
            else ""
        )
        return (
            f"encoded {counted} ({self.n_tokens:,} tokens, "
            f"{self.tokens_per_second:,.0f} tok/s, {self.n_truncated:,} truncated) with encoder "
            f"{self.encoder.encoder_id} ({self.encoder.name}){filled}"
        )


@dataclass
class BatchResult:
    """Sparse pooled results of one batch, on the host."""

    doc_index: np.ndarray  # [m] index into the batch's documents
    feature: np.ndarray  # [m]
    value: np.ndarray  # [m] max activation over the document's tokens
    value_sum: np.ndarray  # [m] sum of the activations over the document's tokens
    n_tokens: np.ndarray  # [m] tokens on which the feature was active
    peak_token: np.ndarray  # [m] position of the (first) maximum among the document's tokens
    # with dense=True: per document, the site's activations mean-pooled over the pooled tokens
    dense: np.ndarray | None = None  # [n_docs, width] float32
    dense_tokens: np.ndarray | None = None  # [n_docs] tokens averaged


def encoder_spec(
    reader: Reader, sae: SAE, layer: int, max_tokens: int, wrapping: Wrapping
) -> EncoderSpec:
    return EncoderSpec(
        model=reader.model_id,
        model_revision=reader.revision,
        layer=layer,
        sae_sha256=sae.content_hash(),
        d_sae=sae.cfg.d_sae,
        activation=sae.cfg.activation,
        k=sae.cfg.k,
        max_tokens=max_tokens,
        dtype=dtype_name(reader.dtype),
        chat=wrapping.chat,
        prefix=wrapping.description,
    )


@torch.inference_mode()
def encode_batch(
    reader: Reader,
    sae: SAE,
    layer: int,
    docs: list[Tokenized],
    wrapping: Wrapping,
    *,
    dense: bool = False,
) -> BatchResult:
    """Pooled sparse SAE activations of a batch of tokenised documents; with ``dense``, also each
    document's site activations mean-pooled over the same tokens (`saeembed.encoding.dense`).

    Nothing of size tokens x features exists for TopK SAEs: the SAE returns (token, feature, value)
    triples, and pooling groups them by (document, feature) with `torch.unique` + scatter-reduce."""
    own = own_tokens_at_site(reader, sae, layer, docs, wrapping)
    lengths, doc_of_token = own.lengths, own.doc_of_token
    tokens = own.hidden.to(sae.W_enc.dtype)  # [n_tokens, d_in], documents' own tokens, in order
    first_token = torch.cumsum(lengths, 0) - lengths

    typical = sae.typical(tokens).nonzero().squeeze(1)  # massive-norm tokens are not pooled
    acts = sae.encode_sparse(tokens[typical])
    token_of = typical[acts.token]  # index among the batch's own tokens
    key = doc_of_token[token_of] * sae.cfg.d_sae + acts.feature
    keys, group = torch.unique(key, return_inverse=True)
    pooled = torch.zeros(len(keys), dtype=acts.value.dtype, device=key.device)
    pooled.scatter_reduce_(0, group, acts.value, reduce="amax", include_self=False)
    sums = torch.zeros(len(keys), dtype=torch.float32, device=key.device)
    sums.scatter_add_(0, group, acts.value.float())
    counts = torch.zeros(len(keys), dtype=torch.long, device=key.device)
    counts.scatter_add_(0, group, torch.ones_like(group))
    at_peak = acts.value == pooled[group]
    peak = torch.full((len(keys),), tokens.shape[0], dtype=torch.long, device=key.device)
    peak.scatter_reduce_(0, group[at_peak], token_of[at_peak], reduce="amin", include_self=True)

    # only the sparse (document, feature) rows (and the dense means) leave the device
    moved = [torch.stack([keys, counts, peak]), torch.stack([pooled.float(), sums])]
    if dense:
        moved += mean_pool(own.hidden, typical, doc_of_token, len(docs))
    ints, floats, *means = to_host(*moved)
    keys, counts, peak = ints.numpy()
    doc_index = keys // sae.cfg.d_sae
    return BatchResult(
        doc_index=doc_index,
        feature=(keys % sae.cfg.d_sae).astype(np.int32),
        value=floats[0].numpy(),
        value_sum=floats[1].numpy(),
        n_tokens=counts.astype(np.int32),
        peak_token=(peak - first_token.numpy()[doc_index]).astype(np.int32),
        dense=means[0].numpy() if means else None,
        dense_tokens=means[1].numpy() if means else None,
    )


def to_host(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """The tensors on the host. From a GPU: copied into pinned (page-locked) memory without
    blocking, one synchronisation for all; CPU tensors are returned as they are."""
    if all(t.device.type == "cpu" for t in tensors):
        return list(tensors)
    hosts = [torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for t in tensors]
    for host, tensor in zip(hosts, tensors, strict=True):
        host.copy_(tensor, non_blocking=True)
    torch.cuda.synchronize(tensors[0].device)
    return hosts


def _batch_tables(
    result: BatchResult, docs: list[Tokenized], doc_ids: np.ndarray
) -> tuple[pa.Table, pa.Table, pa.Table | None]:
    """Arrow tables for `encoded_documents`, `activations` and (when the batch computed them)
    `dense_vectors` from one batch's results."""
    n_features = np.bincount(result.doc_index, minlength=len(docs)).astype(np.int32)
    encoded = pa.table(
        {
            "doc_id": pa.array(doc_ids, pa.int64()),
            "n_tokens": pa.array([len(d.ids) for d in docs], pa.int32()),
            "truncated": pa.array([d.truncated for d in docs], pa.bool_()),
            "n_features": pa.array(n_features),
        }
    )
    offsets = np.concatenate([d.offsets for d in docs])  # every own token of the batch, in order
    first_token = np.cumsum([0] + [len(d.ids) for d in docs[:-1]])
    spans = offsets[first_token[result.doc_index] + result.peak_token]
    activations = pa.table(
        {
            "doc_id": pa.array(doc_ids[result.doc_index], pa.int64()),
            "feature": pa.array(result.feature),
            "value": pa.array(result.value.astype(np.float32)),
            "n_tokens": pa.array(result.n_tokens),
            "peak_token": pa.array(result.peak_token),
            "peak_start": pa.array(spans[:, 0]),
            "peak_end": pa.array(spans[:, 1]),
            "value_sum": pa.array(result.value_sum.astype(np.float32)),
        }
    )
    if result.dense is None:
        return encoded, activations, None
    return encoded, activations, dense_table(doc_ids, result.dense, result.dense_tokens)


def encode_texts(
    reader: Reader,
    sae: SAE,
    layer: int,
    wrapping: Wrapping,
    chunk: pl.DataFrame,
    *,
    max_tokens: int,
    batch_tokens: int,
    dense: bool = False,
) -> Iterator[tuple[list[Tokenized], pa.Table, pa.Table, pa.Table | None]]:
    """The encoding core, shared by the single-file store and the shard engines: tokenise one
    chunk of documents (``doc_id``, ``text``, ``context``), plan length-sorted batches under the
    token budget, and yield each batch's documents with its `encoded_documents` and
    `activations` rows, and with ``dense`` its `dense_vectors` rows (else None). The same chunk
    gives the same rows, whoever calls it."""
    texts, doc_ids = chunk["text"].to_list(), chunk["doc_id"].to_numpy()
    contexts = chunk["context"].to_list() if "context" in chunk.columns else None
    tokenized = tokenize_documents(reader.tokenizer, texts, max_tokens, contexts, wrapping)
    for batch in plan_batches([t.width for t in tokenized], batch_tokens):
        docs = [tokenized[i] for i in batch]
        result = encode_batch(reader, sae, layer, docs, wrapping, dense=dense)
        yield (docs, *_batch_tables(result, docs, doc_ids[batch]))


def encode_corpus(
    store: Store,
    corpus: str,
    reader: Reader,
    sae: SAE,
    *,
    layer: int,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    batch_tokens: int | None = None,
    chat: ChatMode = "none",
    keep_dense: bool = False,
    progress: bool = True,
    on_batch: Callable[[int], None] | None = None,
) -> EncodeReport:
    """Encode every document of ``corpus`` that this encoder has not encoded yet.

    Each batch is written in its own transaction; killing the process loses at most the batch in
    flight, and the next call picks up exactly the documents still missing. ``on_batch(n)`` is
    called after the n-th batch is committed.

    With ``keep_dense``, each batch also stores its documents' dense site vectors
    (`saeembed.encoding.dense`) in the same transaction, and then the documents of ``corpus``
    this encoder encoded before without one get theirs (`fill_dense_vectors`, batches counted
    on by ``on_batch`` after the encoding's)."""
    check_sae_fits(sae, reader.site_width(sae.cfg.site), reader.n_layers, layer)
    wrapping = wrapping_for(reader.tokenizer, chat)
    spec = encoder_spec(reader, sae, layer, max_tokens, wrapping)
    encoder = ensure_encoder(store, spec, sae)
    budget = batch_tokens or default_batch_tokens(reader.device)
    report = EncodeReport(encoder)
    n_batches = _encode_pending(
        store, corpus, reader, sae, layer, wrapping, report, max_tokens=max_tokens,
        batch_tokens=budget, keep_dense=keep_dense, progress=progress, on_batch=on_batch,
    )  # fmt: skip
    if keep_dense:
        report.n_dense_filled = fill_dense_vectors(
            store, corpus, reader, sae, layer=layer, wrapping=wrapping,
            encoder_id=encoder.encoder_id, max_tokens=max_tokens, batch_tokens=budget,
            chunk_docs=CHUNK_DOCS, progress=progress,
            on_batch=None if on_batch is None else lambda n: on_batch(n_batches + n),
        )  # fmt: skip
    return report


def _encode_pending(
    store: Store,
    corpus: str,
    reader: Reader,
    sae: SAE,
    layer: int,
    wrapping: Wrapping,
    report: EncodeReport,
    *,
    max_tokens: int,
    batch_tokens: int,
    keep_dense: bool,
    progress: bool,
    on_batch: Callable[[int], None] | None,
) -> int:
    """`encode_corpus`'s encoding, counted into ``report``; returns the batches committed."""
    encoder_id = report.encoder.encoder_id
    total = store.count_pending(encoder_id, corpus)
    if total == 0:
        return 0
    # the bar advances by characters, which encoding time follows (batches run longest first, so
    # a count of documents would promise far too long at the start); it shows documents done
    bar = tqdm(
        total=store.count_pending(encoder_id, corpus, chars=True),
        disable=not progress, desc=f"encoding {corpus}", dynamic_ncols=True,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]",
    )  # fmt: skip
    done = 0
    start, n_batches = time.perf_counter(), 0
    try:
        while True:
            chunk = store.pending_documents(encoder_id, corpus, CHUNK_DOCS)
            if chunk.is_empty():
                break
            length_of = dict(zip(chunk["doc_id"].to_list(),
                                 chunk["text"].str.len_chars().to_list(), strict=True))  # fmt: skip
            for docs, encoded, activations, dense in encode_texts(
                reader, sae, layer, wrapping, chunk, max_tokens=max_tokens,
                batch_tokens=batch_tokens, dense=keep_dense,
            ):  # fmt: skip
                store.write_encoded(encoder_id, encoded, activations, dense)
                n_batches += 1
                report.add(docs, activations, time.perf_counter() - start)
                done += len(docs)
                bar.set_description_str(
                    f"encoding {corpus} ({done:,}/{total:,} docs, "
                    f"{report.tokens_per_second:,.0f} tok/s)",
                    refresh=False,
                )
                bar.update(sum(length_of[d] for d in encoded.column("doc_id").to_pylist()))
                log.debug("committed batch %d: %d documents", n_batches, len(docs))
                if on_batch is not None:
                    on_batch(n_batches)
    finally:
        bar.close()
    return n_batches


def dictionary_kind(sae: SAE) -> str:
    """``sae`` (a residual or other-site SAE), ``transcoder`` or ``snmf``."""
    if sae.cfg.activation == "snmf":
        return "snmf"
    return "transcoder" if sae.cfg.output_site else "sae"


def ensure_encoder(store: Store, spec: EncoderSpec, sae: SAE) -> Encoder:
    fields = {k: v for k, v in asdict(spec).items() if k not in ("prefix",)}
    fields.update(
        name=spec.name(),
        prefix=spec.prefix,
        sae=sae.cfg.source or "unknown",
        kind=dictionary_kind(sae),
        site=sae.cfg.site
        if sae.cfg.output_site is None
        else f"{sae.cfg.site}->{sae.cfg.output_site}",
        saeembed_version=__version__,
        config={
            "sae_cfg": {k: v for k, v in asdict(sae.cfg).items() if k != "extra"},
            "sae_extra": sae.cfg.extra,
        },
    )
    encoder, created = store.get_or_create_encoder(spec.fingerprint(), fields)
    if created:
        log.info("new encoder %d (%s)", encoder.encoder_id, encoder.name)
    return encoder


# ---- the encoding stack: reader + SAE, loaded and checked before any store is touched -------


def resolve_sae(sae: str | Path | None, model_id: str):
    """Load ``sae`` (path or Hub id) or the SAE shipped for ``model_id``."""
    from saeembed.pretrained import default_sae_for

    if sae is None:
        shipped = default_sae_for(model_id)
        if shipped is None:
            raise SAEError(f"no SAE ships for model {model_id}; pass --sae PATH_OR_HUB_ID")
        sae = shipped
    return load_sae(sae)


def resolve_layer(layer: int | None, sae_layer: int | None) -> int:
    if layer is None and sae_layer is None:
        raise SAEError("the SAE does not say which layer it reads; pass --layer N")
    if layer is not None and sae_layer is not None and layer != sae_layer:
        raise SAEError(
            f"--layer {layer} differs from the SAE's layer {sae_layer}; drop --layer or use an SAE for layer {layer}"
        )
    return sae_layer if layer is None else layer


@dataclass
class EncodingStack:
    """A reader cut after the SAE's layer, and the SAE on the reader's device."""

    reader: Reader
    sae: SAE
    layer: int


def load_encoding_stack(
    model: str = "default",
    sae: str | Path | None = None,
    layer: int | None = None,
    *,
    device: str = "auto",
    dtype: str = "auto",
    max_tokens: int | None = None,
    batch_tokens: int | None = None,
    weights: bool = True,
) -> EncodingStack:
    """Load and check the reader and SAE an encode needs, and the token limits it will use
    (fails before any store is touched). ``weights=False``: the reader without its weights
    (`load_reader`), for a driver that only fingerprints the encoder and tokenises."""
    from saeembed.reader import dtype_name, load_reader, resolve_device, resolve_dtype

    EncodingOptions(max_tokens=max_tokens, batch_tokens=batch_tokens).check()
    shared = SHARED_STACKS.get()
    # keyed by the precision ``auto`` stands for, so "auto" and what it picks share a stack
    precision = dtype_name(resolve_dtype(dtype, resolve_device(device)))
    key = (model, None if sae is None else str(sae), layer, device, precision, weights)
    if shared is not None and key in shared:
        stack = shared[key]
        _check_max_tokens(stack.reader, max_tokens)
        return stack
    reader = load_reader(model, device=device, dtype=dtype, weights=weights)
    _check_max_tokens(reader, max_tokens)
    sae_model = resolve_sae(sae, reader.model_id)
    chosen_layer = resolve_layer(layer, sae_model.cfg.layer)
    check_sae_fits(sae_model, reader.site_width(sae_model.cfg.site), reader.n_layers, chosen_layer)
    reader.drop_layers_after(chosen_layer)
    stack = EncodingStack(reader, sae_model.to(reader.device), chosen_layer)
    if shared is not None:
        shared[key] = stack
    return stack


def _check_max_tokens(reader, max_tokens: int | None) -> None:
    limit = getattr(reader.model.config, "max_position_embeddings", None)
    if max_tokens is not None and limit and max_tokens > limit:
        raise InputError(
            f"--max-tokens {max_tokens:,} is beyond what {reader.model_id} reads ({limit:,} "
            f"positions); use at most {limit:,}"
        )


def encode_stored_corpus(
    store: Store,
    corpus: str,
    stack: EncodingStack,
    *,
    max_tokens: int | None = None,
    batch_tokens: int | None = None,
    chat: str = "none",
    keep_dense: bool = False,
    progress: bool = True,
    on_batch: Callable[[int], None] | None = None,
):
    """Encode what is missing of a corpus already in ``store`` (with ``keep_dense``, with the
    documents' dense site vectors, filling in those missing: `encode_corpus`); give a new
    encoder the labels shipped for its SAE, then name its concepts from the store's documents
    where the shipped names do not fit them (`saeembed.labels.local`). Returns the
    `EncodeReport`."""
    from saeembed.labels import ensure_shipped_labels
    from saeembed.labels.naming import name_concepts

    encoding = encode_corpus(
        store, corpus, stack.reader, stack.sae, layer=stack.layer,
        max_tokens=max_tokens or DEFAULT_MAX_TOKENS, batch_tokens=batch_tokens, chat=chat,
        keep_dense=keep_dense, progress=progress, on_batch=on_batch,
    )  # fmt: skip
    encoding.shipped_labels = ensure_shipped_labels(store, encoding.encoder)
    if encoding.n_encoded or encoding.shipped_labels:  # new documents: the names may change
        pending = _DEFERRED.get()
        if pending is None:
            encoding.naming = name_concepts(store, encoding.encoder)
        else:
            encoding.naming_deferred = True
            if all(e.encoder_id != encoding.encoder.encoder_id for e in pending):
                pending.append(encoding.encoder)
    return encoding


_DEFERRED: ContextVar[list[Encoder] | None] = ContextVar("naming_deferred", default=None)


@contextmanager
def naming_deferred() -> Iterator[list[Encoder]]:
    """Within the block, `encode_stored_corpus` leaves naming the concepts to the caller: it
    lists the encoders that encoded new documents in the list this yields (encoding the two
    sides of a diff names the concepts once, not after each side)."""
    pending: list[Encoder] = []
    token = _DEFERRED.set(pending)
    try:
        yield pending
    finally:
        _DEFERRED.reset(token)
