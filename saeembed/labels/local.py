"""Concepts named from the documents being analysed: local evidence and store names.

A store keeps, for every (document, concept), the span of the token where the concept peaks
(`activations.peak_start`, `peak_end`). What a concept fires on *in this store* is therefore a
query, not a model run: the strongest peaks of each concept (on a fixed sample of documents when
the store is large, so the time is bounded), each read as a **descriptor** of what sits under the
peak, in context:

- a word, or a piece of one, is named by the whole word (``gevity`` in *longevity* is
  ``longevity``), and a word that recurs with the same neighbour by the phrase (``knows how to``);
- a number by what it is: ``year 2002`` read as ``a year (2002, 1999)``, other digits as
  ``a number (12, 300)``; a digit inside a number is named as its part (``last digit of a year``);
- a symbol by where it stands: ``">" opening a line``, ``"." ending a sentence``,
  ``"(" before a word``, ``"," between words``; a line break as ``a line break``.

A concept's **local evidence** is its descriptors with how many of its peaks each covers; its
**local name** the two or three that cover most. `saeembed.labels.naming` writes the local names
into the `features` table where the name shipped with the SAE does not fit the store: a shipped
name is kept when its words find the concept's peaks on this store (`fit`: the balanced accuracy
with which the name tells the concept's peaks from a fixed sample of other concepts' peaks) at
least `SHIPPED_MIN_SCORE`, or at least as well as a local name made from half the peaks finds
the other half; otherwise the local name replaces it (``label_source = 'local'``) and the
shipped one stays in `features.shipped_label`. Then `saeembed.labels.meaning` chooses among
these names and the phrases around the peaks by the sentence embedder. Names made by `saeembed
features label`, the LLM labeller or an import are the user's and are never replaced.
"""

from __future__ import annotations

import functools
import logging
import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
import polars as pl

from saeembed.labels.evidence import HELDOUT_MODULUS
from saeembed.store import Encoder, Store

log = logging.getLogger(__name__)

SOURCE = "local"
FOLLOW = 16  # characters after a peak that make a repeat of the same setting
SHIPPED_MIN_SCORE = 0.6  # a shipped name is kept when it detects the peaks at least this well
_YEAR = re.compile(r"^(1[5-9]\d\d|20\d\d)$")
_SENTENCE_END = (".", "!", "?")
# words before a word that add nothing to its name ("the longevity" says no more than "longevity")
DETERMINERS = frozenset(
    [
        "a",
        "an",
        "the",
        "this",
        "that",
        "these",
        "those",
        "his",
        "her",
        "its",
        "their",
        "my",
        "your",
        "our",
        "some",
        "any",
        "no",
        "every",
        "each",
    ]
)


@dataclass(frozen=True)
class LocalConfig:
    per_feature: int = 40  # strongest peaks read per concept
    max_docs: int = 50_000  # documents read at most (a fixed sample by a hash of the id)
    skip_heldout: bool = False  # leave out the labelling scorers' held-out documents (benchmarks)
    min_docs: int = 100  # a store with fewer encoded documents keeps the shipped names
    min_peaks: int = 4  # peaks a concept needs for a local name
    max_terms: int = 3  # descriptors in a name
    min_share: float = 0.05  # share of a concept's peaks a descriptor in its name must cover
    negatives: int = 400  # other concepts' peaks a name is tested against
    context: int = 40  # characters read on each side of a peak
    by_meaning: bool = True  # choose among the names by the sentence embedder (labels.meaning)
    meaning_docs: int = 2_000  # documents whose windows that choice embeds (a fixed sample)


# ---- reading the peaks ---------------------------------------------------------------------


