"""Concept themes: kinds of documents that carry several concepts together, more on one side.

A kind of document that differs only in topic (news about religion among other news) is not a
dense region of the document space: the register, the length and the shared vocabulary of news
dominate every representation, and a religious news window's nearest neighbours are mostly
other news. What marks it is a handful of concepts (*Muslim*, *Islamic*, *religious*, *church*)
that such documents carry together and the others rarely do, each too weak alone to pass the
per-concept correction. A concept theme is such a group and its rule: a document belongs when it
carries at least ``at_least`` of the group's concepts.

Found on the discovery half only (`saeembed.analysis.themes` tests them on the test half), for
each side S in turn:

1. **Candidates**: concepts more frequent in S's discovery documents than in the other side's
   (one-sided binomial tail of its documents falling in S below `CANDIDATE_P`, in at least
   `MIN_SUPPORT` documents of S). Loose on purpose: a concept of a planted kind of 15 documents among 300 is often no
   better than p = 0.1 alone; what is weak alone is tested as a group.
2. **Concepts that go together**: pairs of candidates that share documents of the discovery half
   (both sides; the sides are not used) far more than chance: hypergeometric tail below
   `PAIR_P`, at least `MIN_SUPPORT` documents together and at least `MIN_LIFT` times the
   documents independence expects (which keeps a large store's tiny, significant
   co-occurrences out).
3. **Groups**: the connected groups of that graph, each split by average linkage on the Jaccard
   distance of the concepts' documents at `SPLIT_DISTANCE` (a chain of pairs is not a group);
   groups of at least two concepts.
4. **Rule**: for each group the ``at_least`` (2 .. size) whose documents are most enriched in S
   in the discovery half; a group is kept when that enrichment's tail is below `DISCOVERY_P`,
   the most enriched first, dropping one whose documents are mostly those of one kept already;
   at most ``limit`` of both sides together, the most enriched.

Measured in docs/benchmarks.md#themes--benchmarksthemespy (the planted religious news).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.stats import binom, hypergeom
from sklearn.cluster import AgglomerativeClustering

CANDIDATE_P = 0.2  # a concept this unlikely to be so frequent in S by chance is a candidate
MIN_SUPPORT = 3  # documents a candidate (and a pair, and a rule) needs
PAIR_P = 3e-5  # two candidates this unlikely to share so many documents go together
MIN_LIFT = 2.0  # ... and share at least this many times the documents independence expects
SPLIT_DISTANCE = 0.8  # average Jaccard distance above which a group is cut
DISCOVERY_P = 1e-3  # a rule this enriched in S in the discovery half is kept for the test
MIN_RATIO = 2.0  # a rule's documents are at least this many times as frequent on its side
MAX_CANDIDATES = 3_000  # the most enriched candidates a side keeps (bounds the pair matrix)
MAX_OVERLAP = 0.5  # a group whose documents are mostly a kept group's is the same kind


@dataclass(frozen=True)
class ConceptTheme:
    """A group of concepts found together more on ``side`` ("A" or "B"): a document belongs when
    it carries at least ``at_least`` of ``concepts`` (feature ids, the most enriched first);
    ``discovery_p`` is the rule's enrichment in the discovery half (it chose the rule; it is not
    the theme's test)."""

    side: str
    concepts: tuple[int, ...]
    at_least: int
    discovery_p: float

    def members(self, presence: sp.spmatrix) -> np.ndarray:
        """Which rows (documents x concepts, nonzero = carried) belong to the theme."""
        carried = sp.csc_matrix(presence)[:, list(self.concepts)] != 0
        return np.asarray(carried.sum(axis=1)).ravel() >= self.at_least

    def carried(self, presence: sp.spmatrix) -> np.ndarray:
        """How many of the theme's concepts each row carries."""
        carried = sp.csc_matrix(presence)[:, list(self.concepts)] != 0
        return np.asarray(carried.sum(axis=1)).ravel()


def find_concept_themes(
    presence: sp.spmatrix, is_a: np.ndarray, limit: int = 3
) -> list[ConceptTheme]:
    """The concept themes of the discovery documents ``presence`` (rows: documents, nonzero =
    carried; ``is_a``: which rows are side A), at most ``limit`` of both sides together, the
    most enriched first (each one more tested costs the others power); see the module
    docstring."""
    x = sp.csr_matrix(presence != 0, dtype=np.float32)
    found: list[ConceptTheme] = []
    for side, in_side in (("A", np.asarray(is_a, bool)), ("B", ~np.asarray(is_a, bool))):
        if in_side.sum() < MIN_SUPPORT or (~in_side).sum() < 1:
            continue
        found.extend(_side_themes(x, in_side, side, limit))
    found.sort(key=lambda t: (t.discovery_p, t.side, t.concepts))
    return found[:limit]


