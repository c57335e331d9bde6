"""The diff over store paths (`saeembed diff`): which concepts, or which kinds of documents,
differ between corpora. Each side is a corpus already in the store or a file / named dataset
encoded on the way (into the store, or a cache store of its own); the table, the themes and the
HTML report come from `saeembed.analysis` and `saeembed.reports`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from saeembed.analysis.measures import DEFAULT_DIFF_MEASURE, DIFF_SORTS, check_test, get_measure
from saeembed.api.corpus import encode
from saeembed.data import is_dataset_ref
from saeembed.errors import InputError, SaeembedError, StoreError
from saeembed.remote import is_url
from saeembed.reports.page import DEFAULT_PANELS
from saeembed.store import Encoder, Store

log = logging.getLogger(__name__)


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
    where: str | None = None,
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
    other; `THEME_COLUMNS`); the report shows the themes above the concepts either way.
    ``where``: compare only the documents of each side passing this filter
    (`saeembed.analysis.doc_filter`; unpaired diffs), read on the store opened read-only once
    anything to encode is encoded."""
    sides_b = [b] if isinstance(b, (str, Path)) else list(b)
    _check_request(sides_b, paired=paired, by=by, themes=themes, seed=seed, alpha=alpha,
                   threshold=threshold, min_support=min_support, html=html,
                   where=where)  # fmt: skip
    options = dict(
        model=model, sae=sae, max_tokens=max_tokens, chat=chat, device=device, progress=progress
    )
    from saeembed.stack_cache import shared_stacks

    with shared_stacks():  # each reader and SAE loaded once
        if where is not None:  # the filter reads a read-only store: encode first
            db, (a, *sides_b), encoder = _encoded_first(db, [a, *sides_b], options, encoder)
        with _open_store(db, [a, *sides_b]) as store:
            sides = _Sides.encoded(store, a, sides_b, options, encoder, paired, where)
            found = None
            if by == "themes" or ((html is not None or report) and not paired):
                found = _themes(store, sides, k=themes, seed=seed, measure=measure, by=by)
            if by == "themes":
                return _themes_result(found, sides, alpha=alpha, top=top, html=html,
                                      report=report, summary=summary)  # fmt: skip
            return _concepts_result(
                store, sides, found, db=db, measure=measure, test=test, sort=sort,
                paired=paired, pair_on=pair_on, min_support=min_support, threshold=threshold,
                alpha=alpha, top=top, examples=examples, html=html, panels=panels, report=report,
                summary=summary, progress=progress,
            )  # fmt: skip


def _check_request(sides_b, *, paired, by, themes, seed, alpha, threshold, min_support, html,
                   where):  # fmt: skip
    """Everything a diff can refuse, refused before anything is encoded or written."""
    from saeembed.analysis.diff import check_diff_options

    if html is not None:
        from saeembed.files import check_output

        check_output(html)
    check_diff_options(alpha, threshold, min_support)
    if paired and len(sides_b) != 1:
        raise SaeembedError("paired mode compares exactly two corpora; give one B")
    if by not in ("concepts", "themes"):
        raise InputError(f"unknown --by {by!r}; use concepts or themes")
    if by == "themes" and paired:
        raise InputError("--by themes compares two samples; it does not take --paired")
    if where is not None and paired:
        raise InputError("--where keeps a subset of each side, which would break the pairs of "
                         "--paired; filter the corpora before encoding them instead")  # fmt: skip
    if where is not None and not where.strip():
        raise InputError("--where is empty; give a condition, e.g. \"meta.year = '2020'\"")
    if by == "themes":
        from saeembed.analysis.themes import ThemeConfig

        ThemeConfig(k=themes, seed=seed).check()


def _encoded_first(db, refs, options, encoder):
    """For a filtered diff, which reads its store opened read-only: what is not stored yet
    encoded first, in a store session of its own. Returns the store's path, the sides as corpus
    names and the encoder to compare under."""
    if not any(_encodable(ref) for ref in refs):
        return db, refs, encoder
    with _open_store(db, refs) as store:
        names, used = [], None
        for ref in refs:
            name, enc = _as_corpus(store, ref, options)
            names.append(name)
            used = used or enc
        if encoder is None and used is not None:
            encoder = used.encoder_id
        return store.path, names, encoder


def _open_store(db, refs) -> Store:
    """The store a diff runs on. It is created only to hold files or datasets encoded on the
    way: a mistyped --db for corpora already stored is an error, not a new empty store; with
    only stored corpora to compare, the diff reads (other readers may share the store)."""
    creates = db is None or any(_encodable(ref) for ref in refs)
    try:
        return Store(db if db is not None else diff_cache_store(refs), create=creates,
                     read_only=not creates)  # fmt: skip
    except StoreError as exc:
        if db is None and " is in use by " in str(exc):
            holder = str(exc).split(" is in use by ", 1)[1].split(";")[0]
            raise StoreError(
                f"another diff of these same inputs is running ({holder}); retry when it "
                "has finished, or pass --db FILE to encode into a store of your own"
            ) from exc
        raise


