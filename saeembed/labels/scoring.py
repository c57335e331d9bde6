"""Scoring labels by meaning: the embedding scorer.

The lexical detection score (`offline.matcher_score`) asks whether the label's words occur in the
documents where a feature fires; it rewards labels that are words. The embedding scorer asks
whether the label *means* what the feature fires on: it embeds the label and a sample of
contexts (a window of text around the feature's peak token in documents where it is strongly
active, and a window around a random word in documents where it is inactive) with a sentence
embedder, and reports the AUC with which the label's cosine similarity separates the two kinds
of context. 0.5 is chance; a shuffled-label control (each feature scored with another feature's
label) shows what an uninformative label scores on the same contexts.

Contexts come from one part of the evidence (held-out documents by default, so labels made on
the labelling part are scored on documents they never saw), and every context is embedded once
per `ContextBank`, however many labels are scored against it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.stats import rankdata

from saeembed.labels.evidence import NEGATIVE, POSITIVE, Evidence, document_classes
from saeembed.store.counts import STRONG_FRACTION

CONTEXT_CHARS = 40  # characters kept on each side of the centre word of a context


def context_window(text: str, start: int, end: int, width: int = CONTEXT_CHARS) -> str:
    """``text`` from ``width`` characters before ``start`` to ``width`` after ``end``, cut at
    word boundaries where it can be, on one line."""
    left = max(0, start - width)
    right = min(len(text), end + width)
    if left > 0 and not text[left - 1].isspace() and " " in text[left:start]:
        left = text.index(" ", left, start) + 1  # drop the cut word
    if right < len(text) and not text[right].isspace() and " " in text[end:right]:
        right = text.rindex(" ", end, right)
    return " ".join(text[left:right].split())


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    ranks = rankdata(np.concatenate([positive, negative]))  # ties get their average rank
    n_pos, n_neg = len(positive), len(negative)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@dataclass
class ContextBank:
    """Per feature, the contexts the embedding scorer compares a label with, and their
    embeddings (computed in one batch by `embed`)."""

    evidence: Evidence
    heldout: bool = True
    n_positive: int = 10
    n_negative: int = 40
    pool_size: int = 2000
    seed: int = 0
    strong_fraction: float = STRONG_FRACTION
    min_each: int = 3
    strongest: bool = False  # the strongest contexts, not a random sample of the strong ones
    texts: list[str] = field(default_factory=list)
    positives: dict[int, np.ndarray] = field(default_factory=dict)  # feature -> context rows
    negatives: dict[int, np.ndarray] = field(default_factory=dict)
    vectors: np.ndarray | None = None
    _pool_docs: np.ndarray | None = None

    def _pool(self) -> np.ndarray:
        """Random-word windows of a seeded sample of the part's documents, one per document."""
        if self._pool_docs is None:
            rng = np.random.default_rng(self.seed)
            part = np.flatnonzero(self.evidence.heldout == self.heldout)
            docs = np.sort(rng.choice(part, min(self.pool_size, len(part)), replace=False))
            kept = []
            for doc in docs:
                words = self.evidence.words(int(doc))
                if not words:
                    continue
                _, start, end = words[int(rng.integers(len(words)))]
                self.texts.append(context_window(self.evidence.texts[doc], start, end))
                kept.append(doc)
            self._pool_docs = np.asarray(kept, dtype=np.int64)  # their windows are texts[:n]
        return self._pool_docs

    def add(self, features: list[int]) -> list[int]:
        """Sample contexts for ``features``; returns those with at least ``min_each`` strongly
        active and ``min_each`` inactive documents in the part (the others cannot be scored)."""
        pool_docs = self._pool()
        rng = np.random.default_rng(self.seed + 1)
        ev = self.evidence
        scorable = []
        for feature in features:
            classes = document_classes(ev, feature, self.strong_fraction)
            rows = np.arange(ev.rows(feature).start, ev.rows(feature).stop)
            docs = ev.act_doc[rows]
            in_part = ev.heldout[docs] == self.heldout
            strong = rows[in_part & (classes[docs] == POSITIVE) & (ev.act_start[rows] >= 0)]
            negative = np.flatnonzero(classes[pool_docs] == NEGATIVE)
            if len(strong) < self.min_each or len(negative) < self.min_each:
                continue
            if self.strongest:  # rows are in descending order of activation
                strong = strong[: self.n_positive]
            else:
                strong = rng.choice(strong, min(self.n_positive, len(strong)), replace=False)
            negative = rng.choice(negative, min(self.n_negative, len(negative)), replace=False)
            first = len(self.texts)
            for row in strong:
                text = ev.texts[int(ev.act_doc[row])]
                self.texts.append(
                    context_window(text, int(ev.act_start[row]), int(ev.act_end[row]))
                )
            self.positives[feature] = np.arange(first, len(self.texts))
            self.negatives[feature] = negative  # pool windows come first in texts
            scorable.append(feature)
        return scorable

    def embed(self, embedder, batch_size: int = 128) -> None:
        """Embed the contexts added since the last call (each distinct text once: features
        that peak on the same token of a document share its window)."""
        done = 0 if self.vectors is None else len(self.vectors)
        distinct = list(dict.fromkeys(self.texts[done:]))
        vectors = embedder.embed(distinct, batch_size=batch_size)
        row = {t: i for i, t in enumerate(distinct)}
        fresh = vectors[[row[t] for t in self.texts[done:]]]
        self.vectors = fresh if self.vectors is None else np.concatenate([self.vectors, fresh])

    def score(self, feature: int, label_vector: np.ndarray) -> float | None:
        """AUC of ``label_vector``'s similarity at separating the feature's strong contexts from
        its inactive ones; None when the feature has too few of either."""
        if feature not in self.positives or self.vectors is None:
            return None
        positive = self.vectors[self.positives[feature]] @ label_vector
        negative = self.vectors[self.negatives[feature]] @ label_vector
        return auc(positive, negative)


def embedding_scores(
    evidence: Evidence,
    labels: dict[int, str],
    embedder,
    *,
    heldout: bool = True,
    control_seed: int | None = None,
    bank: ContextBank | None = None,
) -> tuple[dict[int, float | None], dict[int, float | None]]:
    """Embedding-scorer AUC of each feature's label (``labels``: feature -> label text), and of
    the shuffled-label control (each feature scored with the label of another feature, a seeded
    permutation) when ``control_seed`` is given (else the control is empty)."""
    features = sorted(f for f, text in labels.items() if text)
    if bank is None:
        bank = ContextBank(evidence, heldout=heldout)
        bank.add(features)
        bank.embed(embedder)
    texts = [labels[f] for f in features]
    vectors = embedder.embed(texts) if texts else np.zeros((0, 1), np.float32)
    scores = {f: bank.score(f, vectors[i]) for i, f in enumerate(features)}
    control: dict[int, float | None] = {}
    if control_seed is not None and len(features) > 1:
        rng = np.random.default_rng(control_seed)
        shift = rng.permutation(len(features))
        # a derangement: no feature keeps its own label
        same = shift == np.arange(len(features))
        shift[same] = (shift[same] + 1) % len(features)
        control = {f: bank.score(f, vectors[shift[i]]) for i, f in enumerate(features)}
    return scores, control
