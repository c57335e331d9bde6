"""The offline labeller: names a feature by the words it peaks on, with no LLM.

For each feature it collects the word under the peak token (and the word pairs around it) in the
feature's top-activating labelling documents, then greedily picks up to three of those terms whose
presence best separates the documents where the feature is *strongly* active from those where it
is not active at all (balanced accuracy on the labelling documents). The label is those terms; the
label's own matcher ("the document contains one of the terms") is then scored the same way on the
held-out documents, which gives the feature's detection score.

"Strongly active" means a pooled value of at least half the feature's 99th-percentile value
(`strong_threshold`); documents where the feature is only weakly active count on neither side, as
in the automated-interpretability practice of contrasting activating with non-activating examples."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

import numpy as np

from saeembed.labels.evidence import Evidence

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
    strong_fraction: float = 0.5  # strong = value >= this x the feature's 99th-percentile value


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


def render_terms(terms: tuple[str, ...]) -> str:
    """``film / movie / "!"``: words as they are, punctuation quoted so it stays visible."""
    return " / ".join(t if any(c.isalnum() for c in t) else f'"{t}"' for t in terms)


def propose_terms(evidence: Evidence, rows: np.ndarray) -> Counter[str]:
    """Terms at the peaks of activation rows ``rows``: the peak word and the pairs around it."""
    proposed: Counter[str] = Counter()
    for row in rows:
        i = evidence.peak_word_index(int(row))
        if i is None:
            continue
        words = [w for w, _, _ in evidence.words(int(evidence.act_doc[row]))]
        found = {words[i]}
        if i > 0:
            found.add(f"{words[i - 1]} {words[i]}")
        if i + 1 < len(words):
            found.add(f"{words[i]} {words[i + 1]}")
        proposed.update(found)
    return proposed


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
    words = [(t, c) for t, c in peaks.most_common() if " " not in t][:4]
    peak_part = ", ".join(f"«{t}» {c}" for t, c in words)
    share = n_docs / evidence.n_docs
    text = f"Labelling corpus: active in {n_docs:,} of {evidence.n_docs:,} documents ({share:.1%})."
    if peak_part:
        text += f" Peak word in its top {n_top} documents: {peak_part}."
    if terms:
        text += " Matcher: the document contains " + " or ".join(f'"{t}"' for t in terms) + "."
    return text


def label_feature(evidence: Evidence, feature: int, config: OfflineConfig) -> FeatureLabel:
    rows = np.arange(evidence.rows(feature).start, evidence.rows(feature).stop)
    n_docs = len(rows)
    density = n_docs / evidence.n_docs
    if n_docs == 0:
        return FeatureLabel(feature, None, None, None, 0.0, 0, [])
    classes = document_classes(evidence, feature, config.strong_fraction)
    train_rows = rows[~evidence.heldout[evidence.act_doc[rows]]]
    top = train_rows[: config.top_docs] if len(train_rows) else rows[: config.top_docs]
    peaks = propose_terms(evidence, top)
    ranked = peaks.most_common(config.max_candidates)
    # a term at the peak of one top document only is usually a name from that document
    candidates = [t for t, c in ranked if c >= 2] or [t for t, _ in ranked[:3]]
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
    return FeatureLabel(
        feature=feature,
        label=label,
        description=description,
        score=score,
        density=density,
        n_docs=n_docs,
        examples=examples,
        terms=terms,
    )


def label_offline(
    evidence: Evidence,
    features: list[int] | None = None,
    config: OfflineConfig | None = None,
    progress: bool = False,
) -> list[FeatureLabel]:
    """Offline labels for ``features`` (default: every feature active on some document)."""
    from tqdm.auto import tqdm

    config = config or OfflineConfig()
    if features is None:
        features = [f for f in range(evidence.d_sae) if evidence.n_active(f) > 0]
    _ = evidence.terms  # build the term index once, before the loop
    labels = []
    for feature in tqdm(features, desc="labelling", unit="feature", disable=not progress):
        labels.append(label_feature(evidence, feature, config))
    return labels
