"""The feature-label API over a store path: label an encoder's features, look at one, find
features by what their labels say, and import or export labels. The `saeembed features`
commands are thin shells over these functions; the options each passes on, and their
defaults, are those of the store-level function it names."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from saeembed.files import check_output
from saeembed.store import Store

__all__ = [
    "export_labels",
    "feature_page",
    "feature_pages",
    "import_labels",
    "label_features",
    "name_concepts",
    "search_features",
    "show_feature",
]


def label_features(
    db: str | Path,
    *,
    method: str | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    **options,
) -> pl.DataFrame:
    """Label the features of an encoder in ``db`` (`saeembed.labels.label_features`, whose
    keyword ``options`` these are: encoder, corpus, features, max_docs, api_base, ...).
    ``method`` None is ``llm`` when ``api_base`` is given, else ``offline``; the API key is read
    from the environment variable ``api_key_env``. Returns the labels written."""
    from saeembed.labels import label_features as label

    method = method or ("llm" if options.get("api_base") else "offline")
    with Store(db, create=False) as store:
        return label(store, method=method, api_key=os.environ.get(api_key_env), **options)


def name_concepts(db: str | Path, *, encoder: str | int | None = None, **options):
    """Name the concepts of an encoder in ``db`` from the store's own documents where the names
    shipped with its SAE do not fit them (`saeembed.labels.naming.name_concepts`; ``options``
    are `LocalConfig` fields). Returns the `NamingReport`, or None for a store too small."""
    from saeembed.labels.local import LocalConfig
    from saeembed.labels.naming import name_concepts as name

    with Store(db, create=False) as store:
        return name(store, store.resolve_encoder(encoder), LocalConfig(**options))


def show_feature(db: str | Path, feature: int, *, encoder: str | int | None = None, **options):
    """One feature's label, score, density, activation histogram and top documents
    (`saeembed.labels.show.feature_report`, whose keyword ``options`` these are)."""
    from saeembed.labels.show import feature_report

    with Store(db, read_only=True) as store:
        return feature_report(store, store.resolve_encoder(encoder), feature, **options)


def feature_page(
    db: str | Path, feature: int, path: str | Path, *, encoder: str | int | None = None, **options
) -> Path:
    """Write one feature's page to ``path``: label, density, histogram, top and quantile
    documents with token shading, the tokens it promotes and suppresses, the features it
    co-occurs with (`saeembed.reports.write_feature_page`, whose keyword ``options`` these are:
    corpus, examples, progress). Returns the path."""
    from saeembed.reports import write_feature_page

    check_output(path)  # before any work
    with Store(db, read_only=True) as store:
        chosen = store.resolve_encoder(encoder)
        return write_feature_page(store, chosen, feature, path, db=str(db), **options)


def feature_pages(
    db: str | Path, out: str | Path, *, encoder: str | int | None = None, **options
) -> Path:
    """Write a browsable set of feature pages into directory ``out`` (made if missing):
    ``index.html`` and one page per feature (`saeembed.reports.write_feature_pages`, whose
    keyword ``options`` these are: features, top, order, corpus, progress). Returns the index."""
    from saeembed.reports import write_feature_pages

    with Store(db, read_only=True) as store:
        chosen = store.resolve_encoder(encoder)
        return write_feature_pages(store, chosen, out, db=str(db), **options)


def search_features(
    db: str | Path, phrase: str, *, encoder: str | int | None = None, **options
) -> pl.DataFrame:
    """Features whose labels (or evidence) match ``phrase``
    (`saeembed.labels.search.search_features`, whose keyword ``options`` these are)."""
    from saeembed.labels.search import search_features as search

    with Store(db, read_only=True) as store:
        return search(store, store.resolve_encoder(encoder), phrase, **options)


def import_labels(
    db: str | Path, path: str | Path, *, encoder: str | int | None = None, **options
) -> pl.DataFrame:
    """Published labels from ``path`` as the labels of an encoder in ``db``
    (`saeembed.labels.import_labels`, whose keyword ``options`` these are)."""
    from saeembed.labels import import_labels as import_file

    with Store(db, create=False) as store:
        return import_file(store, path, encoder, **options)


def export_labels(
    db: str | Path,
    output: str | Path,
    *,
    encoder: str | int | None = None,
    for_sae: str | Path | None = None,
) -> pl.DataFrame:
    """Write an encoder's labels to a Parquet file at ``output`` that records the SAE's hash
    (so saeembed can apply it to any store encoded with that SAE); returns the labels.
    ``for_sae`` records instead the hash of a copy of that SAE at another precision (checked
    tensor by tensor), for publishing labels beside an fp16 copy."""
    from saeembed.labels import export_labels as export_file
    from saeembed.labels import read_labels
    from saeembed.labels.table import hash_of_rounded_copy

    check_output(output)
    with Store(db, read_only=True) as store:
        chosen = store.resolve_encoder(encoder)
        frame = read_labels(store, chosen)
    sae_sha256 = chosen.sae_sha256 if for_sae is None else hash_of_rounded_copy(chosen, for_sae)
    export_file(frame, output, sae_sha256=sae_sha256)
    return frame
