"""Near-duplicate concepts: two concepts of one SAE that fire on the same things in this store.

An SAE often splits one idea over several latents (two concepts both on *thrown* and *ballistic*
in film reviews, a dozen on a full stop ending a sentence). Listed side by side they fill a diff
table with one finding several times. Two concepts are **alike** when, in this store,

- their local evidence (the words and described symbols under their strongest peaks,
  `saeembed.labels.local`, each peak weighted by its activation over the concept's strongest,
  squared, the forms of a word counted together) points the same way: cosine similarity at least
  `MIN_SIMILARITY`;
- their strongest peaks are in the same documents: at least `MIN_SHARED_DOCS` of the smaller set
  (two concepts that both fire on "of", each in other documents, are not alike);
- and the names they show share a word, so that a reader sees why they are folded together.

The decoder directions are not used: on the default SAE, concepts with the same evidence are
rarely close in direction (the two *thrown* concepts have a decoder cosine of 0.20; 10 of the
33.5 million pairs exceed 0.5), so direction alone would group almost nothing the user sees twice.

Grouping is by leaders, not chains: concepts are visited from the best-evidenced (most peaks,
then strongest) down, and each joins the most similar leader it is alike to, or leads a group of
its own; so a group never drifts from its leader's meaning. `features.alike_of` holds the leader
(NULL for a leader or a concept alike to none); tables fold a concept into the first-listed of its
group on the same side (`fold_alike`).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import scipy.sparse as sp

MIN_SIMILARITY = 0.6  # cosine of two concepts' evidence vectors that makes them alike
MAX_CANDIDATES = 50  # most similar concepts a concept may join, at most
MIN_SHARED_DOCS = 0.2  # share of the smaller set of peak documents the two must share


def evidence_matrix(weights: dict[int, dict[str, float]]) -> tuple[list[int], sp.csr_matrix]:
    """Concepts (sorted) and their evidence vectors, one L2-normalised row each."""
    features = sorted(weights)
    vocab: dict[str, int] = {}
    rows, cols, vals = [], [], []
    for r, f in enumerate(features):
        for key, w in weights[f].items():
            rows.append(r)
            cols.append(vocab.setdefault(key, len(vocab)))
            vals.append(w)
    m = sp.csr_matrix((vals, (rows, cols)), shape=(len(features), max(len(vocab), 1)))
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return features, sp.diags(1.0 / norms) @ m


def group_alike(
    weights: dict[int, dict[str, float]],
    strength: dict[int, tuple[float, ...]],
    compatible=None,
    min_similarity: float = MIN_SIMILARITY,
    chunk: int = 1024,
) -> dict[int, int]:
    """Each concept alike to a leader -> that leader (see the module docstring). ``weights``:
    per concept, its evidence (key -> weight); ``strength``: per concept, a sort key, larger
    first (its number of peaks, its strongest activation), so the best-evidenced concept leads;
    ``compatible(feature, leader)``: the further conditions (shared documents and name words)."""
    features, m = evidence_matrix(weights)
    if not features:
        return {}
    index = {f: i for i, f in enumerate(features)}
    neighbours: dict[int, dict[int, float]] = {}
    for start in range(0, len(features), chunk):
        block = (m[start : start + chunk] @ m.T).tocsr()
        block.data[block.data < min_similarity] = 0
        block.eliminate_zeros()
        for r in range(block.shape[0]):
            cols = block.indices[block.indptr[r] : block.indptr[r + 1]]
            sims = block.data[block.indptr[r] : block.indptr[r + 1]]
            mine = cols != r + start
            cols, sims = cols[mine], sims[mine]
            if len(cols) > MAX_CANDIDATES:  # degenerate evidence (every peak alike): the closest
                top = np.argpartition(-sims, MAX_CANDIDATES - 1)[:MAX_CANDIDATES]
                cols, sims = cols[top], sims[top]
            if len(cols):
                neighbours[r + start] = dict(zip(cols.tolist(), sims.tolist(), strict=True))
    order = sorted(features, key=lambda f: (tuple(-s for s in strength.get(f, ())), f))
    leaders: set[int] = set()
    alike: dict[int, int] = {}
    for f in order:
        near = neighbours.get(index[f], {})
        best = max(
            (
                (v, -features[c])
                for c, v in near.items()
                if features[c] in leaders and (compatible is None or compatible(f, features[c]))
            ),
            default=None,
        )
        if best is None:
            leaders.add(f)
        else:
            alike[f] = -best[1]
    return alike


def stored_groups(store, encoder) -> dict[int, int]:
    """``features.alike_of`` of ``encoder``: each concept alike to a leader -> the leader (empty
    for a store whose concepts were never named, `saeembed.labels.naming.name_concepts`)."""
    rows = store.con.execute(
        "SELECT feature, alike_of FROM features WHERE encoder_id = ? AND alike_of IS NOT NULL",
        [encoder.encoder_id],
    ).fetchall()
    return {int(f): int(lead) for f, lead in rows}


def shares_documents(docs_a: set, docs_b: set, least: float = MIN_SHARED_DOCS) -> bool:
    """Whether two concepts' peak documents overlap by at least ``least`` of the smaller set."""
    smaller = min(len(docs_a), len(docs_b))
    return smaller > 0 and len(docs_a & docs_b) >= least * smaller


