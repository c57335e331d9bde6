"""How a theme of the diff is shown: its name and distinctive concepts, the rule of a concept
theme in words, and the documents of each side that show it best."""

from __future__ import annotations

import re

import numpy as np
import polars as pl
import scipy.sparse as sp

from saeembed.analysis.cluster import describe_clusters
from saeembed.analysis.concept_themes import ConceptTheme
from saeembed.labels.alike import stored_groups
from saeembed.labels.evidence import excerpt
from saeembed.labels.table import label_names
from saeembed.store import Encoder, Store


def describe_themes(
    store: Store, encoder: Encoder, values, labels, k: int, topics: list[ConceptTheme], config
) -> dict[int, tuple[str, list[dict]]]:
    """Each theme's name and concepts: a region theme (0 .. k-1) by its most distinctive
    concepts against the other discovery documents ``values`` (``labels``: each one's region;
    alike ones skipped), a concept theme (k ..) by every concept of its rule."""
    names = label_names(store, encoder)
    feature_labels = dict(zip(names["feature"].to_list(), names["label"].to_list(), strict=True))
    groups = stored_groups(store, encoder)
    doubtful = _doubtful_names(store, encoder)
    columns = np.flatnonzero(np.asarray((values > 0).sum(axis=0)).ravel() > 0)
    frame = describe_clusters(
        sp.csc_matrix(values[:, columns]), labels, columns, feature_labels,
        top=4 * config.top_concepts, min_support=3,
    )  # fmt: skip
    # among the candidates, the specific ones first: the difference weighted by the log ratio of
    # the frequencies (a concept frequent everywhere, a full stop, says little about a kind)
    frame = frame.with_columns(
        (
            pl.col("diff")
            * (pl.col("freq_in") / pl.max_horizontal(pl.col("freq_out"), pl.lit(1e-3))).log()
        ).alias("specific")
    ).sort(["cluster", "significant", "specific"], descending=[False, True, True])
    out = {}
    for t in range(k):
        rows = frame.filter(pl.col("cluster") == t).select("feature", "label").iter_rows()
        out[t] = _named(rows, groups, config.top_concepts, t, doubtful)
    for j, topic in enumerate(topics):
        # a rule's concepts are all listed (a reader checks the rule against them), the most
        # specific to its documents first; the name comes from the first three that differ
        order = _specific_first(values, topic)
        rows = [(f, feature_labels.get(f)) for f in order]
        name, _ = _named(iter(rows), groups, 3, k + j, doubtful)
        listed = [{"feature": int(f), "label": label} for f, label in rows]
        listed.sort(key=lambda c: not says_something(c["label"]))
        out[k + j] = (name, listed)
    return out


def _specific_first(values, topic: ConceptTheme) -> list[int]:
    """The concepts of ``topic``'s rule, those most particular to its documents among the
    discovery documents ``values`` first: the difference of their frequencies in and out of the
    theme weighted by the log ratio (as the regions' concepts are ordered)."""
    present = sp.csc_matrix(values[:, list(topic.concepts)]) > 0
    inside = topic.members(values)
    n_in, n_out = max(int(inside.sum()), 1), max(int((~inside).sum()), 1)
    freq_in = np.asarray(present[inside].sum(axis=0)).ravel() / n_in
    freq_out = np.asarray(present[~inside].sum(axis=0)).ravel() / n_out
    specific = (freq_in - freq_out) * np.log(np.maximum(freq_in, 1e-3) / np.maximum(freq_out, 1e-3))
    ranked = sorted(range(len(topic.concepts)), key=lambda i: (-specific[i], i))
    return [int(topic.concepts[i]) for i in ranked]


def _doubtful_names(store: Store, encoder: Encoder) -> set[int]:
    """Concepts still shown under a shipped name that does not fit this store's documents (it
    detects their peaks worse than `SHIPPED_MIN_SCORE`, and no name could be made from them):
    a theme is not named after them while others can name it."""
    from saeembed.labels.local import SHIPPED_MIN_SCORE

    rows = store.sql(
        "SELECT feature FROM features WHERE encoder_id = ? AND label_source LIKE 'shipped:%' "
        "AND shipped_score < ?",
        [encoder.encoder_id, SHIPPED_MIN_SCORE],
    )
    return set(rows["feature"].to_list())


def _named(rows, groups: dict, top: int, theme: int, doubtful: set[int] = frozenset()
           ) -> tuple[str, list[dict]]:  # fmt: skip
    """A theme's name (its first three concepts) and its ``top`` concepts, from candidate
    ``(feature, label)`` rows in order: alike ones and ones named the same skipped, those named
    by content words first (a full stop or "the" may differ, but says nothing a reader can
    recognise a kind by), those whose names do not fit the store (``doubtful``) last."""
    seen, concepts = set(), []
    for f, label in rows:
        group = groups.get(int(f), int(f))
        if group in seen or (label and label in seen):  # alike, or named the same
            continue
        seen.update({group, label} if label else {group})
        concepts.append({"feature": int(f), "label": label})
        if len(concepts) == 2 * top:
            break
    concepts.sort(key=lambda c: (c["feature"] in doubtful, not says_something(c["label"])))
    concepts = concepts[:top]
    words = [c["label"] or f"#{c['feature']}" for c in concepts[:3]]
    return " · ".join(words) or f"theme {theme}", concepts


def rule_text(topic: ConceptTheme) -> str:
    """A concept theme's rule in words: ``at least 2 of 5 concepts``."""
    return f"at least {topic.at_least} of {len(topic.concepts)} concepts"


def says_something(label: str | None) -> bool:
    """Whether a concept's name holds a content word: a word of three letters or more that is
    no English stop word, outside a described symbol (``"." ending a sentence``) or a shape
    label's frame (``capitalised words (...)``)."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    from saeembed.labels.local import is_described_symbol, label_terms

    for term in label_terms(label):
        if is_described_symbol(term):
            continue
        for word in re.findall(r"[^\W\d_]{3,}", term):
            if word not in ENGLISH_STOP_WORDS:
                return True
    return False


def theme_examples(
    store: Store, everyone: np.ndarray, is_a: np.ndarray, members: list, closeness: list, n: int
) -> dict[int, list[dict]]:
    """Per theme (``members``: a mask over ``everyone`` each), the ``n`` documents of each side
    closest to it (``closeness``: a score over ``everyone`` each; the start of their text)."""
    picked: dict[int, list[tuple[str, int]]] = {}
    for t, (mask, near) in enumerate(zip(members, closeness, strict=True)):
        for side, in_side in (("A", is_a), ("B", ~is_a)):
            rows = np.flatnonzero(in_side & mask)
            best = rows[np.argsort(-near[rows], kind="stable")[:n]]
            picked.setdefault(t, []).extend((side, int(everyone[i])) for i in best)
    wanted = sorted({d for rows in picked.values() for _, d in rows})
    texts = dict(store.texts(wanted).iter_rows()) if wanted else {}
    return {
        t: [{"side": s, "doc_id": d, "text": excerpt(texts.get(d) or "")} for s, d in rows]
        for t, rows in picked.items()
    }
