"""Encoding a corpus into a shard directory (the driver): check the directory and the encoder
before anything is written, record the corpus, split its documents into fixed shards in file
order, write each pending shard's documents file, let an engine (in-process, or Ray actors:
`saeembed.shards.ray_engine`) encode them, and commit each finished shard with its manifest line.
A rerun skips the shards the manifest lists; the shards' document ids are the single-file
store's, and so are their rows."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import asdict
from pathlib import Path

import polars as pl
import pyarrow as pa
from tqdm.auto import tqdm

import saeembed.encoding.core as encoding
from saeembed.encoding.core import (
    DEFAULT_MAX_TOKENS,
    EncodeReport,
    EncodingStack,
    encoder_spec,
    ensure_encoder,
)
from saeembed.errors import InputError
from saeembed.inputs.tokens import wrapping_for
from saeembed.shards.create import create, refuse_foreign
from saeembed.shards.options import ShardOptions
from saeembed.shards.worker import EncoderArgs, ShardEncoder, ShardResult, ShardTask, write_parquet
from saeembed.store import Store
from saeembed.store.counts import DOCUMENTS
from saeembed.store.shard_layout import (
    ANALYSIS_DB,
    HEADER,
    Shard,
    ShardFile,
    append_manifest,
    check_corpus_name,
    directory_state,
    is_shard_dir,
    read_header,
    read_manifest,
    shard_path,
    write_atomically,
    write_header,
)

log = logging.getLogger(__name__)

DEFAULT_SHARD_DOCS = 4 * encoding.CHUNK_DOCS  # a whole number of the single-file store's chunks
_DOCUMENT_COLUMNS = ("doc_id", "row_idx", "ext_id", "text", "meta", "context", "parent_id",
                     "chunk_idx")  # fmt: skip


def check_target(root: Path, fingerprint: str, corpus: str, docs: pl.DataFrame) -> None:
    """Everything about the directory that can refuse this encode, checked before any write."""
    check_corpus_name(corpus, _name_max(root))
    if root.exists() and not root.is_dir():
        raise InputError(f"{root} is a file; pass a directory (new or a shard directory) to --out")
    state = directory_state(root)
    if state == "foreign":
        refuse_foreign(root)
    if state != "shards":  # new, or a creation cut short, which this run finishes
        return
    header = read_header(root)
    held = header["encoder"]
    if held["fingerprint"] != fingerprint:
        raise InputError(
            f"{root} holds the shards of encoder {held['name']} ({held['fingerprint'][:12]}), "
            "not of this model, SAE and options; encode into another --out directory"
        )
    known = header.get("corpora", {}).get(corpus)
    if known and known["digest"] != _digest(docs):
        raise InputError(
            f"corpus {corpus!r} in {root} was encoded from another input ({known['n_docs']:,} "
            f"documents, now {docs.height:,}); pass another --corpus name"
        )


def _name_max(root: Path) -> int:
    """The longest file name the file system under ``root`` takes (255 where it cannot say)."""
    existing = root
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        return int(os.pathconf(existing, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def _digest(docs: pl.DataFrame) -> str:
    """A fingerprint of a corpus's document ids in shard order."""
    return hashlib.sha256(docs["doc_id"].to_numpy().astype("<i8").tobytes()).hexdigest()


def _in_shard_order(docs: pl.DataFrame) -> pl.DataFrame:
    """Documents in the order the single-file store encodes them (file order, chunks in order)."""
    frame = docs
    for name, dtype in (("context", pl.String), ("parent_id", pl.Int64), ("chunk_idx", pl.Int32)):
        if name not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype).alias(name))
    return frame.select(_DOCUMENT_COLUMNS).sort(["row_idx", "chunk_idx", "doc_id"])


