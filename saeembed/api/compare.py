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

from saeembed.analysis.diff_settings import DiffSettings
from saeembed.analysis.measures import check_test, get_measure
from saeembed.api.corpus import encode
from saeembed.data import is_dataset_ref
from saeembed.encoding.options import EncodingOptions
from saeembed.errors import SaeembedError, StoreError
from saeembed.remote import is_url
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
    (only what is missing). Returns the corpus name and the `EncodeResult` when it encoded."""
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
    return result.corpus, result


@dataclass
class DiffResult:
    """What `diff` found. ``table``: per concept (`saeembed.analysis.diff.DIFF_COLUMNS`, or
    `PAIRED_COLUMNS`) or per theme (`saeembed.analysis.themes.THEME_COLUMNS`), ranked, cut to
    ``settings.top``; the sides ``a`` and ``b`` (corpora of the store), the ``encoder``'s name,
    the ``settings``; ``tested`` and ``significant`` (q < alpha) rows, the documents of each
    side (``sizes``: paired, the pairs; themes, the tested half); ``weak``: a sentence when the
    evidence is weak; ``test``: the test of the concepts (proportion, welch, mannwhitney or
    paired); ``method``: how themes were found and tested; ``report``: the
    `saeembed.reports.DiffReport`, when one was asked for. Shows itself in Jupyter (the report
    when there is one)."""

    table: pl.DataFrame
    a: str
    b: list[str]
    encoder: str
    settings: DiffSettings
    tested: int
    significant: int
    sizes: list[int]
    weak: str | None
    test: str | None = None
    method: str | None = None
    report: object | None = None  # saeembed.reports.DiffReport

    def _repr_html_(self) -> str:
        if self.report is not None:
            return self.report._repr_html_()
        return self.table._repr_html_()


def diff(
    a: str | Path,
    b: str | Path | Sequence[str | Path],
    *,
    db: str | Path | None = None,
    encoder: str | int | None = None,
    settings: DiffSettings | None = None,
    encoding: EncodingOptions | None = None,
    html: str | Path | None = None,
    report: bool = False,
    progress: bool = True,
) -> DiffResult:
    """What differs between ``a`` and ``b`` (several ``b``: one against the rest, pooled)? Each
    side is a corpus in ``db`` or a file / named dataset, encoded first (into ``db``, or into a
    cache store) with ``encoding`` (`EncodingOptions`). ``settings`` (`DiffSettings`, checked
    before anything is encoded): concepts one by one (``by="concepts"``, under ``measure``,
    ``paired`` or not) or kinds of documents (``by="themes"``: found on a random half of each
    side, tested on the other; `saeembed.analysis.themes`), only the documents passing
    ``where`` when given (`saeembed.analysis.doc_filter`: read on the store opened read-only
    once anything to encode is encoded). ``html``: also write the report page there (every
    tested concept, ``settings.panels`` up close, the themes above them); ``report=True``: also
    build it, in the result. Returns a `DiffResult`."""
    settings = (settings or DiffSettings()).check()
    sides_b = [b] if isinstance(b, (str, Path)) else list(b)
    if settings.paired and len(sides_b) != 1:
        raise SaeembedError("paired mode compares exactly two corpora; give one B")
    if html is not None:
        from saeembed.files import check_output

        check_output(html)
    options = {"encoding": (encoding or EncodingOptions()).check(), "progress": progress}
    from saeembed.encoding.stack_cache import shared_stacks

    with shared_stacks():  # each reader and SAE loaded once
        if settings.where is not None:  # the filter reads a read-only store: encode first
            db, (a, *sides_b), encoder = _encoded_first(db, [a, *sides_b], options, encoder)
        with _open_store(db, [a, *sides_b]) as store:
            sides = _Sides.encoded(store, a, sides_b, options, encoder, settings)
            wanted = html is not None or report
            found = None
            if settings.by == "themes" or (wanted and not settings.paired):
                found = _themes(store, sides, settings)
            if settings.by == "themes":
                return _themes_result(found, sides, settings, html=html, report=report)
            return _concepts_result(store, sides, found, settings, db=db, html=html,
                                    report=report, progress=progress)  # fmt: skip


def _encoded_first(db, refs, options, encoder):
    """For a filtered diff, which reads its store opened read-only: what is not stored yet
    encoded first, in a store session of its own. Returns the store's path, the sides as corpus
    names and the encoder to compare under."""
    if not any(_encodable(ref) for ref in refs):
        return db, refs, encoder
    with _open_store(db, refs) as store:
        names, used = _as_corpora(store, refs, options)
        if encoder is None and used is not None:
            encoder = used.encoder_id
        return store.path, names, encoder


def _as_corpora(store: Store, refs, options) -> tuple[list[str], object | None]:
    """Each of ``refs`` as a corpus of ``store`` (`_as_corpus`), and the encoder the first one
    encoded on the way used (None when nothing was encoded)."""
    from saeembed.encoding.core import naming_deferred
    from saeembed.labels.naming import name_concepts

    names, results = [], []
    with naming_deferred() as pending:  # the concepts are named once, after every side
        for ref in refs:
            name, result = _as_corpus(store, ref, options)
            names.append(name)
            results += [result] if result is not None else []
    for encoder in pending:
        naming = name_concepts(store, encoder)
        for result in results:  # the note goes with the first side that encoded
            if result.encoding.encoder.encoder_id == encoder.encoder_id:
                result.encoding.naming, result.encoding.naming_deferred = naming, False
                if result.labels_note:
                    log.warning(result.labels_note)
                break
    return names, results[0].encoding.encoder if results else None


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
    def encoded(cls, store, a, sides_b, options, encoder, settings: DiffSettings) -> _Sides:
        from saeembed.analysis.sides import read_sides

        (corpus_a, *corpora_b), used = _as_corpora(store, [a, *sides_b], options)
        chosen = store.resolve_encoder(encoder) if (encoder is not None or used is None) else used
        documents = (
            None if settings.paired
            else read_sides(store, chosen, [corpus_a], corpora_b, settings.where)
        )  # fmt: skip
        return cls(corpus_a, corpora_b, chosen, documents)

    @property
    def names(self) -> list[str]:
        return [self.a, " + ".join(self.b)]


def _themes(store, sides: _Sides, settings: DiffSettings):
    """The themes of the diff (`saeembed.analysis.themes`), or None where a report's side is
    too small for them. A numeric diff's report shows strong themes."""
    from saeembed.analysis.themes import diff_themes

    docs = sides.documents
    by_themes = settings.by == "themes"
    if not by_themes and min(len(docs.a), len(docs.b)) < 4:
        return None
    measure = settings.measure
    if not (get_measure(measure).binary or by_themes):
        measure = "strong"
    return diff_themes(store, docs.a, docs.b, encoder=sides.encoder, k=settings.themes,
                       seed=settings.seed, measure=measure)  # fmt: skip