def fold_alike(frame: pl.DataFrame, groups: dict[int, int], side: str = "diff") -> pl.DataFrame:
    """``frame`` (rows in the order shown, a ``feature`` column) with ``same_as``: for a concept
    alike (`group_alike`, ``groups``) to one listed before it with the same sign of ``side``, the
    first such; null otherwise. Rows are kept: a table shows the first of each group and counts
    the rest (`folded_view`)."""
    if frame.height == 0 or "feature" not in frame.columns:
        return frame.with_columns(pl.lit(None, dtype=pl.Int64).alias("same_as"))
    signs = np.sign(frame[side].to_numpy()) if side in frame.columns else np.zeros(frame.height)
    first: dict[tuple[int, float], int] = {}
    same_as: list[int | None] = []
    for f, s in zip(frame["feature"].to_list(), signs, strict=True):
        key = (groups.get(int(f), int(f)), float(s))
        lead = first.setdefault(key, int(f))
        same_as.append(None if lead == int(f) else lead)
    return frame.with_columns(pl.Series("same_as", same_as, dtype=pl.Int64))


def top_groups(frame: pl.DataFrame, top: int) -> pl.DataFrame:
    """The rows of the first ``top`` groups of a `fold_alike` frame (leaders and the rows alike
    to them), in order."""
    leaders = frame.filter(pl.col("same_as").is_null())["feature"].head(top)
    kept = set(leaders.to_list())
    return frame.filter(pl.col("feature").is_in(list(kept)) | pl.col("same_as").is_in(list(kept)))


def folded_groups(frame: pl.DataFrame) -> tuple[list[int], dict[int, list[int]]]:
    """The positions of the rows of a `fold_alike` frame that lead their group (``same_as``
    null; every row when the frame has no such column), and each leader's folded concepts, in
    order."""
    if "same_as" not in frame.columns:
        return list(range(frame.height)), {}
    leaders: list[int] = []
    folded: dict[int, list[int]] = {}
    features, leads = frame["feature"].to_list(), frame["same_as"].to_list()
    for i, (f, lead) in enumerate(zip(features, leads, strict=True)):
        if lead is None:
            leaders.append(i)
        else:
            folded.setdefault(int(lead), []).append(int(f))
    return leaders, folded


def folded_view(frame: pl.DataFrame, shown: int = 3) -> pl.DataFrame:
    """A `fold_alike` frame as a person reads it: one row per group, its label followed by the
    concepts folded into it (``  [+2002]``, ``  [+205, 426, 773 and 38 more alike]``)."""
    if "same_as" not in frame.columns:
        return frame
    _, folded = folded_groups(frame)
    shown_rows = frame.filter(pl.col("same_as").is_null()).drop("same_as")
    if not folded or "label" not in shown_rows.columns:
        return shown_rows

    def suffix(f: int) -> str:
        ids = folded.get(int(f), [])
        if not ids:
            return ""
        listed = ", ".join(str(i) for i in ids[:shown])
        more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
        return f"  [+{listed}{more} alike]"

    labels = [
        (label or "") + suffix(f)
        for f, label in zip(
            shown_rows["feature"].to_list(), shown_rows["label"].to_list(), strict=True
        )
    ]
    return shown_rows.with_columns(pl.Series("label", labels, dtype=pl.String))
