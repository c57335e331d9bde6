"""A constructed store whose features have known lexical triggers, for labelling tests.

200 documents of filler words. Feature 0 is active exactly on the documents containing "film"
(peak on that word); feature 1 on those containing "goal" or "match"; feature 2 on a random tenth
of the documents, peaking on a random word (nothing lexical to find); feature 3 never."""

from __future__ import annotations

import numpy as np

from saeembed.inputs import documents_from_texts
from saeembed.store import Store
from tests.fakes import ENCODER_FIELDS, write_constructed

FILLER = [
    "the",
    "a",
    "of",
    "report",
    "today",
    "city",
    "people",
    "said",
    "new",
    "year",
    "after",
    "council",
    "local",
    "plan",
    "week",
]


def constructed_texts(n: int = 200, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    texts = []
    for i in range(n):
        words = list(rng.choice(FILLER, 8))
        if rng.random() < 0.3:
            words.insert(int(rng.integers(0, 8)), "film")
        if rng.random() < 0.25:
            words.insert(int(rng.integers(0, 8)), str(rng.choice(["goal", "match"])))
        texts.append(" ".join(words) + f" n{i}")  # unique texts
    return texts


def _span(text: str, word: str) -> tuple[int, int]:
    start = f" {text} ".index(f" {word} ")
    return start, start + len(word)


def build_labelled_store(path, *, seed: int = 0) -> tuple[Store, list[str]]:
    texts = constructed_texts(seed=seed)
    docs, _ = documents_from_texts(texts)
    store = Store(path)
    store.add_documents("mix", docs)
    encoder, _ = store.get_or_create_encoder("fp-labels", {**ENCODER_FIELDS, "d_sae": 4})
    rng = np.random.default_rng(seed + 1)
    rows = []  # (doc_id, feature, value, start, end)
    for doc_id, text in zip(docs["doc_id"], texts, strict=True):
        words = text.split()
        if "film" in words:
            rows.append((doc_id, 0, 2.0 + rng.random(), *_span(text, "film")))
        for trigger in ("goal", "match"):
            if trigger in words:
                rows.append((doc_id, 1, 1.0 + rng.random(), *_span(text, trigger)))
        if rng.random() < 0.1:
            rows.append((doc_id, 2, 0.5 + rng.random(), *_span(text, str(rng.choice(words)))))
    write_constructed(store, encoder.encoder_id, docs["doc_id"].to_list(), rows, n_tokens=10)
    return store, texts
