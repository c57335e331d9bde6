"""Store names chosen by meaning (`saeembed.labels.meaning`): the AUC arithmetic against
scikit-learn, and, on constructed stores with the real sentence embedder, a concept with a wrong
name gets one from what its passages share, a symbol's name keeps the symbol, and a concept
whose name already fits keeps it."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from saeembed.inputs import documents_from_texts
from saeembed.labels.local import SOURCE, LocalConfig
from saeembed.labels.meaning import MeaningConfig, choose_names, column_aucs
from saeembed.labels.naming import name_concepts
from saeembed.labels.offline import FeatureLabel
from saeembed.labels.table import labels_frame, write_labels
from saeembed.store import Store
from tests.fakes import ENCODER_FIELDS, write_constructed

DISHES = ["soup", "stew", "risotto", "curry", "sauce", "broth"]
HERBS = ["basil", "thyme", "garlic", "pepper", "ginger"]
TEAMS = ["United", "City", "Rovers", "Athletic", "Wanderers"]
COOKING_WORDS = {*DISHES, *HERBS, "stirred", "simmer", "simmered", "kitchen", "dinner", "cook",
                 "cooking", "chef", "serving", "recipe", "tasted", "flavour"}  # fmt: skip


def test_column_aucs_equal_scikit_learns_with_ties():
    rng = np.random.default_rng(0)
    positive = rng.integers(0, 6, size=(40, 5)) / 5 - 0.5  # few values: many ties
    negative = rng.integers(0, 6, size=(70, 5)) / 5 - 0.6
    labels = np.r_[np.ones(40), np.zeros(70)]
    expected = [roc_auc_score(labels, np.r_[positive[:, j], negative[:, j]]) for j in range(5)]
    assert column_aucs(positive, negative) == pytest.approx(expected, abs=1e-12)
    assert column_aucs(np.ones((3, 1)), np.zeros((4, 1))) == pytest.approx([1.0])


def _texts() -> list[str]:
    cooking = [
        f"In the kitchen she stirred the {dish} slowly, added {herb} and let it simmer "
        f"before serving dinner to her guests number {i}."
        for i, (dish, herb) in enumerate(
            (d, h) for d in DISHES for h in HERBS
        )
    ]  # fmt: skip
    football = [
        f"The striker scored a late goal and the {team} fans cheered as the referee blew the "
        f"final whistle in match {i}."
        for i, team in enumerate(TEAMS * 6)
    ]
    chemistry = [
        f"The chemist poured {solvent} into the beaker, measured the solution and recorded the "
        f"reaction in the lab notebook, sample {i}."
        for i, solvent in enumerate(["acetone", "ethanol", "methanol", "hexane", "toluene"] * 6)
    ]
    return cooking + football + chemistry


@pytest.fixture()
def topics(tmp_path):
    """90 documents: 30 about cooking, 30 about football, 30 about a chemistry lab. Concept 0 peaks on the dish of each
    cooking passage (shipped name: `acetone`, wrong here); concept 1 on the full stop ending
    each cooking passage (shipped: a quoted token); concept 2 on *fans* in each football one
    (shipped: `football / fans`, which fits)."""
    store = Store(tmp_path / "topics.duckdb")
    encoder, _ = store.get_or_create_encoder("fp-meaning", {**ENCODER_FIELDS, "d_sae": 3})
    docs, _ = documents_from_texts(_texts())
    store.add_documents("c", docs)
    rows = []
    for doc_id, text in zip(docs["doc_id"], docs["text"], strict=True):
        if "kitchen" in text:
            dish = next(d for d in DISHES if f" {d} " in text)
            start = text.index(f" {dish} ") + 1
            rows.append((doc_id, 0, 2.0, start, start + len(dish)))
            rows.append((doc_id, 1, 1.0, len(text) - 1, len(text)))
        elif "striker" in text:
            start = text.index(" fans ") + 1
            rows.append((doc_id, 2, 3.0, start, start + 4))
    write_constructed(store, encoder.encoder_id, docs["doc_id"].to_list(), rows, n_tokens=30)
    labels = [FeatureLabel(0, "acetone", None, 0.5, 0.3, 30, []),
              FeatureLabel(1, "⏎", None, 0.5, 0.3, 30, []),
              FeatureLabel(2, "football / fans", None, 0.9, 0.3, 30, [])]  # fmt: skip
    write_labels(store, encoder, labels_frame(labels, "shipped:offline"))
    yield store, encoder
    store.close()


def test_a_wrong_name_is_replaced_by_what_the_passages_share(topics):
    store, encoder = topics
    current = {0: ("acetone", []), 2: ("football / fans", [])}
    chosen = choose_names(store, encoder, current, MeaningConfig(min_positives=3))
    name, score, before = chosen[0]
    terms = name.split(" / ")
    assert any(word in COOKING_WORDS for t in terms for word in t.split()), name
    assert not any(w in {"striker", "goal", "fans", "chemist", "acetone"} for w in name.split())
    assert score == pytest.approx(1.0, abs=0.05) and before < score - 0.2
    assert 1 <= len(terms) <= 3
    assert 2 not in chosen or chosen[2][2] >= 0.9  # a name that fits is changed only for a better


def test_naming_a_store_by_meaning_writes_the_chosen_names(topics):
    store, encoder = topics
    by_words = name_concepts(store, encoder, LocalConfig(min_docs=10, by_meaning=False))
    words = dict(store.sql("SELECT feature::BIGINT AS f, label FROM features").iter_rows())
    report = name_concepts(store, encoder, LocalConfig(min_docs=10))
    rows = {
        r["f"]: r
        for r in store.sql(
            "SELECT feature::BIGINT AS f, label, label_source, shipped_label FROM features"
        ).iter_rows(named=True)
    }
    assert by_words.n_named >= 1 and report.n_named >= 1
    assert words[0] != "acetone"  # by words: the dishes
    assert rows[0]["label_source"] == SOURCE and rows[0]["shipped_label"] == "acetone"
    assert any(w in COOKING_WORDS for w in rows[0]["label"].replace(" / ", " ").split())
    # the full stop's name keeps the symbol first; words may follow it
    assert rows[1]["label"].startswith('"." ending a sentence'), rows[1]["label"]
    # the name that fits stays, as shipped
    assert rows[2]["label"] == "football / fans"
    assert rows[2]["label_source"] == "shipped:offline"
