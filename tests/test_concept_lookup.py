"""Concept lookup by whole words and meaning, on the real shipped labels and evidence of the
default SAE (8,192 features): a query word never selects a concept whose label holds it only
inside a longer word (`tone` is not *acetone*, `war` not *software*, `art` not *party*)."""

from __future__ import annotations

import re

import polars as pl
import pytest

from saeembed.analysis.concepts import choose_concepts
from saeembed.labels.search import search_features
from saeembed.labels.table import (
    SHIPPED_EVIDENCE,
    ensure_shipped_evidence,
    read_saeembed_labels,
    write_labels,
)
from saeembed.pretrained import shipped_saes
from saeembed.store import Store
from tests.fakes import ENCODER_FIELDS

# short words, many of which sit inside longer words of the shipped labels
QUERIES = ["tone", "war", "art", "act", "age", "cat", "car", "end", "law", "man", "pay", "pen",
           "ran", "use", "win", "air", "arm", "bit", "cap", "cut", "eat", "god", "ice", "key",
           "lie", "map", "net", "oil", "pet", "run", "sex", "sun", "tax", "tip", "van", "web",
           "form", "line", "love", "hate", "rate", "time"]  # fmt: skip


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """A store whose encoder has the default SAE's shipped labels and evidence embeddings."""
    folder = next(iter(shipped_saes().values()))
    labels = read_saeembed_labels(folder / "labels.parquet")
    from safetensors import safe_open

    with safe_open(str(folder / SHIPPED_EVIDENCE), framework="numpy") as f:
        sha = f.metadata()["sae_sha256"]
    store = Store(tmp_path_factory.mktemp("lookup") / "s.duckdb")
    fields = {**ENCODER_FIELDS, "d_sae": 8192, "sae_sha256": sha, "name": "shipped"}
    encoder, _ = store.get_or_create_encoder("fp-shipped", fields)
    write_labels(store, encoder, labels)
    assert ensure_shipped_evidence(store, encoder, folder / SHIPPED_EVIDENCE) > 0
    yield store, encoder, labels
    store.close()


def only_inside_longer_words(label: str, word: str) -> bool:
    """The label holds ``word`` but only inside longer words that are not forms of it (a word
    beginning with it and ending in s, es, d, ed, ing, er(s), or(s), ion(s) or ly)."""
    lowered = label.lower()
    forms = r"(?:s|es|d|ed|ing|ers?|ors?|ions?|ly)?"
    return word in lowered and not re.search(rf"(?:^|\W){word}{forms}(?:$|\W)", lowered)


def test_the_shipped_labels_hold_the_traps(shipped):
    """Without this the lookup test below could not fail: many query words sit inside longer
    words of the shipped labels (the acetone case)."""
    _, _, labels = shipped
    trapped = [w for w in QUERIES if any(only_inside_longer_words(x, w) for x in labels["label"])]
    assert len(trapped) >= 30 and {"tone", "war", "art"} <= set(trapped)


def test_word_lookup_matches_whole_words_only(shipped):
    store, encoder, _ = shipped
    for word in QUERIES:
        hits = search_features(store, encoder, word, semantic=False, top=10_000)
        bad = [x for x in hits["label"] if only_inside_longer_words(x, word)]
        assert not bad, (word, bad[:5])
        assert (hits["match"] == "word").all()
    tone = search_features(store, encoder, "tone", semantic=False, top=100)
    assert not tone["label"].str.contains("acetone").any()


def test_phrase_choice_never_takes_a_word_inside_a_longer_one(shipped, embedder):
    store, encoder, _ = shipped
    for word in QUERIES:
        choice = choose_concepts(store, encoder, phrase=word, top=20)
        bad = [x for x in choice.table["label"] if x and only_inside_longer_words(x, word)]
        assert not bad, (word, bad)
    found = search_features(store, encoder, "tone", top=20, embedder=embedder)
    # ranked by closeness of meaning, whichever way each was found
    assert found["similarity"].to_list() == sorted(found["similarity"].to_list(), reverse=True)
    assert not found.filter(pl.col("label").str.contains("acetone")).height


@pytest.fixture(scope="module")
def embedder(registry):
    from saeembed.embedder import load_embedder

    return load_embedder("default")
