"""The exploration API over a store path: choose concepts, cluster a corpus on them (stored in
`clusterings`/`clusters`/`cluster_members`, optionally mapped in 2-D), search documents by a
property, and correlate concepts with each other or with a metadata column. The `saeembed
cluster`, `search` and `correlate` commands are thin shells over `cluster`, `search` and
`correlate`."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from saeembed.analysis.cluster_settings import ClusterSettings
from saeembed.analysis.concept_query import ConceptQuery
from saeembed.analysis.concepts import ConceptChoice, NoSeparatingConcept
from saeembed.analysis.measures import DEFAULT_DIFF_MEASURE
from saeembed.errors import InputError
from saeembed.files import check_output
from saeembed.store import Encoder, Store
from saeembed.store.doc_refs import resolve_doc, with_refs

log = logging.getLogger(__name__)


@dataclass
class Clustering:
    """A stored clustering: its id and name, the concepts it used, one row per cluster
    (``summary``), the distinctive concepts per cluster (``concepts``), and per document
    (``members``: doc_id, cluster, assigned, and x/y when mapped)."""

    clustering_id: int
    name: str
    choice: ConceptChoice | None
    summary: pl.DataFrame
    concepts: pl.DataFrame
    members: pl.DataFrame
    params: dict = field(default_factory=dict)
    examples: pl.DataFrame | None = None


def cluster(
    db: str | Path,
    corpus: str | None = None,
    *,
    encoder: str | int | None = None,
    concepts: ConceptQuery | str | None = None,
    settings: ClusterSettings | None = None,
    name: str | None = None,
    map_path: str | Path | None = None,
    color_by: Sequence[int] = (),
    map_pages: bool = False,
) -> Clustering:
    """Cluster the documents of ``corpus`` on the ``concepts`` chosen (a `ConceptQuery`, or a
    phrase; all concepts when none), as ``settings`` say (`ClusterSettings`), describe each
    cluster by its most distinctive concepts (a diff against the rest, over every concept) and a
    few example documents, and store the result under ``name``. With ``map_path``, also a 2-D
    UMAP map: ``map_path`` with .html gives the interactive page and a .parquet of the
    coordinates beside it (``color_by``: feature ids it can colour by); .parquet gives the
    coordinates only. ``map_pages``: also write the feature pages of each cluster's concepts
    into ``MAP-features/`` beside an .html map, which lists them when a cluster is clicked
    (`saeembed.reports`)."""
    from saeembed.analysis import cluster as clustering
    from saeembed.analysis.matrix import load_matrix
    from saeembed.labels.table import label_names

    s = (settings or ClusterSettings()).check()
    query = ConceptQuery(phrase=concepts) if isinstance(concepts, str) else concepts
    query = (query or ConceptQuery()).check()
    _check_map(map_path)
    with Store(db, create=False) as store:
        chosen_encoder = store.resolve_encoder(encoder)
        wrong = [f for f in color_by if not 0 <= int(f) < chosen_encoder.d_sae]
        if wrong:  # before anything is clustered or stored
            raise InputError(
                f"--color-by {wrong[0]}: encoder {chosen_encoder.name} has concepts 0.."
                f"{chosen_encoder.d_sae - 1}"
            )
        if corpus is not None:
            store.require_corpus(corpus)
        choice = query.resolved(store).choose(store, chosen_encoder, corpus)
        if choice is not None:
            log.info("clustering on %s", choice.describe())
        matrix = load_matrix(
            store, chosen_encoder, corpus=corpus, max_docs=s.max_docs, measure=s.measure
        )
        used = choice.features if choice is not None else np.arange(chosen_encoder.d_sae)
        x = clustering.weight_matrix(matrix.values[:, used].tocsr(), s.weighting)
        result = clustering.cluster_documents(
            x, method=s.method, k=s.k, seed=s.seed, min_cluster_size=s.min_cluster_size,
            assign_outliers=s.assign_outliers,
        )  # fmt: skip
        names = label_names(store, chosen_encoder)
        labels = dict(zip(names["feature"].to_list(), names["label"].to_list(), strict=True))
        described = clustering.describe_clusters(
            matrix.presence, result.labels, np.arange(chosen_encoder.d_sae), labels, top=s.top
        )
        summary = clustering.cluster_summary(result, described)
        members = pl.DataFrame(
            {"doc_id": matrix.doc_ids, "cluster": result.labels, "assigned": result.assigned}
        )
        if map_path is not None:
            from saeembed.analysis.umap_layout import umap_coordinates

            xy = umap_coordinates(x, seed=s.seed)
            members = members.with_columns(pl.Series("x", xy[:, 0]), pl.Series("y", xy[:, 1]))
        params = {
            **result.params, "method": s.method, "weighting": s.weighting, "measure": s.measure,
            "corpus": corpus, "n_docs": int(matrix.n_docs), "max_docs": s.max_docs,
        }  # fmt: skip
        stored = _store_clustering(store, chosen_encoder, corpus, name, params, choice, result,
                                   summary, members)  # fmt: skip
        shown = _examples(store, members, summary, s.examples)
        if map_path is not None:
            _write_map(store, chosen_encoder, matrix, members, summary, map_path, color_by,
                       stored[1], map_pages)  # fmt: skip
    return Clustering(stored[0], stored[1], choice, summary, described, members, params, shown)


def _check_map(map_path) -> None:
    """A map path that can be written, ending in .html or .parquet (refused before any work)."""
    if map_path is None:
        return
    check_output(map_path)
    if Path(map_path).suffix.lower() not in (".html", ".parquet"):
        raise InputError(
            f"cannot write a map to {Path(map_path).name}: use a .html or .parquet path"
        )


def _store_clustering(store, encoder, corpus, name, params, choice, result, summary, members):
    """One transaction: the clustering, its clusters and its members."""
    if name is None:
        taken = store.sql("SELECT count(*) AS n FROM clusterings")["n"][0]
        name = f"{corpus or 'all'}-{params['method']}-{taken + 1}"
    elif store.sql("SELECT count(*) AS n FROM clusterings WHERE name = ?", [name])["n"][0]:
        raise InputError(f"a clustering named {name!r} exists; choose another --name")
    concepts = (
        [] if choice is None else choice.table.select("feature", "weight", "reason").to_dicts()
    )
    clusters = summary.select(
        "cluster", "name", "size",
        pl.Series("top_features", [json.dumps(f) for f in summary["top_features"].to_list()]),
    )  # fmt: skip
    cols = ["doc_id", "cluster", "assigned", "x", "y"]
    rows = members.with_columns(
        *(pl.lit(None, pl.Float32).alias(c) for c in ("x", "y") if c not in members.columns)
    ).select(cols)
    with store.transaction(new_clusters=clusters, new_members=rows) as con:
        clustering_id = con.execute(
            "INSERT INTO clusterings (name, encoder_id, corpus, method, params, concepts, "
            "n_clusters, outlier_share) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING clustering_id",
            [name, encoder.encoder_id, corpus, params["method"], json.dumps(params),
             json.dumps(concepts), result.n_clusters, result.outlier_share],
        ).fetchall()[0][0]  # fmt: skip
        con.execute(
            "INSERT INTO clusters SELECT ?, cluster, name, size, top_features::JSON FROM new_clusters",
            [clustering_id],
        )
        con.execute(
            "INSERT INTO cluster_members SELECT ?, doc_id, cluster, assigned, x, y FROM new_members",
            [clustering_id],
        )
    return clustering_id, name


def _examples(store, members, summary, k) -> pl.DataFrame | None:
    """Up to ``k`` documents per cluster (a fixed sample), as snippets."""
    if k <= 0:
        return None
    from saeembed.labels.evidence import snippet

    picked = (
        members.with_columns(pl.col("doc_id").hash(7).alias("h"))
        .sort("cluster", "h")
        .group_by("cluster", maintain_order=True)
        .head(k)
    )
    shown = picked.join(store.texts(picked["doc_id"]), on="doc_id").with_columns(
        pl.col("text").map_elements(lambda t: snippet(t, None, None, 60), return_dtype=pl.String)
    )
    return with_refs(store, shown.select("cluster", "doc_id", "text").sort("cluster", "doc_id"))


def _write_map(store, encoder, matrix, members, summary, map_path, color_by, name, pages):
    from saeembed.maps import write_map_html, write_map_parquet

    path = Path(map_path)
    texts = store.texts(members["doc_id"])
    points = with_refs(store, members.join(texts, on="doc_id", how="left", maintain_order="left"))
    color_columns = []
    for feature in color_by:
        column = f"feature:{int(feature)}"
        values = np.asarray(matrix.values[:, int(feature)].todense()).ravel()
        points = points.with_columns(pl.Series(column, values))
        color_columns.append(column)
    cluster_names = dict(zip(summary["cluster"].to_list(), summary["name"].to_list(), strict=True))
    if path.suffix.lower() == ".html":
        concepts = None
        if pages:
            from saeembed.reports.feature_pages import cluster_feature_pages

            concepts = cluster_feature_pages(store, encoder, summary, path)
        write_map_html(points, path, title=f"saeembed map: {name or 'clusters'}",
                       cluster_names=cluster_names, color_columns=color_columns,
                       cluster_concepts=concepts)  # fmt: skip
        write_map_parquet(points, path.with_suffix(".parquet"))
    else:
        write_map_parquet(points, path)


@dataclass
class SearchResult:
    hits: pl.DataFrame
    choice: ConceptChoice | None
    encoder: Encoder
    by_meaning: bool = False  # every concept read through its evidence (`meaning_scores`)
    note: str | None = None  # how the search went where it could not do what was asked


def search(
    db: str | Path,
    query: str | None = None,
    *,
    encoder: str | int | None = None,
    corpus: str | None = None,
    concepts: ConceptQuery | None = None,
    like: int | str | None = None,
    where: str | None = None,
    mode: str = "sae",
    top: int = 10,
    measure: str = "max",
) -> SearchResult:
    """Documents with a property: ``query`` (a phrase) and/or ``concepts`` (a `ConceptQuery`:
    feature ids, example documents, exclusions; its phrase is ``query``) choose the concepts;
    ``like`` finds documents similar to one (documents as ``CORPUS:ROW`` references,
    `saeembed.store.doc_refs`, or doc_ids; results carry both); ``mode`` is ``sae``, ``dense``
    (MiniLM) or ``hybrid``; ``where`` filters (`saeembed.analysis.doc_filter`)."""
    from saeembed.analysis.retrieve import reads_by_meaning, search_documents

    # the concepts' search only reads; dense and hybrid cache document embeddings in the store
    # when it is writable (a read-only store is read, its embeddings computed in memory)
    read_only = mode == "sae" or not Store.can_write(db)
    docs = None
    if where and not read_only:
        # the user's filter runs on its own read-only, restricted connection, never on the
        # writable one that caches embeddings
        from saeembed.analysis.retrieve import candidates

        with Store(db, read_only=True) as reader:
            docs = candidates(reader, reader.resolve_encoder(encoder), corpus, where)
    with Store(db, create=False, read_only=read_only) as store:
        chosen = store.resolve_encoder(encoder)
        if corpus is not None:
            store.require_corpus(corpus)
        wanted = (concepts or ConceptQuery()).but(phrase=query).resolved(store)
        positives = list(wanted.positives)  # CORPUS:ROW references, as doc_ids
        like = None if like is None else resolve_doc(store, like)
        choice, note = None, None
        if mode != "dense" and wanted.chooses:
            try:
                choice = wanted.choose(store, chosen, corpus)
            except NoSeparatingConcept as exc:
                if like is not None:
                    raise
                # a few examples rarely pass the correction: rank by closeness to them instead
                like = list(positives)
                note = (
                    f"{str(exc).split(';')[0]}; ranked by concept similarity to the "
                    f"{len(positives)} examples instead"
                )
        hits = search_documents(
            store, chosen, docs=docs, query=query, choice=choice, like=like, mode=mode,
            corpus=corpus, where=where, top=top, measure=measure, leave_out=positives,
        )  # fmt: skip
        by_meaning = (
            mode != "dense" and like is None and reads_by_meaning(store, chosen, query, choice)
        )
        hits = with_refs(store, hits)
    return SearchResult(hits, choice, chosen, by_meaning, note)


def correlate(
    db: str | Path,
    column: str | None = None,
    *,
    encoder: str | int | None = None,
    corpus: str | None = None,
    kind: str = "auto",
    top: int = 30,
    min_support: int = 10,
    max_cosine: float = 0.5,
    show_trivial: bool = False,
    measure: str = DEFAULT_DIFF_MEASURE,
    max_docs: int = 50_000,
) -> pl.DataFrame:
    """Concept pairs that co-occur more than chance (`saeembed.analysis.correlate.
    correlate_concepts`: NPMI, phi, trivial pairs dropped unless ``show_trivial``; on at most
    ``max_docs`` documents), or with ``column``, the concepts that track that metadata column
    (`correlate_metadata`, read as ``kind``)."""
    from saeembed.analysis.correlate import correlate_concepts, correlate_metadata

    with Store(db, read_only=True) as store:
        if column:
            return correlate_metadata(
                store, column, encoder, corpus=corpus, kind=kind, min_support=min_support,
                top=top, measure=measure,
            )  # fmt: skip
        return correlate_concepts(
            store, encoder, corpus=corpus, min_support=min_support, top=top,
            max_cosine=max_cosine, show_trivial=show_trivial, max_docs=max_docs, measure=measure,
        )  # fmt: skip


def probe(
    db: str | Path,
    target: str,
    *,
    encoder: str | int | None = None,
    corpus: str | None = None,
    where: str | None = None,
    settings=None,
    html: str | Path | None = None,
    progress: bool = True,
):
    """What in the text predicts metadata column ``target`` (or ``"corpus"``), and how well: a
    sparse concept probe against dense probes on held-out documents, and the concepts it selects
    as hypotheses tested on documents that did not select them (`saeembed.analysis.probe`, as
    ``settings`` say: a `ProbeSettings`). Only documents of ``corpus`` / passing ``where``.
    ``html``: also write the report page there. Returns a `ProbeResult`."""
    from saeembed.analysis.probe import run_probe
    from saeembed.analysis.probe_settings import ProbeSettings

    settings = (settings or ProbeSettings()).check()
    if html is not None:
        check_output(html)  # before any work
    # a probe only caches (sentence embeddings); a --where filter needs a read-only store
    read_only = bool(where) or not Store.can_write(db)
    with Store(db, create=False, read_only=read_only) as store:
        chosen = store.resolve_encoder(encoder)
        result = run_probe(store, target, chosen, corpus=corpus, where=where, settings=settings)
        if html is not None:
            from saeembed.reports.probe_report import write_probe_report

            write_probe_report(store, chosen, result, html, progress=progress)
        return result


def write_predictions(result, path: str | Path) -> Path:
    """Each probed document's fold, target and out-of-fold predictions (concept and dense
    probes), as Parquet (``.parquet``) or CSV, written atomically."""
    from saeembed.files import atomic_path

    path = check_output(path)
    with atomic_path(path) as tmp:
        if str(path).endswith(".parquet"):
            result.predictions.write_parquet(tmp)
        else:
            result.predictions.write_csv(tmp)
    return Path(path)