def read_peaks(
    store: Store,
    encoder: Encoder,
    *,
    features=None,
    corpus: str | None = None,
    config: LocalConfig = LocalConfig(),
) -> pl.DataFrame:
    """The strongest peaks of each concept (of ``features``, of documents of ``corpus``):
    ``feature, doc_id, value, left, token, right`` (the text before, under and after the peak
    token, ``config.context`` characters each side). One SQL query; on a store of more than
    ``config.max_docs`` encoded documents, a fixed sample of them by a hash of the id."""
    wanted = None if features is None else sorted({int(f) for f in features})
    params = {
        "enc": encoder.encoder_id,
        "corpus": corpus,
        "k": config.per_feature,
        "w": config.context,
        "limit": config.max_docs,
        "skip": config.skip_heldout,
        "modulus": HELDOUT_MODULUS,
    }
    with store.temporary(wanted_features={"feature": wanted or [-1]}):
        return store.sql(
            f"""
            WITH sample AS (
                SELECT doc_id FROM encoded_documents
                WHERE encoder_id = $enc
                  AND ($corpus IS NULL
                       OR doc_id IN (SELECT doc_id FROM documents WHERE corpus = $corpus))
                  AND NOT ($skip AND doc_id % $modulus = 0)
                ORDER BY hash(doc_id), doc_id LIMIT $limit),
            peaks AS (
                SELECT a.feature, a.doc_id, a.value, a.peak_start, a.peak_end
                FROM activations a SEMI JOIN sample s ON s.doc_id = a.doc_id
                WHERE a.encoder_id = $enc AND a.peak_start IS NOT NULL
                  AND a.peak_end > a.peak_start
                  {"" if wanted is None else "AND a.feature IN (SELECT feature FROM wanted_features)"}
                QUALIFY row_number() OVER (
                    PARTITION BY a.feature ORDER BY a.value DESC, a.doc_id) <= $k),
            texts AS (
                SELECT doc_id, any_value(text) AS text FROM documents
                WHERE doc_id IN (SELECT doc_id FROM peaks) GROUP BY doc_id)
            SELECT p.feature::BIGINT AS feature, p.doc_id, p.value,
                substr(t.text, greatest(p.peak_start - $w, 0) + 1,
                       p.peak_start - greatest(p.peak_start - $w, 0)) AS "left",
                substr(t.text, p.peak_start + 1, p.peak_end - p.peak_start) AS token,
                substr(t.text, p.peak_end + 1, $w) AS "right"
            FROM peaks p JOIN texts t USING (doc_id)
            ORDER BY p.feature, p.value DESC, p.doc_id
            """,
            params,
        )


# ---- what sits under a peak ----------------------------------------------------------------


def describe_peak(left: str, token: str, right: str) -> tuple[str, str | None]:
    """What the peak token is, in context, as a descriptor a person reads (see the module
    docstring), and the phrase it makes with a recurring neighbour where there is one (the word
    with the word before it), else None."""
    return read_peak(left, token, right)[:2]


def read_peak(left: str, token: str, right: str) -> tuple[str, str | None, str | None]:
    """`describe_peak`, and the piece the token is of a longer word, where it is one at its
    start or end (``"mis-" starting words`` for *mis*fires, ``"-ing" ending words``), else None:
    a concept that fires on such a piece in many words is named by it."""
    core = token.strip()
    if not core:
        if "\n" in token:
            return "a line break", None, None
        return "spaces between words", None, None
    lead = token[: len(token) - len(token.lstrip())]
    before = left + lead
    after = token[len(token.rstrip()) :] + right
    starts, ends = core[0].isalnum(), core[-1].isalnum()
    if starts or ends:
        head = _word_end(before) if starts else ""
        tail = _word_start(after) if ends else ""
        whole = head + core + tail
        if whole.isdigit():
            return _number(whole, core), None, None
        word = whole.lower()
        piece = None
        if core.isalpha() and len(core) >= 2 and (head.isalpha() != tail.isalpha()):
            piece = (
                f'"-{core.lower()}" ending words' if head else f'"{core.lower()}-" starting words'
            )
        rest = before[: len(before) - len(head)].rstrip()
        previous = _word_end(rest.rstrip(_PUNCTUATION)) if rest else ""
        if previous and not rest.endswith(_SENTENCE_END):
            return word, f"{previous.lower()} {word}", piece
        return word, None, piece
    return _symbol(before, core, after), None, None


_JOINERS = "'’-"
_PUNCTUATION = "\"'’“”()[]{},;:"


def _word_end(text: str) -> str:
    """The word ``text`` ends with: letters and digits, with apostrophes and hyphens inside."""
    i = len(text)
    while i > 0 and (text[i - 1].isalnum() or (text[i - 1] in _JOINERS and i > 1
                                                and text[i - 2].isalnum())):  # fmt: skip
        i -= 1
    while i < len(text) and text[i] in _JOINERS:
        i += 1
    return text[i:]


def _word_start(text: str) -> str:
    """The word ``text`` starts with (as `_word_end`)."""
    i = 0
    while i < len(text) and (text[i].isalnum() or (text[i] in _JOINERS and i + 1 < len(text)
                                                   and text[i + 1].isalnum())):  # fmt: skip
        i += 1
    return text[:i]


def _number(whole: str, core: str) -> str:
    if _YEAR.match(whole):
        if core == whole:
            return "a year"
        return "last digit of a year" if whole.endswith(core) else "digits of a year"
    return "a number" if core == whole else "digits of a number"


