"""A constructed store with two independent axes, for clustering and retrieval tests.

300 documents, each about one topic (sports, film, cooking) and with one tone (positive,
negative), both in its metadata. Each topic has two concepts and each tone one, active (value
1 + a little noise, peak on the word) in 90% of the documents of that topic or tone, and a
feature active on a random half of all documents; labels name the concepts."""

from __future__ import annotations

import numpy as np
import polars as pl

from saeembed.inputs import documents_from_frame
from saeembed.labels.table import write_labels
from saeembed.store import Store
from tests.fakes import ENCODER_FIELDS, write_constructed

TOPICS = {"sports": (0, 1), "film": (2, 3), "cooking": (4, 5)}
TONES = {"positive": 6, "negative": 7}
NOISE = 8
LABELS = {0: "football", 1: "goal / match", 2: "film / movie", 3: "actor", 4: "recipe",
          5: "oven / baking", 6: "wonderful / great", 7: "terrible / awful", 8: "the"}  # fmt: skip
WORDS = {0: "football", 1: "goal", 2: "film", 3: "actor", 4: "recipe", 5: "oven",
         6: "wonderful", 7: "terrible", 8: "the"}  # fmt: skip


def build_topic_store(path, n: int = 300, seed: int = 0):
    """(store, encoder, frame of doc_id, topic, tone)."""
    rng = np.random.default_rng(seed)
    topics = rng.choice(list(TOPICS), n)
    tones = rng.choice(list(TONES), n)
    active: list[list[int]] = []
    texts = []
    for i in range(n):
        features = [f for f in TOPICS[topics[i]] if rng.random() < 0.9]
        features += [TONES[tones[i]]] if rng.random() < 0.9 else []
        features += [NOISE] if rng.random() < 0.5 else []
        active.append(features)
        texts.append(" ".join([WORDS[f] for f in features] + [f"doc{i}"]))
    frame = pl.DataFrame({"text": texts, "topic": topics.tolist(), "tone": tones.tolist()})
    docs, _ = documents_from_frame(frame, text_col="text")
    store = Store(path)
    store.add_documents("topics", docs)
    encoder, _ = store.get_or_create_encoder("fp-topics", {**ENCODER_FIELDS, "d_sae": 9})
    rows = []
    for doc_id, text, features in zip(docs["doc_id"], texts, active, strict=True):
        for f in features:
            start = text.index(WORDS[f])
            rows.append((doc_id, f, 1.0 + 0.1 * rng.random(), start, start + len(WORDS[f])))
    write_constructed(store, encoder.encoder_id, docs["doc_id"].to_list(), rows, n_tokens=6)
    write_labels(
        store, encoder, pl.DataFrame({"feature": list(LABELS), "label": list(LABELS.values())})
    )
    truth = pl.DataFrame(
        {"doc_id": docs["doc_id"], "topic": topics.tolist(), "tone": tones.tolist()}
    )
    return store, encoder, truth
