"""What labelling looks at: an encoder's documents and activations read out of the store into
arrays (documents split into a labelling part and a held-out scoring part by a hash of their id),
the words of each document as a binary document x term matrix, and the word under a feature's
peak token with its context."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from saeembed.errors import StoreError
from saeembed.store import Encoder, Store

log = logging.getLogger(__name__)

#: A word (letters/digits, with inner apostrophes), a single punctuation mark, or a run of
#: layout whitespace (line breaks, tabs, two or more spaces), which tokenizers also make tokens of.
WORD = re.compile(r"\w+(?:['’]\w+)*|[^\w\s]|\n[\n ]*|\t+| {2,}")
#: How layout whitespace is spelled as a term.
LAYOUT = {"\n": "⏎", "\t": "⇥", " ": "␣␣"}
#: Documents whose id is divisible by this are held out of labelling and used for scoring.
HELDOUT_MODULUS = 5
PEAK_MARK = ("«", "»")


def words_with_spans(text: str) -> list[tuple[str, int, int]]:
    """Lower-cased words (and layout whitespace as ⏎, ⇥ or ␣␣) with their character spans."""
    out = []
    for m in WORD.finditer(text):
        word = m.group()
        if word[0].isspace():
            word = LAYOUT[word[0]]
        out.append((word.lower(), m.start(), m.end()))
    return out


def snippet(text: str, start: int | None, end: int | None, width: int = 70) -> str:
    """``text`` around ``[start, end)`` with that span marked «like this», on one line."""
    if start is None or end is None:
        return " ".join(text[: 2 * width].split())
    left = text[max(0, start - width) : start]
    right = text[end : end + width]
    left = ("…" if start > width else "") + left
    right = right + ("…" if end + width < len(text) else "")
    marked = f"{left}{PEAK_MARK[0]}{text[start:end]}{PEAK_MARK[1]}{right}"
    return " ".join(marked.split())


def excerpt(text: str, width: int = 200) -> str:
    """``text`` on one line, cut at a word boundary before ``width`` characters ("…" marks a
    cut)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1].rsplit(" ", 1)[0] + "…"


def balanced_accuracy(tp: int, fp: int, n_pos: int, n_neg: int) -> float:
    return 0.5 * (tp / n_pos + 1.0 - fp / n_neg)


POSITIVE, NEGATIVE, IGNORED = 1, 0, -1


def strong_threshold(values: np.ndarray, fraction: float = 0.5) -> float:
    """The pooled value above which a feature counts as strongly active in a document."""
    return fraction * float(np.quantile(values, 0.99)) if len(values) else 0.0


def document_classes(evidence: Evidence, feature: int, fraction: float = 0.5) -> np.ndarray:
    """Per document: POSITIVE (strongly active), IGNORED (weakly active) or NEGATIVE (inactive)."""
    rows = evidence.rows(feature)
    values = evidence.act_value[rows]
    classes = np.full(evidence.n_docs, NEGATIVE, dtype=np.int8)
    docs = evidence.act_doc[rows]
    strong = values >= strong_threshold(values, fraction)
    classes[docs[~strong]] = IGNORED
    classes[docs[strong]] = POSITIVE
    return classes


@dataclass
class Evidence:
    """An encoder's documents and activations, arranged for per-feature work.

    Activation rows are sorted by feature, then by value (descending); ``rows(f)`` is feature
    ``f``'s slice. Documents are addressed by their position in ``doc_ids``."""

    doc_ids: np.ndarray  # int64 [n_docs]
    texts: list[str]
    heldout: np.ndarray  # bool [n_docs]
    d_sae: int
    act_doc: np.ndarray  # int32 [n_rows], index into doc_ids
    act_value: np.ndarray  # float32 [n_rows]
    act_start: np.ndarray  # int32 [n_rows], -1 when unknown
    act_end: np.ndarray  # int32 [n_rows]
    offsets: np.ndarray  # int64 [d_sae + 1]
    _words: dict[int, list[tuple[str, int, int]]] = field(default_factory=dict, repr=False)

    @property
    def n_docs(self) -> int:
        return len(self.doc_ids)

    def rows(self, feature: int) -> slice:
        return slice(int(self.offsets[feature]), int(self.offsets[feature + 1]))

    def n_active(self, feature: int) -> int:
        return int(self.offsets[feature + 1] - self.offsets[feature])

    def words(self, doc: int) -> list[tuple[str, int, int]]:
        if doc not in self._words:
            self._words[doc] = words_with_spans(self.texts[doc])
        return self._words[doc]

    def peak_word_index(self, row: int) -> int | None:
        """Index (in ``words(doc)``) of the word under activation row ``row``'s peak token."""
        start, end = int(self.act_start[row]), int(self.act_end[row])
        if start < 0:
            return None
        words = self.words(int(self.act_doc[row]))
        for i, (_, w_start, w_end) in enumerate(words):
            if w_end > start and w_start < end:
                return i
        # a lone space token (SmolLM2 writes " 29" as " ", "2", "9") belongs to the next word
        for i, (_, w_start, _) in enumerate(words):
            if w_start >= end:
                return i if w_start == end else None
        return None

    def snippet(self, row: int, width: int = 70) -> str:
        start, end = int(self.act_start[row]), int(self.act_end[row])
        text = self.texts[int(self.act_doc[row])]
        return snippet(text, start if start >= 0 else None, end if start >= 0 else None, width)

    @cached_property
    def terms(self) -> TermIndex:
        return TermIndex.build(self)


