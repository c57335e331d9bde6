"""Store names chosen by meaning: of the names a concept could carry on this store, the one whose
sentence embedding best tells the text around its peaks from the text of documents where it is
silent.

`saeembed.labels.local` reads a concept's peaks word by word and keeps the descriptors that recur;
that finds *what* sits under the peaks, not which of those words says what the passages share
("spokesman said" rather than "spokesman / said"). This module settles that with the sentence
embedder, the way the embedding scorer (`saeembed.labels.scoring`) judges a name:

- **windows**: a fixed sample of the store's documents (`MeaningConfig.max_docs`, by a hash of the
  id) is cut into windows centred every `stride` words, 40 characters either side of the centre
  word (`scoring.context_window`), and each window is embedded once, whatever the number of
  concepts; the time is bounded by the sample, not the store;
- per concept, its **positives** are the windows at its peaks in the sampled documents where it
  is strongly active (at least half its 99th-percentile value there), the strongest first; its
  **negatives** windows of sampled documents where it is silent;
- **candidates**: the names it has now (shown, local, shipped) and the terms of the first two,
  the words and short phrases (one to three words holding the peak word) that two or more of its
  strongest peaks share, the content words near two or more of them, and the words under its
  few strongest peaks;
- each candidate is scored by the AUC of its cosine similarity, positives against negatives; the
  name is the best candidate, or the best two or three joined (``a / b / c``, each added term
  raising the AUC by `min_gain`), whichever scores higher, and it replaces the current name only
  when it scores `min_better` above it; a name that is a described symbol (``"." ending a
  sentence``) keeps the symbol first.

The sentence embedder is the default one (all-MiniLM-L6-v2, from PyPI); when it cannot be loaded
the names stay as `saeembed.labels.local` decided them, and a warning says so.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from saeembed.labels.evidence import HELDOUT_MODULUS, words_with_spans
from saeembed.labels.local import is_described_symbol
from saeembed.labels.scoring import context_window
from saeembed.store import Encoder, Store

log = logging.getLogger(__name__)

_WORDLIKE = re.compile(r"^\w")


@dataclass(frozen=True)
class MeaningConfig:
    max_docs: int = 2_000  # documents cut into windows and embedded (a fixed sample)
    stride: int = 10  # words between window centres
    positives: int = 120  # strongest peak windows a concept is judged on
    negatives: int = 300  # windows of documents where it is silent
    min_positives: int = 5  # fewer strong peaks in the sample: the name is left as it is
    candidate_peaks: int = 40  # strongest peaks whose words are proposed as names
    max_candidates: int = 12  # words and phrases proposed per concept (besides its names)
    peak_words: int = 5  # the words under this many strongest peaks are proposed too
    max_terms: int = 3  # terms in a joined name
    min_gain: float = 0.03  # AUC a term must add to a joined name
    min_better: float = 0.03  # AUC a new name must add over the current one
    context_radius: int = 8  # words either side of a peak whose content words are proposed
    embedder: str = "default"


# ---- windows -------------------------------------------------------------------------------


@dataclass
class Windows:
    """The sampled documents cut into embedded windows, and their words."""

    doc_ids: np.ndarray  # sorted ids of the sampled documents
    owner: np.ndarray  # per window: its document's position in doc_ids
    centre: np.ndarray  # per window: the character offset of its centre word
    vectors: np.ndarray  # per window: its embedding (unit length)
    words: list[list[str]]  # per document: its words, lower case
    word_end: list[np.ndarray]  # per document: where each word ends
    around: dict = field(default_factory=dict)  # (document, word) -> `_around`

    def at(self, doc: np.ndarray, start: np.ndarray) -> np.ndarray:
        """The window nearest each (document position, character offset)."""
        keys = self.owner.astype(np.int64) << 32 | self.centre.astype(np.int64)
        wanted = doc.astype(np.int64) << 32 | np.maximum(start, 0).astype(np.int64)
        right = np.clip(np.searchsorted(keys, wanted), 0, len(keys) - 1)
        left = np.clip(right - 1, 0, len(keys) - 1)
        distance = np.where(self.owner[right] == doc, np.abs(self.centre[right] - start), 1 << 40)
        other = np.where(self.owner[left] == doc, np.abs(self.centre[left] - start), 1 << 40)
        return np.where(other < distance, left, right)

    def word_at(self, doc: int, start: int) -> int | None:
        """Index of the word of document position ``doc`` that holds (or follows) ``start``."""
        j = int(np.searchsorted(self.word_end[doc], start, side="right"))
        return j if j < len(self.words[doc]) else None


def cut_windows(doc_ids: np.ndarray, texts: list[str], stride: int, embedder) -> Windows | None:
    """The documents ``doc_ids`` (sorted; ``texts`` theirs) cut into windows every ``stride``
    words and embedded; None when they hold no words."""
    owner, centre, windows, words, ends = [], [], [], [], []
    for i, text in enumerate(texts):
        spans = words_with_spans(text or "")
        words.append([w for w, _, _ in spans])
        ends.append(np.asarray([e for _, _, e in spans], dtype=np.int64))
        for _, s, e in spans[::stride]:
            owner.append(i)
            centre.append(s)
            windows.append(context_window(text, s, e))
    if not windows:
        return None
    vectors = _embed_all(embedder, windows)
    return Windows(
        doc_ids, np.asarray(owner, dtype=np.int64), np.asarray(centre, dtype=np.int64),
        np.stack([vectors[t] for t in windows]), words, ends,
    )  # fmt: skip


# ---- what each concept is judged on --------------------------------------------------------


def _sample(store: Store, encoder: Encoder, config: MeaningConfig, skip_heldout: bool):
    """Ids and texts of the sampled documents, and the activations of ``features`` in them
    (``feature, doc, value, peak_start``; strongest first per concept)."""
    ids = store.sql(
        """
        SELECT doc_id FROM encoded_documents
        WHERE encoder_id = $enc AND NOT ($skip AND doc_id % $modulus = 0)
        ORDER BY hash(doc_id), doc_id LIMIT $limit
        """,
        {"enc": encoder.encoder_id, "skip": skip_heldout, "modulus": HELDOUT_MODULUS,
         "limit": config.max_docs},
    )["doc_id"].to_numpy()  # fmt: skip
    ids = np.sort(ids)
    texts = store.texts(ids).sort("doc_id")
    with store.temporary(meaning_docs={"doc_id": ids}):
        acts = store.sql(
            """
            SELECT a.feature::BIGINT AS feature, a.doc_id, a.value,
                   coalesce(a.peak_start, -1) AS peak_start
            FROM activations a SEMI JOIN meaning_docs m ON m.doc_id = a.doc_id
            WHERE a.encoder_id = ?
            ORDER BY a.feature, a.value DESC, a.doc_id
            """,
            [encoder.encoder_id],
        )
    return ids, dict(zip(texts["doc_id"], texts["text"], strict=True)), acts


def _positives_and_active(frame: pl.DataFrame, ids: np.ndarray, config: MeaningConfig):
    """Per concept: its strong peak rows (document position, peak start; strongest first) and
    the positions of every document where it is active."""
    feature = frame["feature"].to_numpy()
    doc = np.searchsorted(ids, frame["doc_id"].to_numpy())
    value = frame["value"].to_numpy()
    start = frame["peak_start"].to_numpy()
    bounds = np.flatnonzero(np.diff(feature)) + 1
    out = {}
    for rows in np.split(np.arange(len(feature)), bounds):
        if not len(rows):
            continue
        strong = rows[value[rows] >= 0.5 * float(np.quantile(value[rows], 0.99))]
        strong = strong[start[strong] >= 0][: config.positives]
        if len(strong) >= config.min_positives:
            out[int(feature[rows[0]])] = (doc[strong], start[strong], np.unique(doc[rows]))
    return out


def _negatives(windows: Windows, active: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Up to ``n`` windows of documents where the concept is silent (a seeded draw)."""
    rng = np.random.default_rng(seed)
    draw = rng.choice(len(windows.owner), min(len(windows.owner), 3 * n), replace=False)
    return draw[~np.isin(windows.owner[draw], active)][:n]