def _symbol(before: str, sym: str, after: str) -> str:
    shown = f"'{sym}'" if '"' in sym else f'"{sym}"'  # a double quote reads '"'
    line_start = before == "" or before.endswith("\n") or before.rstrip(" \t").endswith("\n")
    if line_start:
        return f"{shown} opening a line"
    if sym[-1] in _SENTENCE_END and (after == "" or after[0].isspace()):
        return f"{shown} ending a sentence"
    if re.search(r"[^\W_]$", before) and re.match(r"[^\W_]", after) and sym in "-'’/.":
        return f"{shown} inside words"  # self-destructive, don't, and/or, e.g
    prev_word = bool(re.search(r"[^\W_]\s*$", before))
    next_word = bool(re.match(r"\s*[^\W_]", after))
    if prev_word and next_word:
        return f"{shown} between words"
    if next_word:
        return f"{shown} before a word"
    if prev_word:
        return f"{shown} after a word"
    return f"{shown} among symbols"


# ---- names ---------------------------------------------------------------------------------


@dataclass
class Peaks:
    """`read_peaks` rows read once: per peak its concept, descriptor, phrase and context window
    (lower case), and where each concept's peaks are."""

    feature: np.ndarray
    doc_id: np.ndarray
    value: np.ndarray
    descriptor: list[str]
    phrase: list[str | None]
    piece: list[str | None]  # the start or end of a longer word the peak token is, if it is
    window: list[str]
    follow: list[str]  # the text right after the peak, lower case, a few words
    capital: np.ndarray  # whether the peak's word is capitalised inside a sentence (a name)

    @staticmethod
    def read(frame: pl.DataFrame) -> Peaks:
        rows = [
            (left or "", token or "", right or "")
            for left, token, right in zip(
                frame["left"], frame["token"], frame["right"], strict=True
            )
        ]
        described = [read_peak(*row) for row in rows]
        return Peaks(
            frame["feature"].to_numpy(),
            frame["doc_id"].to_numpy(),
            frame["value"].to_numpy().astype(np.float64),
            [d for d, _, _ in described],
            [p for _, p, _ in described],
            [x for _, _, x in described],
            [f"{left}{token}{right}".lower() for left, token, right in rows],
            [_follow(right) for _, _, right in rows],
            np.array([_is_name(*row) for row in rows], dtype=bool),
        )

    def groups(self) -> dict[int, np.ndarray]:
        """Row positions of each concept's peaks (strongest first, as read)."""
        order = np.argsort(self.feature, kind="stable")
        bounds = np.flatnonzero(np.diff(self.feature[order])) + 1
        return {int(self.feature[g[0]]): g for g in np.split(order, bounds) if len(g)}

    def pool_counts(self, rows) -> tuple[Counter, list[str], np.ndarray]:
        """For `fit`: how often each descriptor or phrase is one of the peaks ``rows``, their
        windows, and the rows."""
        keys: Counter = Counter()
        for i in rows:
            keys[self.descriptor[i]] += 1
            if self.phrase[i] and self.phrase[i] != self.descriptor[i]:
                keys[self.phrase[i]] += 1
            if self.piece[i]:
                keys[self.piece[i]] += 1
        return keys, [self.window[i] for i in rows], np.asarray(rows)

    def detects(self, terms: tuple[str, ...], rows) -> int:
        """How many of the peaks ``rows`` a name of ``terms`` finds: a term equal to the peak's
        descriptor (its whole word, or what a symbol or number is there) or phrase, or a term of
        several words that its context holds."""
        exact, spread = _split_terms(terms)
        found = 0
        for i in rows:
            if (
                self.descriptor[i] in exact
                or self.phrase[i] in exact
                or spread
                and any(t in self.window[i] for t in spread)
            ):
                found += 1
        return found

    def evidence(self, rows, n: int = 8) -> list[tuple[str, int]]:
        """What the peaks ``rows`` are: their ``n`` commonest descriptors, with how many peaks
        each is (most first, then by the descriptor)."""
        counts = Counter(self.descriptor[i] for i in rows)
        return sorted(counts.items(), key=lambda x: (-x[1], x[0]))[:n]

    def evidence_vectors(
        self, groups: dict[int, np.ndarray], min_peaks: int
    ) -> tuple[dict[int, dict[str, float]], dict[int, tuple[float, float]]]:
        """Per concept with at least ``min_peaks`` peaks, its evidence for
        `saeembed.labels.alike.group_alike`: the forms of each word (`word_key`) weighted by the
        squared activation of their peaks over the concept's strongest; and its strength (number
        of peaks, strongest activation)."""
        weights, strength = {}, {}
        for feature, rows in groups.items():
            if len(rows) < min_peaks:
                continue
            top = max(float(self.value[rows].max()), 1e-12)
            vector: Counter = Counter()
            for i in rows:
                vector[word_key(self.descriptor[i])] += (float(self.value[i]) / top) ** 2
            weights[feature] = dict(vector)
            strength[feature] = (float(len(rows)), top)
        return weights, strength