def _themes_result(found, sides: _Sides, settings: DiffSettings, *, html, report) -> DiffResult:
    from saeembed.analysis.weak import weak_diff

    alpha = settings.alpha
    significant = found.table.filter(pl.col("q") < alpha).height
    sizes = [int(n) for n in found.n_sides]
    result = DiffResult(
        found.table.head(settings.top) if settings.top else found.table, sides.a, sides.b,
        sides.encoder.name, settings, tested=found.table.height, significant=significant,
        sizes=sizes, weak=weak_diff(sides.names, sizes, significant, alpha, what="theme"),
        method=found.method,
    )  # fmt: skip
    if html is not None or report:
        from saeembed.reports import build_themes_report

        result.report = build_themes_report(found, sides.a, sides.b, sides.encoder, alpha=alpha,
                                            where=settings.where)  # fmt: skip
        if html is not None:
            result.report.write_html(html)
    return result


def _concepts_result(store, sides: _Sides, found, settings: DiffSettings, *, db, html, report,
                     progress) -> DiffResult:  # fmt: skip
    from saeembed.analysis.diff import diff_corpora, paired_diff
    from saeembed.analysis.examples import add_examples
    from saeembed.analysis.weak import weak_diff
    from saeembed.labels.alike import top_groups

    s, chosen = settings, sides.encoder
    common = dict(encoder=chosen, measure=s.measure, min_support=s.min_support,
                  threshold=s.threshold, alpha=s.alpha, sort=s.sort)  # fmt: skip
    if s.paired:
        table = paired_diff(store, sides.a, sides.b[0], pair_on=s.pair_on, **common)
    else:
        table = diff_corpora(store, [sides.a], sides.b, test=s.test, sides=sides.documents,
                             **common)  # fmt: skip
    test_name = "paired" if s.paired else check_test(get_measure(s.measure), s.test)
    significant = table.filter(pl.col("q") < s.alpha).height
    sizes = _side_sizes(table)
    built = None
    if html is not None or report:
        from saeembed.reports import build_diff_report

        page = dict(db=db, measure=s.measure, sort=s.sort, alpha=s.alpha, paired=s.paired,
                    pair_on=s.pair_on, min_support=s.min_support, where=s.where,
                    test=None if s.paired else test_name)  # fmt: skip
        built = build_diff_report(store, chosen, table, corpora_a=[sides.a], corpora_b=sides.b,
                                  settings=page, panels=s.panels, progress=progress,
                                  themes=found, sides=sides.documents)  # fmt: skip
        if html is not None:
            built.write_html(html)
    shown = top_groups(table, s.top) if s.top else table  # alike concepts go with their leader
    if not s.paired:
        shown = add_examples(store, chosen, shown, [sides.a], sides.b, s.examples,
                             sides.documents)  # fmt: skip
    return DiffResult(shown, sides.a, sides.b, chosen.name, settings, tested=table.height,
                      significant=significant, sizes=sizes,
                      weak=weak_diff(sides.names, sizes, significant, s.alpha),
                      test=test_name, report=built)  # fmt: skip


def _side_sizes(table: pl.DataFrame) -> list[int]:
    """The documents of each side (paired: the pairs)."""
    if not table.height:
        return [0, 0]
    if "n_pairs" in table.columns:
        return [int(table["n_pairs"][0])] * 2
    return [int(table["size_a"][0]), int(table["size_b"][0])]