def propose(windows: Windows, doc: np.ndarray, start: np.ndarray, config: MeaningConfig):
    """Words and short phrases that at least two of the peaks share (one to three words holding
    the peak word), and content words near at least two peaks, most frequent first; then the
    content words under the strongest few peaks."""
    from saeembed.labels.offline import is_content_word

    grams: Counter = Counter()
    near: Counter = Counter()
    for d, s in zip(doc[: config.candidate_peaks], start[: config.candidate_peaks], strict=True):
        j = windows.word_at(int(d), int(s))
        if j is None:
            continue
        around = _around(windows, int(d), j, config.context_radius)
        grams.update(around[0])
        near.update(around[1])
    ranked = [g for g, m in grams.most_common() if m >= 2][: config.max_candidates * 2 // 3]
    ranked += [w for w, m in near.most_common() if m >= 2]
    # and the words under the strongest few peaks, even once each: a concept on what words
    # mean ("moronic", "pathetic") peaks on a different word every time
    strongest = []
    for d, s in zip(doc[: config.peak_words], start[: config.peak_words], strict=True):
        j = windows.word_at(int(d), int(s))
        if j is not None and is_content_word(windows.words[int(d)][j]):
            strongest.append(windows.words[int(d)][j])
    return list(dict.fromkeys(ranked[: config.max_candidates] + strongest))


def _around(windows: Windows, doc: int, j: int, radius: int) -> tuple[frozenset, frozenset]:
    """The phrases of one to three words holding word ``j`` of a document, and the content words
    within ``radius`` words of it (read once per word: concepts often peak on the same one)."""
    key = (doc, j)
    if key not in windows.around:
        from saeembed.labels.offline import is_content_word

        words = windows.words[doc]
        found = set()
        for a in range(max(0, j - 2), j + 1):
            for b in range(j + 1, min(len(words), a + 3) + 1):
                piece = words[a:b]
                if all(_WORDLIKE.match(w) for w in piece):
                    found.add(" ".join(piece))
        lo, hi = max(0, j - radius), j + radius + 1
        near = frozenset(w for w in words[lo:hi] if is_content_word(w))
        windows.around[key] = (frozenset(found), near)
    return windows.around[key]


def column_aucs(positive: np.ndarray, negative: np.ndarray) -> np.ndarray:
    """Per column, the AUC with which ``positive`` rows score above ``negative`` rows (ties
    count half). The values are cosines (within [-1, 1]): shifting column j by 4j puts every
    column's sorted negatives in one sorted array, so one search counts them all."""
    n_pos, n_neg = len(positive), len(negative)
    shift = 4.0 * np.arange(positive.shape[1])
    pooled = np.sort(negative.astype(np.float64) + shift, axis=0).T.ravel()
    moved = positive.astype(np.float64) + shift
    start = n_neg * np.arange(positive.shape[1])
    below = np.searchsorted(pooled, moved, side="left") - start
    at_most = np.searchsorted(pooled, moved, side="right") - start
    return (below + at_most).sum(axis=0) / (2.0 * n_pos * n_neg)


def _terms(name: str) -> list[str]:
    return [t.strip() for t in name.split(" / ") if t.strip()]


# ---- choosing ------------------------------------------------------------------------------


@dataclass
class _Case:
    """One concept being named: its windows and candidates, scored."""

    current: str
    candidates: list[str]
    positive: np.ndarray  # windows at its peaks
    negative: np.ndarray  # windows where it is silent
    lead: str | None = None  # a described symbol the name must start with
    scores: np.ndarray | None = None  # per candidate, its AUC
    joined: str | None = None  # the best candidates joined, when that scores higher


def choose_names(
    store: Store,
    encoder: Encoder,
    current: dict[int, tuple[str | None, list[str]]],
    config: MeaningConfig = MeaningConfig(),
    *,
    skip_heldout: bool = False,
) -> dict[int, tuple[str, float, float]]:
    """For each concept of ``current`` (feature -> (the name it shows now, other names it could
    show)), the name that reads its peaks best by meaning, where that beats the current one by
    ``config.min_better``: feature -> (name, its AUC, the current name's AUC). Empty when the
    embedder cannot be loaded or the sample has no text."""
    from saeembed.embedder import load_embedder

    try:
        embedder = load_embedder(config.embedder)
    except Exception as error:  # noqa: BLE001 (no embedder: names stay by words)
        log.warning("names are chosen by words only: the sentence embedder failed: %s", error)
        return {}
    ids, texts, frame = _sample(store, encoder, config, skip_heldout)
    windows = cut_windows(ids, [texts.get(int(i), "") for i in ids], config.stride, embedder)
    if windows is None:
        return {}
    peaks = _positives_and_active(frame.filter(pl.col("feature").is_in(list(current))), ids, config)
    cases = _cases(windows, peaks, current, config)
    vectors = _embed_all(embedder, (c for case in cases.values() for c in case.candidates))
    for case in cases.values():
        _score(case, np.stack([vectors[c] for c in case.candidates]), windows.vectors, config)
    joined = _embed_all(embedder, (c.joined for c in cases.values() if c.joined))
    chosen = {}
    for feature, case in cases.items():
        best = int(np.argmax(case.scores))
        name, score = case.candidates[best], float(case.scores[best])
        if case.lead:
            name, score = case.current, 0.0  # only a name that keeps the symbol
        if case.joined:
            vector = joined[case.joined][:, None]
            together = float(column_aucs(windows.vectors[case.positive] @ vector,
                                         windows.vectors[case.negative] @ vector)[0])  # fmt: skip
            if together > score:
                name, score = case.joined, together
        now = float(case.scores[case.candidates.index(case.current)]) if case.current else 0.5
        if name != case.current and score > now + config.min_better:
            chosen[feature] = (name, score, now)
    log.info(
        "names by meaning: %d of %d concepts judged on %d windows of %d documents got a new name",
        len(chosen), len(cases), len(windows.owner), len(ids),
    )  # fmt: skip
    return chosen


def _cases(windows: Windows, peaks: dict, current: dict, config: MeaningConfig) -> dict:
    """The concepts with enough peaks in the sample, with their windows and candidates."""
    cases: dict[int, _Case] = {}
    for feature, (doc, start, active) in peaks.items():
        shown, others = current[feature]
        # '"." ending a sentence' says where a concept fires; words may add what is around it
        lead = _terms(shown)[0] if shown and is_described_symbol(_terms(shown)[0]) else None
        names = [n for n in (shown, *others) if n]
        terms = [t for n in names[:2] for t in _terms(n)]  # the shown and local names' terms
        proposed = propose(windows, doc, start, config)
        candidates = list(dict.fromkeys([*names, *terms, *proposed]))
        negative = _negatives(windows, active, config.negatives, seed=feature)
        if not candidates or len(negative) < config.min_positives:
            continue
        cases[feature] = _Case(shown or "", candidates, windows.at(doc, start), negative, lead)
    return cases


def _score(case: _Case, matrix: np.ndarray, window_vectors: np.ndarray, config) -> None:
    """Each candidate's AUC, and the best terms joined: starting from the best one (or the
    symbol a name keeps), the term whose addition raises the AUC of the terms' summed embedding
    most is added while that gain is at least ``config.min_gain`` (the AUC of a sum of unit
    vectors is that of the summed similarities: no vector is rebuilt per trial)."""
    on = window_vectors[case.positive] @ matrix.T
    off = window_vectors[case.negative] @ matrix.T
    case.scores = column_aucs(on, off)
    order = [i for i in np.argsort(-case.scores, kind="stable") if " / " not in case.candidates[i]]
    if case.lead:  # the symbol first, then the words that add most
        lead = case.candidates.index(case.lead)
        order = [lead, *[i for i in order if i != lead and _WORDLIKE.match(case.candidates[i])]]
    if len(order) < 2:
        return
    chosen, current = [order[0]], float(case.scores[order[0]])
    pool = order[1:8]
    while pool and len(chosen) < config.max_terms:
        words = {w for i in chosen for w in case.candidates[i].split()}
        pool = [i for i in pool if not set(case.candidates[i].split()) <= words]
        if not pool:
            break
        base_on, base_off = on[:, chosen].sum(axis=1), off[:, chosen].sum(axis=1)
        trials = column_aucs(base_on[:, None] + on[:, pool], base_off[:, None] + off[:, pool])
        best = int(np.argmax(trials))
        if trials[best] < current + config.min_gain:
            break
        chosen.append(pool.pop(best))
        current = float(trials[best])
    if len(chosen) > 1:
        case.joined = " / ".join(case.candidates[i] for i in chosen)


# texts embedded in this process: encoding two corpora (a diff) names the concepts after each,
# and the second naming reads mostly the same windows and candidate names
_EMBEDDED: dict[tuple[str, str], np.ndarray] = {}
_EMBEDDED_MAX = 200_000


def _embed_all(embedder, texts) -> dict[str, np.ndarray]:
    """Each distinct text's embedding, embedding only those not embedded before."""
    distinct = list(dict.fromkeys(texts))
    model = f"{embedder.model_id}@{embedder.revision}"
    fresh = [t for t in distinct if (model, t) not in _EMBEDDED]
    if fresh:
        vectors = embedder.embed(fresh, batch_size=256)
        if len(_EMBEDDED) + len(fresh) > _EMBEDDED_MAX:
            _EMBEDDED.clear()
        _EMBEDDED.update(((model, t), v) for t, v in zip(fresh, vectors, strict=True))
        known = dict(zip(fresh, vectors, strict=True))
    else:
        known = {}
    return {t: known[t] if t in known else _EMBEDDED[(model, t)] for t in distinct}
