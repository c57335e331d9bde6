"""The Python API: open a store, encode files, DataFrames or lists of texts into it, and run
named queries, getting polars DataFrames back. The CLI is a thin shell over these functions."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from saeembed.analysis.measures import DEFAULT_DIFF_MEASURE, DIFF_SORTS, check_test, get_measure
from saeembed.errors import SaeembedError, SAEError
from saeembed.inputs import ReadReport, documents_from_frame, documents_from_texts, read_documents
from saeembed.queries import run_query
from saeembed.store import Store

log = logging.getLogger(__name__)
DATA_PREFIX = "data:"  # named datasets: data:NAME or data:NAME?column=value,value

__all__ = ["EncodeResult", "encode", "open_store", "run_query", "corpus_name_for"]


def open_store(path: str | Path, *, read_only: bool = False) -> Store:
    """Open (creating and migrating if needed) a saeembed DuckDB store."""
    return Store(path, read_only=read_only)


@dataclass
class EncodeResult:
    corpus: str
    read: ReadReport
    n_new_documents: int  # new rows of `documents`: chunks, when chunk_tokens was given
    encoding: object  # saeembed.encode.EncodeReport
    chunk_tokens: int | None = None

    def summary(self) -> str:
        if self.chunk_tokens is None:
            added = f"{self.n_new_documents:,} new documents"
        else:
            added = (
                f"{self.n_new_documents:,} new chunks of up to {self.chunk_tokens:,} tokens "
                f"(from {self.read.n_documents:,} documents)"
            )
        return f"corpus {self.corpus!r}: {added}; " + self.encoding.describe()


def corpus_name_for(path: str | Path) -> str:
    """Default corpus name for a file (its name without format and compression suffixes) or a
    dataset reference (``data:rotten-tomatoes?category=fresh`` -> ``rotten-tomatoes-fresh``)."""
    if str(path).startswith(DATA_PREFIX):
        from saeembed.data import parse_dataset_ref

        name, filters = parse_dataset_ref(str(path))
        return "-".join([name, *(v for values in filters.values() for v in values)])
    name = Path(path).name
    return re.sub(r"(\.(gz|zst|zstd|bz2))?$", "", name).rsplit(".", 1)[0] or name


def _read(source, text_col, id_col) -> tuple[pl.DataFrame, ReadReport, str]:
    if isinstance(source, pl.DataFrame):
        docs, report = documents_from_frame(source, text_col=text_col, id_col=id_col)
        return docs, report, "<dataframe>"
    if isinstance(source, str) and source.startswith(DATA_PREFIX):
        from saeembed.data import load_dataset, parse_dataset_ref

        name, filters = parse_dataset_ref(source)
        frame = load_dataset(name, filter=filters or None)
        docs, report = documents_from_frame(
            frame, text_col=text_col or "text", id_col=id_col, source=source
        )
        return docs, report, source
    if isinstance(source, (str, Path)):
        docs, report = read_documents(source, text_col=text_col, id_col=id_col)
        return docs, report, str(Path(source).resolve())
    docs, report = documents_from_texts(list(source))
    return docs, report, "<texts>"


def resolve_sae(sae: str | Path | None, model_id: str):
    """Load ``sae`` (path or Hub id) or the SAE shipped for ``model_id``."""
    from saeembed.pretrained import default_sae_for
    from saeembed.sae import load_sae

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


def encode(
    source: str | Path | pl.DataFrame | Sequence[str],
    db: str | Path | Store,
    *,
    corpus: str | None = None,
    text_col: str | None = None,
    id_col: str | None = None,
    model: str = "default",
    sae: str | Path | None = None,
    layer: int | None = None,
    max_tokens: int | None = None,
    batch_tokens: int | None = None,
    device: str = "auto",
    dtype: str | None = None,
    chat: str = "none",
    chunk_tokens: int | None = None,
    progress: bool = True,
    on_batch: Callable[[int], None] | None = None,
) -> EncodeResult:
    """Read ``source`` (a file, a DataFrame, or a list of texts), add its documents to ``corpus``
    in ``db`` and encode every one not yet encoded with this model, SAE and layer.

    With ``chunk_tokens`` N, each document is stored as its consecutive windows of N tokens of the
    reader's tokenizer, each a document of its own with ``parent_id`` and ``chunk_idx`` set (see
    `saeembed.chunks`). Safe to interrupt and to repeat: a second call encodes only what is
    missing."""
    if chunk_tokens is not None:
        from saeembed.chunks import check_chunk_tokens
        from saeembed.encode import DEFAULT_MAX_TOKENS

        chunk_tokens = check_chunk_tokens(chunk_tokens, max_tokens or DEFAULT_MAX_TOKENS)
    if corpus is None:
        if not isinstance(source, (str, Path)):
            raise SaeembedError(
                "name the corpus (corpus=...) when encoding a DataFrame or a list of texts"
            )
        corpus = corpus_name_for(source)
    docs, report, origin = _read(source, text_col, id_col)
    if report.n_empty or report.n_duplicate_text:
        log.warning(report.summary())
    # everything that can fail on bad arguments happens before the store is touched
    stack = load_encoding_stack(model, sae, layer, device=device, dtype=dtype)
    if chunk_tokens is not None:
        from saeembed.chunks import chunk_documents

        docs = chunk_documents(docs, stack.reader.tokenizer, chunk_tokens)
    store = db if isinstance(db, Store) else Store(db)
    try:
        added = store.add_documents(
            corpus, docs, source=origin, text_col=report.text_col, id_col=report.id_col
        )
        encoding = encode_stored_corpus(
            store, corpus, stack, max_tokens=max_tokens, batch_tokens=batch_tokens, chat=chat,
            progress=progress, on_batch=on_batch,
        )  # fmt: skip
    finally:
        if not isinstance(db, Store):
            store.close()
    return EncodeResult(corpus, report, added, encoding, chunk_tokens)


@dataclass
class EncodingStack:
    """A reader cut after the SAE's layer, and the SAE on the reader's device."""

    reader: object  # saeembed.reader.Reader
    sae: object  # saeembed.sae.SAE
    layer: int


def load_encoding_stack(
    model: str = "default",
    sae: str | Path | None = None,
    layer: int | None = None,
    *,
    device: str = "auto",
    dtype: str | None = None,
) -> EncodingStack:
    """Load and check the reader and SAE an encode needs (fails before any store is touched)."""
    from saeembed.reader import load_reader
    from saeembed.sae import check_sae_fits

    reader = load_reader(model, device=device, dtype=dtype)
    sae_model = resolve_sae(sae, reader.model_id)
    chosen_layer = resolve_layer(layer, sae_model.cfg.layer)
    check_sae_fits(sae_model, reader.d_model, reader.n_layers, chosen_layer)
    reader.drop_layers_after(chosen_layer)
    return EncodingStack(reader, sae_model.to(reader.device), chosen_layer)


def encode_stored_corpus(
    store: Store,
    corpus: str,
    stack: EncodingStack,
    *,
    max_tokens: int | None = None,
    batch_tokens: int | None = None,
    chat: str = "none",
    progress: bool = True,
    on_batch: Callable[[int], None] | None = None,
):
    """Encode what is missing of a corpus already in ``store``; give a new encoder the labels
    shipped for its SAE. Returns the `saeembed.encode.EncodeReport`."""
    from saeembed.encode import DEFAULT_MAX_TOKENS, encode_corpus
    from saeembed.labels import ensure_shipped_labels

    encoding = encode_corpus(
        store, corpus, stack.reader, stack.sae, layer=stack.layer,
        max_tokens=max_tokens or DEFAULT_MAX_TOKENS, batch_tokens=batch_tokens, chat=chat,
        progress=progress, on_batch=on_batch,
    )  # fmt: skip
    ensure_shipped_labels(store, encoding.encoder)
    return encoding


def store_info(store: Store) -> dict[str, pl.DataFrame]:
    """The corpora and the encoders of a store, with counts (what `saeembed info` prints)."""
    corpora = store.sql(
        """
        SELECT c.corpus, count(d.doc_id) AS documents, c.source, c.text_col, c.id_col, c.created_at
        FROM corpora c LEFT JOIN documents d USING (corpus)
        GROUP BY ALL ORDER BY c.corpus
        """
    )
    encoders = store.sql(
        """
        SELECT n.encoder_id, n.name, n.model, n.layer, n.d_sae, n.activation, n.k, n.max_tokens, n.dtype, n.chat,
               count(e.doc_id) AS documents, coalesce(sum(e.n_tokens), 0) AS tokens,
               coalesce(sum(e.n_features), 0) AS activations, coalesce(sum(e.truncated::INT), 0) AS truncated
        FROM encoders n LEFT JOIN encoded_documents e USING (encoder_id)
        GROUP BY ALL ORDER BY n.encoder_id
        """
    )
    return {"corpora": corpora, "encoders": encoders}


def describe_sae(spec: str | Path) -> dict:
    """A one-row summary of an SAE: shape, activation, model, layer, hash, and shipped figures."""
    from saeembed.sae import load_sae

    sae = load_sae(spec)
    cfg = sae.cfg
    row = {
        "d_in": cfg.d_in,
        "d_sae": cfg.d_sae,
        "activation": cfg.activation,
        "k": cfg.k,
        "model": cfg.model,
        "layer": cfg.layer,
        "source": cfg.source,
        "sha256": sae.content_hash()[:16],
    }
    for key in ("fvu", "dead_fraction", "loss_recovered"):
        if key in cfg.extra:
            row[key] = cfg.extra[key]
    return row


def diff_cache_store() -> Path:
    """Where `diff` encodes inputs when no store is given: one cache store under $SAEEMBED_HOME."""
    from saeembed.home import cache_dir

    return cache_dir("stores") / "diff.duckdb"


def _as_corpus(store: Store, ref: str | Path, encode_options: dict) -> tuple[str, object | None]:
    """A corpus already in ``store`` by that name, or the file/dataset ``ref`` encoded into it
    (only what is missing). Returns the corpus name and the encoder used when it encoded."""
    ref = str(ref)
    if ref in store.corpora() and not Path(ref).exists():
        return ref, None
    if not (ref.startswith(DATA_PREFIX) or Path(ref).exists()):
        have = ", ".join(store.corpora()) or "none"
        raise SaeembedError(
            f"{ref!r} is neither a file, a named dataset (data:NAME) nor a corpus in "
            f"{store.path} (corpora: {have})"
        )
    result = encode(ref, store, **encode_options)
    return result.corpus, result.encoding.encoder


def diff(
    a: str | Path,
    b: str | Path | Sequence[str | Path],
    *,
    db: str | Path | None = None,
    encoder: str | int | None = None,
    measure: str = DEFAULT_DIFF_MEASURE,
    test: str | None = None,
    sort: str = DIFF_SORTS[0],
    paired: bool = False,
    pair_on: str = "row",
    min_support: int = 10,
    threshold: float = 0.0,
    alpha: float = 0.05,
    top: int | None = None,
    examples: int = 0,
    model: str = "default",
    sae: str | Path | None = None,
    max_tokens: int | None = None,
    chat: str = "none",
    device: str = "auto",
    progress: bool = True,
    summary: dict | None = None,
) -> pl.DataFrame:
    """Which concepts are more frequent in ``a`` than in ``b`` (several ``b``: one against the
    rest, pooled)? Each side is a corpus in ``db`` or a file / named dataset, encoded first
    (into ``db``, or into a cache store) with ``model`` and ``sae``. Returns the diff table
    (`saeembed.analysis.diff.DIFF_COLUMNS`, or `PAIRED_COLUMNS` with ``paired=True``): the
    ``top`` rows (all when None), with ``examples`` top documents of the richer side per row.
    A dict passed as ``summary`` receives the counts behind the table (concepts tested,
    significant, the sides and the encoder)."""
    from saeembed.analysis.diff import add_examples, diff_corpora, paired_diff

    sides_b = [b] if isinstance(b, (str, Path)) else list(b)
    if paired and len(sides_b) != 1:
        raise SaeembedError("paired mode compares exactly two corpora; give one B")
    options = dict(
        model=model, sae=sae, max_tokens=max_tokens, chat=chat, device=device, progress=progress
    )
    with Store(db if db is not None else diff_cache_store()) as store:
        corpus_a, used = _as_corpus(store, a, options)
        corpora_b = []
        for ref in sides_b:
            name, enc = _as_corpus(store, ref, options)
            corpora_b.append(name)
            used = used or enc
        chosen = store.resolve_encoder(encoder) if (encoder is not None or used is None) else used
        if paired:
            table = paired_diff(
                store, corpus_a, corpora_b[0], encoder=chosen, measure=measure, pair_on=pair_on,
                min_support=min_support, threshold=threshold, alpha=alpha, sort=sort,
            )  # fmt: skip
        else:
            table = diff_corpora(
                store, [corpus_a], corpora_b, encoder=chosen, measure=measure, test=test,
                min_support=min_support, threshold=threshold, alpha=alpha, sort=sort,
            )  # fmt: skip
        if summary is not None:
            summary.update(
                tested=table.height,
                significant=table.filter(pl.col("q") < alpha).height,
                a=corpus_a,
                b=corpora_b,
                encoder=chosen.name,
                measure=measure,
                test="paired" if paired else check_test(get_measure(measure), test),
            )
        table = table.head(top) if top else table
        if paired:
            return table
        return add_examples(store, chosen, table, [corpus_a], corpora_b, examples)
