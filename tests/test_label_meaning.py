"""Labels by meaning on constructed stores with known answers: context-pattern labels (the label
names the pattern around the peak word, not only the word), the embedding scorer and its
shuffled control, and phrase -> concept matching through evidence embeddings when the phrase
shares no word with the label. All use the real default sentence embedder (MiniLM)."""

from __future__ import annotations

import os
from collections import Counter

import numpy as np
import pytest

from saeembed.embedder import load_embedder
from saeembed.inputs import documents_from_texts
from saeembed.labels import label_features, read_labels
from saeembed.labels.evidence import load_evidence
from saeembed.labels.offline import OfflineConfig, candidate_terms
from saeembed.labels.scoring import ContextBank, auc, context_window, embedding_scores
from saeembed.labels.search import search_features
from saeembed.labels.table import read_evidence, write_labels
from saeembed.store import Store
from tests.fakes import ENCODER_FIELDS, write_constructed

FILLER = [
    "the",
    "city",
    "council",
    "said",
    "on",
    "monday",
    "that",
    "a",
    "new",
    "plan",
    "would",
    "be",
    "ready",
    "next",
    "year",
]
SKILL = ["talent for", "knack for", "gift for"]  # feature 0 peaks on "for" in these
OTHER_FOR = ["waited for", "paid for", "asked for", "looked for"]  # "for" without feature 0
OBJECTS = ["music", "numbers", "languages", "painting", "money", "news", "help", "work"]
COOKING = [
    "she simmered the tomato sauce with garlic and basil for an hour",
    "knead the dough, let it rise, then bake the bread until golden",
    "whisk the eggs with sugar and fold in the flour for the cake batter",
    "the chef seasoned the roast chicken with rosemary and lemon",
    "stir the onions in butter until soft before adding the rice",
    "grill the salmon and serve it with a salad of fresh herbs",
]
OTHER = [
    "shares in the bank fell sharply after the quarterly earnings report",
    "heavy rain and strong winds are expected across the north tomorrow",
    "the new software update fixes a bug in the login screen",
    "parliament debated the tax bill late into the night",
]
SPORT = [
    "the striker scored twice as the home side won the league match",
    "the goalkeeper saved a penalty in the final minute of the game",
    "the team trained hard before the championship semi final",
    "the runner crossed the finish line to win the marathon",
]


@pytest.fixture(scope="module")
def embedder(registry):
    return load_embedder("default")


def _span(text: str, phrase: str, word: str) -> tuple[int, int]:
    start = text.index(phrase) + phrase.index(word)
    return start, start + len(word)


def _build(path, seed: int = 0):
    """Feature 0: "for" in skill constructions; feature 1: cooking passages (peak on a cooking
    word), labelled later with a word that never occurs in them; feature 2: sport passages."""
    rng = np.random.default_rng(seed)
    texts, planted = [], []
    for i in range(300):
        words = list(rng.choice(FILLER, 10))
        kind = rng.choice(
            ["skill", "for", "cooking", "sport", "plain"], p=[0.2, 0.25, 0.2, 0.15, 0.2]
        )
        if kind == "skill":
            phrase = str(rng.choice(SKILL))
            after = rng.choice(OBJECTS)
            text = " ".join(words[:5]) + f" she has a {phrase} {after} " + " ".join(words[5:])
        elif kind == "for":
            phrase = str(rng.choice(OTHER_FOR))
            after = rng.choice(OBJECTS)
            text = " ".join(words[:5]) + f" they {phrase} {after} " + " ".join(words[5:])
        elif kind == "cooking":
            phrase = str(rng.choice(COOKING))
            text = " ".join(words[:4]) + f" {phrase} " + " ".join(words[4:])
        elif kind == "sport":
            phrase = str(rng.choice(SPORT))
            text = " ".join(words[:4]) + f" {phrase} " + " ".join(words[4:])
        else:  # other content, so inactive contexts are not only filler
            phrase = str(rng.choice(OTHER))
            text = " ".join(words[:4]) + f" {phrase} " + " ".join(words[4:])
        texts.append(f"{text} n{i}")
        planted.append((kind, phrase))
    docs, _ = documents_from_texts(texts)
    store = Store(path)
    store.add_documents("mix", docs)
    encoder, _ = store.get_or_create_encoder("fp-meaning", {**ENCODER_FIELDS, "d_sae": 4})
    rows = []
    for doc_id, text, (kind, phrase) in zip(docs["doc_id"], texts, planted, strict=True):
        if kind == "skill":
            rows.append((doc_id, 0, 2.0 + rng.random(), *_span(text, phrase, "for")))
        elif kind == "cooking":
            word = phrase.split()[1]
            rows.append((doc_id, 1, 2.0 + rng.random(), *_span(text, phrase, word)))
        elif kind == "sport":
            word = phrase.split()[1]
            rows.append((doc_id, 2, 2.0 + rng.random(), *_span(text, phrase, word)))
    write_constructed(store, encoder.encoder_id, docs["doc_id"].to_list(), rows, n_tokens=16)
    return store, encoder