def _side_themes(x: sp.csr_matrix, in_side: np.ndarray, side: str, limit: int) -> list:
    n, n_side = x.shape[0], int(in_side.sum())
    count_side = np.asarray(x[in_side].sum(axis=0)).ravel()
    count_all = np.asarray(x.sum(axis=0)).ravel()
    p = _more_in_side(count_side, count_all, n, n_side)
    candidates = np.flatnonzero((p < CANDIDATE_P) & (count_side >= MIN_SUPPORT))
    candidates = candidates[np.argsort(p[candidates], kind="stable")][:MAX_CANDIDATES]
    if len(candidates) < 2:
        return []
    groups = _groups(sp.csc_matrix(x[:, candidates]), n)
    rules = []
    for group in groups:
        concepts = candidates[group]
        concepts = concepts[np.argsort(p[concepts], kind="stable")]
        rule = _best_rule(x, concepts, in_side)
        if rule is not None and rule[0] < DISCOVERY_P:
            rules.append((rule[0], concepts, rule[1], rule[2]))
    rules.sort(key=lambda r: (r[0], int(r[1][0])))
    kept: list[tuple] = []
    for discovery_p, concepts, at_least, docs in rules:
        if any((docs & k[3]).sum() > MAX_OVERLAP * min(docs.sum(), k[3].sum()) for k in kept):
            continue
        kept.append((discovery_p, concepts, at_least, docs))
        if len(kept) == limit:
            break
    return [
        ConceptTheme(side, tuple(int(c) for c in concepts), int(at_least), float(dp))
        for dp, concepts, at_least, _ in kept
    ]


def _groups(y: sp.csc_matrix, n: int) -> list[np.ndarray]:
    """Groups of columns of ``y`` (documents x candidates) that go together (steps 2 and 3)."""
    together = (y.T @ y).tocsr()
    support = np.asarray(y.sum(axis=0)).ravel()
    pairs = together.tocoo()
    i, j, shared = pairs.row, pairs.col, pairs.data
    lift = shared * n / np.maximum(support[i] * support[j], 1)
    keep = (i < j) & (shared >= MIN_SUPPORT) & (lift >= MIN_LIFT)
    i, j, shared = i[keep], j[keep], shared[keep]
    edge = hypergeom.sf(shared - 1, n, support[i], support[j]) < PAIR_P
    m = y.shape[1]
    graph = sp.coo_matrix((np.ones(int(edge.sum())), (i[edge], j[edge])), shape=(m, m))
    _, component = connected_components(graph.tocsr(), directed=False)
    groups = []
    for c in np.unique(component):
        members = np.flatnonzero(component == c)
        if len(members) < 2:
            continue
        if len(members) == 2:
            groups.append(members)
            continue
        both = together[members][:, members].toarray()
        union = support[members][:, None] + support[members][None, :] - both
        distance = 1.0 - both / np.maximum(union, 1)
        np.fill_diagonal(distance, 0.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            cut = AgglomerativeClustering(
                n_clusters=None, metric="precomputed", linkage="average",
                distance_threshold=SPLIT_DISTANCE,
            ).fit(distance).labels_  # fmt: skip
        groups.extend(members[cut == u] for u in np.unique(cut) if (cut == u).sum() >= 2)
    return groups


def _more_in_side(count_side, count_all, n: int, n_side: int) -> np.ndarray:
    """One-sided p that each concept has this many of its documents in the side: the binomial
    tail of its documents falling there at the side's share (the hypergeometric tail drawn with
    replacement, slightly conservative; scipy's exact one loops in Python over thousands of
    concepts, the binomial is vectorised)."""
    return binom.sf(count_side - 1, count_all, n_side / max(n, 1))


def _best_rule(x: sp.csr_matrix, concepts: np.ndarray, in_side: np.ndarray):
    """The ``at_least`` whose documents are most enriched in the side: (tail, at_least,
    members), or None when no rule holds `MIN_SUPPORT` documents of the side."""
    carried = np.asarray((x[:, concepts] != 0).sum(axis=1)).ravel()
    n, n_side = len(in_side), int(in_side.sum())
    best = None
    for at_least in range(2, len(concepts) + 1):
        docs = carried >= at_least
        hits = int((docs & in_side).sum())
        if hits < MIN_SUPPORT:
            break
        others = int(docs.sum()) - hits
        if hits * (n - n_side) < MIN_RATIO * others * n_side:  # not a kind one side has more of
            continue
        tail = float(hypergeom.sf(hits - 1, n, int(docs.sum()), n_side))
        if best is None or tail < best[0]:
            best = (tail, at_least, docs)
    return best
