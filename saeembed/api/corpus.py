"""The corpus API over a store path: open a store, encode files, named datasets, DataFrames or
lists of texts into it, diff corpora, describe the store and run SQL or named queries, getting
polars DataFrames back. The `saeembed encode`, `diff`, `info`, `sql` and `queries` commands are
thin shells over these functions."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from saeembed.analysis.measures import DEFAULT_DIFF_MEASURE, DIFF_SORTS, check_test, get_measure
from saeembed.data import is_dataset_ref, read_dataset_ref, ref_name
from saeembed.errors import InputError, SaeembedError, StoreError
from saeembed.inputs import ReadReport, documents_from_frame, documents_from_texts, read_documents
from saeembed.queries import bind_params, coerce_value, named_queries, run_query
from saeembed.remote import is_url
from saeembed.reports.page import DEFAULT_PANELS
from saeembed.store import Store
from saeembed.store.shard_layout import is_shard_target
from saeembed.store.user_sql import DEFAULT_TIMEOUT, QueryResult, open_user_store, run_user_query

if TYPE_CHECKING:
    from saeembed.encoding import EncodeReport

log = logging.getLogger(__name__)

__all__ = [
    "EncodeResult",
    "corpus_name_for",
    "diff",
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
        if not self.encoding.shipped_labels:
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
    model: str = "default",
    sae: str | Path | None = None,
    layer: int | None = None,
    max_tokens: int | None = None,
    batch_tokens: int | None = None,
    device: str = "auto",
    dtype: str = "auto",
    chat: str = "none",
    chunk_tokens: int | None = None,
    progress: bool = True,
    on_batch: Callable[[int], None] | None = None,
    engine: str | None = None,
    address: str | None = None,
    workers: int | None = None,
    gpus_per_worker: float = 0,
    shard_docs: int | None = None,
) -> EncodeResult:
    """Read ``source`` (a file, a DataFrame, or a list of texts), add its documents to ``corpus``
    in ``db`` and encode every one not yet encoded with this model, SAE and layer.

    A directory ``db`` (an existing shard directory, or a path ending in ``/``) receives Parquet
    shards instead (`saeembed.shards`, docs/scale.md), encoded in this process (``engine``
    "local") or on Ray actors (``engine="ray"``: ``address`` of a running cluster or a local
    one, ``workers`` actors with ``gpus_per_worker`` GPUs each); ``shard_docs`` documents per
    shard.

    With ``chunk_tokens`` N, each document is stored as its consecutive windows of N tokens of the
    reader's tokenizer, each a document of its own with ``parent_id`` and ``chunk_idx`` set (see
    `saeembed.chunks`). Safe to interrupt and to repeat: a second call encodes only what is
    missing."""
    from saeembed.encoding import DEFAULT_MAX_TOKENS, encode_stored_corpus, load_encoding_stack

    if chunk_tokens is not None:
        from saeembed.chunks import check_chunk_tokens

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
    sharded = not isinstance(db, Store) and is_shard_target(db)
    if not sharded and (engine not in (None, "local") or shard_docs is not None):
        raise InputError("--engine ray and --shard-docs write shards; pass --out DIR/")
    if sharded and gpus_per_worker and dtype == "auto":
        dtype = "bfloat16"  # what the GPU workers choose: the driver's encoder must match
    # everything that can fail on bad arguments happens before the store is touched
    on_ray = sharded and engine == "ray"  # the driver fingerprints and tokenises; actors encode
    stack = load_encoding_stack(
        model, sae, layer, device="cpu" if on_ray else device, dtype=dtype,
        max_tokens=max_tokens, batch_tokens=batch_tokens, weights=not on_ray,
    )  # fmt: skip
    if chunk_tokens is not None:
        from saeembed.chunks import chunk_documents

        docs = chunk_documents(docs, stack.reader.tokenizer, chunk_tokens)
    if sharded:
        from saeembed.shards.encode import encode_to_shards, encoder_args

        args = encoder_args(
            model=model, sae=None if sae is None else str(sae), layer=layer, device=device,
            dtype=dtype, max_tokens=max_tokens, batch_tokens=batch_tokens, chat=chat,
        )  # fmt: skip
        added, encoding = encode_to_shards(
            db, corpus, docs, report, origin, stack, args, engine=engine or "local",
            address=address, workers=workers, gpus_per_worker=gpus_per_worker,
            shard_docs=shard_docs, progress=progress,
        )  # fmt: skip
        return EncodeResult(corpus, report, added, encoding, chunk_tokens, Path(db))
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
    return EncodeResult(corpus, report, added, encoding, chunk_tokens, store.path)


def import_shards(shards: str | Path, db: str | Path):
    """Load the shard directory ``shards`` into the single-file store ``db``; returns the
    `saeembed.shards.imports.ImportReport`."""
    from saeembed.shards.imports import import_shards as load

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
    """The corpora and the encoders of a store, with counts (what `saeembed info` prints)."""
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
        SELECT n.encoder_id, n.name, n.model, n.layer, n.d_sae, n.activation, n.k, n.max_tokens, n.dtype, n.chat,
               count(e.doc_id) AS documents, coalesce(sum(e.n_tokens), 0) AS tokens,
               coalesce(sum(e.n_features), 0) AS activations, coalesce(sum(e.truncated::INT), 0) AS truncated
        FROM encoders n LEFT JOIN encoded_documents e USING (encoder_id)
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


def diff_cache_store(refs: Sequence[str | Path] = ()) -> Path:
    """Where `diff` encodes its inputs when no store is given: a cache store under
    $SAEEMBED_HOME for exactly these inputs (their paths, sizes and modification times, or
    names), so two diffs of other inputs never share one and an edited file is encoded afresh."""
    import hashlib

    from saeembed.home import cache_dir

    digest = hashlib.blake2b(digest_size=8)
    for ref in refs:
        path = Path(str(ref))
        if not is_url(str(ref)) and path.exists():
            stat = path.stat()
            key = f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}"
        else:
            key = str(ref)
        digest.update(key.encode() + b"\1")
    return cache_dir("stores") / f"diff-{digest.hexdigest()}.duckdb"


def _encodable(ref: str | Path) -> bool:
    """Whether ``ref`` names something a diff encodes on the way: a file (or URL) or a named
    dataset."""
    return is_dataset_ref(str(ref)) or is_url(str(ref)) or Path(ref).exists()


def _as_corpus(store: Store, ref: str | Path, encode_options: dict) -> tuple[str, object | None]:
    """A corpus already in ``store`` by that name, or the file/dataset ``ref`` encoded into it
    (only what is missing). Returns the corpus name and the encoder used when it encoded."""
    ref = str(ref)
    if ref in store.corpora() and not Path(ref).exists():
        return ref, None
    if not _encodable(ref):
        have = ", ".join(store.corpora()) or "none"
        raise SaeembedError(
            f"{ref!r} is neither a file, a named dataset (data:NAME) nor a corpus in "
            f"{store.path} (corpora: {have})"
        )
    result = encode(ref, store, **encode_options)
    if result.labels_note:
        log.warning(result.labels_note)
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
    html: str | Path | None = None,
    panels: int = DEFAULT_PANELS,
    report: bool = False,
    by: str = "concepts",
    themes: int = 12,
    seed: int = 0,
):
    """Which concepts are more frequent in ``a`` than in ``b`` (several ``b``: one against the
    rest, pooled)? Each side is a corpus in ``db`` or a file / named dataset, encoded first
    (into ``db``, or into a cache store) with ``model`` and ``sae``. Returns the diff table
    (`saeembed.analysis.diff.DIFF_COLUMNS`, or `PAIRED_COLUMNS` with ``paired=True``): the
    ``top`` rows (all when None), with ``examples`` top documents of the richer side per row.
    A dict passed as ``summary`` receives the counts behind the table (concepts tested,
    significant, the sides and the encoder). ``html``: also write the report page there (every
    tested concept, ``panels`` of them up close; `saeembed.reports`); ``report=True``: return the
    `saeembed.reports.DiffReport` (table and page; shows itself in Jupyter) instead of the table.
    ``by="themes"``: the diff of ``themes`` kinds of documents instead of concepts
    (`saeembed.analysis.themes`: found on a random half of each side, ``seed``, tested on the
    other; `THEME_COLUMNS`); the report shows the themes above the concepts either way."""
    from saeembed.analysis.diff import check_diff_options, diff_corpora, paired_diff
    from saeembed.analysis.examples import add_examples
    from saeembed.analysis.sides import read_sides
    from saeembed.labels.alike import top_groups

    if html is not None:
        from saeembed.files import check_output

        check_output(html)  # before any work

    check_diff_options(alpha, threshold, min_support)  # before anything is encoded
    sides_b = [b] if isinstance(b, (str, Path)) else list(b)
    if paired and len(sides_b) != 1:
        raise SaeembedError("paired mode compares exactly two corpora; give one B")
    if by not in ("concepts", "themes"):
        raise InputError(f"unknown --by {by!r}; use concepts or themes")
    if by == "themes" and paired:
        raise InputError("--by themes compares two samples; it does not take --paired")
    if by == "themes":
        from saeembed.analysis.themes import ThemeConfig

        ThemeConfig(k=themes, seed=seed).check()  # before anything is encoded
    options = dict(
        model=model, sae=sae, max_tokens=max_tokens, chat=chat, device=device, progress=progress
    )
    # a store is created only to hold files or datasets encoded on the way; a mistyped --db for
    # corpora already stored is an error, not a new empty store
    creates = db is None or any(_encodable(ref) for ref in [a, *sides_b])
    # with only stored corpora to compare, a diff reads: other readers may share the store
    try:
        opened = Store(
            db if db is not None else diff_cache_store([a, *sides_b]), create=creates,
            read_only=not creates,
        )  # fmt: skip
    except StoreError as exc:
        if db is None and " is in use by " in str(exc):
            holder = str(exc).split(" is in use by ", 1)[1].split(";")[0]
            raise StoreError(
                f"another diff of these same inputs is running ({holder}); retry when it "
                "has finished, or pass --db FILE to encode into a store of your own"
            ) from exc
        raise
    from saeembed.analysis.weak import weak_diff
    from saeembed.stack_cache import shared_stacks

    with opened as store, shared_stacks():  # the reader and SAE read once for every input
        corpus_a, used = _as_corpus(store, a, options)
        corpora_b = []
        for ref in sides_b:
            name, enc = _as_corpus(store, ref, options)
            corpora_b.append(name)
            used = used or enc
        chosen = store.resolve_encoder(encoder) if (encoder is not None or used is None) else used
        # the documents of each side, read once for the table, the themes and the report
        sides = None if paired else read_sides(store, chosen, [corpus_a], corpora_b)
        found = None
        if by == "themes" or ((html is not None or report) and not paired):
            from saeembed.analysis.themes import diff_themes

            # the report leaves the themes out where a side is too small for them
            if by == "themes" or min(len(sides.a), len(sides.b)) >= 4:
                binary = get_measure(measure).binary  # a numeric diff's report: strong themes
                found = diff_themes(store, sides.a, sides.b, encoder=chosen, k=themes, seed=seed,
                                    measure=measure if binary or by == "themes" else "strong")  # fmt: skip
        if by == "themes":
            if summary is not None:
                significant = found.table.filter(pl.col("q") < alpha).height
                summary.update(
                    by="themes", tested=found.table.height, significant=significant, a=corpus_a,
                    b=corpora_b, encoder=chosen.name, method=found.method,
                    weak=weak_diff([corpus_a, " + ".join(corpora_b)], list(found.n_sides),
                                   significant, alpha, what="theme"),
                )  # fmt: skip
            if html is not None or report:
                from saeembed.reports import build_themes_report

                built = build_themes_report(found, corpus_a, corpora_b, chosen, alpha=alpha)
                if html is not None:
                    built.write_html(html)
                if report:
                    return built
            return found.table.head(top) if top else found.table
        if paired:
            table = paired_diff(
                store, corpus_a, corpora_b[0], encoder=chosen, measure=measure, pair_on=pair_on,
                min_support=min_support, threshold=threshold, alpha=alpha, sort=sort,
            )  # fmt: skip
        else:
            table = diff_corpora(
                store, [corpus_a], corpora_b, encoder=chosen, measure=measure, test=test,
                min_support=min_support, threshold=threshold, alpha=alpha, sort=sort, sides=sides,
            )  # fmt: skip
        significant = table.filter(pl.col("q") < alpha).height
        if "n_pairs" in table.columns:  # paired: the pairs on each side
            sizes = [int(table["n_pairs"][0]) if table.height else 0] * 2
        else:
            sizes = [int(table[c][0]) if table.height else 0 for c in ("size_a", "size_b")]
        if summary is not None:
            summary.update(
                tested=table.height,
                significant=significant,
                a=corpus_a,
                b=corpora_b,
                encoder=chosen.name,
                measure=measure,
                test="paired" if paired else check_test(get_measure(measure), test),
                sizes=sizes,
                weak=weak_diff([corpus_a, " + ".join(corpora_b)], sizes, significant, alpha),
            )
        if html is not None or report:
            from saeembed.reports import build_diff_report

            settings = dict(db=db, measure=measure, sort=sort, alpha=alpha, paired=paired,
                            pair_on=pair_on, min_support=min_support,
                            test=None if paired else check_test(get_measure(measure), test))  # fmt: skip
            built = build_diff_report(store, chosen, table, corpora_a=[corpus_a],
                                      corpora_b=corpora_b, settings=settings, panels=panels,
                                      progress=progress, themes=found, sides=sides)  # fmt: skip
            if html is not None:
                built.write_html(html)
            if report:
                return built
        table = top_groups(table, top) if top else table  # alike concepts go with their leader
        if paired:
            return table
        return add_examples(store, chosen, table, [corpus_a], corpora_b, examples)
