"""Themes: which kinds of documents one side of a diff has more of than the other.

A per-concept diff misses a difference carried by a kind of document whose concepts are each
weak (a tenth of side A is religious writing: no single concept passes the correction over
thousands), and drowns a large difference in thousands of token-level rows. A theme is a group
of documents: alike in their concepts (a *region*, ``kind="region"``), or carrying several of a
group of concepts found together (``kind="concepts"``, `saeembed.analysis.concept_themes`: a
topic inside one register, which is no region, since news about religion is nearest other
news). The diff of themes tests each theme's share of side A against its share of side B.

Method (measured in docs/benchmarks.md#themes--benchmarksthemespy):

1. **Split.** The documents of each side are split at random (``seed``) into a *discovery* half
   and a *test* half. Themes are found on the discovery half only and tested on the test half
   only, so a theme cut to fit the discovery documents' sides cannot make its own test
   significant: two random halves of one corpus give no significant theme beyond the test's
   error rate.
2. **Fit** (on at most ``fit_docs`` discovery documents): each document is the set of concepts
   it carries strongly (`saeembed.analysis.measures`, ``measure``), weighted by idf (a concept
   in every document says nothing about kinds) and by how differently the two sides use the
   concept in the discovery half (``1 + |z|^1.5`` of the two-proportion z statistic, capped at
   `MAX_BOOST`), so that the groups form along what differs; L2-normalised and reduced by
   TruncatedSVD. The themes are the regions where one side is dense (`_regions`): documents
   whose neighbourhood holds more of one side than chance, joined along the neighbour graph
   (a large region split by Ward linkage); the documents in no such region form one last
   theme, those the sides share, which is shown but not tested. (``method="ward"`` or
   ``"kmeans"`` cut every document into ``k`` themes instead.) The concept themes are found on
   the same discovery documents, at most ``k // 4``, each with its rule (``at least 2
   of 4 concepts``); they may overlap the regions and each other, and a kind found both ways is
   shown both ways.
3. **Assign** every document (both halves) the theme of its nearest fitted documents (10, by
   cosine, weighted by similarity: themes are formed along neighbours, so they are assigned
   along neighbours too), reading the concept matrix in chunks of ``chunk_docs`` documents:
   memory is bounded by the chunk and the fit sample, not the store. A document with no strong
   concept gets no region (-1). A document is in a concept theme when it meets its rule.
4. **Test** each theme on the test half: its members among the test documents of A and of B
   (`n_a`, `n_b`), their shares, the difference with a Newcombe 95% interval, p (Fisher's exact
   test for small counts, else the z-test) and a Benjamini-Hochberg q over the themes
   (`saeembed.analysis.diff.compare_counts`).
5. **Describe** (`saeembed.analysis.theme_text`) a concept theme by its own concepts and the
   documents of each side that carry the most of them; a region by its most distinctive
   concepts (the theme against the other discovery documents,
   `saeembed.analysis.cluster.describe_clusters`, the specific ones first: difference times log
   ratio of the frequencies; concepts alike to one already listed, or named the same, are
   skipped), a name from the first three, and the documents of each side nearest its centre.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import scipy.sparse as sp
from sklearn.cluster import AgglomerativeClustering, KMeans
from sklearn.decomposition import TruncatedSVD
from sklearn.neighbors import kneighbors_graph
from sklearn.preprocessing import normalize

from saeembed.analysis.concept_themes import find_concept_themes
from saeembed.analysis.diff import compare_counts
from saeembed.analysis.matrix import load_matrix
from saeembed.analysis.stats import bh_qvalues
from saeembed.analysis.theme_text import describe_themes, rule_text, theme_examples
from saeembed.errors import InputError
from saeembed.store import Encoder, Store

log = logging.getLogger(__name__)

MAX_BOOST = 10.0  # the most a concept's weight is raised for differing between the sides
BOOST_POWER = 1.5  # the boost is 1 + |z| ** BOOST_POWER (docs/benchmarks.md#themes)
NEIGHBOURS = 10  # neighbours per document in the graph themes are formed along
REFERENCE_DOCS = 5_000  # fitted documents a new document's neighbours are sought among
DOCS_PER_COMPONENT = 20  # fitted documents per SVD component
LOCAL_P = 0.05  # a neighbourhood this unlikely under the sides' shares is dense in one side
MIN_THEME = 5  # documents of the discovery half a theme needs
THEME_COLUMNS = [
    "theme",
    "name",
    "kind",
    "found_in",
    "size",
    "n_a",
    "n_b",
    "test_a",
    "test_b",
    "share_a",
    "share_b",
    "diff",
    "ci_low",
    "ci_high",
    "p",
    "q",
    "rule",
    "concepts",
    "examples",
    "doc_ids",
]


@dataclass(frozen=True)
class ThemeConfig:
    """How themes are found: at most ``k`` regions (with ``method="regions"``, up to ``k - 1``
    where one side is dense and the documents the sides share) and ``concept_themes`` (by
    default ``k // 4``) concept themes; ``measure`` (a binary one)
    makes the document vectors; at most ``fit_docs`` discovery documents fit them, with at most
    ``svd`` components; documents are read ``chunk_docs`` at a time; ``top_concepts`` describe
    a theme and ``n_examples`` per side show it; ``seed`` fixes the split and the fit."""

    k: int = 12
    method: str = "regions"  # or "ward", "kmeans" (every document in a theme)
    measure: str = "strong"
    fit_docs: int = 20_000
    svd: int = 64
    chunk_docs: int = 50_000
    top_concepts: int = 5
    n_examples: int = 2
    seed: int = 0
    concept_themes: int | None = None  # at most this many (None: k // 4; 0: none)

    def check(self) -> None:
        if self.k < 2:
            raise InputError(f"--themes must be at least 2, got {self.k}")
        if self.method not in ("regions", "ward", "kmeans"):
            raise InputError(f"unknown themes method {self.method!r}; use regions, ward or kmeans")
        if self.fit_docs < self.k or self.chunk_docs < 1 or self.svd < 2:
            raise InputError(
                "fit_docs must be at least k, chunk_docs at least 1 and svd at least 2"
            )
        if self.concept_themes is not None and self.concept_themes < 0:
            raise InputError(f"concept_themes must be 0 or more, got {self.concept_themes}")


@dataclass
class Themes:
    """The diff of themes: ``table`` (`THEME_COLUMNS`, one row per theme, most significant
    first) and how it was made."""

    table: pl.DataFrame
    method: str  # one sentence: how themes were found and tested (for the output)
    n_discovery: int
    n_test: tuple[int, int]  # test documents of A and of B
    n_unassigned: int  # documents with no strong concept
    n_sides: tuple[int, int]  # documents of A and of B
    config: ThemeConfig = field(default_factory=ThemeConfig)


@dataclass
class _Model:
    """What assigns a document to a theme: concept weights, the SVD, the theme centres, and the
    fitted documents (rows in the reduced space) with their themes."""

    weights: np.ndarray  # [d_sae]
    svd: TruncatedSVD | None
    centres: np.ndarray  # [k, dims], unit rows
    fitted: np.ndarray  # [n_fit, dims], unit rows of the documents the themes were formed on
    fitted_themes: np.ndarray  # [n_fit]
    sides: list  # per theme: where it was found dense in the discovery half (A, B, both; None)

    def embed(self, values: sp.spmatrix) -> np.ndarray:
        x = sp.csr_matrix(values > 0, dtype=np.float64) @ sp.diags(self.weights)
        x = normalize(x, norm="l2")
        dense = self.svd.transform(x) if self.svd is not None else x.toarray()
        return normalize(dense, norm="l2")

    def assign(self, values: sp.spmatrix, block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
        """Each row's theme (-1 for a row with no concept) and its cosine to that theme's
        centre. A row takes the theme of its nearest fitted documents (`NEIGHBOURS`, weighted by
        similarity), the way the themes were formed: along neighbours, so a theme that is not
        round keeps its new members too; where the documents the sides share are a theme, a
        row joins another theme only with most of the votes."""
        rows = self.embed(values).astype(np.float32)
        k = len(self.centres)
        shared = k - 1 if self.sides and self.sides[-1] == "both" else None
        theme = np.empty(len(rows), dtype=np.int64)
        n = min(NEIGHBOURS, len(self.fitted))
        for start in range(0, len(rows), block):
            sims = rows[start : start + block] @ self.fitted.T
            near = np.argpartition(-sims, n - 1, axis=1)[:, :n]
            votes = np.zeros((len(near), k))
            np.add.at(
                votes,
                (np.repeat(np.arange(len(near)), n), self.fitted_themes[near].ravel()),
                np.maximum(np.take_along_axis(sims, near, axis=1).ravel(), 0) + 1e-9,
            )
            best = votes.argmax(axis=1)
            if shared is not None:  # a theme takes a document only with most of the votes
                weak = votes[np.arange(len(best)), best] < 0.5 * votes.sum(axis=1)
                best[weak] = shared
            theme[start : start + block] = best
        return self._with_closeness(values, rows, theme)

    def closeness(self, values: sp.spmatrix, theme: np.ndarray) -> np.ndarray:
        """Each row's cosine to the centre of its given ``theme`` (0 where it has none)."""
        return self._with_closeness(values, self.embed(values), theme.copy())[1]

    def _with_closeness(self, values, rows, theme) -> tuple[np.ndarray, np.ndarray]:
        empty = (np.asarray((values > 0).sum(axis=1)).ravel() == 0) | (theme < 0)
        theme[empty] = -1
        near = np.einsum("ij,ij->i", rows, self.centres[np.maximum(theme, 0)])
        near[empty] = 0.0
        return theme, near


def split_halves(docs_a: np.ndarray, docs_b: np.ndarray, seed: int) -> np.ndarray:
    """The discovery documents: a random half (rounded down) of each side, the same for the
    same documents in any order."""
    rng = np.random.default_rng(seed)
    halves = [rng.permutation(np.unique(d))[: len(d) // 2] for d in (docs_a, docs_b)]
    return np.sort(np.concatenate(halves))


def _fit(values: sp.csr_matrix, is_a: np.ndarray, config: ThemeConfig) -> tuple[_Model, np.ndarray]:
    """The theme model fitted on the discovery sample, and the sample's themes."""
    present = sp.csr_matrix(values > 0, dtype=np.float64)
    n = present.shape[0]
    df = np.bincount(present.indices, minlength=present.shape[1])
    idf = np.log((1 + n) / (1 + df)) + 1
    # how differently the sides use each concept, in the discovery half only
    n_a = np.asarray(present[is_a].sum(axis=0)).ravel()
    n_b = df - n_a
    size_a, size_b = int(is_a.sum()), int((~is_a).sum())
    pooled = (n_a + n_b) / max(n, 1)
    se = np.sqrt(
        np.maximum(pooled * (1 - pooled), 1e-12) * (1 / max(size_a, 1) + 1 / max(size_b, 1))
    )
    z = np.abs(n_a / max(size_a, 1) - n_b / max(size_b, 1)) / se
    boost = np.minimum(1.0 + np.where(df > 0, z, 0.0) ** BOOST_POWER, MAX_BOOST)
    weights = np.where(df > 0, idf * boost, 0.0)
    x = normalize(present @ sp.diags(weights), norm="l2")
    nonempty = np.asarray(present.sum(axis=1)).ravel() > 0
    # components a projection learns from this many documents without fitting each one: with
    # too many, documents outside the fit project onto what the fitted ones share and crowd
    # around the longest of them
    dims = min(config.svd, x.shape[1] - 1, max(int(nonempty.sum()) // DOCS_PER_COMPONENT, 2))
    svd = None
    if dims >= 2:
        svd = TruncatedSVD(n_components=dims, random_state=config.seed).fit(x[nonempty])
        dense = normalize(svd.transform(x), norm="l2")
    else:
        dense = normalize(x.toarray(), norm="l2")
    k = min(config.k, int(nonempty.sum()))
    if k < 2:
        raise InputError(
            f"{int(nonempty.sum())} discovery documents carry a concept; themes need more "
            "documents (or another --measure)"
        )
    if config.method == "regions":
        found, sides = _regions(dense[nonempty], is_a[nonempty], k, config.seed)
    else:
        found = _cluster(dense[nonempty], k, config.seed, config.method)
        sides = [None] * (int(found.max()) + 1)
    labels = np.full(n, -1, dtype=np.int64)
    labels[nonempty] = found
    centres = normalize(
        np.vstack([dense[nonempty][found == t].mean(axis=0) for t in range(int(found.max()) + 1)]),
        norm="l2",
    )
    # the documents a new one is compared with: a fixed sample of the fitted ones, so that
    # assigning millions costs a bounded matrix product each
    keep = np.arange(len(found))
    if len(keep) > REFERENCE_DOCS:
        keep = np.sort(np.random.default_rng(config.seed).choice(keep, REFERENCE_DOCS, False))
    reference = dense[nonempty][keep].astype(np.float32)
    return _Model(weights, svd, centres, reference, found[keep], sides), labels


def _regions(rows: np.ndarray, is_a: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, list]:
    """Themes as regions where one side is dense (see the module docstring): each document's
    neighbourhood (itself and its `NEIGHBOURS` nearest) holds more documents of one side than
    the sides' shares make likely (binomial tail below `LOCAL_P`); the connected groups of such
    documents (at least `MIN_THEME` documents), a large one split by Ward linkage into pieces of
    at most ``n / k``, are the themes, at most ``k - 1`` of them, largest first; every other
    document is in one last theme, the documents the sides share. Returns each row's theme and
    where each theme was found (A, B or both)."""
    from scipy.sparse.csgraph import connected_components
    from scipy.stats import binom

    n = len(rows)
    near = min(NEIGHBOURS, n - 1)
    graph = kneighbors_graph(rows, near, include_self=False).tocsr()
    neighbours = graph.indices.reshape(n, near)
    count_a = is_a[neighbours].sum(axis=1) + is_a
    p0 = float(is_a.mean())
    dense_a = binom.sf(count_a - 1, near + 1, p0) < LOCAL_P
    dense_b = binom.cdf(count_a, near + 1, p0) < LOCAL_P
    largest = max(2 * MIN_THEME, n // k)
    found: list[tuple[np.ndarray, str]] = []
    for side, mask in (("A", dense_a), ("B", dense_b)):
        members = np.flatnonzero(mask)
        if len(members) == 0:
            continue
        sub = graph[members][:, members]
        _, component = connected_components(sub.maximum(sub.T), directed=False)
        for c in np.unique(component):
            group = members[component == c]
            if len(group) < MIN_THEME:
                continue
            pieces = -(-len(group) // largest)
            if pieces == 1:
                found.append((group, side))
                continue
            split = _cluster(rows[group], pieces, seed, "ward")
            found.extend((group[split == p], side) for p in range(pieces))
    found.sort(key=lambda g: (-len(g[0]), int(g[0][0])))
    found = found[: k - 1]
    labels = np.full(n, len(found), dtype=np.int64)  # the shared documents, last
    for t, (group, _) in enumerate(found):
        labels[group] = t
    sides = [side for _, side in found]
    if (labels == len(found)).any():
        sides.append("both")
    return labels, sides


def _cluster(rows: np.ndarray, k: int, seed: int, method: str = "ward") -> np.ndarray:
    """Theme of each (unit) row, 0..k-1: Ward linkage over a 10-nearest-neighbour graph (merges
    only neighbours, so a tight group of documents stays one theme however small), or k-means."""
    if method == "kmeans":
        return KMeans(n_clusters=k, n_init=10, random_state=seed).fit(rows).labels_
    graph = kneighbors_graph(rows, min(NEIGHBOURS, len(rows) - 1), include_self=False)
    with warnings.catch_warnings():  # a graph of several components is joined, as it should
        warnings.simplefilter("ignore", UserWarning)
        return (
            AgglomerativeClustering(n_clusters=k, linkage="ward", connectivity=graph)
            .fit(rows)
            .labels_
        )


def diff_themes(
    store: Store,
    docs_a,
    docs_b,
    *,
    encoder: Encoder | str | int | None = None,
    config: ThemeConfig | None = None,
    **options,
) -> Themes:
    """The diff of themes between the documents ``docs_a`` and ``docs_b`` (ids; a document on
    both sides is left out) of ``encoder``; see the module docstring. ``options`` override
    fields of ``config`` (``k=8``, ``seed=3``)."""
    config = config or ThemeConfig()
    if options:
        config = ThemeConfig(**{**config.__dict__, **options})
    config.check()
    if not isinstance(encoder, Encoder):
        encoder = store.resolve_encoder(encoder)
    a, b = _two_sides(docs_a, docs_b)
    discovery = split_halves(a, b, config.seed)
    sample = discovery
    if len(sample) > config.fit_docs:
        rng = np.random.default_rng(config.seed)
        sample = np.sort(rng.choice(sample, config.fit_docs, replace=False))
    fitted = load_matrix(store, encoder, doc_ids=sample, measure=config.measure)
    if not fitted.measure.binary:
        raise InputError(f"themes need a binary measure (strong, presence), not {config.measure}")
    sample_is_a = np.isin(fitted.doc_ids, a)
    values = fitted.values.tocsr()
    model, sample_labels = _fit(values, sample_is_a, config)
    # a kind found both ways is shown both ways: dropping the concept theme where it repeats a
    # region (Jaccard >= 0.8) lost a planted topic the region's neighbours assigned worse
    limit = max(1, config.k // 4) if config.concept_themes is None else config.concept_themes
    topics = find_concept_themes(values, sample_is_a, limit=limit) if limit > 0 else []
    everyone = np.union1d(a, b)
    found = _assign(store, encoder, everyone, fitted.doc_ids, values, sample_labels, model,
                    topics, config)  # fmt: skip
    is_a = np.isin(everyone, a)
    in_test = ~np.isin(everyone, discovery)
    stats = _test(found, is_a, in_test)
    k = len(model.centres)
    described = describe_themes(store, encoder, values, sample_labels, k, topics, config)
    examples = theme_examples(store, everyone, is_a, found.members, found.closeness,
                              config.n_examples)  # fmt: skip
    table = stats.with_columns(
        pl.Series("name", [described[t][0] for t in range(found.n)]),
        pl.Series("kind", found.kinds),
        pl.Series("found_in", found.found_in, dtype=pl.String),
        pl.Series("size", [int(m.sum()) for m in found.members], dtype=pl.Int64),
        pl.Series("rule", [None] * k + [rule_text(t) for t in topics], dtype=pl.String),
        pl.Series(
            "concepts", [described[t][1] for t in range(found.n)],
            dtype=pl.List(pl.Struct({"feature": pl.Int64, "label": pl.String})),
        ),
        pl.Series(
            "examples", [examples[t] for t in range(found.n)],
            dtype=pl.List(pl.Struct({"side": pl.String, "doc_id": pl.Int64, "text": pl.String})),
        ),
        pl.Series("doc_ids", [everyone[m].tolist() for m in found.members],
                  dtype=pl.List(pl.Int64)),
    )  # fmt: skip
    table = table.sort(["q", "p", "theme"], nulls_last=True).select(THEME_COLUMNS)
    test_a, test_b = int((in_test & is_a).sum()), int((in_test & ~is_a).sum())
    together = f" and {len(topics)} of concepts found together" if topics else ""
    method = (
        f"{k} themes of alike documents{together} found on a random half of each side "
        f"({len(discovery):,} documents, seed {config.seed}) and tested on the other half "
        f"({test_a:,} + {test_b:,}); q is Benjamini-Hochberg over the themes"
    )
    return Themes(table, method, len(discovery), (test_a, test_b),
                  found.n_unassigned, (len(a), len(b)), config)  # fmt: skip


def _two_sides(docs_a, docs_b) -> tuple[np.ndarray, np.ndarray]:
    """The sorted, unique ids of each side, a document on both sides left out."""
    a = np.unique(np.asarray(docs_a, dtype=np.int64))
    b = np.unique(np.asarray(docs_b, dtype=np.int64))
    both = np.intersect1d(a, b)
    if len(both):
        log.warning("%d documents are on both sides; themes leave them out", len(both))
        a, b = np.setdiff1d(a, both), np.setdiff1d(b, both)
    if len(a) < 4 or len(b) < 4:
        raise InputError(f"themes need at least 4 documents per side (A has {len(a)}, B {len(b)})")
    return a, b


@dataclass
class _Found:
    """Every document's themes: one membership mask per theme (the regions, then the concept
    themes), each member's closeness to its theme, and what kind each theme is."""

    members: list[np.ndarray]
    closeness: list[np.ndarray]
    kinds: list[str]
    found_in: list
    n_unassigned: int

    @property
    def n(self) -> int:
        return len(self.members)


def _assign(store, encoder, everyone, fitted_ids, values, labels, model, topics, config):
    """Each document's region theme and the concept themes it is in (`_Found`): the fitted
    documents keep the region they were given; every other one is read a chunk at a time (one
    the encoder has not encoded is in none)."""
    themes = np.full(len(everyone), -1, dtype=np.int64)
    closeness = np.zeros(len(everyone))
    carried = np.zeros((len(everyone), len(topics)), dtype=np.int64)
    rows = np.searchsorted(everyone, fitted_ids)
    themes[rows] = labels
    closeness[rows] = model.closeness(values, labels)
    for j, topic in enumerate(topics):
        carried[rows, j] = topic.carried(values)
    rest = np.setdiff1d(everyone, fitted_ids, assume_unique=True)
    for start in range(0, len(rest), config.chunk_docs):
        m = load_matrix(store, encoder, doc_ids=rest[start : start + config.chunk_docs],
                        measure=config.measure)  # fmt: skip
        rows = np.searchsorted(everyone, m.doc_ids)
        themes[rows], closeness[rows] = model.assign(m.values.tocsr())
        for j, topic in enumerate(topics):
            carried[rows, j] = topic.carried(m.values)
    k = len(model.centres)
    members = [themes == t for t in range(k)]
    members += [carried[:, j] >= t.at_least for j, t in enumerate(topics)]
    near = [closeness] * k + [carried[:, j] / len(t.concepts) for j, t in enumerate(topics)]
    kinds = ["rest" if side == "both" else "region" for side in model.sides]
    return _Found(members, near, kinds + ["concepts"] * len(topics),
                  list(model.sides) + [t.side for t in topics], int((themes < 0).sum()))  # fmt: skip


def _test(found: _Found, is_a: np.ndarray, in_test: np.ndarray) -> pl.DataFrame:
    """Each theme's members among the test documents of each side, their shares and the test;
    the documents the sides share are what is left when the themes are taken out: their share
    mirrors the themes', so they are shown, not tested (and not in the correction)."""
    test_a, test_b = int((in_test & is_a).sum()), int((in_test & ~is_a).sum())
    n_a = np.array([(m & in_test & is_a).sum() for m in found.members], dtype=np.int64)
    n_b = np.array([(m & in_test & ~is_a).sum() for m in found.members], dtype=np.int64)
    stats = compare_counts(np.arange(found.n), n_a, n_b, test_a, test_b)
    tested = np.array([side != "both" for side in found.found_in])
    p = np.where(tested, stats["p"].to_numpy(), np.nan)
    q = np.full(found.n, np.nan)
    q[tested] = bh_qvalues(p[tested])
    return stats.select(
        pl.col("feature").alias("theme"), "n_a", "n_b",
        pl.col("size_a").alias("test_a"), pl.col("size_b").alias("test_b"),
        pl.col("freq_a").alias("share_a"), pl.col("freq_b").alias("share_b"),
        "diff", "ci_low", "ci_high",
        pl.Series("p", p).fill_nan(None), pl.Series("q", q).fill_nan(None),
    )  # fmt: skip
