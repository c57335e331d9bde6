"""The offline labeller: names a feature from the contexts it peaks in, with no LLM.

For each feature it collects the word under the peak token and the patterns around it (word pairs
and triples spanning the peak: "talent for", "knows how to") in the feature's top-activating
labelling documents, plus the tokens its decoder direction promotes through the reader's
unembedding when those are known. It then greedily picks up to three of those terms by two
criteria on the labelling documents, summed: how well "the document contains one of the terms"
separates the documents where the feature is *strongly* active from those where it is not active
at all (balanced accuracy), and, with a sentence embedder, how well the terms' meaning separates
the contexts of the feature's peaks from contexts where it is inactive (the embedding scorer's AUC,
`saeembed.labels.scoring`). The label is those terms; the label's own matcher is then scored on
the held-out documents, which gives the feature's detection score. The feature's evidence
embedding (the mean embedding of its peak contexts) is kept beside the label, so that phrases can
find the feature by what it fires on even when the label's words differ.

"Strongly active" means a pooled value of at least half the feature's 99th-percentile value
(`strong_threshold`); documents where the feature is only weakly active count on neither side, as
in the automated-interpretability practice of contrasting activating with non-activating examples."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

import numpy as np

from saeembed.labels.evidence import (
    NEGATIVE,
    POSITIVE,
    Evidence,
    balanced_accuracy,
    document_classes,
)
from saeembed.labels.scoring import ContextBank
from saeembed.store.counts import STRONG_FRACTION

log = logging.getLogger(__name__)

SOURCE = "offline"


@dataclass(frozen=True)
class OfflineConfig:
    top_docs: int = 20  # top-activating labelling documents whose peaks propose terms
    max_candidates: int = 12  # most frequent proposed terms considered per feature
    max_terms: int = 3  # terms in a label
    min_gain: float = 0.01  # balanced-accuracy gain a further term must bring
    n_examples: int = 5  # example snippets kept per feature
    min_heldout: int = 3  # held-out documents needed on each side to score
    strong_fraction: float = STRONG_FRACTION  # strong: value >= this x the 99th percentile
    n_output_tokens: int = 3  # decoder-promoted tokens proposed as terms (when known)
    semantic_positive: int = 12  # strongest peak contexts per feature for the meaning criterion
    semantic_negative: int = 30  # inactive contexts per feature for the meaning criterion
    semantic_pool: int = 1000  # labelling documents whose random windows are the inactive ones
    context_radius: int = 8  # words either side of a peak whose content words are candidates
    context_terms: int = 6  # most frequent content words near the peaks proposed as terms
    context_min_docs: int = 3  # top documents a context word must be near the peak in
    context_p: float = 0.001  # binomial p-value of a context word's count near the peaks


@dataclass(frozen=True)
class FeatureLabel:
    feature: int
    label: str | None
    description: str | None
    score: float | None  # held-out balanced accuracy of the label's matcher
    density: float  # share of the documents where the feature is active
    n_docs: int  # documents where the feature is active
    examples: list[str]
    terms: tuple[str, ...] = ()
    evidence: np.ndarray | None = None  # unit mean embedding of the feature's peak contexts


def render_terms(terms: tuple[str, ...]) -> str:
    """``film / movie / "!"``: words as they are, punctuation quoted so it stays visible."""
    return " / ".join(t if any(c.isalnum() for c in t) else f'"{t}"' for t in terms)


def propose_terms(evidence: Evidence, rows: np.ndarray, patterns: bool = False) -> Counter[str]:
    """Terms at the peaks of activation rows ``rows``: the peak word and the pairs around it;
    with ``patterns``, also the word triples that span the peak."""
    proposed: Counter[str] = Counter()
    for row in rows:
        i = evidence.peak_word_index(int(row))
        if i is None:
            continue
        words = [w for w, _, _ in evidence.words(int(evidence.act_doc[row]))]
        windows = [(i, i + 1), (i - 1, i + 1), (i, i + 2)]
        if patterns:
            windows += [(i - 2, i + 1), (i - 1, i + 2)]
        proposed.update({" ".join(words[a:b]) for a, b in windows if a >= 0 and b <= len(words)})
    return proposed


def ranked(counts: Counter[str], n: int | None = None) -> list[tuple[str, int]]:
    """``counts`` by count, ties by term: the same order in every process (a Counter's own order
    follows insertion, which follows set iteration, which follows Python's hash seed)."""
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return items if n is None else items[:n]


def is_content_word(word: str) -> bool:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return len(word) >= 3 and word.isalpha() and word not in ENGLISH_STOP_WORDS


def context_words(evidence: Evidence, rows: np.ndarray, radius: int) -> Counter[str]:
    """Content words within ``radius`` words of the peaks of ``rows``, counted once per row: what
    a feature's contexts are about when the peak word itself is a function word ("talent" and
    "knack" around a feature that fires on "for")."""
    near: Counter[str] = Counter()
    for row in rows:
        i = evidence.peak_word_index(int(row))
        if i is None:
            continue
        words = [w for w, _, _ in evidence.words(int(evidence.act_doc[row]))]
        window = words[max(0, i - radius) : i] + words[i + 1 : i + 1 + radius]
        near.update({w for w in window if is_content_word(w)})
    return near


def specific_context_words(
    evidence: Evidence, rows: np.ndarray, config: OfflineConfig
) -> list[str]:
    """The content words near the peaks of ``rows``, at ``context_min_docs`` of them or more and
    more often than their share of labelling documents explains (one-sided binomial test at
    ``context_p``), ranked by count x inverse document frequency: "said" or "people", near every
    peak of a news corpus, are left out, and so is a word that a few peaks share by chance."""
    from scipy.stats import binom

    near = context_words(evidence, rows, config.context_radius)
    n_train = int((~evidence.heldout).sum()) + 1
    scored = []
    for word, count in near.items():
        if count < config.context_min_docs:
            continue
        df = (len(evidence.terms.docs_with(word)) + 1) / n_train
        if binom.sf(count - 1, len(rows), df) <= config.context_p:
            scored.append((-count * np.log(1 / df), word))
    return [w for _, w in sorted(scored)[: config.context_terms]]


def lexical_accuracy(
    evidence: Evidence, terms: list[str], classes: np.ndarray, n_pos: int, n_neg: int
) -> float:
    """Balanced accuracy, on the labelling documents, of "contains one of ``terms``"."""
    if not terms:
        return 0.5
    docs = np.unique(np.concatenate([evidence.terms.docs_with(t) for t in terms]))
    hit = classes[docs]
    return balanced_accuracy(
        int((hit == POSITIVE).sum()), int((hit == NEGATIVE).sum()), n_pos, n_neg
    )


@dataclass
class Meaning:
    """What the meaning criterion needs: the labelling part's contexts (`ContextBank`) and the
    embedding of every candidate term."""

    bank: object  # saeembed.labels.scoring.ContextBank
    term_vectors: dict[str, np.ndarray]

    def vector(self, terms: list[str]) -> np.ndarray:
        v = np.mean([self.term_vectors[t] for t in terms], axis=0)
        return v / (np.linalg.norm(v) or 1.0)

    def accuracy(self, feature: int, terms: list[str]) -> float:
        score = self.bank.score(feature, self.vector(terms)) if terms else None
        return 0.5 if score is None else score

    def evidence(self, feature: int) -> np.ndarray | None:
        rows = self.bank.positives.get(feature)
        if rows is None or self.bank.vectors is None:
            return None
        v = self.bank.vectors[rows].mean(axis=0)
        return (v / (np.linalg.norm(v) or 1.0)).astype(np.float32)


def choose_by_words_and_meaning(
    evidence: Evidence,
    feature: int,
    candidates: list[str],
    classes: np.ndarray,
    config: OfflineConfig,
    meaning: Meaning,
) -> tuple[str, ...]:
    """Greedy choice of up to ``max_terms`` candidates maximising lexical balanced accuracy plus
    the meaning criterion's AUC, both on the labelling documents."""
    train = ~evidence.heldout
    n_pos = int((classes[train] == POSITIVE).sum())
    n_neg = int((classes[train] == NEGATIVE).sum())
    if n_pos == 0 or n_neg == 0:
        return ()

    def objective(terms: list[str]) -> float:
        return lexical_accuracy(evidence, terms, classes, n_pos, n_neg) + meaning.accuracy(
            feature, terms
        )

    chosen: list[str] = []
    best = 1.0  # chance on both criteria
    for _ in range(config.max_terms):
        scored = [(objective([*chosen, t]), t) for t in candidates if t not in chosen]
        if not scored:
            break
        value, pick = max(scored)
        if value - best < (config.min_gain if chosen else 1e-9):
            break
        chosen.append(pick)
        best = value
    return tuple(chosen)


def choose_terms(
    evidence: Evidence, candidates: list[str], classes: np.ndarray, config: OfflineConfig
) -> tuple[tuple[str, ...], float]:
    """Greedy OR-rule over ``candidates`` maximising balanced accuracy on labelling documents
    (strongly active against inactive)."""
    train = ~evidence.heldout
    n_pos = int((classes[train] == POSITIVE).sum())
    n_neg = int((classes[train] == NEGATIVE).sum())
    if n_pos == 0 or n_neg == 0:
        return (), 0.5
    covered = np.zeros(evidence.n_docs, dtype=np.bool_)
    chosen: list[str] = []
    tp = fp = 0
    best_ba = 0.5
    docs = {t: evidence.terms.docs_with(t) for t in candidates}
    for _ in range(config.max_terms):
        pick, pick_tp, pick_fp, pick_ba = None, tp, fp, best_ba
        for term in candidates:
            if term in chosen:
                continue
            fresh = classes[docs[term][~covered[docs[term]]]]
            hits, misses = int((fresh == POSITIVE).sum()), int((fresh == NEGATIVE).sum())
            ba = balanced_accuracy(tp + hits, fp + misses, n_pos, n_neg)
            if ba > pick_ba:
                pick, pick_tp, pick_fp, pick_ba = term, tp + hits, fp + misses, ba
        if pick is None or (chosen and pick_ba - best_ba < config.min_gain):
            break
        chosen.append(pick)
        covered[docs[pick]] = True
        tp, fp, best_ba = pick_tp, pick_fp, pick_ba
    return tuple(chosen), best_ba


def matcher_score(
    evidence: Evidence, terms: tuple[str, ...], classes: np.ndarray, min_heldout: int
) -> float | None:
    """Held-out balanced accuracy of "contains one of ``terms``" at telling strongly active
    documents from inactive ones."""
    held = evidence.heldout
    n_pos = int((classes[held] == POSITIVE).sum())
    n_neg = int((classes[held] == NEGATIVE).sum())
    if n_pos < min_heldout or n_neg < min_heldout:
        return None
    predicted = np.zeros(evidence.n_docs, dtype=np.bool_)
    for term in terms:
        predicted[evidence.terms.docs_with(term, heldout=True)] = True
    tp = int((predicted & held & (classes == POSITIVE)).sum())
    fp = int((predicted & held & (classes == NEGATIVE)).sum())
    return balanced_accuracy(tp, fp, n_pos, n_neg)


SHAPES = ("word pieces", "capitalised words", "numbers", "punctuation", "whitespace")


def token_shape(text: str, start: int, end: int) -> str | None:
    """What kind of token ``text[start:end]`` is: one of `SHAPES`, or None for a plain word."""
    token = text[start:end].strip()
    if not token:
        if end < len(text) and text[end].isdigit():
            return "numbers"  # the space token before a number
        return "whitespace" if end > start else None
    begin = start + (len(text[start:end]) - len(text[start:end].lstrip()))
    if token[0].isalnum() and begin > 0 and text[begin - 1].isalnum():
        return "word pieces"
    if token.isdigit():
        return "numbers"
    if not any(c.isalnum() for c in token):
        return "punctuation"
    if token[0].isupper():
        return "capitalised words"
    return None


def peak_shape(evidence: Evidence, rows: np.ndarray) -> tuple[str | None, float]:
    """The most common token shape at the peaks of ``rows`` and its share."""
    shapes = Counter()
    for row in rows:
        start, end = int(evidence.act_start[row]), int(evidence.act_end[row])
        if start >= 0:
            shapes[token_shape(evidence.texts[int(evidence.act_doc[row])], start, end)] += 1
    total = sum(shapes.values())
    named = [(shape, n) for shape, n in shapes.most_common() if shape is not None]
    if not total or not named:
        return None, 0.0
    return named[0][0], named[0][1] / total


def describe(
    evidence: Evidence, peaks: Counter[str], n_top: int, n_docs: int, terms: tuple[str, ...]
) -> str:
    words = [(t, c) for t, c in ranked(peaks) if " " not in t][:4]
    peak_part = ", ".join(f"«{t}» {c}" for t, c in words)
    share = n_docs / evidence.n_docs
    text = f"Labelling corpus: active in {n_docs:,} of {evidence.n_docs:,} documents ({share:.1%})."
    if peak_part:
        text += f" Peak word in its top {n_top} documents: {peak_part}."
    if terms:
        text += " Matcher: the document contains " + " or ".join(f'"{t}"' for t in terms) + "."
    return text


def candidate_terms(
    evidence: Evidence, feature: int, config: OfflineConfig, patterns: bool, output: tuple = ()
) -> tuple[list[str], Counter[str], np.ndarray]:
    """The terms proposed for ``feature`` (peak words and patterns seen at two or more of its top
    labelling documents' peaks; with ``patterns``, also the content words seen near several of
    those peaks; then the content words it promotes), the peak counts, and the top rows.
    A promoted function word ("and", "because") is not proposed: it is in nearly every long
    document, and strongly active documents tend to be the long ones, so it would "detect" a
    feature by length alone. Nor is a promoted word that is in fewer than two of the top
    documents: the reader's vocabulary holds words of every domain (``tqdm`` for a feature that
    fires on *dull* and *boring* in film reviews), and a label names what the documents show."""
    rows = np.arange(evidence.rows(feature).start, evidence.rows(feature).stop)
    train_rows = rows[~evidence.heldout[evidence.act_doc[rows]]]
    top = train_rows[: config.top_docs] if len(train_rows) else rows[: config.top_docs]
    peaks = propose_terms(evidence, top, patterns)
    at_peak = ranked(peaks, config.max_candidates + (4 if patterns else 0))
    # a term at the peak of one top document only is usually a name from that document
    candidates = [t for t, c in at_peak if c >= 2] or [t for t, _ in at_peak[:3]]
    if patterns:
        candidates += [
            t for t in specific_context_words(evidence, top, config) if t not in candidates
        ]
    top_docs = evidence.act_doc[top]
    candidates += [
        t
        for t in output
        if is_content_word(t)
        and t not in candidates
        and np.isin(evidence.terms.docs_with(t), top_docs).sum() >= 2
    ]
    return candidates, peaks, top


def label_feature(
    evidence: Evidence,
    feature: int,
    config: OfflineConfig,
    meaning: Meaning | None = None,
    output: tuple[str, ...] = (),
) -> FeatureLabel:
    rows = np.arange(evidence.rows(feature).start, evidence.rows(feature).stop)
    n_docs = len(rows)
    density = n_docs / evidence.n_docs
    if n_docs == 0:
        return FeatureLabel(feature, None, None, None, 0.0, 0, [])
    classes = document_classes(evidence, feature, config.strong_fraction)
    candidates, peaks, top = candidate_terms(evidence, feature, config, meaning is not None, output)
    if meaning is not None:
        terms = choose_by_words_and_meaning(evidence, feature, candidates, classes, config, meaning)
    else:
        terms, _ = choose_terms(evidence, candidates, classes, config)
    score = matcher_score(evidence, terms, classes, config.min_heldout) if terms else None
    if not terms and candidates:
        # no term beats chance on the labelling documents: still name what it peaks on, and say
        # how (badly) that does on the held-out ones
        terms = tuple(candidates[:1])
        score = matcher_score(evidence, terms, classes, config.min_heldout)
    examples = [evidence.snippet(int(r)) for r in rows[: config.n_examples]]
    label = render_terms(terms) if terms else None
    shape, share = peak_shape(evidence, top)
    if shape and share >= 0.6 and (score is None or score < 0.65):
        # no word explains it, but the kind of token it peaks on does
        label = f"{shape} ({render_terms(terms[:2])} ...)" if terms else shape
    description = describe(evidence, peaks, len(top), n_docs, terms)
    if shape:
        description += f" {share:.0%} of those peaks are on {shape}."
    if output:
        description += (
            " Its decoder direction promotes " + ", ".join(f"«{t}»" for t in output) + "."
        )
    return FeatureLabel(
        feature=feature,
        label=label,
        description=description,
        score=score,
        density=density,
        n_docs=n_docs,
        examples=examples,
        terms=terms,
        evidence=meaning.evidence(feature) if meaning is not None else None,
    )


def build_meaning(
    evidence: Evidence,
    features: list[int],
    config: OfflineConfig,
    embedder,
    output: dict[int, tuple[str, ...]],
) -> Meaning:
    """Embed the labelling contexts of ``features`` and every term proposed for them."""
    bank = ContextBank(
        evidence,
        heldout=False,
        n_positive=config.semantic_positive,
        n_negative=config.semantic_negative,
        pool_size=config.semantic_pool,
        strong_fraction=config.strong_fraction,
        strongest=True,  # what the label should name: where it fires most
    )
    bank.add(features)
    log.info("embedding %d labelling contexts", len(bank.texts))
    bank.embed(embedder)
    terms: set[str] = set()
    for feature in features:
        terms.update(candidate_terms(evidence, feature, config, True, output.get(feature, ()))[0])
    ordered = sorted(terms)
    log.info("embedding %d candidate terms", len(ordered))
    vectors = embedder.embed(ordered) if ordered else np.zeros((0, 1), np.float32)
    return Meaning(bank, dict(zip(ordered, vectors, strict=True)))


def label_offline(
    evidence: Evidence,
    features: list[int] | None = None,
    config: OfflineConfig | None = None,
    progress: bool = False,
    embedder=None,
    output: dict[int, tuple[str, ...]] | None = None,
) -> list[FeatureLabel]:
    """Offline labels for ``features`` (default: every feature active on some document). With a
    sentence ``embedder``, terms are chosen by meaning as well as by words, and each label carries
    its feature's evidence embedding; ``output`` maps features to the tokens they promote."""
    from tqdm.auto import tqdm

    config = config or OfflineConfig()
    output = output or {}
    if features is None:
        features = [f for f in range(evidence.d_sae) if evidence.n_active(f) > 0]
    _ = evidence.terms  # build the term index once, before the loop
    meaning = build_meaning(evidence, features, config, embedder, output) if embedder else None
    labels = []
    for feature in tqdm(features, desc="labelling", unit="feature", disable=not progress):
        labels.append(label_feature(evidence, feature, config, meaning, output.get(feature, ())))
    return labels