def _is_name(left: str, token: str, right: str) -> bool:
    """Whether the peak token is in a word that starts with a capital letter inside a sentence
    (not after a full stop or a line break): a name, most often."""
    core = token.strip()
    if not core or not core[0].isalnum():
        return False
    before = left + token[: len(token) - len(token.lstrip())]
    word = _word_end(before) + core
    rest = before[: len(before) - len(_word_end(before))].rstrip(" \t\"'“(")
    return word[:1].isupper() and bool(rest) and not rest.endswith((*_SENTENCE_END, "\n", ":"))


def _follow(right: str) -> str:
    """The setting a peak's word is in, to tell repeats: the text after the rest of the word,
    lower case, ``FOLLOW`` characters; empty when too little follows to tell (the end of a
    document, a full stop and a space), so such peaks never count as repeats."""
    after = _word_start(right)
    text = right[len(after) :][:FOLLOW].lower()
    return text if sum(c.isalnum() for c in text) >= 6 else ""


@dataclass(frozen=True)
class LocalName:
    """A concept's name from the store's documents, and the evidence it was made from."""

    feature: int
    name: str
    terms: tuple[str, ...]
    evidence: list[tuple[str, int]]  # descriptors with the peaks each covers, most first
    n_peaks: int


def name_from(peaks: Peaks, rows, config: LocalConfig = LocalConfig()) -> LocalName | None:
    """The local name of one concept from its peaks ``rows``: up to ``config.max_terms``
    descriptors, each on at least two peaks and ``config.min_share`` of the peaks' weight (a
    peak weighs its activation over the concept's strongest, so the strongest peaks count most);
    the forms of one word count together (*throw*, *throws*, *throwing*: `word_key`) and are named
    by the heaviest; the same word followed by the same text again (a title repeated across
    documents) counts once; a word's phrase (``how to``) stands in its place where the phrase covers most
    of its peaks. None when fewer than ``config.min_peaks`` peaks, or nothing recurs."""
    if len(rows) < config.min_peaks:
        return None
    top = max(float(peaks.value[rows].max()), 1e-12)
    weight: Counter = Counter()
    count: Counter = Counter()
    members: dict[str, set] = {}  # the peaks each key covers
    forms: dict[str, Counter] = {}
    phrases: Counter = Counter()
    seen = set()
    for i in rows:
        key = word_key(peaks.descriptor[i])
        # the same words in the same setting again (a title, a signature repeated across
        # documents) are one piece of evidence, not many
        if peaks.follow[i]:
            if (key, peaks.follow[i]) in seen:
                continue
            seen.add((key, peaks.follow[i]))
        w = (float(peaks.value[i]) / top) ** 2  # the strongest peaks say most
        # a peak counts for its word and, where it is the start or end of a longer word, for
        # that piece: a concept on "mis-" in many words is named by the piece
        for k in (key, peaks.piece[i]) if peaks.piece[i] else (key,):
            weight[k] += w
            count[k] += 1
            members.setdefault(k, set()).add(int(i))
        forms.setdefault(key, Counter())[peaks.descriptor[i]] += w
        if peaks.phrase[i]:
            phrases[peaks.phrase[i]] += 1
    total = sum(weight[k] for k in forms)  # every peak once
    terms, covered = [], set()
    # the heaviest first; on a tie the word before the piece of it
    for key, w in sorted(weight.items(), key=lambda x: (-x[1], x[0] not in forms, x[0])):
        if len(terms) == config.max_terms or w < config.min_share * total:
            break
        if count[key] < 2 or len(members[key] - covered) < 0.5 * len(members[key]):
            continue  # too rare, or its peaks are named already (a word and its piece)
        if key not in forms and len({peaks.descriptor[i] for i in members[key]}) < 3:
            continue  # a piece names something only when it is in several words
        covered |= members[key]
        if key not in forms:
            terms.append(key)  # a piece of words
            continue
        surface = forms[key].most_common(1)[0][0]
        phrase = next(
            (p for p, m in phrases.most_common() if p.rsplit(" ", 1)[-1] in forms[key]
             and m >= max(2, 0.6 * count[key]) and p.split(" ", 1)[0] not in DETERMINERS),
            None,
        )  # fmt: skip
        terms.append(phrase or surface)
    if not terms:
        return _varied_name(peaks, rows)
    feature = int(peaks.feature[rows[0]])
    return LocalName(feature, " / ".join(terms), _all_forms(terms, forms), peaks.evidence(rows),
                     len(rows))  # fmt: skip