def _create(root: Path, stack: EncodingStack, spec, shard_docs: int) -> None:
    """A new shard directory: its analysis file with the encoder row, then the header (the
    header last: a directory without one is not a shard directory yet). Run under the creation
    lock (`saeembed.shards.create`), which clears a creation cut short first."""
    with Store(root / ANALYSIS_DB) as analysis:
        encoder = ensure_encoder(analysis, spec, stack.sae)
        row = analysis.sql("SELECT * FROM encoders WHERE encoder_id = ?", [encoder.encoder_id])
    record = {k: (json.loads(v) if k == "config" else v) for k, v in row.row(0, named=True).items()}
    record["config"] = json.dumps(record["config"], sort_keys=True)
    write_header(root, record, shard_docs)


def _record_corpus(root: Path, corpus: str, docs: pl.DataFrame, origin, read) -> None:
    header = read_header(root)
    corpora = header.setdefault("corpora", {})
    if corpus in corpora:
        return
    corpora[corpus] = {
        "source": origin,
        "text_col": read.text_col,
        "id_col": read.id_col,
        "n_docs": docs.height,
        "digest": _digest(docs),
    }
    write_atomically(root / HEADER, (json.dumps(header, indent=2, default=str) + "\n").encode())


def encode_to_shards(
    root: str | Path,
    corpus: str,
    docs: pl.DataFrame,
    read,
    origin: str,
    stack: EncodingStack,
    args: EncoderArgs,
    *,
    options: ShardOptions | None = None,
    progress: bool = True,
) -> tuple[int, EncodeReport]:
    """Encode ``docs`` (the document table of `saeembed.inputs`) as corpus ``corpus`` of the
    shard directory ``root``, as ``options`` say (`ShardOptions`: the engine, Ray's address,
    workers and GPUs, the documents per shard); returns (documents new to the directory, the
    encoding report)."""
    options = (options or ShardOptions()).check().check_engine()
    engine, shard_docs = options.engine or "local", options.shard_docs
    root = Path(root)
    chunk_docs = encoding.CHUNK_DOCS  # read now: the single-file encoder's chunk, as it is now
    if shard_docs is not None and shard_docs % chunk_docs:
        # batches are planned per chunk: other shard sizes batch differently
        log.info(
            "--shard-docs %d is not a multiple of %d: values match a single-file encode to "
            "float32 rounding, not bit for bit",
            shard_docs,
            chunk_docs,
        )
    max_tokens = args.max_tokens or DEFAULT_MAX_TOKENS
    wrapping = wrapping_for(stack.reader.tokenizer, args.chat)
    spec = encoder_spec(stack.reader, stack.sae, stack.layer, max_tokens, wrapping)
    docs = _in_shard_order(docs)
    check_target(root, spec.fingerprint(), corpus, docs)
    if engine == "ray":
        from saeembed.shards.ray_engine import check_address

        check_address(options.address)
    if not is_shard_dir(root):
        create(root, lambda new: _create(new, stack, spec, shard_docs or DEFAULT_SHARD_DOCS))
        check_target(root, spec.fingerprint(), corpus, docs)  # a racing run may have created it
    size = read_header(root)["shard_docs"]
    if shard_docs is not None and shard_docs != size:
        raise InputError(f"{root} uses shards of {size:,} documents; drop --shard-docs or match it")
    with Store(root) as store:  # holds the directory's lock for the whole run
        _record_corpus(root, corpus, docs, origin, read)
        store.refresh_shards()  # the corpus row, from the header
        encoder = store.resolve_encoder(None)
        from saeembed.labels import ensure_shipped_labels

        shipped = ensure_shipped_labels(store, encoder)
        done = {(s.corpus, s.index) for s in read_manifest(root)}
        n_shards = -(-docs.height // size)
        pending = [i for i in range(n_shards) if (corpus, i) not in done]
        elsewhere = _encoded_elsewhere(store, corpus, docs, done)
        report = EncodeReport(encoder, shipped_labels=shipped)
        start = time.perf_counter()
        if not pending:
            return 0, report
        tasks, documents = [], {}
        for index in pending:
            part = docs.slice(index * size, size)
            documents[index] = write_parquet(
                root, shard_path("documents", corpus, index), part.to_arrow()
            )
            exclude = sorted(elsewhere.intersection(part["doc_id"].to_list()))
            tasks.append(ShardTask(corpus, index, exclude, _presence_counts(store, exclude)))
        n_new = sum(min(size, docs.height - i * size) for i in pending)
        bar = tqdm(total=n_new, unit="doc", disable=not progress, desc=f"encoding {corpus}")
        results = _run(
            engine, root, tasks, args, spec.fingerprint(), stack=stack, address=options.address,
            workers=options.workers, gpus_per_worker=options.gpus_per_worker,
            chunk_docs=chunk_docs,
        )  # fmt: skip
        # closed on any exit: a Ray engine stops the local cluster it started there and then
        with bar, closing(results):
            for result in results:
                _commit(root, result, documents[result.index], spec.fingerprint())
                report.n_encoded += result.n_encoded
                report.n_tokens += result.n_tokens
                report.n_truncated += result.n_truncated
                report.n_activations += result.n_activations
                report.seconds = time.perf_counter() - start
                report.worker_seconds += result.seconds
                bar.update(result.files["documents"].rows)
        store.refresh_shards()
        from saeembed.labels.naming import name_concepts

        report.naming = name_concepts(store, encoder)  # new documents: the names may change
    return n_new, report


def _encoded_elsewhere(store: Store, corpus: str, docs: pl.DataFrame, done: set) -> set[int]:
    """Documents of ``docs`` that completed shards of other corpora encoded already: the
    single-file store encodes a text once per encoder, whatever corpora hold it."""
    if not any(c != corpus for c, _ in done):
        return set()
    with store.temporary(wanted=docs.select("doc_id").to_arrow()):
        found = store.sql(
            "SELECT DISTINCT doc_id FROM encoded_documents WHERE doc_id IN (SELECT doc_id FROM wanted)"
        )
    return set(found["doc_id"].to_list())


def _presence_counts(store: Store, doc_ids: list[int]) -> list[list[int]]:
    """[feature, documents] over already encoded documents (feature -1: their number)."""
    if not doc_ids:
        return []
    with store.temporary(wanted={"doc_id": pa.array(doc_ids, pa.int64())}):
        counts = store.sql(
            f"SELECT feature, count(*) AS n FROM activations SEMI JOIN wanted USING (doc_id) "
            f"WHERE value > 0 GROUP BY feature UNION ALL SELECT {DOCUMENTS}, count(*) "
            "FROM encoded_documents SEMI JOIN wanted USING (doc_id)"
        )
    return [[int(f), int(n)] for f, n in counts.iter_rows()]


def _commit(root: Path, result: ShardResult, documents: ShardFile, fingerprint: str) -> None:
    """A finished shard's manifest line, with its documents file as the driver wrote it."""
    result.files = {"documents": documents, **result.files}
    append_manifest(root, Shard(result.corpus, result.index, fingerprint, result.files))


def _run(engine, root, tasks, args, fingerprint, *, stack, address, workers, gpus_per_worker,
         chunk_docs) -> Iterator[ShardResult]:  # fmt: skip
    if engine == "local":
        worker = ShardEncoder(root, args, fingerprint, stack=stack, chunk_docs=chunk_docs)
        for task in tasks:
            yield worker.encode(task)
        return
    from saeembed.shards.ray_engine import run_on_ray

    yield from run_on_ray(
        root, tasks, args, fingerprint, address=address, workers=workers,
        gpus_per_worker=gpus_per_worker, chunk_docs=chunk_docs,
    )  # fmt: skip


def encoder_args(**options) -> EncoderArgs:
    """`EncoderArgs` from the encode options that name them."""
    names = set(asdict(EncoderArgs()))
    return EncoderArgs(**{k: v for k, v in options.items() if k in names})