@pytest.fixture(scope="module")
def meaning_store(tmp_path_factory):
    store, encoder = _build(tmp_path_factory.mktemp("meaning") / "m.duckdb")
    yield store, encoder
    store.close()


def test_auc_matches_pairwise_definition():
    pos, neg = np.array([0.9, 0.5, 0.5]), np.array([0.5, 0.1])
    pairs = [(p > n) + 0.5 * (p == n) for p in pos for n in neg]
    assert auc(pos, neg) == pytest.approx(np.mean(pairs))
    assert auc(np.array([1.0, 2.0]), np.array([0.0])) == 1.0


def test_context_window_keeps_whole_words():
    text = "alpha beta gamma delta epsilon zeta eta theta"
    start = text.index("delta")
    window = context_window(text, start, start + 5, width=8)
    assert window == "gamma delta epsilon"


def test_context_pattern_label_names_the_pattern(meaning_store):
    store, encoder = meaning_store
    frame = label_features(store, encoder, progress=False).sort("feature")
    skill = frame.filter(frame["feature"] == 0).row(0, named=True)
    terms = skill["label"].split(" / ")
    assert "for" not in terms  # not the bare peak word, which "waited for" also has
    # the patterns ending at the peak, or the skill words next to it
    assert set(terms) <= {"talent for", "knack for", "gift for", "a talent for", "a knack for",
                          "a gift for", "talent", "knack", "gift"}  # fmt: skip
    assert skill["label_score"] > 0.6


def test_embedding_scorer_separates_apt_from_wrong_labels(meaning_store, embedder):
    store, encoder = meaning_store
    evidence = load_evidence(store, encoder)
    labels = {1: "cooking food in the kitchen", 2: "athletes and teams winning matches and races"}
    scores, _ = embedding_scores(evidence, labels, embedder)
    assert scores[1] > 0.9 and scores[2] > 0.9
    swapped, _ = embedding_scores(evidence, {1: labels[2], 2: labels[1]}, embedder)
    assert swapped[1] < scores[1] - 0.25 and swapped[2] < scores[2] - 0.25
    _, control = embedding_scores(evidence, labels, embedder, control_seed=0)
    assert control == {1: swapped[1], 2: swapped[2]}  # with two features, the control swaps


def test_offline_labelling_stores_evidence_embeddings(meaning_store, embedder):
    store, encoder = meaning_store
    label_features(store, encoder, progress=False)
    features, vectors = read_evidence(store, encoder, embedder.model_id)
    assert features.tolist() == [0, 1, 2]
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cooking = embedder.embed(["a recipe for dinner"])[0]
    assert int(np.argmax(vectors @ cooking)) == 1


def test_phrase_finds_concept_through_evidence_when_label_words_differ(meaning_store):
    store, encoder = meaning_store
    label_features(store, encoder, progress=False)
    labels = read_labels(store, encoder)
    # labels that share no word (and little meaning) with the phrase
    renamed = labels.with_columns(
        label=labels["feature"].replace_strict({0: "xq7", 1: "zv3", 2: "kr9"})
    )
    write_labels(store, encoder, renamed)
    phrase = "preparing a meal from a recipe"
    by_label = search_features(store, encoder, phrase, by="label")
    found = search_features(store, encoder, phrase)
    assert found["feature"][0] == 1
    assert found["evidence_similarity"][0] > 0.3
    assert by_label["feature"][0] != 1 or by_label["similarity"][0] < 0.2
    sport = search_features(store, encoder, "a football team winning", by="evidence")
    assert sport["feature"][0] == 2