@dataclass
class _Sides:
    """The two sides of a diff as corpora of the store, the encoder they are compared under, and
    (unpaired) their documents, read once for the table, the themes and the report."""

    a: str
    b: list[str]
    encoder: Encoder
    documents: object | None  # saeembed.analysis.sides.Sides

    @classmethod
    def encoded(cls, store, a, sides_b, options, encoder, paired, where=None) -> _Sides:
        from saeembed.analysis.sides import read_sides

        corpus_a, used = _as_corpus(store, a, options)
        corpora_b = []
        for ref in sides_b:
            name, enc = _as_corpus(store, ref, options)
            corpora_b.append(name)
            used = used or enc
        chosen = store.resolve_encoder(encoder) if (encoder is not None or used is None) else used
        documents = None if paired else read_sides(store, chosen, [corpus_a], corpora_b, where)
        return cls(corpus_a, corpora_b, chosen, documents)

    @property
    def where(self) -> str | None:
        return None if self.documents is None else self.documents.where

    @property
    def names(self) -> list[str]:
        return [self.a, " + ".join(self.b)]


def _themes(store, sides: _Sides, *, k, seed, measure, by):
    """The themes of the diff (`saeembed.analysis.themes`), or None where a report's side is
    too small for them. A numeric diff's report shows strong themes."""
    from saeembed.analysis.themes import diff_themes

    docs = sides.documents
    if by != "themes" and min(len(docs.a), len(docs.b)) < 4:
        return None
    binary = get_measure(measure).binary
    return diff_themes(store, docs.a, docs.b, encoder=sides.encoder, k=k, seed=seed,
                       measure=measure if binary or by == "themes" else "strong")  # fmt: skip


def _themes_result(found, sides: _Sides, *, alpha, top, html, report, summary):
    from saeembed.analysis.weak import weak_diff

    if summary is not None:
        significant = found.table.filter(pl.col("q") < alpha).height
        summary.update(
            by="themes", tested=found.table.height, significant=significant, a=sides.a,
            b=sides.b, encoder=sides.encoder.name, method=found.method, where=sides.where,
            weak=weak_diff(sides.names, list(found.n_sides), significant, alpha, what="theme"),
        )  # fmt: skip
    if html is not None or report:
        from saeembed.reports import build_themes_report

        built = build_themes_report(found, sides.a, sides.b, sides.encoder, alpha=alpha,
                                    where=sides.where)  # fmt: skip
        if html is not None:
            built.write_html(html)
        if report:
            return built
    return found.table.head(top) if top else found.table


def _concepts_result(store, sides: _Sides, found, *, db, measure, test, sort, paired, pair_on,
                     min_support, threshold, alpha, top, examples, html, panels, report, summary,
                     progress):  # fmt: skip
    from saeembed.analysis.diff import diff_corpora, paired_diff
    from saeembed.analysis.examples import add_examples
    from saeembed.analysis.weak import weak_diff
    from saeembed.labels.alike import top_groups

    chosen = sides.encoder
    if paired:
        table = paired_diff(
            store, sides.a, sides.b[0], encoder=chosen, measure=measure, pair_on=pair_on,
            min_support=min_support, threshold=threshold, alpha=alpha, sort=sort,
        )  # fmt: skip
    else:
        table = diff_corpora(
            store, [sides.a], sides.b, encoder=chosen, measure=measure, test=test,
            min_support=min_support, threshold=threshold, alpha=alpha, sort=sort,
            sides=sides.documents,
        )  # fmt: skip
    test_name = "paired" if paired else check_test(get_measure(measure), test)
    if summary is not None:
        significant = table.filter(pl.col("q") < alpha).height
        sizes = _side_sizes(table)
        summary.update(
            tested=table.height, significant=significant, a=sides.a, b=sides.b,
            encoder=chosen.name, measure=measure, test=test_name, sizes=sizes, where=sides.where,
            weak=weak_diff(sides.names, sizes, significant, alpha),
        )  # fmt: skip
    if html is not None or report:
        from saeembed.reports import build_diff_report

        settings = dict(db=db, measure=measure, sort=sort, alpha=alpha, paired=paired,
                        pair_on=pair_on, min_support=min_support, where=sides.where,
                        test=None if paired else test_name)  # fmt: skip
        built = build_diff_report(store, chosen, table, corpora_a=[sides.a], corpora_b=sides.b,
                                  settings=settings, panels=panels, progress=progress,
                                  themes=found, sides=sides.documents)  # fmt: skip
        if html is not None:
            built.write_html(html)
        if report:
            return built
    table = top_groups(table, top) if top else table  # alike concepts go with their leader
    if paired:
        return table
    return add_examples(store, chosen, table, [sides.a], sides.b, examples, sides.documents)


def _side_sizes(table: pl.DataFrame) -> list[int]:
    """The documents of each side (paired: the pairs)."""
    if not table.height:
        return [0, 0]
    if "n_pairs" in table.columns:
        return [int(table["n_pairs"][0])] * 2
    return [int(table["size_a"][0]), int(table["size_b"][0])]