MIN_NAME_SHARE = 0.6  # share of a concept's peaks on names for it to be named "names (...)"


def _varied_name(peaks: Peaks, rows) -> LocalName | None:
    """A concept whose peaks share no word: named by what its peaks are when most are names
    (``names (cary / bobbie / inez ...)``, peak words strongest first), else None."""
    if peaks.capital[rows].mean() < MIN_NAME_SHARE:
        return None
    examples = list(dict.fromkeys(peaks.descriptor[i] for i in rows if peaks.capital[i]))[:3]
    feature = int(peaks.feature[rows[0]])
    name = f"names ({' / '.join(examples)} ...)"
    return LocalName(feature, name, tuple(examples), peaks.evidence(rows), len(rows))


def _all_forms(terms: list[str], forms: dict[str, Counter]) -> tuple[str, ...]:
    """The name's terms with every form of their words, as a matcher reads them."""
    out = []
    for term in terms:
        out.append(term)
        out.extend(f for f in forms.get(word_key(term), ()) if f != term)
    return tuple(dict.fromkeys(out))


@functools.lru_cache(maxsize=200_000)
def word_key(descriptor: str) -> str:
    """What the forms of one word share: its Snowball stem for a plain word (``throwing`` and
    ``throws`` are ``throw``), the descriptor itself for anything else."""
    if not descriptor.isalpha():
        return descriptor
    return _stemmer().stemWord(descriptor)


@functools.cache
def _stemmer():
    import snowballstemmer

    return snowballstemmer.stemmer("english")


def local_names(frame: pl.DataFrame, config: LocalConfig = LocalConfig()) -> list[LocalName]:
    """`name_from` for every concept of ``frame`` (`read_peaks` rows)."""
    peaks = Peaks.read(frame)
    found = (name_from(peaks, rows, config) for rows in peaks.groups().values())
    return [n for n in found if n is not None]


# ---- does a name fit this store? -------------------------------------------------------------


def label_terms(label: str | None) -> tuple[str, ...]:
    """The words a label is made of, as its matcher reads them: the parts between `` / ``, and
    inside a shape label's brackets (``capitalised words (pygments / license ...)``)."""
    if not label:
        return ()
    inner = re.search(r"\((.*?)(?: \.\.\.)?\)$", label)
    body = inner.group(1) if inner else label
    terms = []
    for part in body.split(" / "):
        term = part.strip()
        if re.fullmatch(r'"[^"]+"', term):  # a quoted token ("⏎"); a described symbol keeps its
            term = term[1:-1]  # quotes ('"." ending a sentence' is what a peak's descriptor is)
        if term:
            terms.append(term.lower())
    return tuple(terms)


def is_described_symbol(term: str) -> bool:
    """Whether a name's term describes a symbol where it stands (``"." ending a sentence``,
    ``'"' between words``) rather than naming words."""
    return term.startswith(('"', "'"))


def _split_terms(terms: tuple[str, ...]) -> tuple[set[str], list[str]]:
    """A name's terms as `Peaks.detects` reads them: those a peak's descriptor, phrase or piece
    equals (a word, a described symbol or number), and those of several words its context must
    hold."""
    exact = {t for t in terms if " " not in t or is_described_symbol(t)}
    return exact, [t for t in terms if t not in exact]


def fit(peaks: Peaks, terms: tuple[str, ...], mine, pool: tuple) -> float:
    """How well a name of ``terms`` finds a concept's peaks ``mine`` against a sample of other
    concepts' peaks (``pool``, `Peaks.pool_counts`): the balanced accuracy of `Peaks.detects`,
    0.5 for chance and 1 for every peak of its own and none of the others."""
    keys, windows, sample = pool
    if len(mine) == 0:
        return 0.5
    own = sample[peaks.feature[sample] == peaks.feature[mine[0]]]  # not "other" concepts
    if len(windows) - len(own) <= 0:
        return 0.5
    tp = peaks.detects(terms, mine) / len(mine)
    exact, spread = _split_terms(terms)
    hits = sum(keys[t] for t in exact)
    if spread:
        hits += sum(1 for w in windows if any(t in w for t in spread))
    hits -= peaks.detects(terms, own)
    fp = min(1.0, max(0, hits) / (len(windows) - len(own)))
    return 0.5 * (tp + 1.0 - fp)
