"""The shard worker: loads the encoding stack once and turns a shard task (a documents file of
the shard directory) into the shard's `encoded` and `activations` Parquet files, with the same
encoding core as the single-file store (`saeembed.encoding.core.encode_texts`), chunk by chunk in the
same order, so that a shard holds exactly the rows a single-file encode stores. Used in-process
by the local engine and inside each Ray actor."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from saeembed.encoding.core import (
    CHUNK_DOCS,
    DEFAULT_MAX_TOKENS,
    EncodingStack,
    default_batch_tokens,
    encode_texts,
    encoder_spec,
    load_encoding_stack,
)
from saeembed.errors import StoreError
from saeembed.inputs.tokens import wrapping_for
from saeembed.store.counts import DOCUMENTS
from saeembed.store.shard_layout import ShardFile, file_digest, shard_path


@dataclass
class EncoderArgs:
    """What a worker needs to load the same encoding stack as the driver."""

    model: str = "default"
    sae: str | None = None
    layer: int | None = None
    device: str = "auto"
    dtype: str = "auto"
    max_tokens: int | None = None
    batch_tokens: int | None = None
    chat: str = "none"
    threads: int | None = None  # torch threads per worker (None: torch's default)


@dataclass
class ShardTask:
    """One shard to encode: its documents file, and the documents of it that an earlier shard of
    the directory (another corpus) encoded already."""

    corpus: str
    index: int
    exclude: list[int] = field(default_factory=list)
    # presence counts of the excluded documents, [feature, n] (feature -1: their number), which
    # the shard's counts include: they are documents of its corpus
    exclude_counts: list[list[int]] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @staticmethod
    def from_json(text: str) -> ShardTask:
        return ShardTask(**json.loads(text))


@dataclass
class ShardResult:
    """What encoding one shard wrote and measured."""

    corpus: str
    index: int
    files: dict[str, ShardFile]
    n_encoded: int
    n_tokens: int
    n_truncated: int
    n_activations: int
    seconds: float

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @staticmethod
    def from_json(text: str) -> ShardResult:
        raw = json.loads(text)
        raw["files"] = {t: ShardFile(**f) for t, f in raw["files"].items()}
        return ShardResult(**raw)


def write_parquet(root: Path, relative: str, table: pa.Table) -> ShardFile:
    """``table`` as the Parquet file ``root/relative``, complete or not at all (temporary name,
    fsync, rename); returns its manifest record."""
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, tmp, compression="zstd")
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves no temporary file behind
        raise
    size, digest = file_digest(path)
    return ShardFile(relative, table.num_rows, size, digest)


class ShardEncoder:
    """The reader and SAE, loaded once; `encode` does one shard."""

    def __init__(
        self,
        root: str | Path,
        args: EncoderArgs,
        fingerprint: str | None = None,
        *,
        stack: EncodingStack | None = None,
        chunk_docs: int = CHUNK_DOCS,
    ):
        if args.threads:
            torch.set_num_threads(args.threads)
        self.root = Path(root)
        self.args = args
        self.chunk_docs = chunk_docs
        self.stack = stack or load_encoding_stack(
            args.model, args.sae, args.layer, device=args.device, dtype=args.dtype,
            max_tokens=args.max_tokens, batch_tokens=args.batch_tokens,
        )  # fmt: skip
        reader = self.stack.reader
        self.max_tokens = args.max_tokens or DEFAULT_MAX_TOKENS
        self.batch_tokens = args.batch_tokens or default_batch_tokens(reader.device)
        self.wrapping = wrapping_for(reader.tokenizer, args.chat)
        spec = encoder_spec(
            reader, self.stack.sae, self.stack.layer, self.max_tokens, self.wrapping
        )
        self.fingerprint = spec.fingerprint()
        if fingerprint is not None and fingerprint != self.fingerprint:
            raise StoreError(
                f"a worker loaded a different encoder ({self.fingerprint[:12]}) than the driver "
                f"({fingerprint[:12]}); give every worker the same model, SAE, dtype and revision"
            )

    def encode(self, task: ShardTask) -> ShardResult:
        start = time.perf_counter()
        relative = shard_path("documents", task.corpus, task.index)
        docs = pl.read_parquet(self.root / relative)
        if task.exclude:
            docs = docs.filter(~pl.col("doc_id").is_in(task.exclude))
        encoded, activations = [], []
        n_tokens = n_truncated = 0
        stack = self.stack
        for chunk in docs.iter_slices(self.chunk_docs):
            for batch, enc, act, _ in encode_texts(
                stack.reader, stack.sae, stack.layer, self.wrapping, chunk,
                max_tokens=self.max_tokens, batch_tokens=self.batch_tokens,
            ):  # fmt: skip
                encoded.append(enc)
                activations.append(act)
                n_tokens += sum(len(d.ids) for d in batch)
                n_truncated += sum(d.truncated for d in batch)
        encoded_table = _concat(encoded, _ENCODED_SCHEMA)
        stamp = datetime.now(timezone.utc).replace(tzinfo=None)
        encoded_table = encoded_table.append_column(
            "encoded_at", pa.array([stamp] * encoded_table.num_rows, pa.timestamp("us"))
        )
        activations_table = _concat(activations, _ACTIVATIONS_SCHEMA)
        tables = {
            "encoded": encoded_table,
            "activations": activations_table,
            "counts": shard_counts(activations_table, encoded_table.num_rows, task.exclude_counts),
        }
        files = {
            name: write_parquet(self.root, shard_path(name, task.corpus, task.index), table)
            for name, table in tables.items()
        }
        return ShardResult(
            task.corpus, task.index, files, encoded_table.num_rows, n_tokens, n_truncated,
            activations_table.num_rows, time.perf_counter() - start,
        )  # fmt: skip


_ENCODED_SCHEMA = pa.schema(
    [("doc_id", pa.int64()), ("n_tokens", pa.int32()), ("truncated", pa.bool_()),
     ("n_features", pa.int32())]
)  # fmt: skip
_ACTIVATIONS_SCHEMA = pa.schema(
    [("doc_id", pa.int64()), ("feature", pa.int32()), ("value", pa.float32()),
     ("n_tokens", pa.int32()), ("peak_token", pa.int32()), ("peak_start", pa.int32()),
     ("peak_end", pa.int32()), ("value_sum", pa.float32())]
)  # fmt: skip


def shard_counts(activations: pa.Table, n_encoded: int, extra: list[list[int]]) -> pa.Table:
    """The shard's kept presence counts (`saeembed.store.counts`): documents per concept, and
    under feature -1 the documents counted."""
    present = pl.from_arrow(activations).filter(pl.col("value") > 0)
    counts = present.group_by("feature").agg(pl.len().cast(pl.Int64).alias("n_docs"))
    rows = pl.concat(
        [
            counts.with_columns(pl.col("feature").cast(pl.Int32)),
            pl.DataFrame({"feature": [DOCUMENTS], "n_docs": [n_encoded]}, schema=_COUNT_SCHEMA),
            pl.DataFrame(
                {"feature": [f for f, _ in extra], "n_docs": [n for _, n in extra]},
                schema=_COUNT_SCHEMA,
            ),
        ]
    )
    summed = rows.group_by("feature").agg(pl.col("n_docs").sum()).sort("feature")
    return summed.to_arrow()


_COUNT_SCHEMA = {"feature": pl.Int32, "n_docs": pl.Int64}


def _concat(tables: list[pa.Table], schema: pa.Schema) -> pa.Table:
    """The batches' tables as one (an empty table of ``schema`` when a shard had nothing new)."""
    if not tables:
        return schema.empty_table()
    return pa.concat_tables([t.cast(schema) for t in tables])