@dataclass
class TermIndex:
    """Which documents contain which words and adjacent word pairs ("terms"), as binary CSC
    matrices for the labelling part and the held-out part of the documents."""

    vocabulary: dict[str, int]
    train: sp.csc_matrix  # [n_docs, n_terms], rows of held-out documents empty
    heldout: sp.csc_matrix  # [n_docs, n_terms], rows of labelling documents empty

    @classmethod
    def build(cls, evidence: Evidence) -> TermIndex:
        vocabulary: dict[str, int] = {}
        indptr, indices = [0], []
        for doc in range(evidence.n_docs):
            words = [w for w, _, _ in evidence.words(doc)]
            evidence._words.pop(doc, None)  # keep memory flat; peaks re-tokenise on demand
            terms = set(words) | {f"{a} {b}" for a, b in zip(words, words[1:], strict=False)}
            indices.extend(vocabulary.setdefault(t, len(vocabulary)) for t in terms)
            indptr.append(len(indices))
        data = np.ones(len(indices), dtype=np.bool_)
        matrix = sp.csr_matrix(
            (data, np.asarray(indices, dtype=np.int64), np.asarray(indptr, dtype=np.int64)),
            shape=(evidence.n_docs, len(vocabulary)),
        )
        keep = sp.diags(evidence.heldout.astype(np.int8), dtype=np.int8)
        drop = sp.diags((~evidence.heldout).astype(np.int8), dtype=np.int8)
        return cls(
            vocabulary,
            (drop @ matrix).astype(np.bool_).tocsc(),
            (keep @ matrix).astype(np.bool_).tocsc(),
        )

    def docs_with(self, term: str, *, heldout: bool = False) -> np.ndarray:
        """Positions of the documents (of one part) that contain ``term``."""
        column = self.vocabulary.get(term)
        if column is None:
            return np.empty(0, dtype=np.int32)
        matrix = self.heldout if heldout else self.train
        return matrix.indices[matrix.indptr[column] : matrix.indptr[column + 1]]


def load_evidence(
    store: Store,
    encoder: Encoder,
    *,
    corpus: str | None = None,
    max_docs: int | None = None,
    only: np.ndarray | None = None,
) -> Evidence:
    """Read the documents encoded by ``encoder`` (optionally of one corpus; at most ``max_docs``
    of them, a sample fixed by document id; only those among the ids ``only``, if given) and all
    their activations."""
    doc_ids = store.encoded_doc_ids(encoder, corpus, max_docs)
    if only is not None:
        doc_ids = np.intersect1d(doc_ids, np.asarray(only, dtype=doc_ids.dtype))
        if not len(doc_ids):
            raise StoreError(
                f"none of the {len(only):,} given documents is encoded by {encoder.name}"
            )
    docs = store.texts(doc_ids).sort("doc_id")
    with store.temporary(evidence_docs={"doc_id": doc_ids}) as con:
        acts = con.sql(
            """
            SELECT a.feature, a.doc_id, a.value, coalesce(a.peak_start, -1) AS peak_start,
                   coalesce(a.peak_end, -1) AS peak_end
            FROM activations a SEMI JOIN evidence_docs x ON x.doc_id = a.doc_id
            WHERE a.encoder_id = ?
            ORDER BY a.feature, a.value DESC, a.doc_id
            """,
            params=[encoder.encoder_id],
        ).fetchnumpy()
    features = np.asarray(acts["feature"], dtype=np.int64)
    offsets = np.searchsorted(features, np.arange(encoder.d_sae + 1)).astype(np.int64)
    log.info(
        "labelling evidence: %d documents, %d activations of %d features",
        len(doc_ids),
        len(features),
        encoder.d_sae,
    )
    return Evidence(
        doc_ids=doc_ids,
        texts=docs["text"].to_list(),
        heldout=(doc_ids % HELDOUT_MODULUS) == 0,
        d_sae=encoder.d_sae,
        act_doc=np.searchsorted(doc_ids, np.asarray(acts["doc_id"])).astype(np.int32),
        act_value=np.asarray(acts["value"], dtype=np.float32),
        act_start=np.asarray(acts["peak_start"], dtype=np.int32),
        act_end=np.asarray(acts["peak_end"], dtype=np.int32),
        offsets=offsets,
    )