def test_context_words_near_peaks_are_specific_content_words(meaning_store):
    store, encoder = meaning_store
    evidence = load_evidence(store, encoder)
    candidates, _, _ = candidate_terms(evidence, 2, OfflineConfig(), patterns=True)
    single = {t for t in candidates if " " not in t}
    # sport words from the passages around the peaks ...
    assert {"goalkeeper", "penalty", "minute", "scored"} <= single
    # ... and not the filler words that surround every peak of every feature
    assert not single & set(FILLER)


def test_promoted_words_are_proposed_only_if_content_words_the_documents_hold(meaning_store):
    """A token the decoder promotes is a candidate only if it is a content word ("and" or
    "because" would match nearly every long document) that at least two of the feature's top
    documents contain (the reader's vocabulary spans every domain: "xylophone" names nothing
    in these sport passages)."""
    store, encoder = meaning_store
    evidence = load_evidence(store, encoder)
    rows = np.arange(evidence.rows(2).start, evidence.rows(2).stop)
    top = rows[~evidence.heldout[evidence.act_doc[rows]]][: OfflineConfig().top_docs]
    top_words = Counter(w for r in top for w in set(evidence.texts[evidence.act_doc[r]].split()))
    held = [w for w in ("goalkeeper", "striker", "runner", "team") if top_words[w] >= 2]
    assert held  # sport words the top documents hold
    output = ("and", "because", "xylophone", "of", *held)
    candidates, _, _ = candidate_terms(evidence, 2, OfflineConfig(), patterns=True, output=output)
    assert set(held) <= set(candidates)
    assert not {"and", "because", "of", "xylophone"} & set(candidates)


def test_offline_labels_do_not_depend_on_the_hash_seed(tmp_path):
    """Two processes with different hash seeds label copies of one store identically."""
    import shutil
    import subprocess
    import sys

    store, _ = _build(tmp_path / "a.duckdb", seed=3)
    store.close()
    shutil.copy(tmp_path / "a.duckdb", tmp_path / "b.duckdb")
    script = (
        "import sys; from saeembed.store import Store; from saeembed.labels import label_features;"
        "s = Store(sys.argv[1]); e = s.resolve_encoder(None);"
        "f = label_features(s, e, progress=False).sort('feature');"
        "print('|'.join(f['label'].to_list()))"
    )
    runs = []
    for name, seed in (("a", "1"), ("b", "2")):
        done = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / f"{name}.duckdb")],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        )
        runs.append(done.stdout.strip())
    assert runs[0] == runs[1] and runs[0].count("|") == 2


def test_context_bank_takes_the_strongest_peaks_when_asked(meaning_store):
    """The labeller's meaning criterion reads a feature's strongest labelling contexts; the
    scorer keeps a seeded random sample of the strong ones."""
    store, encoder = meaning_store
    evidence = load_evidence(store, encoder)
    rows = np.arange(evidence.rows(2).start, evidence.rows(2).stop)
    rows = rows[~evidence.heldout[evidence.act_doc[rows]]]  # labelling part, strongest first
    assert (np.diff(evidence.act_value[rows]) <= 0).all()

    def window(row):
        text = evidence.texts[int(evidence.act_doc[row])]
        return context_window(text, int(evidence.act_start[row]), int(evidence.act_end[row]))

    strongest = ContextBank(evidence, heldout=False, n_positive=3, strongest=True)
    strongest.add([2])
    assert [strongest.texts[i] for i in strongest.positives[2]] == [window(r) for r in rows[:3]]
    sampled = ContextBank(evidence, heldout=False, n_positive=3)
    sampled.add([2])
    picked = [sampled.texts[i] for i in sampled.positives[2]]
    assert set(picked) <= {window(r) for r in rows} and picked != [window(r) for r in rows[:3]]
