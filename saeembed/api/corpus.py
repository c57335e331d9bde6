"""The corpus API over a store path: open a store, encode files, named datasets, DataFrames or
lists of texts into it, describe the store and run SQL or named queries, getting polars
DataFrames back (`diff` is `saeembed.api.compare`). The `saeembed encode`, `info`, `sql` and
`queries` commands are thin shells over these functions."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from saeembed.data import is_dataset_ref, read_dataset_ref, ref_name
from saeembed.encoding.options import EncodingOptions
from saeembed.errors import InputError, SaeembedError
from saeembed.inputs import ReadReport, documents_from_frame, documents_from_texts, read_documents
from saeembed.queries import bind_params, coerce_value, named_queries, run_query
from saeembed.remote import is_url
from saeembed.shards.options import ShardOptions
from saeembed.store import Store
from saeembed.store.shard_layout import is_shard_target
from saeembed.store.user_sql import DEFAULT_TIMEOUT, QueryResult, open_user_store, run_user_query

if TYPE_CHECKING:
    from saeembed.encoding.core import EncodeReport

log = logging.getLogger(__name__)

__all__ = [
    "EncodeResult",
    "corpus_name_for",
    "encode",
    "import_shards",
    "info",
    "named_query_table",
    "open_store",
    "run_query",
    "sql",
]


def open_store(path: str | Path, *, read_only: bool = False) -> Store:
    """Open (creating and migrating if needed) a saeembed DuckDB store."""
    return Store(path, read_only=read_only)


@dataclass
class EncodeResult:
    corpus: str
    read: ReadReport
    n_new_documents: int  # new rows of `documents`: chunks, when chunk_tokens was given
    encoding: EncodeReport
    chunk_tokens: int | None = None
    store_path: Path | None = None  # where it was encoded, for the commands the summary suggests

    def summary(self) -> str:
        if self.chunk_tokens is None:
            added = f"{self.n_new_documents:,} new documents"
        else:
            added = (
                f"{self.n_new_documents:,} new chunks of up to {self.chunk_tokens:,} tokens "
                f"(from {self.read.n_documents:,} documents)"
            )
        line = f"corpus {self.corpus!r}: {added}; " + self.encoding.describe()
        note = self.labels_note
        return line + (f"\n{note}" if note else "")

    @property
    def labels_note(self) -> str | None:
        """What to know about the labels: the concepts named from this store's documents, or
        that the shipped labels are shown (a store still too small to name its own)."""
        naming = self.encoding.naming
        if naming is not None:
            return naming.summary() + " (docs/labels.md#which-name-you-see)"
        if not self.encoding.shipped_labels or self.encoding.naming_deferred:
            return None
        command = "saeembed features label" + (f" {self.store_path}" if self.store_path else "")
        return (
            f"{self.encoding.shipped_labels:,} feature labels came with the SAE (made on its own "
            f"labelling corpus); with more documents the store names its concepts itself, or "
            f"`{command}` names them from this store's documents now (docs/labels.md)"
        )


def corpus_name_for(path: str | Path) -> str:
    """Default corpus name for a file (its name without format and compression suffixes) or a
    dataset reference (``data:rotten-tomatoes?category=fresh`` -> ``rotten-tomatoes-fresh``)."""
    if is_dataset_ref(str(path)):
        return ref_name(str(path))
    name = Path(path).name
    return re.sub(r"(\.(gz|zst|zstd|bz2))?$", "", name).rsplit(".", 1)[0] or name


def _read(source, text_col, id_col) -> tuple[pl.DataFrame, ReadReport, str]:
    if isinstance(source, pl.DataFrame):
        docs, report = documents_from_frame(source, text_col=text_col, id_col=id_col)
        return docs, report, "<dataframe>"
    if is_dataset_ref(source):
        _, frame = read_dataset_ref(source)
        docs, report = documents_from_frame(
            frame, text_col=text_col or "text", id_col=id_col, source=source
        )
        return docs, report, source
    if isinstance(source, (str, Path)):
        docs, report = read_documents(source, text_col=text_col, id_col=id_col)
        return docs, report, source if is_url(source) else str(Path(source).resolve())
    docs, report = documents_from_texts(list(source))
    return docs, report, "<texts>"


def encode(
    source: str | Path | pl.DataFrame | Sequence[str],
    db: str | Path | Store,
    *,
    corpus: str | None = None,
    text_col: str | None = None,
    id_col: str | None = None,
    encoding: EncodingOptions | None = None,
    chunk_tokens: int | None = None,
    shards: ShardOptions | None = None,
    keep_dense: bool = False,
    progress: bool = True,
    on_batch: Callable[[int], None] | None = None,
) -> EncodeResult:
    """Read ``source`` (a file, a DataFrame, or a list of texts), add its documents to ``corpus``
    in ``db`` and encode every one not yet encoded with the reader, SAE and layer of
    ``encoding`` (`EncodingOptions`: also truncation, batching, device, precision, chat turns).

    A directory ``db`` (an existing shard directory, or a path ending in ``/``) receives Parquet
    shards instead (`saeembed.shards`, docs/scale.md), as ``shards`` say (`ShardOptions`: in this
    process, or on Ray actors, and the documents per shard).

    With ``chunk_tokens`` N, each document is stored as its consecutive windows of N tokens of the
    reader's tokenizer, each a document of its own with ``parent_id`` and ``chunk_idx`` set (see
    `saeembed.inputs.chunks`). ``keep_dense`` also stores each document's dense site vector
    (`saeembed.encoding.dense`; a single-file store only), filling in those of documents encoded
    before. Safe to interrupt and to repeat: a second call encodes only what is missing."""
    o = (encoding or EncodingOptions()).check()
    shards = (shards or ShardOptions()).check()
    sharded = _shard_target(db, keep_dense)
    from saeembed.encoding.core import DEFAULT_MAX_TOKENS, encode_stored_corpus, load_encoding_stack

    if chunk_tokens is not None:
        from saeembed.inputs.chunks import check_chunk_tokens

        chunk_tokens = check_chunk_tokens(chunk_tokens, o.max_tokens or DEFAULT_MAX_TOKENS)
    if corpus is None:
        if not isinstance(source, (str, Path)):
            raise SaeembedError(
                "name the corpus (corpus=...) when encoding a DataFrame or a list of texts"
            )
        corpus = corpus_name_for(source)
    docs, report, origin = _read(source, text_col, id_col)
    if report.n_empty or report.n_duplicate_text:
        log.warning(report.summary())
    if not sharded and shards.given:
        raise InputError("--engine, --address, --workers, --gpus-per-worker and --shard-docs "
                         "write shards; pass --out DIR/")  # fmt: skip
    dtype = _encode_dtype(db, o, shards, sharded)
    # everything that can fail on bad arguments happens before the store is touched
    on_ray = sharded and shards.engine == "ray"  # the driver fingerprints and tokenises
    stack = load_encoding_stack(
        o.model, o.sae, o.layer, device="cpu" if on_ray else o.device, dtype=dtype,
        max_tokens=o.max_tokens, batch_tokens=o.batch_tokens, weights=not on_ray,
    )  # fmt: skip
    if chunk_tokens is not None:
        from saeembed.inputs.chunks import chunk_documents

        docs = chunk_documents(docs, stack.reader.tokenizer, chunk_tokens)
    if sharded:
        from saeembed.shards.encode import encode_to_shards, encoder_args

        args = encoder_args(**{**o.kwargs(), "sae": None if o.sae is None else str(o.sae),
                               "dtype": dtype})  # fmt: skip
        added, done = encode_to_shards(db, corpus, docs, report, origin, stack, args,
                                       options=shards, progress=progress)  # fmt: skip
        return EncodeResult(corpus, report, added, done, chunk_tokens, Path(db))
    store = db if isinstance(db, Store) else Store(db)
    try:
        added = store.add_documents(
            corpus, docs, source=origin, text_col=report.text_col, id_col=report.id_col
        )
        done = encode_stored_corpus(
            store, corpus, stack, max_tokens=o.max_tokens, batch_tokens=o.batch_tokens,
            chat=o.chat, keep_dense=keep_dense, progress=progress, on_batch=on_batch,
        )  # fmt: skip
    finally:
        if not isinstance(db, Store):
            store.close()
    return EncodeResult(corpus, report, added, done, chunk_tokens, store.path)


def _shard_target(db: str | Path | Store, keep_dense: bool) -> bool:
    """Whether ``db`` receives shards; refused with ``keep_dense`` (its vectors go to a store
    file)."""
    sharded = not isinstance(db, Store) and is_shard_target(db)
    if sharded and keep_dense:
        raise InputError("--keep-dense writes to a single-file store, not shards; encode into a "
                         "DuckDB file (--db FILE.duckdb)")  # fmt: skip
    return sharded


def _encode_dtype(db, o: EncodingOptions, shards: ShardOptions, sharded: bool) -> str:
    """The precision an encode asks the reader for: what was asked; for ``auto``, the store's
    (`store_dtype`), or for shards one decided by the driver for every worker."""
    if not sharded:
        return store_dtype(db, o.dtype)
    if o.dtype != "auto":
        return o.dtype
    if shards.gpus_per_worker:
        return "bfloat16"  # what the GPU workers choose: the driver's encoder must match
    from saeembed.reader import dtype_name, resolve_device, resolve_dtype

    return dtype_name(resolve_dtype("auto", resolve_device(o.device)))


def store_dtype(db: str | Path | Store, dtype: str) -> str:
    """``dtype``, except that ``auto`` follows the precision the store's encoders already use
    when they all use one (so an append never splits a corpus between an fp32 and a bf16
    encoder on a machine whose ``auto`` would differ); a new store leaves ``auto`` to the
    reader (`saeembed.reader.resolve_dtype`)."""
    if dtype != "auto":
        return dtype
    if isinstance(db, Store):
        found = db.sql("SELECT DISTINCT dtype FROM encoders")["dtype"].to_list()
    elif Path(db).is_file():
        with Store(db, create=False, read_only=True) as store:
            found = store.sql("SELECT DISTINCT dtype FROM encoders")["dtype"].to_list()
    else:
        return dtype
    if len(found) == 1 and found[0]:
        log.info("--dtype auto: %s, as the store's encoders", found[0])
        return found[0]
    return dtype


def import_shards(shards: str | Path, db: str | Path):
    """Load the shard directory ``shards`` into the single-file store ``db``; returns the
    `saeembed.shards.merge.ImportReport`."""
    from saeembed.shards.merge import import_shards as load

    return load(shards, db)


def info(db: str | Path) -> dict[str, pl.DataFrame]:
    """`store_info` of the store at ``db`` (opened read-only)."""
    with Store(db, read_only=True) as store:
        return store_info(store)


def sql(
    db: str | Path,
    query: str,
    params: dict[str, str] | None = None,
    *,
    allow_files: bool = False,
    timeout: float | None = DEFAULT_TIMEOUT,
    max_rows: int | None = None,
    result: bool = False,
) -> pl.DataFrame | QueryResult:
    """Run ``query`` on the store at ``db`` (read-only): the name of a named query, ``@FILE``
    (SQL read from FILE), or SQL text. ``params`` are bound, never pasted into the SQL: to a
    named query's parameters as it declares them, to SQL's ``$name`` as numbers when they read
    as numbers (`saeembed.queries.coerce_value`). The query reads the store only and writes
    nothing (`saeembed.store.user_sql`) unless ``allow_files``; it is stopped after ``timeout``
    seconds (None: never), and at most ``max_rows`` rows are returned (None: all). Returns the
    rows, or with ``result`` the `QueryResult` that also says whether rows were left out."""
    given = dict(params or {})
    text = _query_file(Path(query[1:])) if query.startswith("@") else query
    with open_user_store(db, allow_files=allow_files) as store:
        named = named_queries().get(query)
        if named is not None:
            text, bound = named.sql, bind_params(store, named, given)
        else:
            bound = {k: coerce_value(v) for k, v in given.items()}
        found = run_user_query(
            store, text, bound or None, allow_files=allow_files, timeout=timeout,
            max_rows=max_rows,
        )  # fmt: skip
    return found if result else found.frame


def _query_file(path: Path) -> str:
    """The SQL text of ``@FILE``, or a one-line error saying what is wrong with the file."""
    if not path.exists():
        raise InputError(f"no SQL file {path}; check the path after @")
    if path.is_dir():
        raise InputError(f"{path} is a directory; pass the .sql file after @")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text; pass a file of SQL after @") from None
    except OSError as exc:
        raise InputError(f"cannot read {path} ({exc.strerror}); check its permissions") from None
    if "\x00" in text or not text.strip():
        raise InputError(f"{path} holds no SQL text; pass a file of SQL after @")
    return text


def named_query_table() -> pl.DataFrame:
    """One row per named query: its name, parameters (``?`` marks optional ones) and what it
    answers."""
    rows = [
        {
            "name": q.name,
            "params": ", ".join(p.name + ("?" if p.optional else "") for p in q.params),
            "description": q.description,
        }
        for q in named_queries().values()
    ]
    return pl.DataFrame(rows)


def store_info(store: Store) -> dict[str, pl.DataFrame]:
    """The corpora and the encoders of a store, with counts (what `saeembed info` prints; an
    encoder's ``dense_vectors``: its documents with a dense site vector, `encode --keep-dense`)."""
    corpora = store.sql(
        """
        SELECT c.corpus, count(d.doc_id) AS documents,
            -- every input the corpus was read from, in the order they came
            coalesce((SELECT string_agg(s.source, '; ' ORDER BY s.first_row)
                      FROM corpus_sources s WHERE s.corpus = c.corpus), c.source) AS source,
            c.text_col, c.id_col, c.created_at
        FROM corpora c LEFT JOIN documents d USING (corpus)
        GROUP BY ALL ORDER BY c.corpus
        """
    )
    encoders = store.sql(
        """
        SELECT n.encoder_id, n.name, n.model, n.layer, n.kind, n.site, n.d_sae, n.activation, n.k, n.max_tokens, n.dtype, n.chat,
               count(e.doc_id) AS documents, coalesce(sum(e.n_tokens), 0) AS tokens,
               coalesce(sum(e.n_features), 0) AS activations, coalesce(sum(e.truncated::INT), 0) AS truncated,
               -- documents with a dense site vector (encode --keep-dense)
               coalesce(any_value(v.n), 0) AS dense_vectors
        FROM encoders n LEFT JOIN encoded_documents e USING (encoder_id)
        LEFT JOIN (SELECT encoder_id, count(*) AS n FROM dense_vectors GROUP BY ALL) v USING (encoder_id)
        GROUP BY ALL ORDER BY n.encoder_id
        """
    )
    gone = pl.col("source").map_elements(_mark_gone, return_dtype=pl.String)
    return {"corpora": corpora.with_columns(gone), "encoders": encoders}


def _mark_gone(sources: str | None) -> str | None:
    """``a; b``, each local file that no longer exists marked ``(no longer there)``."""
    if sources is None:
        return None
    marked = []
    for source in sources.split("; "):
        local = "://" not in source and not source.startswith(("data:", "<"))
        marked.append(
            f"{source} (no longer there)" if local and not Path(source).exists() else source
        )
    return "; ".join(marked)
